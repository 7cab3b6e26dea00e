"""Reading connector files: one YAML file per connector, a folder of them, and finding one by name.

``load_connector`` validates one file; ``load_folder`` (``headrace validate``) refuses a folder with
any broken file and lists every problem; ``scan_connectors`` (Dagster's code location) keeps every
valid connector and describes each broken file (:class:`BrokenConnector`), so one bad file never hides
the others; ``find_connector`` (``headrace run NAME``) needs only the named connector's own file to be
valid and warns about the others.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from integrations.config import (
    CONNECTOR_TYPES,
    ConnectorConfig,
    FileSourceConfig,
    ParquetSinkConfig,
    SqlSourceConfig,
    TableSinkConfig,
)
from integrations.errors import ConfigError
from integrations.transforms.config import PREDICATE_TYPES, TRANSFORM_TYPES

AnyConfig = SqlSourceConfig | ParquetSinkConfig | TableSinkConfig | FileSourceConfig


class _Envelope(BaseModel):
    connector: ConnectorConfig


def _strip_tags(loc: tuple[Any, ...]) -> list[Any]:
    """Drop the union tags pydantic puts in error locations of transforms and predicates."""
    out: list[Any] = []
    for p in loc:
        prev = out[-1] if out else None
        if (isinstance(prev, int) and p in TRANSFORM_TYPES) or (prev == "predicate" and p in PREDICATE_TYPES):
            continue
        out.append(p)
    return out


def _format_error(path: Path, err: ValidationError, raw: dict[str, Any]) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in _strip_tags(e["loc"]) if p != "connector" and p not in CONNECTOR_TYPES)
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        if e["type"] == "missing":
            lines.append(f"{path}: field '{loc}' is required")
        elif e["type"] == "extra_forbidden":
            lines.append(f"{path}: field '{loc}' is not a known option (value {got!r})")
        elif e["type"] == "union_tag_invalid" and loc:  # a transform or predicate 'type'
            allowed = e.get("ctx", {}).get("expected_tags", "")
            lines.append(f"{path}: field '{loc}.type': got {e.get('ctx', {}).get('tag')!r}; allowed: "
                         f"{allowed.replace(chr(39), '')}")
        elif e["type"] == "union_tag_invalid" or (loc == "" and "tag" in e["type"]):
            lines.append(f"{path}: field 'type': got {raw.get('type')!r}; allowed: {', '.join(CONNECTOR_TYPES)}")
        elif isinstance(got, dict) and not loc:
            lines.append(f"{path}: {msg}")
        else:
            lines.append(f"{path}: field '{loc or 'type'}': {msg} (got {got!r})")
    return "\n".join(lines)


class _Loader(yaml.SafeLoader):
    """YAML without implicit timestamps: ``2024-01-01`` stays the text it was written as.

    Connector fields that hold dates or instants are strings checked by their own validators, and a
    string field (an InsertField ``static_value``, a MaskField ``replacement``) must get what the user
    wrote, not ``datetime.date(2024, 1, 1)``."""


_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in rs if tag != "tag:yaml.org,2002:timestamp"]
    for ch, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_yaml(text: str) -> Any:
    """Parse connector YAML (safe; dates and timestamps stay strings)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506  (a SafeLoader subclass)


def _yaml_problem(e: yaml.YAMLError) -> str:
    """Where and what a YAML syntax error is, on one line."""
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    context = getattr(e, "context", None)
    return f"{where}: {problem}" + (f" ({context})" if context else "")


#: the file each loaded config came from, by the config object's id (the config is kept with it, so an id
#: is never reused while its entry lives); configs built in code or inline have none
_FILES: dict[int, tuple[object, Path]] = {}


def source_file(config: object) -> Path | None:
    """The absolute path of the connector file ``config`` was loaded from (None when built otherwise)."""
    entry = _FILES.get(id(config))
    return entry[1] if entry is not None and entry[0] is config else None


def load_connector(path: str | Path) -> AnyConfig:
    """Read and validate one connector file; raise ConfigError with a message naming file and field."""
    path = Path(path)
    try:
        raw = read_yaml(path.read_text())
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: no such file") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML{_yaml_problem(e)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of connector options, got {type(raw).__name__}")
    if "type" not in raw:
        raise ConfigError(f"{path}: field 'type' is required; allowed: {', '.join(CONNECTOR_TYPES)}")
    try:
        config = _Envelope.model_validate({"connector": raw}).connector
    except ValidationError as e:
        raise ConfigError(_format_error(path, e, raw)) from None
    _FILES[id(config)] = (config, path.resolve())
    return config


