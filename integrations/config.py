"""Connector configuration: one YAML file per connector, validated by pydantic.

Field names follow Kafka Connect's property names in snake_case. Secrets are written as
``${env:VAR}`` (or ``${env:VAR:default}``) and resolved only when a connection is opened, so they
never appear in a model dump, a log line, run config or Dagster metadata.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from integrations.errors import ConfigError
from integrations.kafka.local import headrace_home

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$"
TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConverterConfig(_Model):
    """How record keys or values become bytes (and back)."""

    type: Annotated[Literal["json"], Field(description="json: Kafka Connect's JsonConverter without schemas")] = "json"


class _ConnectorBase(_Model):
    name: Annotated[str, Field(pattern=NAME_RE, description="Unique connector name")]
    key_converter: ConverterConfig = ConverterConfig(type="json")
    value_converter: ConverterConfig = ConverterConfig(type="json")
    poll_interval: Annotated[
        float, Field(gt=0, description="Seconds between the sensor's cheap checks for new data")
    ] = 30.0
    group_name: Annotated[str | None, Field(description="Dagster asset group (default: the connector name)")] = None


SqlMode = Literal["bulk", "incrementing", "timestamp", "timestamp+incrementing"]


class SqlSourceConfig(_ConnectorBase):
    """A SQL table (or custom query) source, like Kafka Connect's JDBC source connector."""

    type: Literal["sql_source"]
    connection_url: Annotated[
        str, Field(description="SQLAlchemy URL; put secrets in ${env:VAR}, e.g. postgresql://u:${env:PGPASS}@h/db")
    ]
    mode: Annotated[SqlMode, Field(description="bulk | incrementing | timestamp | timestamp+incrementing")]
    tables: Annotated[list[str], Field(description="Tables to read, optionally schema-qualified")] = []
    query: Annotated[str | None, Field(description="A custom SELECT; writes to the topic named by topic_prefix")] = None
    incrementing_column: str | None = None
    timestamp_column: Annotated[
        list[str] | None, Field(description="One column, or a list coalesced in order")
    ] = None
    timestamp_delay: Annotated[float, Field(ge=0, description="Seconds to stay behind the database clock")] = 0.0
    timestamp_initial: Annotated[
        str | None, Field(description="ISO-8601 instant to start from in timestamp modes (default: the beginning)")
    ] = None
    batch_max_rows: Annotated[int, Field(gt=0, le=10_000_000, description="Rows per read chunk")] = 100_000
    max_rows_per_run: Annotated[
        int | None, Field(gt=0, description="Cap on rows moved by one micro-batch (default: until caught up)")
    ] = None
    topic_prefix: str = ""
    key_columns: Annotated[list[str], Field(description="Columns that form the Kafka message key")] = []
    topic_partitions: Annotated[int, Field(gt=0, le=10_000)] = 1
    topic_replication_factor: Annotated[int, Field(gt=0, le=10)] = 1
    db_timezone: str = "UTC"

    @field_validator("timestamp_column", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _check_mode(self) -> SqlSourceConfig:
        if not self.tables and not self.query:
            raise ValueError("set 'tables' (a list of table names) or 'query' (a custom SELECT)")
        if self.tables and self.query:
            raise ValueError("set either 'tables' or 'query', not both")
        if self.query and not self.topic_prefix:
            raise ValueError("with 'query', 'topic_prefix' names the topic to write to")
        if "incrementing" in self.mode and not self.incrementing_column:
            raise ValueError(f"mode '{self.mode}' needs 'incrementing_column'")
        if "timestamp" in self.mode and not self.timestamp_column:
            raise ValueError(f"mode '{self.mode}' needs 'timestamp_column'")
        for t in self.tables:
            if not TOPIC_RE.match(self.topic_prefix + t.split(".")[-1]):
                raise ValueError(f"table {t!r} does not make a legal Kafka topic name")
        return self

    def topic_for(self, table: str) -> str:
        """The topic a table (or the custom query) writes to."""
        if self.query:
            return self.topic_prefix
        return self.topic_prefix + table.split(".")[-1]

    @property
    def source_names(self) -> list[str]:
        """Source partitions: one per table, or ``query`` for a custom query."""
        return list(self.tables) if self.tables else ["query"]


class ParquetSinkConfig(_ConnectorBase):
    """A Parquet dataset sink, like Kafka Connect's S3/HDFS sinks with the Parquet format."""

    type: Literal["parquet_sink"]
    topics: Annotated[list[str], Field(min_length=1, description="Topics to read")]
    path: Annotated[str, Field(description="Root folder of the dataset; files go under <path>/<topic>/")]
    flush_size: Annotated[int, Field(gt=0, description="Records per Kafka partition per file")] = 100_000
    compression: Literal["snappy", "zstd", "gzip", "lz4", "none"] = "zstd"
    value_schema: Annotated[
        dict[str, str] | None,
        Field(description="Declared value columns (name: arrow type, e.g. decimal(12,2), timestamp[us, tz=UTC])"),
    ] = None
    group_id: Annotated[str | None, Field(description="Consumer group (default headrace-<name>)")] = None
    max_records_per_run: Annotated[int | None, Field(gt=0)] = None

    @field_validator("topics")
    @classmethod
    def _legal_topics(cls, v: list[str]) -> list[str]:
        for t in v:
            if not TOPIC_RE.match(t) or t in (".", ".."):
                raise ValueError(f"{t!r} is not a legal Kafka topic name ([A-Za-z0-9._-], not '.' or '..')")
        return v

    @field_validator("value_schema")
    @classmethod
    def _parse_schema(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is not None:
            from integrations.arrow_types import parse_type

            for col, typ in v.items():
                parse_type(typ, col)
        return v

    @property
    def consumer_group(self) -> str:
        return self.group_id or f"headrace-{self.name}"


ConnectorConfig = Annotated[SqlSourceConfig | ParquetSinkConfig, Field(discriminator="type")]
CONNECTOR_TYPES = ("sql_source", "parquet_sink")


class _Envelope(BaseModel):
    connector: ConnectorConfig


def _format_error(path: Path, err: ValidationError, raw: dict[str, Any]) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if p not in ("connector",) and p not in CONNECTOR_TYPES)
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        if e["type"] == "missing":
            lines.append(f"{path}: field '{loc}' is required")
        elif e["type"] == "extra_forbidden":
            lines.append(f"{path}: field '{loc}' is not a known option (value {got!r})")
        elif e["type"] == "union_tag_invalid" or (loc == "" and "tag" in e["type"]):
            lines.append(f"{path}: field 'type': got {raw.get('type')!r}; allowed: {', '.join(CONNECTOR_TYPES)}")
        elif isinstance(got, dict) and not loc:
            lines.append(f"{path}: {msg}")
        else:
            lines.append(f"{path}: field '{loc or 'type'}': {msg} (got {got!r})")
    return "\n".join(lines)


def load_connector(path: str | Path) -> SqlSourceConfig | ParquetSinkConfig:
    """Read and validate one connector file; raise ConfigError with a message naming file and field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: no such file") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of connector options, got {type(raw).__name__}")
    if "type" not in raw:
        raise ConfigError(f"{path}: field 'type' is required; allowed: {', '.join(CONNECTOR_TYPES)}")
    try:
        return _Envelope.model_validate({"connector": raw}).connector
    except ValidationError as e:
        raise ConfigError(_format_error(path, e, raw)) from None


def connector_files(folder: str | Path) -> list[Path]:
    """The connector YAML files in a folder, sorted."""
    folder = Path(folder)
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def load_folder(folder: str | Path) -> list[SqlSourceConfig | ParquetSinkConfig]:
    """Validate every connector file in a folder; raise one ConfigError listing every problem."""
    configs, problems, seen = [], [], {}
    for f in connector_files(folder):
        try:
            c = load_connector(f)
        except ConfigError as e:
            problems.append(str(e))
            continue
        if c.name in seen:
            problems.append(f"{f}: field 'name': {c.name!r} is already used by {seen[c.name]}")
            continue
        seen[c.name] = f
        configs.append(c)
    if problems:
        raise ConfigError("\n".join(problems))
    return configs


def default_connectors_dir() -> Path:
    """``$HEADRACE_CONNECTORS_DIR``, or the repository's ``connectors/`` folder."""
    from integrations.kafka.local import REPO_ROOT

    return Path(os.environ.get("HEADRACE_CONNECTORS_DIR", REPO_ROOT / "connectors"))


def resolve_path(value: str) -> Path:
    """A configured folder, with ``${env:...}`` resolved; relative paths are under ``$HEADRACE_HOME``."""
    p = Path(resolve_env(value))
    return p if p.is_absolute() else headrace_home() / p
