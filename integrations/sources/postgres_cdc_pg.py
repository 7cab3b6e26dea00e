"""PostgreSQL side of the CDC source: the slot, the publication, the catalog, wal2json calls, snapshot chunks.

Every identifier (slot, publication, schema, table, column) goes through ``psycopg.sql`` quoting. The
session runs with TimeZone UTC and DateStyle ISO, so wal2json and the snapshot print values alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.json as pj
from psycopg import sql

from integrations.errors import HeadraceError
from integrations.sources.postgres_cdc_decode import arrow_type, cast_text


class CdcError(HeadraceError):
    """The change stream cannot go on safely (lost slot or position, wrong plugin, missing privileges)."""


def lsn_text(v: int) -> str:
    """An LSN as PostgreSQL prints it (``16/B374D848``)."""
    return f"{v >> 32:X}/{v & 0xFFFFFFFF:X}"


def lsn_int(text: str) -> int:
    """``16/B374D848`` → its integer position."""
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


@dataclass
class SlotInfo:
    """A row of ``pg_replication_slots``."""

    plugin: str
    database: str
    confirmed: int
    wal_status: str | None
    active_pid: int | None


@dataclass
class TableInfo:
    """A captured table: ``schema.table``, its columns (name → PostgreSQL type) and primary key."""

    schema: str
    name: str
    columns: dict[str, str]
    pk: list[str]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def arrow_types(self) -> dict[str, pa.DataType]:
        return {c: arrow_type(t) for c, t in self.columns.items()}


_SESSION = ("SET TimeZone = 'UTC'", "SET DateStyle = 'ISO, YMD'", "SET IntervalStyle = 'iso_8601'")


def _libpq_url(url: str) -> str:
    """A SQLAlchemy-style URL (``postgresql+psycopg://``) as libpq reads it."""
    return re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", url)


def connect(url: str) -> psycopg.Connection:
    """An autocommit session in UTC / ISO dates (what wal2json's and the snapshot's text depend on)."""
    conn = psycopg.connect(_libpq_url(url), autocommit=True, application_name="headrace-cdc")
    conn.execute("; ".join(_SESSION))
    return conn


def connect_reader(url: str) -> Any:
    """An ADBC session (binary COPY into Arrow) with the same settings as :func:`connect`: the snapshot's
    bulk reads go through it."""
    import adbc_driver_postgresql.dbapi as adbc

    conn = adbc.connect(_libpq_url(url), autocommit=True)
    with conn.cursor() as cur:
        for stmt in (*_SESSION, "SET client_encoding = 'UTF8'"):  # Arrow strings are UTF-8 whatever the database's
            cur.execute(stmt)
    return conn


def slot_info(conn: psycopg.Connection, slot: str) -> SlotInfo | None:
    """The slot's plugin, database, confirmed position, WAL status and active backend (None: no such slot)."""
    row = conn.execute(
        "SELECT plugin, database, (confirmed_flush_lsn - '0/0'::pg_lsn)::bigint, wal_status, active_pid "
        "FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
    return None if row is None else SlotInfo(row[0] or "", row[1] or "", int(row[2] or 0), row[3], row[4])


def create_slot(conn: psycopg.Connection, slot: str) -> int:
    """Create a wal2json logical slot; return its consistent point."""
    row = conn.execute("SELECT (lsn - '0/0'::pg_lsn)::bigint FROM pg_create_logical_replication_slot(%s, 'wal2json')",
                       (slot,)).fetchone()
    return int(row[0])


def copy_slot_temporary(conn: psycopg.Connection, slot: str, copy: str) -> None:
    """A temporary copy of ``slot`` (same plugin and positions), dropped when ``conn``'s session ends."""
    conn.execute("SELECT pg_copy_logical_replication_slot(%s, %s, true)", (slot, copy))


def drop_slot(conn: psycopg.Connection, slot: str) -> None:
    """Drop the slot (its WAL is released and its position lost)."""
    conn.execute("SELECT pg_drop_replication_slot(%s) FROM pg_replication_slots WHERE slot_name = %s", (slot, slot))


def advance_slot(conn: psycopg.Connection, slot: str, lsn: int) -> None:
    """Move the slot's confirmed position to ``lsn`` (what the offsets topic holds as stored)."""
    conn.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (slot, lsn_text(lsn)))


def current_lsn(conn: psycopg.Connection) -> int:
    """The server's WAL flush position: logical decoding reads up to it, so a run's bound never passes
    a commit it could not decode (with synchronous_commit off, the write position can be ahead)."""
    return int(conn.execute("SELECT (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::bigint").fetchone()[0])


def list_tables(conn: psycopg.Connection, include: list[str], exclude: list[str],
                publication: str | None = None) -> list[TableInfo]:
    """Ordinary and partitioned tables matching the regexes (``schema.table``, full match), with columns and key.

    With ``publication`` (an existing one, under ``publication_autocreate: disabled``) only its tables."""
    q = """
        SELECT n.nspname, c.relname, c.oid,
               array_agg(a.attname ORDER BY a.attnum), array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%'
        GROUP BY n.nspname, c.relname, c.oid ORDER BY n.nspname, c.relname"""
    rows = conn.execute(q).fetchall()
    published = None
    if publication is not None:
        published = {(r[0], r[1]) for r in conn.execute(
            "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (publication,)).fetchall()}
    inc = [re.compile(r) for r in include]
    exc = [re.compile(r) for r in exclude]
    out = []
    for schema, name, oid, cols, types in rows:
        qual = f"{schema}.{name}"
        if inc and not any(r.fullmatch(qual) for r in inc):
            continue
        if any(r.fullmatch(qual) for r in exc) or (published is not None and (schema, name) not in published):
            continue
        pk = [r[0] for r in conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s AND i.indisprimary "
            "ORDER BY array_position(i.indkey::int2[], a.attnum)", (oid,)).fetchall()]
        out.append(TableInfo(schema, name, dict(zip(cols, types, strict=True)), pk))
    return out


def sync_publication(conn: psycopg.Connection, name: str, mode: str, tables: list[TableInfo]) -> None:
    """Create the publication (``filtered``: FOR TABLE the captured tables, kept in step; ``all_tables``)."""
    exists = conn.execute("SELECT puballtables FROM pg_publication WHERE pubname = %s", (name,)).fetchone()
    ident = sql.Identifier(name)
    targets = sql.SQL(", ").join(sql.Identifier(t.schema, t.name) for t in tables)
    try:
        if mode == "all_tables" and exists is None:
            conn.execute(sql.SQL("CREATE PUBLICATION {} FOR ALL TABLES").format(ident))
        elif mode == "filtered" and tables:
            if exists is None:
                conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(ident, targets))
            elif not exists[0]:
                have = {(r[0], r[1]) for r in conn.execute(
                    "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (name,)).fetchall()}
                if have != {(t.schema, t.name) for t in tables}:
                    conn.execute(sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(ident, targets))
    except psycopg.errors.InsufficientPrivilege as e:
        raise CdcError(f"publication {name!r} cannot be created or changed ({e.diag.message_primary}); create it "
                       "as the tables' owner, or set publication_autocreate: disabled") from None


def _add_tables(tables: list[TableInfo]) -> str:
    """wal2json's ``add-tables`` list (``\\`` escapes its separators inside names)."""
    def esc(s: str) -> str:
        return re.sub(r"([,.*\\ ])", r"\\\1", s)

    return ",".join(f"{esc(t.schema)}.{esc(t.name)}" for t in tables) or "pg_catalog.headrace_no_table"


def peek(conn: psycopg.Connection, slot: str, upto: int, nchanges: int, tables: list[TableInfo],
         consume: bool = False) -> bytearray:
    """wal2json v2 documents pending in the slot up to ``upto`` (about ``nchanges`` rows, whole transactions),
    one per line, each with ``"_l"``: the LSN the server reports for it. The slot does not move, unless
    ``consume`` (``pg_logical_slot_get_changes``: for the reader's temporary copy of the slot only).

    The lines are streamed with ``COPY … TO STDOUT`` (no per-row client work, no size limit on a
    transaction); COPY's text format doubles each backslash, which is undone here. wal2json's JSON
    holds no raw tab, newline or carriage return (JSON escapes them), so nothing else is escaped."""
    opts = ["format-version", "2", "include-xids", "1", "include-timestamp", "1", "include-types", "0",
            "include-transaction", "1", "include-lsn", "0", "add-tables", _add_tables(tables)]
    q = sql.SQL("COPY (SELECT '{{\"_l\":' || (lsn - '0/0'::pg_lsn)::text || ',' || substr(data, 2) "
                "FROM {}({}, {}::pg_lsn, {}, {})) TO STDOUT"
                ).format(sql.Identifier("pg_logical_slot_get_changes" if consume else "pg_logical_slot_peek_changes"),
                         sql.Literal(slot), sql.Literal(lsn_text(upto)), sql.Literal(nchanges),
                         sql.SQL(", ").join(map(sql.Literal, opts)))
    return copy_lines(conn, q)


def copy_lines(conn: psycopg.Connection, q: sql.Composable) -> bytearray:
    """The one text column of ``COPY (…) TO STDOUT`` as newline-separated lines (no trailing newline),
    COPY's doubled backslashes undone: for JSON lines only (JSON holds no raw tab or newline)."""
    out = bytearray()
    with conn.cursor() as cur, cur.copy(q) as copy:
        for block in copy:
            out += block
    if out.endswith(b"\n"):
        del out[-1]  # in place: no copy of the (often 100 MB) buffer
    return out.replace(b"\\\\", b"\\") if b"\\" in out else out


def _as_text(column: str, pg_type: str) -> sql.Composable:
    """A column as wal2json prints it: the type's output function (``char(n)`` keeps its padding, which
    a cast to text drops), ``bytea`` as hex without ``\\x``."""
    ident = sql.SQL("src.{}").format(sql.Identifier(column))
    if pg_type == "bytea":
        return sql.SQL("encode({}, 'hex')").format(ident)
    if pg_type.startswith("character(") or pg_type == "character":
        return sql.SQL("CASE WHEN {} IS NULL THEN NULL ELSE concat({}) END").format(ident, ident)
    return sql.SQL("{}::text").format(ident)


def read_chunk(conn: psycopg.Connection, table: TableInfo, after: list[str] | None, limit: int,
               condition: str | None = None, reader: Any = None) -> tuple[pa.StructArray, list[str] | None]:
    """The next ``limit`` rows of a snapshot in key order (primary key; ``ctid`` without one), typed,
    and the text of the last row's key (None: no rows).

    Every column is read as PostgreSQL's text output (what wal2json prints), then cast in Arrow. With
    ``reader`` (:func:`connect_reader`) the text columns come through ADBC's binary COPY, about three
    times faster than ``row_to_json`` lines through psycopg; the values are the same text either way.

    ``condition`` (an ``execute-snapshot`` signal's filter, SQL over the table's columns) narrows the
    rows; it runs through psycopg in a READ ONLY transaction, one statement (the extended protocol), so
    a filter cannot write or run a second command."""
    keys = table.pk or ["ctid"]
    names = list(table.columns)
    knames = [f"__hr_k{i}" for i in range(len(keys))]
    select = sql.SQL(", ").join(
        [sql.SQL("{} AS {}").format(_as_text(c, table.columns[c]), sql.Identifier(c)) for c in names]
        + [sql.SQL("src.{}::text AS {}").format(sql.Identifier(k), sql.Identifier(kn)) for k, kn in zip(keys, knames,
                                                                                                  strict=True)])
    # qualified: the output columns (text) carry the same names, and ORDER BY would pick those
    order = sql.SQL(", ").join(sql.SQL("src.{}").format(sql.Identifier(k)) for k in keys)
    conds = []
    if after is not None:
        lits = sql.SQL(", ").join(sql.SQL("{}::tid").format(sql.Literal(v)) if k == "ctid" else sql.Literal(v)
                                  for k, v in zip(keys, after, strict=True))
        conds.append(sql.SQL("({}) > ({})").format(order, lits))
    if condition:
        conds.append(sql.SQL("(") + sql.SQL(condition) + sql.SQL(")"))  # an argument of format: taken as is
    where = sql.SQL("WHERE ") + sql.SQL(" AND ").join(conds) if conds else sql.SQL("")
    types = table.arrow_types()
    if reader is not None and not condition:
        q = sql.SQL("SELECT {} FROM {} AS src {} ORDER BY {} LIMIT {}").format(
            select, sql.Identifier(table.schema, table.name), where, order, sql.Literal(limit))
        with reader.cursor() as cur:
            cur.execute(q.as_string(conn))  # literals only: psycopg composed and quoted every part
            got = cur.fetch_arrow_table()
        return _typed(got, names, knames, types)
    q = sql.SQL("COPY (SELECT row_to_json(y)::text FROM (SELECT {} FROM {} AS src {} ORDER BY {} LIMIT {}) y) "
                "TO STDOUT").format(select, sql.Identifier(table.schema, table.name), where, order, sql.Literal(limit))
    if condition:
        try:
            with conn.transaction():
                conn.execute("SET TRANSACTION READ ONLY")
                buf = copy_lines(conn, q)
        except psycopg.Error as e:
            raise CdcError(f"snapshot of {table.qualified} with filter {condition!r} failed: "
                           f"{str(e).splitlines()[0]}") from None
    else:
        buf = copy_lines(conn, q)
    if not buf:
        return _typed(None, names, knames, types)
    schema = pa.schema([pa.field(c, pa.string()) for c in names + knames])
    parsed = pj.read_json(pa.BufferReader(pa.py_buffer(buf)), read_options=pj.ReadOptions(block_size=1 << 26),
                          parse_options=pj.ParseOptions(explicit_schema=schema))
    return _typed(parsed, names, knames, types)


def _typed(parsed: pa.Table | None, names: list[str], knames: list[str],
           types: dict[str, pa.DataType]) -> tuple[pa.StructArray, list[str] | None]:
    """Text columns of a chunk → the typed struct of its rows and the text of its last key."""
    if parsed is None or parsed.num_rows == 0:
        return pa.array([], pa.struct([pa.field(c, types[c]) for c in names])), None
    arrays = [cast_text(parsed.column(c).combine_chunks().cast(pa.string()), types[c]) for c in names]
    struct = pa.StructArray.from_arrays(arrays, fields=[pa.field(c, a.type) for c, a in zip(names, arrays,
                                                                                            strict=True)])
    last = [parsed.column(k)[-1].as_py() for k in knames]
    return struct, last
