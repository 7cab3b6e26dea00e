"""Field and struct transforms: Cast, ExtractField, Flatten, HoistField, InsertField, MaskField,
ReplaceField, SetSchemaMetadata and ValueToKey.

Each builder takes its validated config and returns a :class:`~integrations.transforms.smt_step.Step`
that works on whole Arrow columns of the key or the value, never per record.
"""

from __future__ import annotations

import datetime as dt
import decimal

import pyarrow as pa
import pyarrow.compute as pc

from integrations.transforms.batch import TIMESTAMP_TYPE, Batch, Column, is_primitive, primitive
from integrations.transforms.config import (
    CastConfig,
    ExtractFieldConfig,
    FlattenConfig,
    HoistFieldConfig,
    InsertFieldConfig,
    MaskFieldConfig,
    ReplaceFieldConfig,
    SetSchemaMetadataConfig,
    ValueToKeyConfig,
)
from integrations.transforms.errors import TransformError
from integrations.transforms.smt_step import (
    Step,
    _column,
    _on_part,
    _set_column,
    _struct_children,
    _table_from_struct,
)

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
