"""avro_roundtrip: Avro encode + decode of 1,000,000 rows through Headrace's Avro converter.

Engine: ``AvroConverter.encode_values`` (Schema Registry framing: magic byte, 4-byte id, payload)
then ``AvroConverter.decode`` back to an Arrow table with the original types, in batches of 100k
rows (the sink's consume batch). Messages are handed over as Python ``bytes``, one per record, as
a producer takes them and a consumer gives them. The registry is confluent-kafka's in-memory one
(``mock://``): it is called once per schema and cached, so a real registry would not change the
timing. These rows are flat records, so the converter uses its vectorised numpy codec
(``integrations/converters/avro_flat.py``, byte-identical to fastavro's output).

Ceiling (``ceiling``): the same encode + decode of the same rows, with the same framing and the same
``bytes`` hand-over, written by hand as straight-line numpy/pyarrow code specialised to this
schema, importing nothing from the engine. It is general for the schema (any value, NULL in any
field, varints of up to 10 bytes) and byte-identical to fastavro, but exploits what a generic
codec cannot: the fixed field order, 8-byte SWAR varint encode/decode (one unaligned 64-bit load or
store per field per row instead of a byte loop), overlapping 8-byte stores into a row matrix
compacted once, names read back as an Arrow ``string_view`` over the message buffer and copied
once in C++.

The issue's ceiling, fastavro alone (``ceiling_fastavro``), is kept: the same vectorised column
preparation, one ``schemaless_writer`` call per record into one buffer, one ``schemaless_reader``
call per record from one stream, and the same Arrow construction, without framing or a registry.
The harness runs one ceiling per case, so that ratio is reported by the case
``avro_roundtrip_fastavro`` (this engine against this fastavro ceiling).

Both sides read the same memory-mapped Arrow IPC file written in setup and check the decoded
table equals the input.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from integrations.converters.avro import AvroConverter
from integrations.converters.base import bytes_to_decimal, decimal_to_bytes

NAME = "avro_roundtrip"
DEFAULT_ROWS = 1_000_000
BATCH = 100_000


def setup(rows: int) -> dict:
    """Write the benchmarks' usual row shape as an uncompressed Arrow IPC file."""
    folder = tempfile.mkdtemp(prefix="bench-avro-")
    g = np.arange(1, rows + 1, dtype=np.int64)
    names = pa.array([f"name-{i}-é漢" for i in range(rows)], pa.string())
    names = pc.if_else(pa.array(g % 10 == 0), pa.scalar(None, pa.string()), names)
    table = pa.table({
        "id": g,
        "qty": pa.array((g % 1000).astype(np.int32)),
        "amount": pa.array((g % 100000) / 100.0).cast(pa.decimal128(12, 2)),
        "name": names,
        "created_at": pa.array(1_704_067_200_000_000 + g * 1_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
    })
    path = str(Path(folder) / "input.arrow")
    with pa.OSFile(path, "wb") as f, ipc.new_file(f, table.schema) as w:
        w.write_table(table, max_chunksize=BATCH)
    return {"dir": folder, "path": path, "rows": rows}


def load(path: str) -> pa.Table:
    """The input table, memory-mapped (the same call on both sides)."""
    return ipc.open_file(pa.memory_map(path)).read_all()


def engine(state: dict) -> int:
    """Encode each batch to framed Avro and decode it back through the converter."""
    table = load(state["path"])
    conv = AvroConverter(f"mock://bench-{uuid.uuid4().hex[:8]}")
    rows = 0
    for batch in table.to_batches(BATCH):
        t = pa.Table.from_batches([batch])
        messages = conv.encode_values(t, "bench-avro").to_pylist()
        back = conv.decode(messages)
        assert back.num_rows == t.num_rows
        rows += back.num_rows
    assert back.equals(t), "decoded batch differs from the input"
    return rows


# -- ceiling: the codec written by hand for this schema ----------------------------------------------
#
# Writer schema: record {id ["null","long"], qty ["null","int"], amount ["null", bytes decimal(12,2)],
# name ["null","string"], created_at ["null", long timestamp-micros]}. No engine code below.

U64 = np.uint64
HEADER = b"\x00\x00\x00\x00\x01"  # magic byte 0, schema id 1
CONT = U64(0x8080808080808080)
ONES = U64(0x0101010101010101)
SEVEN = U64(0x7F7F7F7F7F7F7F7F)
ALL = U64(0xFFFFFFFFFFFFFFFF)
DECIMAL = pa.decimal128(12, 2)
TIMESTAMP = pa.timestamp("us", tz="UTC")


def _thermo(m: np.ndarray, byte: np.uint64) -> np.ndarray:
    """Per row, a word whose first ``m`` bytes are ``byte`` (numpy shifts by >= 64 give 0)."""
    return ((U64(1) << (m.astype(U64) << U64(3))) - U64(1)) & byte


def _words(mat: np.ndarray, offset: int) -> np.ndarray:
    """The unaligned 64-bit word at byte ``offset`` of every row of a uint8 matrix (a strided view)."""
    return np.ndarray((mat.shape[0],), "<u8", buffer=mat, offset=offset, strides=(mat.shape[1],))


def _valid(a: pa.Array) -> np.ndarray | None:
    return None if a.null_count == 0 else a.is_valid().to_numpy(zero_copy_only=False)


def _varint(v: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Zig-zag varints of int64 ``v``: (low 8 bytes as a word, 16-bit word of bytes 9-10 or None, length)."""
    z = ((v << 1) ^ (v >> 63)).view(U64)
    groups = max(1, (int(z.max()).bit_length() + 6) // 7) if len(z) else 1
    ln = np.ones(len(z), np.int64)
    for k in range(1, groups):
        ln += z >= U64(1 << (7 * k))
    if valid is not None:
        ln *= valid
    x = z & U64((1 << 56) - 1)  # spread 7-bit groups into bytes
    x = ((x & U64(0x00FFFFFFF0000000)) << U64(4)) | (x & U64(0x000000000FFFFFFF))
    x = ((x & U64(0x0FFFC0000FFFC000)) << U64(2)) | (x & U64(0x00003FFF00003FFF))
    x = ((x & U64(0x3F803F803F803F80)) << U64(1)) | (x & U64(0x007F007F007F007F))
    x |= _thermo(np.maximum(ln - 1, 0), CONT)
    high = None
    if groups > 8:
        high = ((z >> U64(56)) & U64(0x7F)) | ((ln > 9).astype(U64) << U64(7)) | ((z >> U64(63)) << U64(8))
    return x, high, ln


def numpy_encode(t: pa.Table) -> list[bytes]:
    """Framed Avro messages of the bench schema, one ``bytes`` per row."""
    n = t.num_rows
    ids, qty, amount, name, created = (c.combine_chunks() for c in t.columns)
    blocks: list = []  # per field: (low word, high word or None, bytes per row, width) or None for the names

    def varint_block(values: np.ndarray, valid: np.ndarray | None) -> None:
        w, high, ln = _varint(values, valid)
        branch = U64(2) if valid is None else valid.astype(U64) << U64(1)
        width = 1 + int(ln.max())
        hi = None
        if width > 8:
            hi = w >> U64(56)
            if high is not None:
                hi |= high << U64(8)
        blocks.append((branch | (w << U64(8)), hi, ln + 1, width))

    varint_block(np.frombuffer(ids.buffers()[1], np.int64, n + ids.offset)[ids.offset:], _valid(ids))
    varint_block(np.frombuffer(qty.buffers()[1], np.int32, n + qty.offset)[qty.offset:].astype(np.int64), _valid(qty))
    va = _valid(amount)
    unscaled = np.frombuffer(amount.buffers()[1], np.int64, 2 * (n + amount.offset))[2 * amount.offset::2]
    mag = unscaled ^ (unscaled >> 63)  # 12 digits fit the low 64 bits; minimal two's complement length
    la = np.ones(n, np.int64)
    for k in range(1, 8):
        la += mag >= (1 << (8 * k - 1))
    if va is not None:
        la *= va
    be = np.where(la > 0, (unscaled.view(U64) << ((8 - la) << 3).astype(U64)).byteswap(), U64(0))
    branch = U64(2) if va is None else va.astype(U64) << U64(1)
    blocks.append((branch | (la.astype(U64) << U64(9)) | (be << U64(16)), be >> U64(48),
                   la + 1 + (1 if va is None else va), 2 + int(la.max())))
    vn = _valid(name)
    noffs = np.frombuffer(name.buffers()[1], np.int32, n + 1 + name.offset)[name.offset:].astype(np.int64)
    nlen = np.diff(noffs) if vn is None else np.diff(noffs) * vn
    varint_block(nlen, vn)
    blocks.append(None)
    varint_block(np.frombuffer(created.buffers()[1], np.int64, n + created.offset)[created.offset:], _valid(created))

    wname = int(nlen.max())
    widths = [wname if b is None else b[3] for b in blocks]
    W = 5 + sum(widths) + 8  # 8 spare bytes: a row's last 8-byte store spills into them
    M = np.empty((n, W), np.uint8)  # message bytes, one row per record
    K = np.zeros((n, W), np.uint8)  # 1 where a byte belongs to the message
    _words(M, 0)[:] = U64(int.from_bytes(HEADER + b"\0\0\0", "little"))
    _words(K, 0)[:] = _thermo(np.array([5]), ONES)[0]
    total = np.full(n, 5, np.int64)
    pos = 5
    for block, width in zip(blocks, widths, strict=True):
        # stores run left to right, so each one's spill is overwritten by the next field's store
        if block is None:  # the names, 8 bytes at a time from the string data
            data = np.zeros(int(noffs[-1]) + 8, np.uint8)
            data[: noffs[-1]] = np.frombuffer(name.buffers()[2], np.uint8, int(noffs[-1]))
            chars = np.ndarray((int(noffs[-1]) + 1,), "<u8", buffer=data, strides=(1,))
            for j in range(0, width, 8):
                _words(M, pos + j)[:] = chars[np.minimum(noffs[:-1] + j, noffs[-1])]
                _words(K, pos + j)[:] = _thermo(np.maximum(nlen - j, 0), ONES)
            total += nlen
        else:
            lo, hi, ln, _ = block
            _words(M, pos)[:] = lo
            _words(K, pos)[:] = _thermo(ln, ONES)
            if hi is not None:
                _words(M, pos + 8)[:] = hi
                _words(K, pos + 8)[:] = _thermo(np.maximum(ln - 8, 0), ONES)
            total += ln
        pos += width
    ends = np.zeros(n + 1, np.int32)
    np.cumsum(total, out=ends[1:])
    out = M[K.view(bool)]  # one compaction, row-major: the messages back to back
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(ends), pa.py_buffer(out)]).to_pylist()


def _read_varint(buf: np.ndarray, words: np.ndarray, p: np.ndarray, valid: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Zig-zag varints starting at byte positions ``p`` (where ``valid``): (int64 values, byte lengths)."""
    w = words[p]
    stop = ~w & CONT  # bytes without the continuation bit
    low = stop & (~stop + U64(1))  # the first of them
    ln = np.bitwise_count((low - U64(1)) & CONT).astype(np.int64) + 1
    x = w & (low | (low - U64(1))) & SEVEN  # squeeze 7-bit groups back together
    x = ((x & U64(0x7F007F007F007F00)) >> U64(1)) | (x & U64(0x007F007F007F007F))
    x = ((x & U64(0x3FFF00003FFF0000)) >> U64(2)) | (x & U64(0x00003FFF00003FFF))
    x = ((x & U64(0x0FFFFFFF00000000)) >> U64(4)) | (x & U64(0x000000000FFFFFFF))
    long_ = (stop == 0) & valid
    if long_.any():  # 9 or 10 bytes
        i = np.nonzero(long_)[0]
        b8, b9 = buf[p[i] + 8], buf[p[i] + 9]
        two = b8 >= 0x80
        if (two & (b9 > 1)).any():
            raise ValueError("malformed varint")
        x[i] |= ((b8 & 0x7F).astype(U64) << U64(56)) | (np.where(two, b9, 0).astype(U64) << U64(63))
        ln[i] = 9 + two
    return (x >> U64(1)).view(np.int64) ^ -(x & U64(1)).view(np.int64), ln


def _branch(buf: np.ndarray, p: np.ndarray) -> np.ndarray:
    b = buf[p]
    if ((b != 0) & (b != 2)).any():
        raise ValueError("invalid union branch")
    return b == 2


def numpy_decode(messages: list[bytes]) -> pa.Table:
    """Framed Avro messages of the bench schema back to the input table's types."""
    arr = pa.array(messages, pa.binary())
    n = len(arr)
    offs = np.frombuffer(arr.buffers()[1], np.int32, n + 1)
    size = int(offs[-1])
    buf = np.zeros(size + 16, np.uint8)  # 8-byte loads past the last record stay in bounds
    buf[:size] = np.frombuffer(arr.buffers()[2], np.uint8, size)
    words = np.ndarray((size + 9,), "<u8", buffer=buf, strides=(1,))
    start, end = offs[:-1].astype(np.int64), offs[1:].astype(np.int64)
    if ((words[start] & U64((1 << 40) - 1)) != U64(int.from_bytes(HEADER, "little"))).any():
        raise ValueError("not this schema's framing")
    p = start + 5
    vid = _branch(buf, p)
    idv, ln = _read_varint(buf, words, p + 1, vid)
    p += 1 + ln * vid
    vq = _branch(buf, p)
    qv, ln = _read_varint(buf, words, p + 1, vq)
    p += 1 + ln * vq
    va = _branch(buf, p)
    la = (buf[p + 1] >> 1).astype(np.int64) * va
    if (la > 8).any():
        raise ValueError("decimal(12,2) longer than 8 bytes")
    be = words[p + 2].byteswap().view(np.int64)
    unscaled = np.where(la > 0, be >> ((8 - la) << 3), 0)  # arithmetic shift: sign-extended
    p += 1 + va + la
    vn = _branch(buf, p)
    nl, ln = _read_varint(buf, words, p + 1, vn)
    nl *= vn
    p += 1 + ln * vn
    # the names as a string_view over the message buffer (inline up to 12 bytes), copied once by Arrow
    views = np.empty((n, 2), U64)
    views[:, 0] = nl.astype(U64) | ((words[p] & _thermo(np.minimum(nl, 4), ALL)) << U64(32))
    views[:, 1] = np.where(nl <= 12, words[p + 4] & _thermo(np.clip(nl - 4, 0, 8), ALL), p.astype(U64) << U64(32))
    p += nl
    vt = _branch(buf, p)
    tv, ln = _read_varint(buf, words, p + 1, vt)
    p += 1 + ln * vt
    if (p != end).any():
        raise ValueError("records do not match the schema")

    def column(typ: pa.DataType, valid: np.ndarray, values: np.ndarray, extra: list | None = None) -> pa.Array:
        bitmap = None if valid.all() else pa.array(valid).buffers()[1]
        return pa.Array.from_buffers(typ, n, [bitmap, pa.py_buffer(values), *(extra or [])],
                                     null_count=int(n - valid.sum()))

    dec = np.empty((n, 2), np.int64)
    dec[:, 0], dec[:, 1] = unscaled, unscaled >> 63
    return pa.table({
        "id": column(pa.int64(), vid, idv),
        "qty": column(pa.int32(), vq, qv.astype(np.int32)),
        "amount": column(DECIMAL, va, dec),
        "name": column(pa.string_view(), vn, views, [pa.py_buffer(buf)]).cast(pa.string()),
        "created_at": column(TIMESTAMP, vt, tv),
    })


def ceiling(state: dict) -> int:
    """The hand-written numpy codec: the same batches, framing and ``bytes`` hand-over as the engine."""
    table = load(state["path"])
    rows = 0
    for batch in table.to_batches(BATCH):
        t = pa.Table.from_batches([batch])
        messages = numpy_encode(t)
        back = numpy_decode(messages)
        assert back.num_rows == t.num_rows
        rows += back.num_rows
    assert back.equals(t), "decoded batch differs from the input"
    return rows


# -- the ceiling: fastavro alone ----------------------------------------------------------------

RAW_SCHEMA = {
    "type": "record", "name": "bench", "fields": [
        {"name": "id", "type": ["null", "long"], "default": None},
        {"name": "qty", "type": ["null", "int"], "default": None},
        {"name": "amount", "type": ["null", "bytes"], "default": None},
        {"name": "name", "type": ["null", "string"], "default": None},
        {"name": "created_at", "type": ["null", "long"], "default": None},
    ],
}
RAW_TYPE = pa.struct([("id", pa.int64()), ("qty", pa.int32()), ("amount", pa.binary()), ("name", pa.string()),
                      ("created_at", pa.int64())])


def ceiling_fastavro(state: dict) -> int:
    """fastavro alone: the same records written and read with the fastest plain loop."""
    table = load(state["path"])
    parsed = parse_schema(RAW_SCHEMA)
    rows = 0
    for batch in table.to_batches(BATCH):
        t = pa.Table.from_batches([batch])
        raw = pa.table({
            "id": t["id"], "qty": t["qty"], "amount": decimal_to_bytes(t["amount"]), "name": t["name"],
            "created_at": t["created_at"].cast(pa.int64()),
        })
        buf = io.BytesIO()
        for rec in raw.to_pylist():
            schemaless_writer(buf, parsed, rec)
        fo = io.BytesIO(buf.getvalue())
        records = [schemaless_reader(fo, parsed, None) for _ in range(t.num_rows)]
        back = pa.Table.from_struct_array(pa.array(records, RAW_TYPE))
        back = pa.table({
            "id": back["id"], "qty": back["qty"], "amount": bytes_to_decimal(back["amount"], pa.decimal128(12, 2)),
            "name": back["name"], "created_at": back["created_at"].cast(pa.timestamp("us", tz="UTC")),
        })
        rows += back.num_rows
    assert back.equals(t), "decoded batch differs from the input"
    return rows


def teardown(state: dict) -> None:
    shutil.rmtree(state["dir"], ignore_errors=True)
