"""Column-level Avro encoding helpers: logical Arrow values ↔ the raw values fastavro reads and
writes, and Schema Registry message framing.

Logical types (decimal, timestamps, dates, times, intervals) are converted per column with
Arrow/numpy, never per record; messages are framed into one Arrow binary array built from a single
buffer, and payloads are read back from one stream.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from fastavro import schemaless_writer

from integrations.converters.avro_scatter import flat_array, string_parts
from integrations.converters.base import (
    bytes_to_decimal,
    check_valid,
    convert_nested,
    decimal_to_bytes,
    interval_from_struct,
    interval_to_struct,
    nested_has,
)
from integrations.converters.json import ConversionError


def _to_raw(col: pa.ChunkedArray | pa.Array, t: pa.DataType, name: str) -> pa.ChunkedArray | pa.Array:
    """A column in the representation fastavro writes for the stripped schema (nested values too)."""
    try:
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_struct(t) or pa.types.is_map(t):
            if not nested_has(t, _needs_raw):
                return col
            return convert_nested(col, lambda a, _t: _leaf_to_raw(a, name))
        return _leaf_to_raw(col, name)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise ConversionError(f"column {name!r}: {t} cannot be written as Avro: {e}") from e


def _needs_raw(t: pa.DataType) -> bool:
    return (pa.types.is_decimal(t) or pa.types.is_temporal(t) or pa.types.is_interval(t)
            or pa.types.is_dictionary(t) or pa.types.is_uint64(t) or pa.types.is_null(t))


def _leaf_to_raw(col: pa.ChunkedArray | pa.Array, name: str) -> pa.ChunkedArray | pa.Array:
    t = col.type
    if pa.types.is_dictionary(t):
        col, t = col.cast(t.value_type), t.value_type
    if pa.types.is_decimal(t):
        return decimal_to_bytes(col)
    if pa.types.is_interval(t):
        return interval_to_struct(col)
    if pa.types.is_timestamp(t):
        unit = "ms" if t.unit == "s" else t.unit
        return (col.cast(pa.timestamp(unit, tz=t.tz)) if unit != t.unit else col).cast(pa.int64())
    if pa.types.is_date64(t):
        return col.cast(pa.date32()).cast(pa.int32())
    if pa.types.is_date32(t):
        return col.cast(pa.int32())
    if pa.types.is_time32(t):
        return (col.cast(pa.time32("ms")) if t.unit == "s" else col).cast(pa.int32())
    if pa.types.is_time64(t):
        return col.cast(pa.int64())
    if pa.types.is_uint64(t):
        try:
            return col.cast(pa.int64())
        except pa.ArrowInvalid as e:
            raise ConversionError(f"column {name!r}: a uint64 value does not fit Avro's long: {e}") from e
    if pa.types.is_null(t):
        return col.cast(pa.string())
    return col


def _leaf_from_raw(col: pa.Array, t: pa.DataType | None) -> pa.Array:
    if t is None or col.type == t:
        return col
    if pa.types.is_interval(t):
        return interval_from_struct(col)
    if pa.types.is_decimal(t):
        return bytes_to_decimal(col, t)
    return col.cast(t)


def single_header(arr: pa.Array) -> bytes | None:
    """The 5-byte header shared by every message, or None when they differ; short messages are refused."""
    arr = flat_array(arr)
    offsets, data = string_parts(arr)
    start = offsets[:-1]
    if (np.diff(offsets) < 5).any():
        raise ConversionError("message shorter than the 5-byte Schema Registry header")
    first = bytes(data[start[0]:start[0] + 5])
    for k, byte in enumerate(first):
        if (data[start + k] != byte).any():
            return None
    return first


def frame_records(records: list[dict[str, Any]], header: bytes, parsed: Any) -> pa.Array:
    """Write each record as ``header + Avro`` into one buffer; return them as a binary column."""
    buf = io.BytesIO()
    write, tell = buf.write, buf.tell
    ends = [0]
    push = ends.append
    for rec in records:
        write(header)
        schemaless_writer(buf, parsed, rec)
        push(tell())
    data = buf.getbuffer()
    typ, otype = (pa.binary(), pa.int32()) if ends[-1] < 2**31 else (pa.large_binary(), pa.int64())
    offsets = pa.array(ends, otype)
    return pa.Array.from_buffers(typ, len(records), [None, offsets.buffers()[1], pa.py_buffer(bytes(data))])


def to_table(records: list[dict[str, Any]], raw: pa.StructType, final: pa.StructType) -> pa.Table:
    """Raw decoded records → a table with the final (logical) types, converted per column."""
    try:
        struct = pa.array(records, type=raw)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
        raise ConversionError(f"decoded Avro values do not fit {raw}: {e}") from e
    return finish(pa.Table.from_struct_array(struct).columns, raw, final)


def finish(columns: list, raw: pa.StructType, final: pa.StructType) -> pa.Table:
    """Raw columns → the final (logical) types, converted per column; validated (UTF-8 included)."""
    cols = []
    for f, rf, col in zip(final, raw, columns, strict=True):
        if f.type != rf.type:
            col = convert_nested(col, _leaf_from_raw, f.type)
        cols.append(col)
    return check_valid(pa.table(cols, schema=pa.schema(list(final))))


def _concat(payloads: pa.Array) -> bytes:
    """The payloads back to back, without a Python loop."""
    if len(payloads) == 0:
        return b""
    lists = pa.ListArray.from_arrays(pa.array([0, len(payloads)], pa.int32()), payloads)
    return pc.binary_join(lists, b"")[0].as_py()
