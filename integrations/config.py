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

from integrations.converters.config import ConverterConfig
from integrations.errors import ConfigError
from integrations.kafka.local import headrace_home
from integrations.runtime.error_config import ErrorSettings
from integrations.transforms.config import PREDICATE_TYPES, TRANSFORM_TYPES, TransformConfig

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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


SqlMode = Literal["bulk", "incrementing", "timestamp", "timestamp+incrementing"]


class SqlSourceConfig(_ConnectorBase):
    """A SQL table (or custom query) source, like Kafka Connect's JDBC source connector."""

    type: Literal["sql_source"]
    connection_url: Annotated[
        str, Field(description="SQLAlchemy URL; put secrets in ${env:VAR}, e.g. postgresql://u:${env:PGPASS}@h/db")
    ]
    mode: Annotated[SqlMode, Field(description="bulk | incrementing | timestamp | timestamp+incrementing")]
    tables: Annotated[list[str], Field(description="Tables to read, optionally schema-qualified")] = []
    table_include: Annotated[
        list[str], Field(description="Regexes (full match) of tables to read, discovered on every poll")
    ] = []
    table_exclude: Annotated[list[str], Field(description="Regexes (full match) of tables to leave out")] = []
    schema_pattern: Annotated[
        str | None, Field(description="Regex of schemas scanned by table_include (default: the default schema)")
    ] = None
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
    db_timezone: Annotated[
        str, Field(description="IANA zone of timestamp columns without a time zone (used for their bounds)")
    ] = "UTC"
    numeric_mapping: Annotated[
        Literal["none", "precision_only", "best_fit"],
        Field(description="none: numeric(p,s) as exact decimals; precision_only: scale-0 numerics as integers; "
                          "best_fit: also scaled numerics as float64 (lossy)"),
    ] = "none"
    validate_non_null: Annotated[
        bool, Field(description="Refuse nullable incrementing/timestamp columns (Kafka Connect's default is true)")
    ] = False
    transaction_guard: Annotated[
        bool, Field(description="PostgreSQL: never read past the oldest open transaction (no skipped rows)")
    ] = True

    @field_validator("table_include", "table_exclude")
    @classmethod
    def _regexes(cls, v: list[str]) -> list[str]:
        for r in v:
            try:
                re.compile(r)
            except re.error as e:
                raise ValueError(f"{r!r} is not a valid regular expression: {e}") from None
        return v

    @field_validator("db_timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not a known IANA time zone") from None
        return v

    @field_validator("timestamp_column", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _check_mode(self) -> SqlSourceConfig:
        if not self.tables and not self.table_include and not self.query:
            raise ValueError("set 'tables' (names), 'table_include' (regexes) or 'query' (a custom SELECT)")
        if (self.tables or self.table_include) and self.query:
            raise ValueError("set either 'tables'/'table_include' or 'query', not both")
        if self.table_exclude and not self.table_include:
            raise ValueError("'table_exclude' filters 'table_include'; set 'table_include' too")
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
        """Source partitions known without a database: the listed tables, or ``query`` for a custom query.

        With ``table_include`` the tables are discovered: use ``integrations.sources.sql.list_tables``."""
        return ["query"] if self.query else list(self.tables)


class _SinkBase(_ConnectorBase):
    """What every sink connector shares: the topics it reads, its consumer group, an optional schema."""

    topics: Annotated[list[str], Field(min_length=1, description="Topics to read")]
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

    _parse_schema = field_validator("value_schema")(_check_value_schema)

    @property
    def consumer_group(self) -> str:
        """The consumer group (``group_id``, default ``headrace-<name>``)."""
        return self.group_id or f"headrace-{self.name}"


class ParquetSinkConfig(_SinkBase):
    """A Parquet dataset sink, like Kafka Connect's S3/HDFS sinks with the Parquet format."""

    type: Literal["parquet_sink"]
    path: Annotated[str, Field(description="Root folder of the dataset; files go under <path>/<topic>/")]
    flush_size: Annotated[int, Field(gt=0, description="Records per Kafka partition per file")] = 100_000
    compression: Literal["snappy", "zstd", "gzip", "lz4", "none"] = "zstd"
    partitioner: Annotated[
        Literal["default", "field", "time"],
        Field(description="default: partition=<n>; field: <f>=<value>/...; time: path_format of the record time"),
    ] = "default"
    partition_fields: Annotated[list[str], Field(description="Fields of the field partitioner, in path order")] = []
    partition_duration: Annotated[
        Literal["hourly", "daily"], Field(description="Width of a time partition")
    ] = "daily"
    path_format: Annotated[
        str | None,
        Field(description="Time partition path; tokens YYYY MM dd HH mm, 'quoted' literals "
                          "(default year=YYYY/month=MM/day=dd[/hour=HH])"),
    ] = None
    timestamp_field: Annotated[
        str | None,
        Field(description="Record field holding the record time (timestamp, epoch ms or ISO string); "
                          "default: the Kafka message timestamp"),
    ] = None
    timezone: Annotated[str, Field(description="IANA time zone of time partition paths")] = "UTC"
    partition_start_date: Annotated[
        str | None,
        Field(description="time partitioner: first day (YYYY-MM-DD) of the Dagster time partitions; set it to "
                          "make the dataset a partitioned asset whose partitions can be backfilled"),
    ] = None
    rotate_interval: Annotated[
        float | None, Field(gt=0, description="Seconds of record time after which a file is closed")
    ] = None
    rebuild_slack: Annotated[
        float, Field(ge=0, description="Seconds by which a window rebuild (a Dagster backfill) widens its Kafka "
                                       "timestamp lookup on both sides, for record times that lag or lead the "
                                       "Kafka timestamps")
    ] = 0
    storage_options: Annotated[
        dict[str, str],
        Field(description="Object storage options (endpoint_override, region, access_key, secret_key, scheme); "
                          "use ${env:VAR} for secrets"),
    ] = {}

    @model_validator(mode="after")
    def _check_partitioner(self) -> ParquetSinkConfig:
        if self.partitioner == "field" and not self.partition_fields:
            raise ValueError("partitioner 'field' needs 'partition_fields' (one or more record fields)")
        if self.partitioner != "field" and self.partition_fields:
            raise ValueError("'partition_fields' is only used with partitioner 'field'")
        if self.partitioner == "time":
            import zoneinfo

            try:
                zoneinfo.ZoneInfo(self.timezone)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"timezone {self.timezone!r} is not a known IANA time zone") from None
        elif self.path_format is not None:
            raise ValueError("'path_format' is only used with partitioner 'time'")
        return self


