"""The converter contract used by the runners, and vectorised helpers shared by converters.

A converter turns a batch (``pyarrow.Table``) into one Kafka key or value per row, and a list of
message bytes back into a table, per batch. ``topic`` is passed because schema-registry converters
name their subjects after it (``<topic>-value``).
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from integrations.converters.json import ConversionError

#: The single column of a primitive (non-struct) key or value; the same as
#: ``integrations.transforms.batch.PRIMITIVE_COLUMN``.
PRIMITIVE_COLUMN = "__value__"


def is_primitive(table: pa.Table) -> bool:
    """True when ``table`` holds a primitive key or value (its one column is ``PRIMITIVE_COLUMN``)."""
    return table.num_columns == 1 and table.column_names[0] == PRIMITIVE_COLUMN


def null_values_stay_null(encode: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an ``encode_values`` so that a null value is a Kafka null (``None``), whatever the format.

    A null row of a primitive value (a ``__value__`` table) is a record without a value. A null-typed
    column (no schema: the CDC source's tombstones) is a Kafka null in every converter, as Kafka
    Connect's converters write a null value without a schema; log compaction and sinks
    (``delete_enabled``) read only a Kafka null as a tombstone. A null of a typed column is a Kafka null
    too (json, string, bytes), except for a converter with ``encodes_typed_nulls``: json_schema writes
    ``{"schema":{…"optional":true},"payload":null}`` for it, as Connect's JsonConverter; Avro keeps
    the union's null branch (a sink decodes it back to a null field). Only the other rows reach ``encode``; a
    batch of nothing but null values never reaches it (so Avro registers no ``null`` schema under the
    topic's subject, which would clash with the real one)."""

    @functools.wraps(encode)
    def encode_values(self: Converter, table: pa.Table, topic: str = "") -> pa.Array | pa.ChunkedArray:
        if not (table.num_rows and is_primitive(table) and table.column(0).null_count):
            return encode(self, table, topic)
        if self.encodes_typed_nulls and not pa.types.is_null(table.schema.field(0).type):
            return encode(self, table, topic)
        valid = np.asarray(table.column(0).is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        if not valid.any():
            return pa.nulls(table.num_rows, pa.binary())
        encoded = encode(self, table.filter(pa.array(valid)), topic)
        pos = np.cumsum(valid) - 1  # row i → its place among the encoded (non-null) rows
        return encoded.take(pa.array(pos, pa.int64(), mask=~valid))

    encode_values.__null_values_stay_null__ = True  # type: ignore[attr-defined]
    return encode_values


class Converter(ABC):
    """Arrow batch ↔ Kafka message bytes.

    Every subclass's ``encode_values`` is wrapped by :func:`null_values_stay_null`: a null value row
    becomes a Kafka null in every format."""

    #: The Kafka Connect class this converter stands in for (the DLQ's ``class.name`` header).
    class_name: str = "Converter"
    #: True when a null of a typed primitive value is written in the format (an envelope, Avro's null
    #: branch), not as a Kafka null; a null-typed value (a tombstone) is a Kafka null all the same.
    encodes_typed_nulls: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("encode_values")
        if own is not None and not getattr(own, "__null_values_stay_null__", False):
            cls.encode_values = null_values_stay_null(own)  # type: ignore[method-assign]

    @abstractmethod
    def encode_values(self, table: pa.Table, topic: str) -> pa.Array | pa.ChunkedArray:
        """One message value per row, as an Arrow string or binary column."""

    def encode_keys(self, table: pa.Table, columns: Sequence[str], topic: str) -> list | None:
        """Message keys from the key columns (None when there are none)."""
        if not columns:
            return None
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise ConversionError(f"key column(s) {missing} not in the record (columns: {table.column_names})")
        return self.encode_values(table.select(list(columns)), topic).to_pylist()

    @abstractmethod
    def decode(self, values: Sequence[bytes], schema: pa.Schema | None = None, topic: str = "") -> pa.Table:
        """Parse message values into a table; ``schema`` (optional) fixes column types."""

    @property
    def self_describing(self) -> bool:
        """True when messages carry their own schema, so a sink needs no declared one."""
        return False


def check_valid(table: pa.Table) -> pa.Table:
    """Full Arrow validation (catches invalid UTF-8 in string columns); raise ConversionError."""
    try:
        table.validate(full=True)
    except (pa.ArrowInvalid, pa.ArrowException) as e:
        raise ConversionError(f"invalid data in batch: {e}") from e
    return table


def decimal_to_bytes(arr: pa.Array) -> pa.BinaryArray:
    """Decimal128 values → minimal big-endian two's-complement unscaled bytes (Java BigInteger style)."""
    arr = _flat(arr)
    n = len(arr)
    if n == 0:
        return pa.array([], pa.binary())
    if arr.type.byte_width != 16:
        arr = _flat(arr.cast(pa.decimal128(38, arr.type.scale)))
    raw = np.frombuffer(arr.buffers()[1], dtype=np.uint8, count=n * 16)
    be = raw.reshape(n, 16)[:, ::-1]  # big-endian rows
    neg = be[:, 0] >= 0x80
    fill = np.where(neg, 0xFF, 0x00).astype(np.uint8)[:, None]
    # a leading byte is redundant when it equals the fill and the next byte's sign bit matches
    redundant = (be[:, :15] == fill) & ((be[:, 1:] >= 0x80) == neg[:, None])
    lead = np.cumprod(redundant, axis=1).sum(axis=1)  # redundant leading bytes, 0..15
    keep = np.arange(16)[None, :] >= lead[:, None]
    lengths = 16 - lead
    data = be[keep]
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    validity = arr.buffers()[0] if arr.null_count else None
    return pa.Array.from_buffers(pa.binary(), n, [validity, pa.py_buffer(offsets), pa.py_buffer(data.tobytes())],
                                 null_count=arr.null_count)


def _flat(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array with offset 0."""
    if isinstance(arr, pa.ChunkedArray):
        arr = pa.concat_arrays(arr.chunks) if arr.num_chunks != 1 else arr.chunk(0)
    if arr.offset:
        arr = pa.concat_arrays([arr])
    return arr


def bytes_to_decimal(arr: pa.Array, typ: pa.Decimal128Type) -> pa.Array:
    """Big-endian two's-complement unscaled bytes (≤ 16 each) → Decimal128 of ``typ``, vectorised."""
    if not pa.types.is_binary(arr.type):
        arr = arr.cast(pa.binary())
    arr = _flat(arr)
    n = len(arr)
    if n == 0:
        return pa.array([], typ)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=n + 1)
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8) if arr.buffers()[2] is not None else np.zeros(0, np.uint8)
    lengths = np.diff(offsets)
    if (lengths > 16).any():
        raise ConversionError("a decimal's unscaled value is wider than 16 bytes (precision > 38)")
    out = np.zeros((n, 16), dtype=np.uint8)
    nonempty = lengths > 0
    first = np.zeros(n, dtype=np.uint8)
    first[nonempty] = data[offsets[:-1][nonempty]]
    out[(first >= 0x80)] = 0xFF  # sign extension
    if len(data):
        rows = np.repeat(np.arange(n), lengths)
        pos = np.arange(offsets[-1] - offsets[0]) + offsets[0]
        col = 16 - np.repeat(lengths, lengths) + (pos - np.repeat(offsets[:-1], lengths))
        out[rows, col] = data[pos]
    le = np.ascontiguousarray(out[:, ::-1])
    validity = arr.buffers()[0] if arr.null_count else None
    return pa.Array.from_buffers(typ, n, [validity, pa.py_buffer(le.tobytes())], null_count=arr.null_count)


