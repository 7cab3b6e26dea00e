"""Kafka Connect's single message transforms, each a function ``Batch -> Batch`` over Arrow columns.

Every builder takes a validated config model and returns a :class:`Step`. A step never loops over
records in Python: it selects, renames, casts or adds whole columns with ``pyarrow.compute``. Topic
routers work on the topic column's dictionary, so a regex runs once per distinct topic name.
"""

from __future__ import annotations

import datetime as dt
import decimal
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from integrations.transforms import unwrap as _unwrap
from integrations.transforms.batch import (
    PRIMITIVE_COLUMN,
    TIMESTAMP_TYPE,
    Batch,
    Column,
    is_primitive,
    primitive,
)
from integrations.transforms.config import (
    CastConfig,
    DropHeadersConfig,
    ExtractFieldConfig,
    FilterConfig,
    FlattenConfig,
    HeaderFromConfig,
    HoistFieldConfig,
    InsertFieldConfig,
    InsertHeaderConfig,
    MaskFieldConfig,
    PythonTransformConfig,
    RegexRouterConfig,
    ReplaceFieldConfig,
    SetSchemaMetadataConfig,
    TimestampConverterConfig,
    TimestampRouterConfig,
    ValueToKeyConfig,
)
from integrations.transforms.errors import TransformError
from integrations.transforms.timefmt import format_timestamps, parse_timestamps

BatchFn = Callable[[Batch], Batch]


@dataclass(frozen=True)
class Step:
    """One configured transform: its function and the record parts it reads besides the value."""

    name: str
    fn: BatchFn
    needs: frozenset[str] = frozenset()


# --- helpers --------------------------------------------------------------------------------


def _on_part(part: str, fn: Callable[[pa.Table, Batch], pa.Table]) -> BatchFn:
    """Lift a table function to a batch function on the key or the value; a missing key passes through."""
    if part == "value":
        return lambda b: b.replace(value=fn(b.value, b))

    def on_key(b: Batch) -> Batch:
        return b if b.key is None else b.replace(key=fn(b.key, b))

    return on_key


def _column(table: pa.Table, name: str, what: str) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise TransformError(f"{what} {name!r} is not in the record (fields: {', '.join(table.column_names) or 'none'})")
    return table.column(name)


def _set_column(table: pa.Table, name: str, col: Column) -> pa.Table:
    """Replace a column in place, or append it when absent."""
    i = table.schema.get_field_index(name)
    if i >= 0:
        return table.set_column(i, name, col)
    return table.append_column(name, col)


def _struct_children(col: pa.ChunkedArray) -> list[tuple[str, pa.ChunkedArray]]:
    """The fields of a struct column, each null where the struct itself is null."""
    names = [col.type.field(i).name for i in range(col.type.num_fields)]
    return list(zip(names, col.flatten(), strict=True))


def _table_from_struct(col: pa.ChunkedArray) -> pa.Table:
    children = _struct_children(col)
    if not children:
        return pa.table({"_": pa.nulls(len(col))}).drop_columns(["_"])
    return pa.table(dict(children))


def _as_table(result: object, what: str) -> pa.Table:
    if isinstance(result, pa.Table):
        return result
    if isinstance(result, pa.RecordBatch):
        return pa.Table.from_batches([result])
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency of the project
        pd = None
    if pd is not None and isinstance(result, pd.DataFrame):
        return pa.Table.from_pandas(result, preserve_index=False)
    raise TransformError(f"{what} must return a pyarrow Table or a pandas DataFrame, got {type(result).__name__}")


# --- Cast -----------------------------------------------------------------------------------

_CAST_TYPES = {
    "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
    "float32": pa.float32(), "float64": pa.float64(), "boolean": pa.bool_(), "string": pa.string(),
}


