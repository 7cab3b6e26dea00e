"""A vectorised Avro binary codec for flat records, with numpy over whole batches.

Flat means that every field is a primitive (boolean, int, long, float, double, string or bytes,
with any logical annotation), optionally in a ``["null", T]`` or ``[T, "null"]`` union. That
covers what SQL and file sources produce. No Python code runs per record.

Encoding builds every record in one row of a byte matrix, field by field at fixed column
positions, with one unaligned 64-bit store per field per row (a varint, a double, a decimal's
bytes: ``avro_swar``) and 8-byte stores for string bytes; a mask matrix marks the bytes in use, and
one compaction turns the rows into the messages. Rows wider than ``MAX_ROW_BYTES`` (a long string)
use the byte-at-a-time scatter codec of ``avro_scatter`` instead.

Decoding walks the fields over every record at once with 64-bit word loads, and hands strings back
as an Arrow ``string_view`` over the message buffer, which Arrow copies once. Decimals of up to 8
bytes (precision up to 18) are read straight into Decimal128.

The output is byte-identical to fastavro's ``schemaless_writer``, which the unit tests check. Any
other schema (arrays, maps, nested records, enums, wider unions) goes through fastavro, in
``integrations.converters.avro``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from integrations.converters.avro_scatter import decode_gather, encode_scatter, flat_array, string_parts
from integrations.converters.avro_swar import (
    ALL,
    ONES,
    U64,
    column_words,
    decimal_from_words,
    decimal_words,
    read_varints,
    thermo,
    varint_words,
    word_view,
    zigzag,
)
from integrations.converters.base import decimal_to_bytes
from integrations.converters.json import ConversionError

MAX_ROW_BYTES = 4096  # widest record (at its widest value per field) for the row matrix
MATRIX_BYTES = 1 << 24  # rows per matrix pass are chosen to stay near this many bytes
_KINDS = ("boolean", "int", "long", "float", "double", "string", "bytes")


@dataclass(frozen=True)
class FlatField:
    """One field of a flat record: its Avro primitive and its union layout."""

    name: str
    kind: str
    nullable: bool
    null_index: int = 0  # position of "null" in the union


def flat_plan(schema: Any) -> list[FlatField] | None:
    """The fields of a flat record schema, or None when fastavro must handle it."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    out = []
    for f in schema.get("fields", []):
        t, nullable, null_index = f.get("type"), False, 0
        if isinstance(t, list):
            if len(t) != 2 or "null" not in t:
                return None
            null_index = t.index("null")
            t, nullable = t[1 - null_index], True
        if isinstance(t, dict):
            t = t.get("type")
        if t not in _KINDS:
            return None
        out.append(FlatField(f["name"], t, nullable, null_index))
    return out


@dataclass
class _Fixed:
    """A field's bytes of at most 16 per row: first word, second word (or None), length per row."""

    lo: np.ndarray
    hi: np.ndarray | None
    ln: np.ndarray
    width: int


@dataclass
class _Chars:
    """The bytes of a string or bytes field: start in the data, length per row, 8-byte words of the data."""

    start: np.ndarray
    ln: np.ndarray
    words: np.ndarray
    limit: int
    width: int


def _validity(arr: pa.Array, f: FlatField) -> np.ndarray | None:
    if arr.null_count == 0:
        return None
    if not f.nullable:
        raise ConversionError(f"field {f.name!r} is not nullable in the Avro schema but has nulls")
    return arr.is_valid().to_numpy(zero_copy_only=False)


def _branched(f: FlatField, valid: np.ndarray | None, lo: np.ndarray, hi: np.ndarray | None,
              ln: np.ndarray) -> _Fixed:
    """A payload with its union branch byte in front (for a nullable field); a null row keeps only the branch."""
    if valid is not None:
        ln = ln * valid
    if f.nullable:
        value, null = (2, 0) if f.null_index == 0 else (0, 2)
        branch = U64(value) if valid is None else np.where(valid, U64(value), U64(null))
        hi = (lo >> U64(56)) if hi is None else (lo >> U64(56)) | (hi << U64(8))
        lo = branch | (lo << U64(8))
        ln = ln + 1
    width = int(ln.max()) if len(ln) else 0
    return _Fixed(lo, hi if width > 8 else None, ln, width)