_INTERVAL_STRUCT = pa.struct([("months", pa.int32()), ("days", pa.int32()), ("nanoseconds", pa.int64())])
_MDN = np.dtype([("months", "<i4"), ("days", "<i4"), ("nanoseconds", "<i8")])


def interval_to_struct(arr: pa.Array | pa.ChunkedArray) -> pa.StructArray:
    """month_day_nano intervals → struct {months, days, nanoseconds}, zero-copy views with numpy."""
    arr = _flat(arr)
    n = len(arr)
    rec = np.frombuffer(arr.buffers()[1], dtype=_MDN, count=n) if n else np.zeros(0, _MDN)
    mask = None if arr.null_count == 0 else arr.is_null()
    return pa.StructArray.from_arrays(
        [pa.array(rec["months"]), pa.array(rec["days"]), pa.array(rec["nanoseconds"])],
        fields=list(_INTERVAL_STRUCT), mask=mask)


def interval_from_struct(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """struct {months, days, nanoseconds} → month_day_nano intervals."""
    arr = _flat(arr).cast(_INTERVAL_STRUCT)
    n = len(arr)
    rec = np.zeros(n, dtype=_MDN)
    for name in ("months", "days", "nanoseconds"):
        rec[name] = arr.field(name).fill_null(0).to_numpy(zero_copy_only=False)
    validity = None
    if arr.null_count:
        validity = pa.array(arr.is_valid().to_numpy(zero_copy_only=False)).buffers()[1]
    return pa.Array.from_buffers(pa.month_day_nano_interval(), n, [validity, pa.py_buffer(rec.tobytes())],
                                 null_count=arr.null_count)


def as_int(arr: pa.Array | pa.ChunkedArray, bits: int = 64) -> pa.Array | pa.ChunkedArray:
    """Temporal values as their integer representation (epoch units), zero-copy where possible."""
    return arr.cast(pa.int64() if bits == 64 else pa.int32())


def string_lengths(values: pa.Array | pa.ChunkedArray) -> int:
    """Total bytes of a string or binary column."""
    return int(pc.sum(pc.binary_length(values)).as_py() or 0)


def convert_nested(arr: pa.Array | pa.ChunkedArray, leaf: Callable[[pa.Array, pa.DataType | None], pa.Array],
                   target: pa.DataType | None = None) -> pa.Array:
    """Apply ``leaf`` to every non-nested array inside ``arr``, through lists, structs and maps.

    The nesting is rebuilt around the converted leaves (validity and offsets are reused, nothing is
    copied per row). ``target``, a type with the same nesting, gives ``leaf`` each leaf's wanted type
    and the output its field names and nullability; without it ``leaf`` gets ``None`` and ``arr``'s
    own field names are kept. A nested type where ``target`` is not nested (e.g. a struct that becomes
    an interval) is passed to ``leaf`` whole.
    """
    arr = _flat(arr)
    t = arr.type
    if pa.types.is_dictionary(t):
        arr, t = _flat(arr.cast(t.value_type)), t.value_type
    mask = arr.is_null() if arr.null_count else None
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and (target is None or pa.types.is_list(target)
                                                               or pa.types.is_large_list(target)):
        tf = target.value_field if target is not None else t.value_field
        values = convert_nested(arr.values, leaf, tf.type if target is not None else None)
        field = pa.field(tf.name, values.type, tf.nullable)
        typ = pa.large_list(field) if pa.types.is_large_list(t) else pa.list_(field)
        return pa.ListArray.from_arrays(arr.offsets, values, type=typ, mask=mask) if not pa.types.is_large_list(t) \
            else pa.LargeListArray.from_arrays(arr.offsets, values, type=typ, mask=mask)
    if pa.types.is_map(t) and (target is None or pa.types.is_map(target)):
        kf = target.key_field if target is not None else t.key_field
        vf = target.item_field if target is not None else t.item_field
        keys = convert_nested(arr.keys, leaf, kf.type if target is not None else None)
        items = convert_nested(arr.items, leaf, vf.type if target is not None else None)
        typ = pa.map_(pa.field(kf.name, keys.type, False), pa.field(vf.name, items.type, vf.nullable))
        return pa.MapArray.from_arrays(arr.offsets, keys, items, type=typ, mask=mask)
    if pa.types.is_struct(t) and t.num_fields and (target is None or pa.types.is_struct(target)):
        children, fields = [], []
        for i, f in enumerate(t):
            tf = target.field(f.name) if target is not None else f
            child = convert_nested(arr.field(i), leaf, tf.type if target is not None else None)
            children.append(child)
            fields.append(pa.field(tf.name, child.type, tf.nullable))
        return pa.StructArray.from_arrays(children, fields=fields, mask=mask)
    return leaf(arr, target)


def nested_has(t: pa.DataType, test: Callable[[pa.DataType], bool]) -> bool:
    """True when ``t`` or any type nested inside it passes ``test``."""
    if test(t):
        return True
    if pa.types.is_dictionary(t):
        return nested_has(t.value_type, test)
    if pa.types.is_map(t):
        return nested_has(t.key_type, test) or nested_has(t.item_type, test)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return nested_has(t.value_type, test)
    if pa.types.is_struct(t):
        return any(nested_has(f.type, test) for f in t)
    return False