def _cast(col: Column, typ: pa.DataType) -> Column:
    src = col.type
    numeric = pa.types.is_integer(src) or pa.types.is_floating(src) or pa.types.is_boolean(src) \
        or pa.types.is_decimal(src)
    if numeric and (pa.types.is_integer(typ) or pa.types.is_floating(typ)):
        return pc.cast(col, typ, safe=False)  # Java's narrowing: truncate toward zero
    return pc.cast(col, typ)


def cast(cfg: CastConfig) -> Step:
    """Cast: fields (or the whole primitive key/value) to int8..int64, float32/64, boolean or string."""
    types = {f: _CAST_TYPES[t] for f, t in cfg.spec.items()}

    def apply(table: pa.Table, _b: Batch) -> pa.Table:
        if "" in types:
            if not is_primitive(table):
                raise TransformError("a whole-value spec (a single type) needs a primitive key/value; "
                                     "use 'field:type' pairs for a struct")
            return primitive(_cast(table.column(0), types[""]))
        for name, typ in types.items():
            if name in table.column_names:
                table = _set_column(table, name, _cast(table.column(name), typ))
        return table

    return Step(cfg.type, _on_part(cfg.record_part, apply))


# --- ExtractField, Flatten, HoistField -------------------------------------------------------


def extract_field(cfg: ExtractFieldConfig) -> Step:
    """ExtractField: replace the key/value by one field (a dotted path with field_syntax_version V2)."""
    path = cfg.field.split(".") if cfg.field_syntax_version == "V2" else [cfg.field]

    def apply(table: pa.Table, _b: Batch) -> pa.Table:
        col = _column(table, path[0], "field")
        for depth, name in enumerate(path[1:], start=1):
            if not pa.types.is_struct(col.type) or col.type.get_field_index(name) < 0:
                raise TransformError(f"field {'.'.join(path[:depth + 1])!r} is not in the record")
            col = dict(_struct_children(col))[name]
        if pa.types.is_struct(col.type):
            return _table_from_struct(col)
        return primitive(col)

    return Step(cfg.type, _on_part(cfg.record_part, apply))


def flatten_table(table: pa.Table, delimiter: str) -> pa.Table:
    """Nested struct columns become top-level columns named ``outer<delimiter>inner`` (lists and maps stay)."""
    if not any(pa.types.is_struct(t) for t in table.schema.types):
        return table
    names: list[str] = []
    cols: list[pa.ChunkedArray] = []

    def walk(prefix: str, col: pa.ChunkedArray) -> None:
        if pa.types.is_struct(col.type):
            for child_name, child in _struct_children(col):
                walk(f"{prefix}{delimiter}{child_name}", child)
        else:
            names.append(prefix)
            cols.append(col)

    for name, col in zip(table.column_names, table.columns, strict=True):
        walk(name, col)
    return pa.table(dict(zip(names, cols, strict=True)))


def flatten(cfg: FlattenConfig) -> Step:
    """Flatten: nested structs to top-level fields joined by ``delimiter``."""
    return Step(cfg.type, _on_part(cfg.record_part, lambda t, _b: flatten_table(t, cfg.delimiter)))


def hoist_field(cfg: HoistFieldConfig) -> Step:
    """HoistField: wrap the key/value in a struct with the single field ``field``."""

    def apply(table: pa.Table, _b: Batch) -> pa.Table:
        if is_primitive(table):
            return pa.table({cfg.field: table.column(0)})
        return pa.table({cfg.field: table.to_struct_array()})

    return Step(cfg.type, _on_part(cfg.record_part, apply))


# --- InsertField, MaskField, ReplaceField, SetSchemaMetadata, ValueToKey ----------------------


def _meta_field(spec: str | None) -> tuple[str, bool] | None:
    if not spec:
        return None
    if spec.endswith("!"):
        return spec[:-1], True
    return spec.removesuffix("?"), False


