"""wal2json ``format-version 2`` change documents → Debezium envelopes, per batch, with Arrow compute.

The reader (``postgres_cdc``) fetches one JSON document per line, each prefixed with ``"_l"``: the
LSN the server reported for the row (the change's LSN; for a commit row ``C``, the commit's end).
:func:`parse_changes` parses a whole blob with ``pyarrow.json`` (values are re-quoted first with one
C-level regex, so every ``value`` is text and a column keeps one JSON type), and :func:`envelopes`
pivots the ``columns`` / ``identity`` arrays of one table into typed ``before`` / ``after`` structs.
Nothing loops over rows in Python.
"""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

#: what Debezium writes for an unchanged TOASTed column that the WAL does not carry
UNAVAILABLE = "__debezium_unavailable_value"
_COL = pa.struct([("name", pa.string()), ("type", pa.string()), ("value", pa.string())])
SCHEMA = pa.schema([
    ("_l", pa.int64()), ("action", pa.string()), ("xid", pa.int64()), ("timestamp", pa.string()),
    ("schema", pa.string()), ("table", pa.string()), ("columns", pa.list_(_COL)),
    ("identity", pa.list_(_COL)), ("pk", pa.list_(pa.struct([("name", pa.string()), ("type", pa.string())]))),
])
_UNQUOTED = r'"value":(-?[0-9][0-9.eE+-]*|true|false)'
_QUOTED = r'"value":"\1"'
_ACTIONS = pa.array(["I", "U", "D", "T"])
#: Debezium's op per wal2json action, in the order of ``_ACTIONS``; :func:`envelopes` returns op codes
#: as indexes into it (numpy int8: no Python string per event)
OPS = pa.array(["c", "u", "d", "t"])


def parse_changes(blob: bytes | bytearray) -> pa.Table:
    """Parse newline-separated wal2json v2 documents (with ``_l``) into a table of :data:`SCHEMA`.

    wal2json writes numbers and booleans bare, so a ``value`` changes JSON type from column to column,
    which ``pyarrow.json`` refuses: the blob is viewed (no copy) as one Arrow string and every bare
    value is quoted by one RE2 replace over it (C++), then the lines are parsed."""
    if not blob or blob.isspace():  # isspace stops at the first other byte: no copy, no full scan
        return SCHEMA.empty_table()
    whole = pa.LargeStringArray.from_buffers(1, pa.py_buffer(np.array([0, len(blob)], dtype=np.int64)),
                                             pa.py_buffer(blob))
    quoted = pc.replace_substring_regex(whole, _UNQUOTED, _QUOTED)
    lo, hi = np.frombuffer(quoted.buffers()[1], dtype=np.int64, count=2, offset=quoted.offset * 8)
    data = quoted.buffers()[2].slice(int(lo), int(hi - lo))
    opts = pj.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="ignore")
    return pj.read_json(pa.BufferReader(data), read_options=pj.ReadOptions(block_size=1 << 22), parse_options=opts)


def arrow_type(pg_type: str) -> pa.DataType:
    """The Arrow type of a PostgreSQL type name as wal2json (``include-types``) or ``format_type`` spell it.

    Types without an exact Arrow counterpart (json, uuid, arrays, ranges, intervals, unbounded numeric,
    …) stay text, as PostgreSQL prints them."""
    t = pg_type.strip().lower()
    m = re.fullmatch(r"numeric\((\d+),(\d+)\)", t.replace(" ", ""))
    if m:
        p, s = int(m.group(1)), int(m.group(2))
        return pa.decimal128(p, s) if p <= 38 else pa.string()
    return {
        "smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64(), "boolean": pa.bool_(),
        "real": pa.float32(), "double precision": pa.float64(), "date": pa.date32(),
        "timestamp without time zone": pa.timestamp("us"), "timestamp with time zone": pa.timestamp("us", tz="UTC"),
        "bytea": pa.string(),
    }.get(t, pa.string())


def cast_text(values: pa.Array, typ: pa.DataType) -> pa.Array:
    """PostgreSQL's text output of one column (session TimeZone UTC, DateStyle ISO) as ``typ``.

    Values Arrow cannot hold (``infinity`` dates, BC years, NaN in a decimal) keep the column as text."""
    if typ == pa.string():
        return values
    try:
        if pa.types.is_timestamp(typ):
            plain = pc.replace_substring_regex(values, r"\+00$", "")
            return plain.cast(pa.timestamp("us")).cast(typ)
        if pa.types.is_boolean(typ):
            return pc.equal(values, "true") if not pc.any(pc.equal(values, "t")).as_py() else pc.equal(values, "t")
        return values.cast(typ)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return values