def _blocks(f: FlatField, arr: pa.Array) -> list[_Fixed | _Chars] | None:
    """The blocks of one field, or None when it cannot go through the row matrix."""
    n = len(arr)
    valid = _validity(arr, f)
    t = arr.type
    if f.kind in ("int", "long"):
        v = np.frombuffer(arr.buffers()[1], dtype=t.to_pandas_dtype(), count=n).astype(np.int64, copy=False)
        lo, hi, ln = varint_words(zigzag(v))
        return [_branched(f, valid, lo, hi, ln)]
    if f.kind in ("float", "double"):
        dt = np.dtype("<f4") if f.kind == "float" else np.dtype("<f8")
        if t.to_pandas_dtype() != dt:
            arr = arr.cast(pa.float32() if f.kind == "float" else pa.float64())
        bits = np.frombuffer(arr.buffers()[1], dtype="<u4" if f.kind == "float" else "<u8", count=n)
        return [_branched(f, valid, bits.astype(U64), None, np.full(n, dt.itemsize, np.int64))]
    if f.kind == "boolean":
        bits = np.unpackbits(np.frombuffer(arr.buffers()[1], np.uint8), bitorder="little", count=n)
        return [_branched(f, valid, bits.astype(U64), None, np.ones(n, np.int64))]
    if pa.types.is_decimal(t):
        if t.byte_width != 16:
            arr = flat_array(arr.cast(pa.decimal128(38, t.scale)))
        pair = np.frombuffer(arr.buffers()[1], np.int64, count=2 * n).reshape(n, 2)
        lo64 = pair[:, 0]
        fits = pair[:, 1] == (lo64 >> 63)
        if not (fits if valid is None else fits | ~valid).all():
            arr = decimal_to_bytes(arr)  # wider than 64 bits: through the generic string path
        else:
            be, la = decimal_words(lo64, valid)
            payload_lo = (la.astype(U64) << U64(1)) | (be << U64(8))  # zig-zag length (1 byte), then the bytes
            return [_branched(f, valid, payload_lo, be >> U64(56), la + 1)]
    if not (pa.types.is_string(arr.type) or pa.types.is_binary(arr.type) or pa.types.is_large_string(arr.type)
            or pa.types.is_large_binary(arr.type)):
        arr = flat_array(arr.cast(pa.binary()))
    offsets, data = string_parts(arr)
    slen = np.diff(offsets)
    if valid is not None:
        slen = slen * valid
    width = int(slen.max()) if n else 0
    if width > MAX_ROW_BYTES:
        return None
    lo, hi, ln = varint_words(zigzag(slen))
    size = int(offsets[-1]) if n else 0
    padded = np.zeros(size + 8, np.uint8)
    padded[:size] = data[:size]
    chars = _Chars(offsets[:-1], slen, word_view(padded), size, width)
    return [_branched(f, valid, lo, hi, ln), chars]


def _store(m: np.ndarray, k: np.ndarray, pos: int, block: _Fixed | _Chars, a: int, b: int) -> None:
    """Write one block's rows ``a:b`` at column ``pos`` of the row and mask matrices."""
    if isinstance(block, _Fixed):
        ln = block.ln[a:b]
        column_words(m, pos)[:] = block.lo[a:b]
        column_words(k, pos)[:] = thermo(ln, ONES)
        if block.hi is not None:
            column_words(m, pos + 8)[:] = block.hi[a:b]
            column_words(k, pos + 8)[:] = thermo(np.maximum(ln - 8, 0), ONES)
        return
    start, ln = block.start[a:b], block.ln[a:b]
    for j in range(0, block.width, 8):
        column_words(m, pos + j)[:] = block.words[np.minimum(start + j, block.limit)]
        column_words(k, pos + j)[:] = thermo(np.maximum(ln - j, 0), ONES)