def insert_field(cfg: InsertFieldConfig) -> Step:
    """InsertField: add topic, partition, offset, timestamp and/or a static field; 'name!' requires the metadata."""
    wanted = [
        ("topic", _meta_field(cfg.topic_field), pa.string()),
        ("partition", _meta_field(cfg.partition_field), pa.int32()),
        ("offset", _meta_field(cfg.offset_field), pa.int64()),
        ("timestamp", _meta_field(cfg.timestamp_field), TIMESTAMP_TYPE),
    ]
    wanted = [(attr, spec, typ) for attr, spec, typ in wanted if spec is not None]
    static = _meta_field(cfg.static_field)

    def apply(table: pa.Table, b: Batch) -> pa.Table:
        n = table.num_rows
        for attr, (name, required), typ in wanted:
            col = getattr(b, attr)
            if col is None:
                if required:
                    raise TransformError(f"{attr}_field {name + '!'!r} is required but the record has no {attr} "
                                         "(a source does not know partition and offset before producing)")
                col = pa.nulls(n, typ)
            elif attr == "topic":
                col = col.cast(pa.string())
            table = _set_column(table, name, col)
        if static is not None:
            table = _set_column(table, static[0], pa.repeat(pa.scalar(cfg.static_value, pa.string()), n))
        return table

    needs = frozenset(attr for attr, _, _ in wanted)
    return Step(cfg.type, _on_part(cfg.record_part, apply), needs)


def _zero(typ: pa.DataType) -> pa.Scalar:
    """The 'null value' MaskField writes for a type: 0, 0.0, false, "", the epoch, an empty list or map."""
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        return pa.scalar(0, typ)
    if pa.types.is_decimal(typ):
        return pa.scalar(decimal.Decimal(0), typ)
    if pa.types.is_boolean(typ):
        return pa.scalar(False)
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return pa.scalar("", typ)
    if pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
        return pa.scalar(b"", typ)
    if pa.types.is_date(typ):
        return pa.scalar(dt.date(1970, 1, 1), typ)
    if pa.types.is_timestamp(typ) or pa.types.is_time(typ):
        return pa.scalar(0, pa.int64()).cast(typ)
    if pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_map(typ):
        return pa.scalar([], typ)
    raise TransformError(f"cannot mask a field of type {typ}")