def connector_files(folder: str | Path) -> list[Path]:
    """The connector YAML files in a folder, sorted."""
    folder = Path(folder)
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def scan_folder(folder: str | Path) -> tuple[list[AnyConfig], dict[Path, str]]:
    """Validate every connector file in a folder: the valid configs, and the problems of each broken file."""
    configs, problems, seen = [], {}, {}
    for f in connector_files(folder):
        try:
            c = load_connector(f)
        except ConfigError as e:
            problems[f] = str(e)
            continue
        if c.name in seen:
            problems[f] = f"{f}: field 'name': {c.name!r} is already used by {seen[c.name]}"
            continue
        seen[c.name] = f
        configs.append(c)
    return configs, problems


def load_folder(folder: str | Path) -> list[AnyConfig]:
    """Validate every connector file in a folder; raise one ConfigError listing every problem."""
    configs, problems = scan_folder(folder)
    if problems:
        raise ConfigError("\n".join(problems.values()))
    return configs


@dataclass(frozen=True)
class BrokenConnector:
    """A connector file that could not be loaded: its path, the connector name it seems to declare (its
    ``name:``, else the file name without extension) and the whole problem text (one line per problem,
    each starting with the path)."""

    path: Path
    name: str
    error: str

    @property
    def summary(self) -> str:
        """The first problem on one line, with how many more there are."""
        lines = self.error.splitlines() or ["unknown problem"]
        more = f" (and {len(lines) - 1} more problem(s); run headrace validate)" if len(lines) > 1 else ""
        return lines[0] + more


def declared_name(path: Path) -> str:
    """The connector name a possibly broken file declares: its ``name:`` when readable, else its stem."""
    names = _declared_names(path) - {path.stem}
    return sorted(names)[0] if names else path.stem


def scan_connectors(folder: str | Path) -> tuple[list[AnyConfig], list[BrokenConnector]]:
    """Every valid connector of a folder, and one :class:`BrokenConnector` per file that is not valid
    (a parse or validation error, or a name already used by an earlier file). Never raises for a bad
    file; a missing folder is a ConfigError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: the connectors folder does not exist")
    configs, problems = scan_folder(folder)
    return configs, [BrokenConnector(p.resolve(), declared_name(p), text) for p, text in problems.items()]


def _declared_names(path: Path) -> set[str]:
    """The names a (possibly invalid) connector file may declare: its ``name:``, or, when its YAML does
    not parse, a top-level ``name:`` line and the file name without its extension."""
    try:
        text = path.read_text()
        raw = read_yaml(text)
    except (OSError, UnicodeDecodeError):
        return {path.stem}
    except yaml.YAMLError:
        found = re.search(r"^name:\s*['\"]?([^'\"\s#]+)", text, re.MULTILINE)
        return {path.stem, *([found.group(1)] if found else [])}
    name = raw.get("name") if isinstance(raw, dict) else None
    return {path.stem} if name is None else {str(name)}


def find_connector(name: str, folder: str | Path) -> tuple[AnyConfig, list[str]]:
    """The connector called ``name`` in ``folder``, and one warning line per other broken file.

    Only the named connector's own file must be valid: a broken file of another connector does not
    stop it. Raises ConfigError when no valid file declares ``name``, when its own file is broken
    (a file that fails to parse, or to validate, but declares ``name``), or when two files declare it."""
    folder = Path(folder)
    matches: list[tuple[Path, Any]] = []
    broken: dict[Path, str] = {}
    for f in connector_files(folder):
        try:
            c = load_connector(f)
        except ConfigError as e:
            if name in _declared_names(f):
                raise
            broken[f] = str(e)
            continue
        if c.name == name:
            matches.append((f, c))
    if len(matches) > 1:
        raise ConfigError(f"{matches[1][0]}: field 'name': {name!r} is already used by {matches[0][0]}")
    if not matches:
        hint = (f"; {len(broken)} file(s) could not be read and may declare it: "
                f"{', '.join(str(p) for p in broken)} (run headrace validate {folder})" if broken else "")
        raise ConfigError(f"no connector named {name!r} in {folder}{hint}")
    warnings = []
    for problem in broken.values():
        lines = problem.splitlines()
        more = f" (and {len(lines) - 1} more; run headrace validate)" if len(lines) > 1 else ""
        warnings.append(f"skipped a broken connector file: {lines[0]}{more}")
    return matches[0][1], warnings


def default_connectors_dir() -> Path:
    """``$HEADRACE_CONNECTORS_DIR``, or the repository's ``connectors/`` folder."""
    from integrations.kafka.local import REPO_ROOT

    return Path(os.environ.get("HEADRACE_CONNECTORS_DIR", REPO_ROOT / "connectors"))