def encode_flat(columns: list[pa.Array | pa.ChunkedArray], fields: list[FlatField], header: bytes) -> pa.Array:
    """``header + Avro record`` per row, as one Arrow binary column (large_binary past 2 GiB).

    A decimal column may be given as Decimal128 (written as Avro's big-endian two's-complement bytes).
    """
    arrays = [flat_array(c) for c in columns]
    n = len(arrays[0]) if arrays else 0
    blocks: list[_Fixed | _Chars] = []
    for f, arr in zip(fields, arrays, strict=True):
        got = _blocks(f, arr) if len(header) <= 8 else None
        if got is None:
            return encode_scatter([decimal_to_bytes(a) if pa.types.is_decimal(a.type) else a for a in arrays],
                                  fields, header)
        blocks.extend(got)
    width = len(header) + sum(b.width for b in blocks)
    if width > MAX_ROW_BYTES:
        return encode_scatter([decimal_to_bytes(a) if pa.types.is_decimal(a.type) else a for a in arrays],
                              fields, header)
    lengths = np.full(n, len(header), np.int64)
    for b in blocks:
        lengths += b.ln
    ends = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=ends[1:])
    row = width + 8  # 8 spare bytes: the last store of a row spills into them
    step = max(1, MATRIX_BYTES // row)
    out = np.empty(int(ends[-1]) if n > step else 0, np.uint8)
    head = U64(int.from_bytes(header.ljust(8, b"\0"), "little"))
    head_mask = thermo(np.array([len(header)]), ONES)[0]
    for a in range(0, n, step):
        b = min(n, a + step)
        m = np.empty((b - a, row), np.uint8)
        k = np.zeros((b - a, row), np.uint8)
        if header:
            column_words(m, 0)[:] = head
            column_words(k, 0)[:] = head_mask
        pos = len(header)
        for block in blocks:  # left to right: each store's spill is overwritten by the next field's
            _store(m, k, pos, block, a, b)
            pos += block.width
        if b - a == n:
            out = m[k.view(bool)]
        else:
            out[ends[a]:ends[b]] = m[k.view(bool)]
    if int(ends[-1]) < 2**31:
        return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(ends.astype(np.int32)), pa.py_buffer(out)])
    return pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(ends), pa.py_buffer(out)])


def _column(typ: pa.DataType, valid: np.ndarray | None, values: np.ndarray, n: int) -> pa.Array:
    bitmap = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    nulls = 0 if valid is None else int(n - np.count_nonzero(valid))
    return pa.Array.from_buffers(typ, n, [bitmap, pa.py_buffer(values)], null_count=nulls)


def _numeric(values: np.ndarray, valid: np.ndarray | None, typ: pa.DataType, n: int) -> pa.Array:
    """A numeric column of ``typ`` from numpy values (cast with Arrow's overflow checks when types differ)."""
    own = pa.from_numpy_dtype(values.dtype)
    col = _column(own, valid, values, n)
    return col if own == typ else col.cast(typ)