def mask_field(cfg: MaskFieldConfig) -> Step:
    """MaskField: fields become their type's null value (0, false, "") or ``replacement``; nulls stay null."""

    def apply(table: pa.Table, _b: Batch) -> pa.Table:
        for name in cfg.fields:
            col = _column(table, name, "field")
            if cfg.replacement is None:
                value = _zero(col.type)
            else:
                try:
                    value = pa.scalar(cfg.replacement).cast(col.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                    raise TransformError(f"replacement {cfg.replacement!r} cannot be a {col.type} "
                                         f"(field {name!r}): {e}") from None
            masked = pa.repeat(value, table.num_rows) if col.null_count == 0 else \
                pc.if_else(pc.is_valid(col), value, pa.scalar(None, col.type))
            table = _set_column(table, name, masked)
        return table

    return Step(cfg.type, _on_part(cfg.record_part, apply))


def replace_field(cfg: ReplaceFieldConfig) -> Step:
    """ReplaceField: keep ``include`` (all when empty) minus ``exclude``, then apply ``renames``."""
    include, exclude, renames = set(cfg.include), set(cfg.exclude), dict(cfg.renames)

    def apply(table: pa.Table, _b: Batch) -> pa.Table:
        keep = [c for c in table.column_names if c not in exclude and (not include or c in include)]
        out = table.select(keep) if len(keep) != table.num_columns else table
        if renames:
            out = out.rename_columns([renames.get(c, c) for c in keep])
        return out

    return Step(cfg.type, _on_part(cfg.record_part, apply))


def set_schema_metadata(cfg: SetSchemaMetadataConfig) -> Step:
    """SetSchemaMetadata: record the schema name/version as ``connect.name``/``connect.version`` metadata."""
    updates = {}
    if cfg.schema_name is not None:
        updates[b"connect.name"] = cfg.schema_name.encode()
    if cfg.schema_version is not None:
        updates[b"connect.version"] = str(cfg.schema_version).encode()

    def apply(table: pa.Table, _b: Batch) -> pa.Table:
        return table.replace_schema_metadata({**(table.schema.metadata or {}), **updates})

    return Step(cfg.type, _on_part(cfg.record_part, apply))


def value_to_key(cfg: ValueToKeyConfig) -> Step:
    """ValueToKey: the key becomes a struct of the named value fields."""

    def apply(b: Batch) -> Batch:
        for name in cfg.fields:
            _column(b.value, name, "field")
        return b.replace(key=b.value.select(list(cfg.fields)))

    return Step(cfg.type, apply)


# --- TimestampConverter ---------------------------------------------------------------------

_UNIX_UNITS = {"seconds": "s", "milliseconds": "ms", "microseconds": "us", "nanoseconds": "ns"}


def _to_timestamp(col: Column, fmt: str, precision: str) -> Column:
    typ = col.type
    if pa.types.is_timestamp(typ):
        return col if typ.tz else col.cast(pa.timestamp(typ.unit, tz="UTC"))
    if pa.types.is_integer(typ):
        unit = _UNIX_UNITS[precision]
        return col.cast(pa.int64()).cast(pa.timestamp(unit, tz="UTC"))
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        if not fmt:
            raise TransformError("a string timestamp needs 'format' (a SimpleDateFormat pattern) to be parsed")
        try:
            return parse_timestamps(col, fmt, "ms")
        except ValueError as e:  # pa.ArrowInvalid is a ValueError
            raise TransformError(f"could not parse timestamps with format {fmt!r}: {e}") from None
    if pa.types.is_date(typ):
        return col.cast(pa.timestamp("ms")).cast(TIMESTAMP_TYPE)
    if pa.types.is_time(typ):
        ms = col.cast(pa.time32("ms")) if typ.unit in ("s", "ms") else col.cast(pa.time64("ns"))
        return ms.cast(pa.int64() if pa.types.is_time64(ms.type) else pa.int32()).cast(pa.int64()).cast(
            pa.timestamp("ms" if pa.types.is_time32(ms.type) else "ns", tz="UTC"))
    raise TransformError(f"cannot read a timestamp from a {typ} field")


def convert_timestamps(col: Column, cfg: TimestampConverterConfig) -> Column:
    """Convert one column to the configured target type (vectorised)."""
    ts = _to_timestamp(col, cfg.format, cfg.unix_precision)
    target = cfg.target_type
    if target == "string":
        return format_timestamps(ts, cfg.format)
    if target == "unix":
        unit = _UNIX_UNITS[cfg.unix_precision]
        return ts.cast(pa.timestamp(unit, tz="UTC"), safe=False).cast(pa.int64())
    if target == "Date":
        return ts.cast(pa.date32())
    if target == "Time":
        return ts.cast(pa.time32("ms"), safe=False)
    unit = ts.type.unit if ts.type.unit in ("us", "ns") else "ms"
    return ts.cast(pa.timestamp(unit, tz="UTC"), safe=False)


def timestamp_converter(cfg: TimestampConverterConfig) -> Step:
    """TimestampConverter: a field (or the whole key/value) to string, unix, Date, Time or Timestamp."""

    def apply(table: pa.Table, _b: Batch) -> pa.Table:
        if not cfg.field:
            if not is_primitive(table):
                raise TransformError("with no 'field', the whole key/value must be a primitive timestamp")
            return primitive(convert_timestamps(table.column(0), cfg))
        return _set_column(table, cfg.field, convert_timestamps(_column(table, cfg.field, "field"), cfg))

    return Step(cfg.type, _on_part(cfg.record_part, apply))


# --- routers --------------------------------------------------------------------------------


def _java_replacement(repl: str) -> str:
    """A java.util.regex replacement (``$1``, ``\\$``) as a Python ``re`` replacement."""
    out, i = [], 0
    while i < len(repl):
        ch = repl[i]
        if ch == "\\" and i + 1 < len(repl):
            out.append(repl[i + 1].replace("\\", "\\\\"))
            i += 2
        elif ch == "$" and i + 1 < len(repl) and repl[i + 1].isdigit():
            j = i + 1
            while j < len(repl) and repl[j].isdigit():
                j += 1
            out.append(f"\\g<{repl[i + 1:j]}>")
            i = j
        else:
            out.append("\\\\" if ch == "\\" else ch)
            i += 1
    return "".join(out)


def _remap_topics(b: Batch, fn: Callable[[str], str]) -> Batch:
    """Apply ``fn`` to each distinct topic name (not to each record) and re-encode the column."""
    if b.topic is None:
        raise TransformError("routing needs the record topic, which the runner did not provide")
    old = b.topic.dictionary.to_pylist()
    new = [t if t is None else fn(t) for t in old]
    uniq = list(dict.fromkeys(new))
    remap = pa.array(np.array([uniq.index(t) for t in new], dtype=np.int32))
    indices = pc.take(remap, b.topic.indices)
    return b.replace(topic=pa.DictionaryArray.from_arrays(indices, pa.array(uniq, pa.string())))


def regex_router(cfg: RegexRouterConfig) -> Step:
    """RegexRouter: where the whole topic matches ``regex``, replace it (``$n`` = group n)."""
    pattern = re.compile(cfg.regex)
    repl = _java_replacement(cfg.replacement)

    def route(topic: str) -> str:
        return pattern.sub(repl, topic, count=1) if pattern.fullmatch(topic) else topic

    return Step(cfg.type, lambda b: _remap_topics(b, route), frozenset({"topic"}))


def timestamp_router(cfg: TimestampRouterConfig) -> Step:
    """TimestampRouter: topic from ``topic_format`` with ``${topic}`` and ``${timestamp}`` (the record time)."""
    pieces = re.split(r"(\$\{topic\}|\$\{timestamp\})", cfg.topic_format)

    def apply(b: Batch) -> Batch:
        if b.topic is None:
            raise TransformError("TimestampRouter needs the record topic, which the runner did not provide")
        if b.timestamp is None or b.timestamp.null_count:
            raise TransformError("TimestampRouter needs a timestamp on every record")
        if b.num_rows == 0:
            return b
        ts_text = format_timestamps(b.timestamp, cfg.timestamp_format) if "${timestamp}" in pieces else None
        topic_text = b.topic.cast(pa.string())
        parts = []
        for p in pieces:
            if p == "${topic}":
                parts.append(topic_text)
            elif p == "${timestamp}":
                parts.append(ts_text)
            elif p:
                parts.append(pa.scalar(p))
        if not parts:
            raise TransformError("topic_format produces an empty topic name")
        names = parts[0] if len(parts) == 1 and not isinstance(parts[0], pa.Scalar) else \
            pc.binary_join_element_wise(*parts, "")
        if isinstance(names, pa.ChunkedArray):
            names = names.combine_chunks()
        if isinstance(names, pa.Scalar):
            names = pa.repeat(names, b.num_rows)
        return b.replace(topic=pc.dictionary_encode(names))

    return Step(cfg.type, apply, frozenset({"topic", "timestamp"}))


# --- headers --------------------------------------------------------------------------------


def drop_headers(cfg: DropHeadersConfig) -> Step:
    """DropHeaders: remove the named headers."""
    dropped = set(cfg.headers)
    return Step(cfg.type, lambda b: b.replace(headers={k: v for k, v in b.headers.items() if k not in dropped}),
                frozenset({"headers"}))


def header_from(cfg: HeaderFromConfig) -> Step:
    """HeaderFrom: copy or move key/value fields into headers (paired by position)."""
    part = cfg.record_part

    def apply(b: Batch) -> Batch:
        table = b.value if part == "value" else b.key
        if table is None:
            return b
        headers = dict(b.headers)
        for f, h in zip(cfg.fields, cfg.headers, strict=True):
            headers[h] = _column(table, f, "field")
        if cfg.operation == "move":
            table = table.drop_columns(list(cfg.fields))
        return b.replace(headers=headers, **{part: table})

    return Step(cfg.type, apply, frozenset({"headers"} | ({"key"} if part == "key" else set())))


def _literal(value: object) -> object:
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        return parsed if isinstance(parsed, (int, float, bool, list, dict)) or parsed is None else value
    return value


def insert_header(cfg: InsertHeaderConfig) -> Step:
    """InsertHeader: every record gets header ``header`` = ``value_literal`` (typed like Kafka's Values.parse)."""
    value = _literal(cfg.value_literal)
    scalar = pa.scalar(value) if value is not None else pa.scalar(None, pa.null())

    def apply(b: Batch) -> Batch:
        return b.replace(headers={**b.headers, cfg.header: pa.repeat(scalar, b.num_rows)})

    return Step(cfg.type, apply, frozenset({"headers"}))


# --- Filter and user functions --------------------------------------------------------------


def filter_records(cfg: FilterConfig) -> Step:
    """Filter: drop every record it is applied to (with a predicate: the matching ones)."""
    return Step(cfg.type, lambda b: b.filter(pa.repeat(pa.scalar(False), b.num_rows)))


def load_function(path: str) -> Callable[[pa.Table], object]:
    """Import ``package.module.function`` (or ``package.module:function``)."""
    module, sep, name = path.rpartition(":") if ":" in path else path.rpartition(".")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise TransformError(f"cannot import the transform function {path!r}: {e}") from None
    if not callable(fn):
        raise TransformError(f"{path!r} is not a function")
    return fn


def python_function(cfg: PythonTransformConfig) -> Step:
    """A user function over the value (or key) table; it may return a pandas DataFrame."""
    fn = load_function(cfg.function)
    what = f"the function {cfg.function!r}"

    def apply(b: Batch) -> Batch:
        table = b.value if cfg.part == "value" else b.key
        if table is None:
            return b
        out = _as_table(fn(table), what)
        if out.num_rows != table.num_rows:
            others = [b.topic, b.partition, b.offset, b.timestamp, b.tombstone, *b.headers.values(),
                      b.key if cfg.part == "value" else b.value]
            if any(o is not None for o in others):
                raise TransformError(f"{what} returned {out.num_rows} rows for {table.num_rows} records; "
                                     "it must keep one row per record (drop records with Filter and a predicate)")
        return b.replace(**{cfg.part: out})

    return Step(cfg.type, apply)


BUILDERS: dict[type, Callable[..., Step]] = {
    CastConfig: cast, DropHeadersConfig: drop_headers, ExtractFieldConfig: extract_field,
    FilterConfig: filter_records, FlattenConfig: flatten, HeaderFromConfig: header_from,
    HoistFieldConfig: hoist_field, InsertFieldConfig: insert_field, InsertHeaderConfig: insert_header,
    MaskFieldConfig: mask_field, RegexRouterConfig: regex_router, ReplaceFieldConfig: replace_field,
    SetSchemaMetadataConfig: set_schema_metadata, TimestampConverterConfig: timestamp_converter,
    TimestampRouterConfig: timestamp_router, ValueToKeyConfig: value_to_key, PythonTransformConfig: python_function,
}
BUILDERS[_unwrap.ExtractNewRecordStateConfig] = _unwrap.build  # Debezium's unwrap SMT (integrations/transforms/unwrap.py)

__all__ = ["BUILDERS", "PRIMITIVE_COLUMN", "Step", "flatten_table", "load_function"]
