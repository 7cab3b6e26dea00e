"""Connector configuration: one YAML file per connector, validated by pydantic.

Field names follow Kafka Connect's property names in snake_case. Secrets are written as
``${env:VAR}`` (or ``${env:VAR:default}``) and resolved only when a connection is opened, so they
never appear in a model dump, a log line, run config or Dagster metadata.

This module holds the connector types; what they share (the base model, common fields and validator
helpers) is in :mod:`integrations.config_base` and re-exported here.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from integrations.config_base import (  # noqa: F401  (re-exported: others import them from here)
    NAME_RE,
    ContinuousConfig,
    _check_instant,
    _check_value_schema,
    _ConnectorBase,
    _illegal_topic,
    _Model,
    _yaml_date,
    check_regexes,
    redact_url,
    resolve_env,
)
from integrations.converters.config import ConverterConfig as ConverterConfig  # noqa: F401  (re-exported)
from integrations.errors import ConfigError as ConfigError  # noqa: F401  (re-exported)
from integrations.errors import HeadraceError
from integrations.paths import check_path, check_url_path
from integrations.paths import resolve_path as resolve_path  # noqa: F401  (re-exported: others import it here)
from integrations.paths import resolve_url as resolve_url  # noqa: F401
from integrations.topics import TOPIC_RE as TOPIC_RE  # noqa: F401  (re-exported)
from integrations.transforms.config import TransformConfig as TransformConfig  # noqa: F401  (re-exported)

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
    read_ranges: Annotated[int, Field(ge=1, le=64, description="Key ranges a bulk table, or an incrementing "
                                      "table's first load, is read in at once (one session each)")] = 1
    max_rows_per_run: Annotated[
        int | None, Field(gt=0, description="Cap on rows moved by one micro-batch (default: until caught up)")
    ] = None
    topic_prefix: str = ""
    key_columns: Annotated[list[str], Field(description="Columns that form the Kafka message key")] = []
    topic_partitions: Annotated[int, Field(gt=0, le=10_000)] = 1
    topic_replication_factor: Annotated[int, Field(gt=0, le=10)] = 1
    exactly_once: Annotated[
        bool, Field(description="Each batch's records and its source offset go to Kafka in one transaction "
                                "(KIP-618): read_committed consumers never see a duplicate; see "
                                "docs/exactly-once-source.md")
    ] = False
    db_timezone: Annotated[
        str, Field(description="IANA zone of timestamp columns without a time zone (used for their bounds); "
                               "when not set, PostgreSQL's own TimeZone (asked at start), UTC elsewhere; "
                               "on PostgreSQL a zone that disagrees with the server's is refused")
    ] = "UTC"  # the value used only when set explicitly (SqlSource checks model_fields_set)
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

    _url = field_validator("connection_url")(classmethod(lambda cls, v: check_url_path(v)))
    _ts_initial_yaml = field_validator("timestamp_initial", mode="before")(classmethod(lambda cls, v: _yaml_date(v)))
    _ts_initial = field_validator("timestamp_initial")(classmethod(lambda cls, v: _check_instant(v)))

    _regexes = field_validator("table_include", "table_exclude")(classmethod(lambda cls, v: check_regexes(v)))

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
        for t in self.tables or (["query"] if self.query else []):
            problem = self.topic_problem(t)
            if problem:
                raise ValueError(problem)
        return self

    def topic_problem(self, table: str) -> str | None:
        """Why ``table``'s topic, after the transforms' routers, is not a legal Kafka topic name (None: it is)."""
        what = "topic_prefix (the topic of the query)" if self.query else f"table {table!r}"
        return _illegal_topic(self.topic_for(table), self.transforms, what)

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
    path: Annotated[str, Field(description="Root folder of the dataset; files go under <path>/<topic>/. Relative: "
                                           "under $HEADRACE_HOME; absolute paths and URLs (s3://...) as written")]
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

    _path = field_validator("path")(classmethod(lambda cls, v: check_path(v)))

    @field_validator("partition_start_date", mode="before")
    @classmethod
    def _start_date(cls, v: Any) -> Any:
        """A YAML date (``2024-01-01``, as the README writes it), a midnight datetime, or YYYY-MM-DD text."""
        if isinstance(v, dt.datetime):
            if v.time() != dt.time(0):
                raise ValueError(f"{v.isoformat()!r} is not a day; partition_start_date is a date (YYYY-MM-DD)")
            v = v.date()
        if isinstance(v, dt.date):
            return v.isoformat()
        if isinstance(v, str):
            try:
                if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
                    raise ValueError
                dt.date.fromisoformat(v)
            except ValueError:
                raise ValueError(f"{v!r} is not a date (YYYY-MM-DD, e.g. 2024-01-01)") from None
        return v

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
            if self.path_format is not None:  # its folders follow the path rule too (no '..', not absolute)
                from integrations.sinks.parquet_partitioners import strftime_format

                try:
                    strftime_format(self.path_format)
                except (HeadraceError, KeyError) as e:
                    raise ValueError(str(e)) from None
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
    _url = field_validator("connection_url")(classmethod(lambda cls, v: check_url_path(v)))
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
    truncate_enabled: Annotated[
        bool, Field(description="Apply change-data-capture truncate events (op 't', null key): empty the topic's "
                                "table, as Debezium's JDBC sink truncate.enabled")
    ] = False
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
    exactly_once: Annotated[
        bool, Field(description="Each batch's records and its source offset go to Kafka in one transaction "
                                "(KIP-618): read_committed consumers never see a duplicate; see "
                                "docs/exactly-once-source.md")
    ] = False
    storage_options: Annotated[
        dict[str, str],
        Field(description="Object storage options (endpoint_override, region, access_key, secret_key, scheme); "
                          "use ${env:VAR} for secrets"),
    ] = {}

    @field_validator("topic")
    @classmethod
    def _legal_topic(cls, v: str, info: ValidationInfo) -> str:
        """Legal after the transforms' routers (``transforms`` is validated before ``topic``)."""
        problem = _illegal_topic(v, info.data.get("transforms", []), "'topic'")
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("input_path", "finished_path", "error_path")
    @classmethod
    def _paths(cls, v: str | None) -> str | None:
        return None if v is None else check_path(v)

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


from integrations.sources.postgres_cdc_config import PostgresCdcConfig  # noqa: E402 (needs _ConnectorBase)

ConnectorConfig = Annotated[SqlSourceConfig | ParquetSinkConfig | TableSinkConfig | FileSourceConfig | PostgresCdcConfig,
                            Field(discriminator="type")]
CONNECTOR_TYPES = ("sql_source", "parquet_sink", "table_sink", "file_source", "postgres_cdc")


#: what moved to integrations.loading (reading files and folders); still importable from here
_LOADING = ("load_connector", "load_folder", "scan_folder", "find_connector", "connector_files",
            "default_connectors_dir", "read_yaml")


def __getattr__(name: str) -> Any:
    """Lazy re-exports of :mod:`integrations.loading` (which imports this module, so not at the top)."""
    if name in _LOADING:
        from integrations import loading

        return getattr(loading, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