def decode_flat(messages: pa.Array, fields: list[FlatField], raw: pa.StructType, skip: int = 0,
                final: pa.StructType | None = None) -> list[pa.Array]:
    """Decode every message (after ``skip`` header bytes) into one Arrow array per field.

    Arrays have the ``raw`` types, except that a bytes field whose ``final`` type is Decimal128 comes
    back as that decimal when every value fits 8 bytes.
    """
    arr = flat_array(messages)
    offsets, data = string_parts(arr)
    size = len(data)
    if size + 16 >= 2**31:
        return decode_gather(arr, fields, raw, skip)
    n = len(arr)
    buf = np.zeros(size + 16, np.uint8)  # 8-byte loads past the last record stay in bounds
    buf[:size] = data
    words = word_view(buf)
    pos = offsets[:-1] + skip
    end = offsets[1:]
    if (pos > end).any():
        raise ConversionError("Avro payload is shorter than its schema")
    cols = []
    for i, (f, rf) in enumerate(zip(fields, raw, strict=True)):
        valid = None
        if f.nullable:
            b = buf[pos]
            if ((b != 0) & (b != 2)).any():
                raise ConversionError(f"field {f.name!r}: invalid union branch in Avro payload")
            valid = b == (2 if f.null_index == 0 else 0)
            pos = pos + 1
            if valid.all():
                valid = None
        if f.kind in ("int", "long"):
            got = read_varints(buf, words, pos, valid)
            if got is None:
                raise ConversionError(f"field {f.name!r}: malformed Avro varint (longer than 10 bytes)")
            v, ln = got
            if valid is not None:
                v, ln = v * valid, ln * valid
            if f.kind == "int" and n and (v.min() < -(2**31) or v.max() >= 2**31):
                raise ConversionError(f"field {f.name!r}: Avro int out of range")
            cols.append(_numeric(v.astype(np.int32) if f.kind == "int" else v, valid, rf.type, n))
        elif f.kind in ("float", "double"):
            w = words[pos]
            v = (w & U64(0xFFFFFFFF)).astype("<u4").view("<f4") if f.kind == "float" else w.view("<f8")
            ln = np.full(n, 4 if f.kind == "float" else 8, np.int64)
            ln = ln if valid is None else ln * valid
            cols.append(_numeric(v, valid, rf.type, n))
        elif f.kind == "boolean":
            b = buf[pos]
            if ((b > 1) & (True if valid is None else valid)).any():
                raise ConversionError(f"field {f.name!r}: invalid Avro boolean")
            ln = np.ones(n, np.int64) if valid is None else valid.astype(np.int64)
            cols.append(_column(pa.bool_(), valid, np.packbits(b == 1, bitorder="little"), n))
        else:
            col, ln = _strings(f, buf, words, pos, end, valid, rf.type, None if final is None else final[i].type)
            cols.append(col)
        pos = pos + ln
        if (pos > end).any():
            raise ConversionError("Avro payload is shorter than its schema")
    if (pos != end).any():
        raise ConversionError("Avro payloads do not match their schema (trailing bytes)")
    return cols


def _strings(f: FlatField, buf: np.ndarray, words: np.ndarray, pos: np.ndarray, end: np.ndarray,
             valid: np.ndarray | None, typ: pa.DataType, final: pa.DataType | None) -> tuple[pa.Array, np.ndarray]:
    """A string, bytes or small decimal column read at ``pos``, and the bytes each row took."""
    n = len(pos)
    got = read_varints(buf, words, pos, valid)
    if got is None:
        raise ConversionError(f"field {f.name!r}: malformed Avro varint (longer than 10 bytes)")
    slen, ln = got
    if valid is not None:
        slen, ln = slen * valid, ln * valid
    start = pos + ln
    if (slen < 0).any() or (start + slen > end).any():
        raise ConversionError(f"field {f.name!r}: Avro string/bytes length runs past the record")
    if final is not None and pa.types.is_decimal128(final) and (not n or slen.max() <= 8):
        unscaled = decimal_from_words(words, start, slen)
        pair = np.empty((n, 2), np.int64)
        pair[:, 0], pair[:, 1] = unscaled, unscaled >> 63
        return _column(final, valid, pair, n), ln + slen
    # views over the message buffer: inline up to 12 bytes, else (buffer 0, offset); Arrow copies them once
    views = np.empty((n, 2), U64)
    views[:, 0] = slen.astype(U64) | ((words[start] & thermo(np.minimum(slen, 4), ALL)) << U64(32))
    inline = words[start + 4] & thermo(np.clip(slen - 4, 0, 8), ALL)
    views[:, 1] = np.where(slen <= 12, inline, start.astype(U64) << U64(32))
    view_type = pa.string_view() if f.kind == "string" else pa.binary_view()
    bitmap = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    nulls = 0 if valid is None else int(n - np.count_nonzero(valid))
    col = pa.Array.from_buffers(view_type, n, [bitmap, pa.py_buffer(views), pa.py_buffer(buf)], null_count=nulls)
    target = typ if pa.types.is_string(typ) or pa.types.is_binary(typ) else (
        pa.string() if f.kind == "string" else pa.binary())
    try:
        col = col.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise ConversionError(f"field {f.name!r}: {e}") from e
    return (col if col.type == typ else col.cast(typ)), ln + slen
