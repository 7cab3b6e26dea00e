"""Pydantic models for the ``transforms`` list of a connector: one model per Kafka Connect SMT.

Option names are Kafka Connect's property names in snake_case (``topic.field`` → ``topic_field``).
``type`` names the transform, with ``.Key`` / ``.Value`` where the original has ``$Key`` / ``$Value``.
List options accept a YAML list or Kafka's comma-separated string.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CAST_TYPES = ("int8", "int16", "int32", "int64", "float32", "float64", "boolean", "string")
TARGET_TYPES = ("string", "unix", "Date", "Time", "Timestamp")
UNIX_PRECISIONS = ("seconds", "milliseconds", "microseconds", "nanoseconds")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)  # YAML `replacement: 0`


def _split_list(v: Any) -> Any:
    if isinstance(v, str):
        return [p.strip() for p in v.split(",") if p.strip()]
    return v


def _check_regex(v: str) -> str:
    try:
        re.compile(v)
    except re.error as e:
        raise ValueError(f"{v!r} is not a valid regular expression: {e}") from None
    return v


# --- predicates -----------------------------------------------------------------------------


class TopicNameMatches(_Model):
    """True for records whose topic matches ``pattern`` entirely (a Java/Python regular expression)."""

    type: Literal["TopicNameMatches"]
    pattern: Annotated[str, Field(min_length=1, description="Regular expression the whole topic name must match")]

    _v = field_validator("pattern")(classmethod(lambda cls, v: _check_regex(v)))


class HasHeaderKey(_Model):
    """True for records that carry a header named ``name``."""

    type: Literal["HasHeaderKey"]
    name: Annotated[str, Field(min_length=1, description="Header name")]


class RecordIsTombstone(_Model):
    """True for tombstones: records whose value is null."""

    type: Literal["RecordIsTombstone"]


PredicateConfig = Annotated[TopicNameMatches | HasHeaderKey | RecordIsTombstone, Field(discriminator="type")]
PREDICATE_TYPES = ("TopicNameMatches", "HasHeaderKey", "RecordIsTombstone")


# --- transforms -----------------------------------------------------------------------------


class _Transform(_Model):
    predicate: Annotated[
        PredicateConfig | None, Field(description="Apply only to records matching this predicate")
    ] = None
    negate: Annotated[bool, Field(description="Apply only to records NOT matching the predicate")] = False

    @model_validator(mode="after")
    def _negate_needs_predicate(self) -> Any:
        if self.negate and self.predicate is None:
            raise ValueError("'negate: true' needs a 'predicate'")
        return self

    @property
    def record_part(self) -> str:
        """``key`` or ``value``: the record part a ``.Key``/``.Value`` transform works on."""
        return "key" if self.type.endswith(".Key") else "value"  # type: ignore[attr-defined]


class CastConfig(_Transform):
    """Cast fields, or the whole primitive key/value, to another primitive type."""

    type: Literal["Cast.Key", "Cast.Value"]
    spec: Annotated[
        dict[str, str],
        Field(description="'type' for the whole key/value, or 'field:type,...' (a list or mapping also works)"),
    ]

    @field_validator("spec", mode="before")
    @classmethod
    def _parse_spec(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = _split_list(v)
        if isinstance(v, list):
            out: dict[str, str] = {}
            for item in v:
                if not isinstance(item, str):
                    raise ValueError(f"expected 'field:type' strings, got {item!r}")
                f, sep, t = item.rpartition(":")
                out[f if sep else ""] = t.strip()
            v = out
        if isinstance(v, dict):
            if not v:
                raise ValueError("must name at least one type")
            if "" in v and len(v) > 1:
                raise ValueError("a whole-value type cannot be combined with field:type pairs")
            for f, t in v.items():
                if t not in CAST_TYPES:
                    raise ValueError(f"type {t!r} for {f or 'the whole value'!r} is not allowed; "
                                     f"allowed: {', '.join(CAST_TYPES)}")
        return v


class DropHeadersConfig(_Transform):
    """Remove headers by name."""

    type: Literal["DropHeaders"]
    headers: Annotated[list[str], Field(min_length=1, description="Header names to drop")]
    _s = field_validator("headers", mode="before")(classmethod(lambda cls, v: _split_list(v)))


class ExtractFieldConfig(_Transform):
    """Replace the key/value by one of its fields."""

    type: Literal["ExtractField.Key", "ExtractField.Value"]
    field: Annotated[str, Field(min_length=1, description="Field to extract; a dotted path with V2 syntax")]
    field_syntax_version: Annotated[
        Literal["V1", "V2"], Field(description="V1: the name is literal; V2: dots walk into nested structs")
    ] = "V1"


class FilterConfig(_Transform):
    """Drop records (usually with a predicate: the matching ones)."""

    type: Literal["Filter"]


class FlattenConfig(_Transform):
    """Flatten nested structs into top-level fields named ``outer<delimiter>inner``."""

    type: Literal["Flatten.Key", "Flatten.Value"]
    delimiter: str = "."


class HeaderFromConfig(_Transform):
    """Copy or move fields of the key/value into headers."""

    type: Literal["HeaderFrom.Key", "HeaderFrom.Value"]
    fields: Annotated[list[str], Field(min_length=1)]
    headers: Annotated[list[str], Field(min_length=1, description="Header names, paired with fields by position")]
    operation: Literal["copy", "move"]
    _s = field_validator("fields", "headers", mode="before")(classmethod(lambda cls, v: _split_list(v)))

    @model_validator(mode="after")
    def _same_length(self) -> HeaderFromConfig:
        if len(self.fields) != len(self.headers):
            raise ValueError(f"'fields' has {len(self.fields)} names but 'headers' has {len(self.headers)}; "
                             "they are paired by position")
        return self


class HoistFieldConfig(_Transform):
    """Wrap the key/value in a struct with one field."""

    type: Literal["HoistField.Key", "HoistField.Value"]
    field: Annotated[str, Field(min_length=1)]


class InsertFieldConfig(_Transform):
    """Add fields from record metadata or a static value. Suffix a name with '!' to require the metadata."""

    type: Literal["InsertField.Key", "InsertField.Value"]
    topic_field: str | None = None
    partition_field: str | None = None
    offset_field: str | None = None
    timestamp_field: str | None = None
    static_field: str | None = None
    static_value: str | None = None

    @model_validator(mode="after")
    def _something(self) -> InsertFieldConfig:
        if not any([self.topic_field, self.partition_field, self.offset_field, self.timestamp_field,
                    self.static_field]):
            raise ValueError("set at least one of topic_field, partition_field, offset_field, timestamp_field, "
                             "static_field")
        if self.static_field and self.static_value is None:
            raise ValueError("'static_field' needs 'static_value'")
        return self


class InsertHeaderConfig(_Transform):
    """Add a header with a literal value to every record."""

    type: Literal["InsertHeader"]
    header: Annotated[str, Field(min_length=1)]
    value_literal: Annotated[Any, Field(description="Literal value; numbers, booleans and null keep their type")]


class MaskFieldConfig(_Transform):
    """Replace fields by the null value of their type (0, false, "") or by ``replacement``."""

    type: Literal["MaskField.Key", "MaskField.Value"]
    fields: Annotated[list[str], Field(min_length=1)]
    replacement: str | None = None
    _s = field_validator("fields", mode="before")(classmethod(lambda cls, v: _split_list(v)))


class RegexRouterConfig(_Transform):
    """Rename the topic when the whole name matches ``regex`` (``$1`` refers to groups)."""

    type: Literal["RegexRouter"]
    regex: str
    replacement: str
    _v = field_validator("regex")(classmethod(lambda cls, v: _check_regex(v)))


class ReplaceFieldConfig(_Transform):
    """Keep (include), drop (exclude) and rename (renames) top-level fields."""

    type: Literal["ReplaceField.Key", "ReplaceField.Value"]
    include: list[str] = []
    exclude: list[str] = []
    renames: Annotated[dict[str, str], Field(description="old:new pairs ('a:b,c:d', a list or a mapping)")] = {}
    _s = field_validator("include", "exclude", mode="before")(classmethod(lambda cls, v: _split_list(v)))

    @field_validator("renames", mode="before")
    @classmethod
    def _pairs(cls, v: Any) -> Any:
        v = _split_list(v)
        if isinstance(v, list):
            out = {}
            for item in v:
                old, sep, new = str(item).partition(":")
                if not sep or not old or not new:
                    raise ValueError(f"rename {item!r} is not 'old:new'")
                out[old] = new
            return out
        return v


class SetSchemaMetadataConfig(_Transform):
    """Set the schema name and/or version of the key/value (kept as Arrow schema metadata)."""

    type: Literal["SetSchemaMetadata.Key", "SetSchemaMetadata.Value"]
    schema_name: str | None = None
    schema_version: int | None = None

    @model_validator(mode="after")
    def _something(self) -> SetSchemaMetadataConfig:
        if self.schema_name is None and self.schema_version is None:
            raise ValueError("set 'schema_name', 'schema_version' or both")
        return self


class TimestampConverterConfig(_Transform):
    """Convert a timestamp field (or the whole key/value) between string, unix, Date, Time and Timestamp."""

    type: Literal["TimestampConverter.Key", "TimestampConverter.Value"]
    target_type: Annotated[Literal["string", "unix", "Date", "Time", "Timestamp"], Field(
        description="string | unix | Date | Time | Timestamp")]
    field: Annotated[str, Field(description="Field holding the timestamp; empty for the whole key/value")] = ""
    format: Annotated[str, Field(description="java.text.SimpleDateFormat pattern for string input/output")] = ""
    unix_precision: Literal["seconds", "milliseconds", "microseconds", "nanoseconds"] = "milliseconds"

    @model_validator(mode="after")
    def _format_for_string(self) -> TimestampConverterConfig:
        if self.target_type == "string" and not self.format:
            raise ValueError("target_type 'string' needs a 'format' (a SimpleDateFormat pattern)")
        if self.format:
            from integrations.transforms.timefmt import compile_pattern

            compile_pattern(self.format)  # raises ValueError naming the bad letter
        return self


class TimestampRouterConfig(_Transform):
    """Rename the topic from the record timestamp, e.g. ``${topic}-${timestamp}`` → ``orders-20240101``."""

    type: Literal["TimestampRouter"]
    topic_format: str = "${topic}-${timestamp}"
    timestamp_format: str = "yyyyMMdd"

    @field_validator("timestamp_format")
    @classmethod
    def _fmt(cls, v: str) -> str:
        from integrations.transforms.timefmt import compile_pattern

        compile_pattern(v)
        return v


class ValueToKeyConfig(_Transform):
    """Replace the key with a struct of some value fields."""

    type: Literal["ValueToKey"]
    fields: Annotated[list[str], Field(min_length=1)]
    _s = field_validator("fields", mode="before")(classmethod(lambda cls, v: _split_list(v)))


class PythonTransformConfig(_Transform):
    """A user function: ``package.module.function`` taking and returning a pyarrow Table (or pandas DataFrame)."""

    type: Literal["Python"]
    function: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*[.:][A-Za-z_]\w*$",
                                   description="Dotted path: package.module.function (or package.module:function)")]
    part: Annotated[Literal["key", "value"], Field(description="Which part of the record the function receives")] = (
        "value"
    )


class ExtractNewRecordStateConfig(_Transform):
    """Debezium's ExtractNewRecordState: a change event's envelope → the new row state."""

    type: Literal["ExtractNewRecordState"]
    delete_handling_mode: Annotated[
        Literal["drop", "none", "rewrite"],
        Field(description="drop: drop delete events; none: make them tombstones; rewrite: the old row with "
                          "__deleted: 'true'"),
    ] = "drop"
    drop_tombstones: Annotated[bool, Field(description="Drop tombstone records (Debezium's default)")] = True
    add_fields: Annotated[
        list[str], Field(description="Envelope fields added as __<field> columns: op, table, schema, db, lsn, txId, "
                                     "ts_ms, source.<field>")
    ] = []

    @field_validator("add_fields", mode="before")
    @classmethod
    def _split(cls, v: object) -> object:
        return [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else v


TransformConfig = Annotated[
    CastConfig | DropHeadersConfig | ExtractFieldConfig | FilterConfig | FlattenConfig | HeaderFromConfig
    | HoistFieldConfig | InsertFieldConfig | InsertHeaderConfig | MaskFieldConfig | RegexRouterConfig
    | ReplaceFieldConfig | SetSchemaMetadataConfig | TimestampConverterConfig | TimestampRouterConfig
    | ValueToKeyConfig | PythonTransformConfig | ExtractNewRecordStateConfig,
    Field(discriminator="type"),
]

TRANSFORM_TYPES: tuple[str, ...] = tuple(
    t for m in TransformConfig.__origin__.__args__ for t in m.model_fields["type"].annotation.__args__  # type: ignore[attr-defined]
)
