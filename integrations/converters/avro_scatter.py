"""The byte-at-a-time flat Avro codec: the fallback of ``avro_flat`` for rows or batches too big for words.

Encoding and decoding work one field at a time over every row at once: zig-zag varints are built or
read with at most 10 vectorised byte passes, and strings are copied with one gather or scatter.
No Python code runs per record. ``avro_flat`` uses it for rows wider than its row matrix and for
batches of 2 GiB or more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from integrations.converters.json import ConversionError

if TYPE_CHECKING:
    from integrations.converters.avro_flat import FlatField


def flat_array(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array with offset 0."""
    if isinstance(arr, pa.ChunkedArray):
        arr = pa.concat_arrays(arr.chunks) if arr.num_chunks != 1 else arr.chunk(0)
    if arr.offset:
        arr = pa.concat_arrays([arr])
    return arr


def _valid(arr: pa.Array) -> np.ndarray:
    if arr.null_count == 0:
        return np.ones(len(arr), dtype=bool)
    return arr.is_valid().to_numpy(zero_copy_only=False)


def _zigzag(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.int64, copy=False)
    return ((v << 1) ^ (v >> 63)).view(np.uint64)


def _varint_len(z: np.ndarray) -> np.ndarray:
    n = np.ones(len(z), dtype=np.int64)
    t = z >> np.uint64(7)
    while t.any():
        n += t > 0
        t >>= np.uint64(7)
    return n