class TableSinkConfig(_SinkBase):
    """A database table sink, like Kafka Connect's JDBC sink: DuckDB, PostgreSQL or any SQLAlchemy database."""

    type: Literal["table_sink"]
    connection_url: Annotated[
        str,
        Field(description="duckdb:///<file> (default: the embedded warehouse), postgresql://..., or any "
                          "SQLAlchemy URL; put secrets in ${env:VAR}"),
    ] = "duckdb:///${env:HEADRACE_HOME}/warehouse.duckdb"
    table_name_format: Annotated[str, Field(description="Target table; ${topic} is replaced")] = "${topic}"
    db_schema: Annotated[str | None, Field(description="Database schema of the tables (default: the default)")] = None
    insert_mode: Literal["insert", "upsert", "update"] = "insert"
    pk_mode: Literal["none", "kafka", "record_key", "record_value"] = "none"
    pk_fields: Annotated[
        list[str],
        Field(description="kafka: 3 names for topic/partition/offset; record_key: key fields (or the column "
                          "name of a primitive key); record_value: value fields"),
    ] = []
    auto_create: bool = False
    auto_evolve: bool = False
    delete_enabled: bool = False
    batch_size: Annotated[int, Field(gt=0, le=10_000_000, description="Records per database transaction")] = 100_000
    offsets_table: Annotated[
        str, Field(description="Table holding the sink's offsets, written in the same transaction as the rows")
    ] = "headrace_sink_offsets"

    @model_validator(mode="after")
    def _check_modes(self) -> TableSinkConfig:
        if self.pk_mode == "none" and self.insert_mode != "insert":
            raise ValueError(f"insert_mode '{self.insert_mode}' needs a primary key; set pk_mode")
        if self.pk_mode == "record_value" and not self.pk_fields:
            raise ValueError("pk_mode 'record_value' needs 'pk_fields'")
        if self.pk_mode == "kafka" and self.pk_fields and len(self.pk_fields) != 3:
            raise ValueError("pk_mode 'kafka' takes 3 pk_fields (topic, partition, offset column names)")
        if self.delete_enabled and self.pk_mode != "record_key":
            raise ValueError("delete_enabled needs pk_mode 'record_key' (a tombstone deletes by its key)")
        return self

    def table_for(self, topic: str) -> str:
        """The target table name of a topic."""
        return self.table_name_format.replace("${topic}", topic)