def pivot(lists: pa.Array, names: list[str], types: dict[str, pa.DataType]) -> tuple[pa.StructArray, dict]:
    """``[{name, type, value}, …]`` per row → a struct per row with ``names`` as fields.

    Returns the struct (null where the row's list is null) and, per field, a numpy mask of the rows
    whose list carried the field (wal2json leaves unchanged TOASTed values out)."""
    n = len(lists)
    flat = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists).to_numpy()
    fnames = flat.field("name")
    fvalues = flat.field("value")
    arrays, present = [], {}
    for name in names:
        sel = pc.equal(fnames, name)
        idx = np.flatnonzero(sel.to_numpy(zero_copy_only=False))
        pos = np.full(n, -1, dtype=np.int64)
        pos[parents[idx]] = idx
        has = pos >= 0
        taken = fvalues.take(pa.array(pos, mask=~has))
        arrays.append(cast_text(taken, types[name]))
        present[name] = has
    valid = lists.is_valid()
    fields = [pa.field(nm, a.type) for nm, a in zip(names, arrays, strict=True)]
    struct = pa.StructArray.from_arrays(arrays, fields=fields, mask=pc.invert(valid)) if names else \
        pa.nulls(n, pa.struct([]))
    return struct, present


def table_layout(rows: pa.Table) -> tuple[list[str], dict[str, pa.DataType], list[str]]:
    """Column names (table order as first seen), Arrow types and primary-key names of one table's rows."""
    names: list[str] = []
    types: dict[str, pa.DataType] = {}
    for col in ("columns", "identity"):
        flat = pc.list_flatten(rows.column(col).combine_chunks())
        if len(flat) == 0:
            continue
        fnames = flat.field("name")
        for u in pc.unique(fnames).to_pylist():  # a few names: one C-level scan each
            if u not in types:
                types[u] = arrow_type(flat.field("type")[pc.index(fnames, u).as_py()].as_py())
                names.append(u)
    pks = rows.column("pk").combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(pks), 0).to_numpy(zero_copy_only=False)
    first = np.flatnonzero(lengths)
    pk = [p["name"] for p in pks[int(first[0])].as_py()] if len(first) else []
    return names, types, pk


def _const(value: Any, typ: pa.DataType, n: int) -> pa.Array:
    """``n`` copies of one value, built in C (no Python object per event)."""
    return pa.repeat(pa.scalar(value, typ), n)


def source_struct(n: int, *, prefix: str, db: str, schema: str, table: str, ts_ms: pa.Array, txid: pa.Array,
                  lsn: pa.Array, snapshot: pa.Array | str) -> pa.StructArray:
    """Debezium's ``source`` block for ``n`` events of one table."""
    snap = _const(snapshot, pa.string(), n) if isinstance(snapshot, str) else snapshot
    return pa.StructArray.from_arrays(
        [*(_const(v, pa.string(), n) for v in ("headrace", "postgresql", prefix)), ts_ms, snap,
         *(_const(v, pa.string(), n) for v in (db, schema, table)), txid, lsn],
        names=["version", "connector", "name", "ts_ms", "snapshot", "db", "schema", "table", "txId", "lsn"])


def envelopes(rows: pa.Table, *, prefix: str, db: str, schema: str, table: str,
              layout: tuple[list[str], dict[str, pa.DataType], list[str]] | None = None
              ) -> tuple[pa.Table, pa.Table | None, np.ndarray]:
    """One table's stream rows (actions I/U/D/T, stream order) → (envelope values, key table, op codes:
    indexes into :data:`OPS`).

    ``before``: the old row under REPLICA IDENTITY FULL, the old key for deletes under DEFAULT/INDEX
    (other fields null), null for updates under DEFAULT/INDEX. ``after``: the new row; an unchanged
    TOASTed text column holds :data:`UNAVAILABLE` (other types: null)."""
    names, types, pk = layout or table_layout(rows)
    rows = split_key_changes(rows, names, types, pk)
    n = rows.num_rows
    action = rows.column("action").combine_chunks()
    codes = pc.index_in(action, _ACTIONS)
    ops = OPS.take(codes)
    is_ins_upd = pc.or_(pc.equal(action, "I"), pc.equal(action, "U"))
    cols = pc.if_else(is_ins_upd, rows.column("columns").combine_chunks(), pa.nulls(n, rows.schema.field("columns").type))
    after, present = pivot(cols, names, types)
    # unchanged TOAST: a text column missing from an update's new row
    is_upd = pc.equal(action, "U").to_numpy(zero_copy_only=False)
    fixed = []
    for i, name in enumerate(names):
        arr = after.field(i)
        missing = is_upd & ~present[name]
        if missing.any() and arr.type == pa.string():
            arr = pc.if_else(pa.array(missing), pa.scalar(UNAVAILABLE), arr)
        fixed.append(arr)
    if names:
        after = pa.StructArray.from_arrays(fixed, fields=list(after.type), mask=pc.invert(is_ins_upd))
    ident = rows.column("identity").combine_chunks()
    n_ident = pc.fill_null(pc.list_value_length(ident), 0)
    # before: deletes always (old key, or the whole old row under FULL); updates only when wal2json
    # carried more than the key (REPLICA IDENTITY FULL)
    full_upd = pc.and_(pc.equal(action, "U"), pc.greater(n_ident, len(pk) if pk else 0))
    want_before = pc.or_(pc.equal(action, "D"), full_upd)
    before_lists = pc.if_else(want_before, ident, pa.nulls(n, ident.type))
    before, _ = pivot(before_lists, names, types)
    ts = _ts_ms(rows.column("timestamp").combine_chunks())
    src = source_struct(n, prefix=prefix, db=db, schema=schema, table=table, ts_ms=ts,
                        txid=rows.column("xid").combine_chunks(), lsn=rows.column("_l").combine_chunks(), snapshot="false")
    now = _const(int(time.time() * 1000), pa.int64(), n)
    value = pa.table({"before": before, "after": after, "source": src, "op": ops, "ts_ms": now})
    key = None
    if pk:
        ident_key, _ = pivot(ident, pk, types)
        key = pa.table({k: pc.coalesce(after.field(names.index(k)), ident_key.field(i)) for i, k in enumerate(pk)})
    return value, key, codes.to_numpy(zero_copy_only=False).astype(np.int8)