def _put_varint(out: np.ndarray, pos: np.ndarray, z: np.ndarray, length: np.ndarray) -> None:
    if len(z) == 0:
        return
    for k in range(int(length.max())):
        m = length > k
        b = ((z[m] >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        b |= (length[m] > k + 1).astype(np.uint8) << 7
        out[pos[m] + k] = b


def string_parts(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(int64 offsets, data bytes) of a binary or string array with offset 0."""
    large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64 if large else np.int32, count=len(arr) + 1)
    data = arr.buffers()[2]
    return offsets.astype(np.int64), (np.frombuffer(data, dtype=np.uint8) if data is not None
                                      else np.zeros(0, np.uint8))


def encode_scatter(columns: list[pa.Array | pa.ChunkedArray], fields: list[FlatField], header: bytes) -> pa.Array:
    """``header + Avro record`` per row, one byte pass at a time (for rows too wide for the row matrix)."""
    n = len(columns[0]) if columns else 0
    lens = np.full(n, len(header), dtype=np.int64)
    prepared = []
    for f, col in zip(fields, columns, strict=True):
        arr = flat_array(col)
        valid = _valid(arr)
        if not f.nullable and not valid.all():
            raise ConversionError(f"field {f.name!r} is not nullable in the Avro schema but has nulls")
        flen = np.zeros(n, dtype=np.int64)
        extra: dict[str, Any] = {}
        if f.kind in ("int", "long"):
            z = _zigzag(arr.fill_null(0).to_numpy(zero_copy_only=False))
            extra["z"], extra["vl"] = z, _varint_len(z)
            flen += extra["vl"]
        elif f.kind in ("float", "double"):
            width = 4 if f.kind == "float" else 8
            extra["v"] = arr.fill_null(0).to_numpy(zero_copy_only=False).astype("<f4" if width == 4 else "<f8")
            flen += width
        elif f.kind == "boolean":
            extra["v"] = arr.fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint8)
            flen += 1
        else:
            offsets, data = string_parts(arr)
            slen = np.diff(offsets)
            z = _zigzag(slen)
            extra.update(z=z, vl=_varint_len(z), slen=slen, src=offsets[:-1], data=data)
            flen += extra["vl"] + slen
        flen *= valid
        if f.nullable:
            flen += 1
        lens += flen
        prepared.append((f, valid, flen, extra))
    ends = np.empty(n + 1, dtype=np.int64)
    ends[0] = 0
    np.cumsum(lens, out=ends[1:])
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    pos = ends[:-1].copy()
    if header:
        out[pos[:, None] + np.arange(len(header))] = np.frombuffer(header, dtype=np.uint8)
    pos += len(header)
    for f, valid, flen, x in prepared:
        p = pos
        if f.nullable:
            nonnull_byte, null_byte = (2, 0) if f.null_index == 0 else (0, 2)
            out[p] = np.where(valid, nonnull_byte, null_byte).astype(np.uint8)
            p = p + 1
        vi = np.nonzero(valid)[0] if not valid.all() else None
        vp = p if vi is None else p[vi]

        def sel(a: np.ndarray, vi: np.ndarray | None = vi) -> np.ndarray:
            return a if vi is None else a[vi]

        if f.kind in ("int", "long"):
            _put_varint(out, vp, sel(x["z"]), sel(x["vl"]))
        elif f.kind in ("float", "double"):
            raw = sel(x["v"])
            width = raw.dtype.itemsize
            out[vp[:, None] + np.arange(width)] = raw.view(np.uint8).reshape(-1, width)
        elif f.kind == "boolean":
            out[vp] = sel(x["v"])
        else:
            vl, slen, src = sel(x["vl"]), sel(x["slen"]), sel(x["src"])
            _put_varint(out, vp, sel(x["z"]), vl)
            total = int(slen.sum())
            if total:
                before = np.cumsum(slen) - slen
                step = np.arange(total, dtype=np.int64)
                out[np.repeat(vp + vl - before, slen) + step] = x["data"][np.repeat(src - before, slen) + step]
        pos += flen
    if int(ends[-1]) < 2**31:
        return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(ends.astype(np.int32)), pa.py_buffer(out)])
    return pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(ends), pa.py_buffer(out)])


def _get_varint(buf: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(zig-zag decoded int64 values, byte lengths) of the varints starting at ``p``."""
    z = np.zeros(len(p), dtype=np.uint64)
    length = np.zeros(len(p), dtype=np.int64)
    cont = np.ones(len(p), dtype=bool)
    last = len(buf) - 1
    for k in range(10):
        b = buf[np.minimum(p + k, last)]
        z |= np.where(cont, (b & 0x7F).astype(np.uint64) << np.uint64(7 * k), np.uint64(0))
        length += cont
        cont &= b >= 0x80
        if not cont.any():
            break
    else:
        raise ConversionError("malformed Avro varint (longer than 10 bytes)")
    values = (z >> np.uint64(1)).view(np.int64) ^ -(z & np.uint64(1)).view(np.int64)
    return values, length


def decode_gather(messages: pa.Array, fields: list[FlatField], raw: pa.StructType, skip: int = 0) -> list[pa.Array]:
    """Decode byte by byte with gathers (for batches of 2 GiB or more, past string views' 32-bit offsets)."""
    arr = flat_array(messages)
    n = len(arr)
    offsets, data = string_parts(arr)
    buf = np.concatenate([data, np.zeros(16, dtype=np.uint8)])  # reads past a short record stay in bounds
    pos = offsets[:-1] + skip
    end = offsets[1:]
    cols = []
    for f, rf in zip(fields, raw, strict=True):
        if f.nullable:
            b = buf[np.minimum(pos, len(buf) - 1)]
            if not np.isin(b, (0, 2)).all():
                raise ConversionError(f"field {f.name!r}: invalid union branch in Avro payload")
            valid = b == (2 if f.null_index == 0 else 0)
            pos = pos + 1
        else:
            valid = np.ones(n, dtype=bool)
        vi = np.nonzero(valid)[0]
        vp = pos[vi]
        mask = None if valid.all() else ~valid
        if f.kind in ("int", "long"):
            v, ln = _get_varint(buf, vp)
            full = np.zeros(n, dtype=np.int64)
            full[vi] = v
            if f.kind == "int" and len(v) and (v.min() < -(2**31) or v.max() >= 2**31):
                raise ConversionError(f"field {f.name!r}: Avro int out of range")
            cols.append(pa.array(full, type=pa.int64(), mask=mask).cast(rf.type))
            pos[vi] += ln
        elif f.kind in ("float", "double"):
            width = 4 if f.kind == "float" else 8
            raw_bytes = buf[np.minimum(vp[:, None] + np.arange(width), len(buf) - 1)]
            full = np.zeros(n, dtype="<f4" if width == 4 else "<f8")
            full[vi] = raw_bytes.reshape(-1).view(full.dtype)
            cols.append(pa.array(full, mask=mask).cast(rf.type))
            pos[vi] += width
        elif f.kind == "boolean":
            b = buf[np.minimum(vp, len(buf) - 1)]
            if (b > 1).any():
                raise ConversionError(f"field {f.name!r}: invalid Avro boolean")
            full = np.zeros(n, dtype=bool)
            full[vi] = b == 1
            cols.append(pa.array(full, mask=mask))
            pos[vi] += 1
        else:
            slen, ln = _get_varint(buf, vp)
            if (slen < 0).any() or (vp + ln + slen > end[vi]).any():
                raise ConversionError(f"field {f.name!r}: Avro string/bytes length runs past the record")
            start = vp + ln
            lengths = np.zeros(n, dtype=np.int64)
            lengths[vi] = slen
            out_offsets = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(lengths, out=out_offsets[1:])
            total = int(out_offsets[-1])
            before = out_offsets[vi]
            gathered = buf[np.repeat(start - before, slen) + np.arange(total, dtype=np.int64)] if total else \
                np.zeros(0, np.uint8)
            validity = None if mask is None else pa.array(valid).buffers()[1]
            typ = pa.string() if f.kind == "string" else pa.binary()
            if total >= 2**31:
                typ = pa.large_string() if f.kind == "string" else pa.large_binary()
                off_buf = pa.py_buffer(out_offsets)
            else:
                off_buf = pa.py_buffer(out_offsets.astype(np.int32))
            col = pa.Array.from_buffers(typ, n, [validity, off_buf, pa.py_buffer(gathered)],
                                        null_count=int(n - len(vi)))
            cols.append(col if col.type == rf.type else col.cast(rf.type))
            pos[vi] = start + slen
        if (pos > end).any():
            raise ConversionError("Avro payload is shorter than its schema")
    if (pos != end).any():
        raise ConversionError("Avro payloads do not match their schema (trailing bytes)")
    return cols
