"""The one rule for every path a connector file configures (see docs/errors.md, "Paths").

- A **relative** path is under its root, ``$HEADRACE_HOME``, and may not climb out of it.
- An **absolute** path (``/data/lake``, ``file:///data/lake``) or a **URL** (``s3://bucket/lake``,
  ``gs://...``) is explicit: it is used as written.
- A ``..`` segment is refused everywhere (relative, absolute or URL): write the path you mean.
- A leading ``~`` is refused: it is not expanded, so it would make a folder named ``~``.
- ``${env:VAR}`` may hold any part of a path. A value that starts with it is checked once the variable
  is known, when the path is opened (:func:`resolve_path`), with the same rule.

The checks run at validation time (``headrace validate``) through :func:`check_path` and
:func:`check_url_path`, and again on use, after ``${env:...}`` is resolved, in :func:`resolve_path`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from integrations.errors import ConfigError
from integrations.kafka.local import headrace_home

ALLOWED = ("a path relative to $HEADRACE_HOME without '..', an absolute path, or a URL such as "
           "s3://bucket/prefix or file:///abs/path")
#: URL schemes whose path part is a local database file (``sqlite:///rel.db``, ``duckdb:///rel.duckdb``)
FILE_DB_SCHEMES = ("sqlite", "duckdb")


def _segments(path: str) -> list[str]:
    return re.split(r"[/\\]", path)


def check_path(value: str) -> str:
    """Check one configured path or URL against the rule above; raise ValueError saying what is allowed.

    A ValueError (not a ConfigError) lets pydantic name the file, the field and the value."""
    if not value.strip():
        raise ValueError(f"an empty path is not allowed; use {ALLOWED}")
    rest = value.split("://", 1)[1] if "://" in value else value
    if ".." in _segments(rest):
        raise ValueError(f"{value!r} contains a '..' segment; paths may not climb out of their folder. "
                         f"Allowed: {ALLOWED}")
    if rest.startswith("~"):
        raise ValueError(f"{value!r} starts with '~', which is not expanded; use {ALLOWED}")
    return value


def url_file_path(url: str) -> str | None:
    """The file path inside a ``sqlite:///...`` or ``duckdb:///...`` URL (query string dropped), else None.

    ``sqlite:///x.db`` gives ``x.db`` (relative), ``sqlite:////abs/x.db`` gives ``/abs/x.db``; an
    in-memory database (``:memory:`` or no path) gives None."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+", 1)[0].lower() not in FILE_DB_SCHEMES:
        return None
    path = rest.split("?", 1)[0]
    if not path.startswith("/"):  # sqlite://host/x.db is not a file URL SQLAlchemy understands; leave it
        return None
    path = path[1:]
    return None if path in ("", ":memory:") or path.startswith(":memory:") else path


def check_url_path(url: str) -> str:
    """:func:`check_path` on the file path of a SQLite/DuckDB URL; other URLs pass unchanged."""
    path = url_file_path(url)
    if path is not None:
        try:
            check_path(path)
        except ValueError as e:
            raise ValueError(f"the database file of {url!r}: {e}") from None
    return url


def resolve_path(value: str) -> Path:
    """A configured local folder or file, ``${env:...}`` resolved: relative ones under ``$HEADRACE_HOME``.

    Raises ConfigError when the resolved value breaks the rule (e.g. a variable holding ``../x``)."""
    from integrations.config import resolve_env

    raw = resolve_env(value)
    try:
        check_path(raw)
    except ValueError as e:
        raise ConfigError(f"path {value!r}: {e}" if raw != value else str(e)) from None
    p = Path(raw)
    if p.is_absolute():
        return p
    home = headrace_home()
    out = Path(os.path.normpath(home / p))
    if out != home and home not in out.parents:  # belt and braces: check_path already refused '..'
        raise ConfigError(f"{value!r} resolves to {out}, outside $HEADRACE_HOME ({home})")
    return out


def resolve_url(url: str) -> str:
    """A connection URL with ``${env:...}`` resolved and a relative SQLite/DuckDB file under ``$HEADRACE_HOME``.

    ``sqlite:///shop.db`` becomes ``sqlite:////<home>/shop.db``, as ``duckdb:///warehouse.duckdb``
    always has; absolute file paths and other URLs are returned as resolved."""
    from integrations.config import resolve_env

    raw = resolve_env(url)
    path = url_file_path(raw)
    if path is None or path.startswith("/"):
        return raw
    scheme, _, rest = raw.partition("://")
    query = "?" + rest.split("?", 1)[1] if "?" in rest else ""
    return f"{scheme}:///{resolve_path(path)}{query}"