def split_key_changes(rows: pa.Table, names: list[str], types: dict[str, pa.DataType], pk: list[str]) -> pa.Table:
    """An update that changes the primary key becomes a delete of the old key then an insert of the new
    one, as Debezium emits it (so keyed consumers and compacted topics drop the old key)."""
    if not pk:
        return rows
    action = rows.column("action").combine_chunks()
    is_upd = pc.equal(action, "U")
    if not pc.any(is_upd).as_py():
        return rows
    # the key columns only (text, as wal2json wrote them: equal text is an equal key)
    text = {k: pa.string() for k in pk}
    new, _ = pivot(pc.if_else(is_upd, rows.column("columns").combine_chunks(),
                              pa.nulls(rows.num_rows, rows.schema.field("columns").type)), pk, text)
    old, _ = pivot(pc.if_else(is_upd, rows.column("identity").combine_chunks(),
                              pa.nulls(rows.num_rows, rows.schema.field("identity").type)), pk, text)
    changed = np.zeros(rows.num_rows, dtype=bool)
    for i, _k in enumerate(pk):
        a, b = new.field(i), old.field(i)
        diff = pc.fill_null(pc.not_equal(a, b), False).to_numpy(zero_copy_only=False)
        changed |= diff & is_upd.to_numpy(zero_copy_only=False)
    if not changed.any():
        return rows
    idx = np.repeat(np.arange(rows.num_rows), 1 + changed.astype(np.int64))
    first = np.concatenate([[True], idx[1:] != idx[:-1]])
    out = rows.take(pa.array(idx))
    act = pc.index_in(out.column("action"), _ACTIONS).to_numpy(zero_copy_only=False).astype(np.int8)
    split = changed[idx]
    act[split & first] = 2  # D
    act[split & ~first] = 0  # I
    return out.set_column(out.schema.get_field_index("action"), "action", _ACTIONS.take(pa.array(act)))


def _ts_ms(text: pa.Array) -> pa.Array:
    """wal2json's commit timestamps (``2026-12-07 04:38:25.648377+00``, session in UTC) as epoch ms."""
    plain = pc.replace_substring_regex(text, r"\+00$", "")
    try:
        return pc.divide(plain.cast(pa.timestamp("us")).cast(pa.int64()), 1000)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.nulls(len(text), pa.int64())


def snapshot_envelopes(after: pa.StructArray, pk: list[str], *, prefix: str, db: str, schema: str, table: str,
                       lsn: int, last: bool, marker: str = "true") -> tuple[pa.Table, pa.Table | None]:
    """Snapshot reads (op ``r``) of rows already typed as a struct; ``source.snapshot`` is ``marker``
    (``true``; ``incremental`` for incremental snapshots), the last event of a snapshot says ``last``."""
    n = len(after)
    snap = _const(marker, pa.string(), n)
    if last and n:
        snap = pa.concat_arrays([snap.slice(0, n - 1), pa.array(["last"])])
    now = _const(int(time.time() * 1000), pa.int64(), n)
    src = source_struct(n, prefix=prefix, db=db, schema=schema, table=table, ts_ms=now,
                        txid=pa.nulls(n, pa.int64()), lsn=_const(lsn, pa.int64(), n), snapshot=snap)
    value = pa.table({"before": pa.nulls(n, after.type), "after": after, "source": src,
                      "op": _const("r", pa.string(), n), "ts_ms": now})
    key = pa.table({k: after.field(k) for k in pk}) if pk else None
    return value, key