class FileSourceConfig(_ConnectorBase):
    """A spooling-directory file source (CSV, JSON lines, Parquet), like Kafka Connect's SpoolDir."""

    type: Literal["file_source"]
    input_path: Annotated[
        str, Field(description="Folder to spool: a local path (relative: under $HEADRACE_HOME) or a URI "
                               "(s3://bucket/prefix, or any fsspec scheme)")
    ]
    input_file_pattern: Annotated[
        str, Field(description="Regex (full match) of the file name; matched against the path relative to "
                               "input_path when it contains '/'")
    ] = r".*"
    recursive: Annotated[bool, Field(description="Also read files in sub-folders")] = False
    format: Annotated[Literal["csv", "jsonl", "parquet"], Field(description="csv | jsonl (JSON lines) | parquet")] = "csv"
    topic: Annotated[str, Field(description="Topic every record is written to")]
    file_minimum_age: Annotated[
        float, Field(ge=0, description="Seconds since a file's last modification before it is read")
    ] = 0.0
    cleanup_policy: Annotated[
        Literal["none", "delete", "move", "move_by_date"],
        Field(description="What happens to a file once its last offset is stored: none | delete | move (to "
                          "finished_path) | move_by_date (to finished_path/YYYY-MM-DD/, the file's mtime in UTC)"),
    ] = "none"
    finished_path: Annotated[str | None, Field(description="Where finished files go (move, move_by_date)")] = None
    error_path: Annotated[str | None, Field(description="Where unreadable files go (halt_on_error: false)")] = None
    halt_on_error: Annotated[
        bool, Field(description="true: an unreadable file stops the connector and stays in place; false: it is "
                                "moved to error_path and the other files flow")
    ] = True
    file_identity: Annotated[
        Literal["stat", "hash"],
        Field(description="What identifies a file's content in its offset: stat (size + mtime) or hash "
                          "(size + BLAKE2 of the bytes; reads each file once more)"),
    ] = "stat"
    batch_size: Annotated[int, Field(gt=0, le=10_000_000, description="Records per batch (and per stored offset)")] = (
        100_000
    )
    max_rows_per_run: Annotated[
        int | None, Field(gt=0, description="Cap on rows moved by one micro-batch (default: until caught up)")
    ] = None
    value_schema: Annotated[
        dict[str, str] | None,
        Field(description="Declared columns (name: arrow type, e.g. decimal(12,2), timestamp[us, tz=UTC]); "
                          "only these are read. Default: inferred from each file's first block"),
    ] = None
    key_columns: Annotated[list[str], Field(description="Columns that form the Kafka message key")] = []
    csv_first_row_as_header: Annotated[bool, Field(description="CSV: the first row (after skipped lines) names "
                                                               "the columns")] = True
    csv_separator_char: Annotated[str, Field(min_length=1, max_length=1, description="CSV: field delimiter")] = ","
    csv_quote_char: Annotated[
        str | None, Field(max_length=1, description="CSV: quote character (null or '': no quoting)")
    ] = '"'
    csv_escape_char: Annotated[str | None, Field(max_length=1, description="CSV: escape character")] = None
    csv_skip_lines: Annotated[int, Field(ge=0, description="CSV: lines skipped before the header or data")] = 0
    csv_null_indicator: Annotated[
        str | None,
        Field(description="CSV: the field text that means NULL (strings too); default: pyarrow's "
                          "('', NULL, null, NaN, N/A ...) for non-string columns only"),
    ] = None
    csv_newlines_in_values: Annotated[bool, Field(description="CSV: quoted values may span lines")] = False
    charset: Annotated[str, Field(description="Text encoding of CSV files (JSON lines are UTF-8)")] = "utf8"
    topic_partitions: Annotated[int, Field(gt=0, le=10_000)] = 1
    topic_replication_factor: Annotated[int, Field(gt=0, le=10)] = 1
    storage_options: Annotated[
        dict[str, str],
        Field(description="Object storage options (endpoint_override, region, access_key, secret_key, scheme); "
                          "use ${env:VAR} for secrets"),
    ] = {}

    @field_validator("topic")
    @classmethod
    def _legal_topic(cls, v: str) -> str:
        if not TOPIC_RE.match(v) or v in (".", ".."):
            raise ValueError(f"{v!r} is not a legal Kafka topic name ([A-Za-z0-9._-], not '.' or '..')")
        return v

    @field_validator("input_path", "finished_path", "error_path")
    @classmethod
    def _no_parent(cls, v: str | None) -> str | None:
        if v is not None and ".." in re.split(r"[/\\]", v.split("://", 1)[-1]):
            raise ValueError(f"{v!r} contains a '..' segment; paths may not climb out of their folder")
        return v

    @field_validator("input_file_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            re.compile(v)
        except re.error as e:
            raise ValueError(f"{v!r} is not a valid regular expression: {e}") from None
        literal = v.replace("\\", "")
        if literal.startswith("/") or "../" in literal or "..\\" in v:
            raise ValueError(f"{v!r} refers to a parent or absolute path; patterns match paths inside input_path")
        return v

    _parse_schema = field_validator("value_schema")(_check_value_schema)

    @field_validator("charset")
    @classmethod
    def _charset(cls, v: str) -> str:
        import codecs

        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"{v!r} is not a known text encoding") from None
        return v

    @model_validator(mode="after")
    def _check_paths(self) -> FileSourceConfig:
        if self.cleanup_policy in ("move", "move_by_date") and not self.finished_path:
            raise ValueError(f"cleanup_policy '{self.cleanup_policy}' needs 'finished_path'")
        if not self.halt_on_error and not self.error_path:
            raise ValueError("halt_on_error: false needs 'error_path' (where unreadable files are moved)")
        scheme = self.input_path.split("://", 1)[0] if "://" in self.input_path else "file"
        for name in ("finished_path", "error_path"):
            other = getattr(self, name)
            if other is not None and (other.split("://", 1)[0] if "://" in other else "file") != scheme:
                raise ValueError(f"'{name}' must be on the same filesystem as input_path ({scheme})")
        return self

    def topic_for(self, _name: str = "") -> str:
        """Every file writes to ``topic``."""
        return self.topic


ConnectorConfig = Annotated[SqlSourceConfig | ParquetSinkConfig | TableSinkConfig | FileSourceConfig, Field(discriminator="type")]
CONNECTOR_TYPES = ("sql_source", "parquet_sink", "table_sink", "file_source")


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
