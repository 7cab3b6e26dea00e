"""What every connector config shares: the base model and its common fields (name, converters, poll
interval, group, transforms, tasks, owners, tags, continuous mode), and the helpers the connector
types' validators use (``${env:VAR}`` secrets, dates, topic names, regexes, value schemas).

The connector types themselves are in :mod:`integrations.config`, which re-exports everything here.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from integrations.converters.config import ConverterConfig
from integrations.errors import ConfigError
from integrations.kafka.local import headrace_home
from integrations.runtime.error_config import ErrorSettings
from integrations.topics import LEGAL, illegal_routed_topics
from integrations.transforms.config import TransformConfig

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$"
_ENV_RE = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


def resolve_env(value: str) -> str:
    """Replace every ``${env:VAR}`` / ``${env:VAR:default}`` in ``value``; a missing VAR is an error."""

    def sub(m: re.Match[str]) -> str:
        var, default = m.group(1), m.group(2)
        if var == "HEADRACE_HOME":
            return os.environ.get(var, str(headrace_home()))
        if var in os.environ:
            return os.environ[var]
        if default is not None:
            return default
        raise ConfigError(f"environment variable {var} is not set (referenced as ${{env:{var}}})")

    return _ENV_RE.sub(sub, value)


def redact_url(url: str) -> str:
    """A connection URL safe to print: the password (literal or from the environment) is masked."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _check_value_schema(v: dict[str, str] | None) -> dict[str, str] | None:
    """Validate declared ``{column: arrow type}`` mappings (shared by sinks and the file source)."""
    if v is not None:
        from integrations.arrow_types import parse_type

        for col, typ in v.items():
            try:
                parse_type(typ, col)
            except ConfigError as e:  # a ValueError lets pydantic name the file and the field
                raise ValueError(str(e)) from None
    return v


def _yaml_date(v: Any) -> Any:
    """A YAML date or datetime (``2024-01-01``, ``2024-01-01T00:00:00Z``) as the ISO text it was written as."""
    if isinstance(v, dt.datetime):
        return v.isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    return v


def _check_instant(v: str | None) -> str | None:
    """An ISO-8601 date or datetime text, checked now rather than when the first run parses it."""
    if v is not None:
        try:
            dt.datetime.fromisoformat(v)
        except ValueError:
            raise ValueError(f"{v!r} is not an ISO-8601 date or datetime (e.g. 2024-01-01 or "
                             "2024-01-01T00:00:00+00:00)") from None
    return v


def _illegal_topic(topic: str, transforms: list[Any], what: str) -> str | None:
    """The error text when ``topic`` (derived from ``what``) is illegal after the transforms' routers."""
    bad = illegal_routed_topics(topic, transforms)
    if not bad:
        return None
    routed = "" if bad == [topic] else f" (after the transforms: {', '.join(repr(b) for b in bad)})"
    return (f"{what} makes the topic {topic!r}{routed}, which is not a legal Kafka topic name ({LEGAL}); "
            "rename it with a RegexRouter transform or change the name")



def check_regexes(patterns: list[str]) -> list[str]:
    """``patterns`` when each compiles as a regular expression; else a ValueError naming the bad one."""
    for r in patterns:
        try:
            re.compile(r)
        except re.error as e:
            raise ValueError(f"{r!r} is not a valid regular expression: {e}") from None
    return patterns


#: what Dagster accepts as an asset owner, a tag key and a tag value (checked here so that
#: ``headrace validate`` catches them, not the code location when it builds the asset specs)
_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,7}")
_TAG_KEY_RE = re.compile(r"([A-Za-z0-9_.-]{1,63}/)?[A-Za-z0-9_.-]{1,63}")
_TAG_VALUE_RE = re.compile(r"[A-Za-z0-9_.-]{0,63}")


def check_owners(owners: list[str]) -> list[str]:
    """Asset owners: each an email address or ``team:<name>``."""
    for o in owners:
        if not (_EMAIL_RE.fullmatch(o) or (o.startswith("team:") and len(o) > 5)):
            raise ValueError(f"{o!r} is not an owner; write an email address or team:<name>")
    return owners


def check_tags(tags: dict[str, str]) -> dict[str, str]:
    """Asset tags: keys ``[namespace/]name`` and values of letters, digits, ``_.-`` (≤ 63 each)."""
    for k, v in tags.items():
        if not _TAG_KEY_RE.fullmatch(k):
            raise ValueError(f"tag key {k!r} is not allowed; use letters, digits, '_', '-', '.' and at most one "
                             "'/', each part at most 63 characters")
        if k.startswith("dagster/") or k.startswith("headrace/"):
            raise ValueError(f"tag key {k!r} is reserved (dagster/ and headrace/ tags are set by Headrace)")
        if not _TAG_VALUE_RE.fullmatch(v):
            raise ValueError(f"tag {k!r}: value {v!r} is not allowed; use letters, digits, '_', '-', '.' "
                             "(at most 63 characters)")
    return tags


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class ContinuousConfig(_Model):
    """Continuous mode: one long-lived run that polls in a loop and ends at its time budget."""

    max_run_seconds: Annotated[float, Field(gt=0, description="The run ends cleanly after this long")] = 600.0
    idle_sleep_seconds: Annotated[float, Field(gt=0, description="Sleep between polls that found nothing")] = 0.5


class _ConnectorBase(ErrorSettings, _Model):
    name: Annotated[str, Field(pattern=NAME_RE, description="Unique connector name")]
    key_converter: ConverterConfig = ConverterConfig(type="json")
    value_converter: ConverterConfig = ConverterConfig(type="json")
    poll_interval: Annotated[
        float, Field(gt=0, description="Seconds between the sensor's cheap checks for new data")
    ] = 30.0
    group_name: Annotated[str | None, Field(description="Dagster asset group (default: the connector name)")] = None
    transforms: Annotated[
        list[TransformConfig],
        Field(description="Kafka Connect SMTs applied in order to every batch; see docs/transforms.md"),
    ] = []
    tasks_max: Annotated[
        int, Field(ge=1, le=256, description="Tasks the connector splits into (Kafka Connect's tasks.max): "
                                            "sinks divide topic partitions, sources tables or key ranges")
    ] = 1
    owners: Annotated[list[str], Field(description="Dagster asset owners (emails or team:name)")] = []
    tags: Annotated[dict[str, str], Field(description="Dagster asset tags")] = {}
    continuous: Annotated[
        ContinuousConfig | None,
        Field(description="Run as a long-lived Dagster run polling in a loop (see README, continuous mode)"),
    ] = None

    _owners = field_validator("owners")(classmethod(lambda cls, v: check_owners(v)))
    _tags = field_validator("tags")(classmethod(lambda cls, v: check_tags(v)))
