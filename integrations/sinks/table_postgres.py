"""PostgreSQL backend of the table sink: COPY (CSV written by Arrow's C++ writer) into a temporary
staging table, then one ``INSERT … ON CONFLICT`` / ``UPDATE … FROM`` / ``DELETE … USING``."""

from __future__ import annotations

import io

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from integrations.config import TableSinkConfig
from integrations.sinks.table import TableBackend, TableSinkError, TableWrite, fenced, merge_sql, quote


def pg_type(t: pa.DataType) -> str:
    """The PostgreSQL column type for an Arrow type."""
    if pa.types.is_null(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        return "text"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t):
        return "smallint"
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return "integer"
    if pa.types.is_integer(t):
        return "bigint"
    if pa.types.is_float32(t):
        return "real"
    if pa.types.is_floating(t):
        return "double precision"
    if pa.types.is_decimal(t):
        return f"numeric({t.precision},{t.scale})"
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_time(t):
        return "time"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "bytea"
    if pa.types.is_interval(t):
        return "interval"
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and _array_item_ok(t.value_type):
        return f"{pg_type(t.value_type)}[]"
    raise TableSinkError(f"Arrow type {t} has no PostgreSQL column mapping in the table sink (supported: "
                         "numbers, decimals, text, bool, bytea, date/time/timestamps, interval, and one-level "
                         "arrays of those); drop or cast the field with a transform")


def _array_item_ok(t: pa.DataType) -> bool:
    """Item types the sink writes into PostgreSQL arrays (one level; no nested lists)."""
    return (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_boolean(t)
            or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t) or _temporal(t)
            or pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_interval(t))


def _temporal(t: pa.DataType) -> bool:
    return pa.types.is_date(t) or pa.types.is_time(t) or pa.types.is_timestamp(t)


def _bytea_text(arr: pa.Array) -> pa.Array:
    """bytea input text ``\\x<hex>`` for binary values, vectorised with numpy."""
    arr = arr.cast(pa.binary()) if not pa.types.is_binary(arr.type) else arr
    if arr.offset:
        arr = pa.concat_arrays([arr])
    n = len(arr)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=n + 1)
    data = arr.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8, count=int(offsets[-1])) if data is not None else np.zeros(0, np.uint8)
    hexed = _HEX[raw[offsets[0]:]].tobytes()
    hex_arr = pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(((offsets - offsets[0]) * 2).tobytes()),
                                                     pa.py_buffer(hexed)])
    out = pc.binary_join_element_wise(pa.scalar("\\x"), hex_arr, "")
    return pc.if_else(arr.is_valid(), out, pa.scalar(None, pa.string()))


_HEX = np.array([f"{i:02x}".encode() for i in range(256)], dtype="S2")


_MDN = np.dtype([("months", "<i4"), ("days", "<i4"), ("nanoseconds", "<i8")])


def _interval_text(arr: pa.Array) -> pa.Array:
    """Intervals as ``<m> months <d> days <us> microseconds``, which PostgreSQL reads exactly (its
    ISO-8601 input parses fractional seconds as a double and can lose a microsecond on long spans);
    sub-microsecond parts are truncated toward zero (PostgreSQL keeps microseconds). Vectorised."""
    if arr.offset:
        arr = pa.concat_arrays([arr])
    n = len(arr)
    rec = np.frombuffer(arr.buffers()[1], dtype=_MDN, count=n) if n else np.zeros(0, _MDN)
    ns = rec["nanoseconds"]
    micros = np.sign(ns) * (np.abs(ns) // 1000)
    out = pc.binary_join_element_wise(
        pa.array(rec["months"]).cast(pa.string()), pa.scalar(" months "),
        pa.array(rec["days"]).cast(pa.string()), pa.scalar(" days "),
        pa.array(micros).cast(pa.string()), pa.scalar(" microseconds"), "")
    return pc.if_else(arr.is_valid(), out, pa.scalar(None, pa.string()))


def _array_item_text(values: pa.Array) -> pa.Array:
    """Array elements as PostgreSQL array-literal items: NULL, numbers and bools bare (NaN and
    Infinity spelled as PostgreSQL reads them); text, bytea, intervals, dates and times as their
    input text double-quoted with ``\\`` and ``"`` escaped."""
    t = values.type
    quoted = None
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        quoted = values
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t):
        quoted = _bytea_text(values)
    elif pa.types.is_interval(t):
        quoted = _interval_text(values)
    elif _temporal(t):
        quoted = pc.cast(values, pa.string())
    if quoted is not None:
        text = pc.replace_substring(pc.replace_substring(quoted, "\\", "\\\\"), '"', '\\"')
        text = pc.binary_join_element_wise(pa.scalar('"'), text, pa.scalar('"'), "")
    elif pa.types.is_null(t):
        text = pa.nulls(len(values), pa.string())
    else:
        text = pc.cast(values, pa.string())
        if pa.types.is_floating(t):
            for arrow, pg in (("nan", "NaN"), ("inf", "Infinity"), ("-inf", "-Infinity")):
                text = pc.if_else(pc.equal(text, arrow), pa.scalar(pg), text)
    return pc.fill_null(text, "NULL")


def _array_text(arr: pa.Array) -> pa.Array:
    """One-level lists as PostgreSQL array literals ``{1,NULL,3}`` / ``{"a","b c"}``, vectorised."""
    arr = arr.cast(pa.list_(arr.type.value_type)) if pa.types.is_large_list(arr.type) else arr
    if arr.offset:
        arr = pa.concat_arrays([arr])
    items = _array_item_text(arr.values)
    joined = pc.binary_join(pa.ListArray.from_arrays(arr.offsets, items), ",")
    out = pc.binary_join_element_wise(pa.scalar("{"), joined, pa.scalar("}"), "")
    return pc.if_else(arr.is_valid(), out, pa.scalar(None, pa.string()))


def pg_text(table: pa.Table) -> pa.Table:
    """Columns the CSV writer cannot write, as PostgreSQL's input text: bytea as ``\\x<hex>``,
    intervals as months, days and microseconds (exact), lists as array literals. Other columns are
    untouched."""
    for i, f in enumerate(table.schema):
        t = f.type
        if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
            conv = _bytea_text
        elif pa.types.is_interval(t):
            conv = _interval_text
        elif pa.types.is_list(t) or pa.types.is_large_list(t):
            conv = _array_text
        else:
            continue
        col = table.column(i)
        chunks = [conv(c) for c in col.chunks]
        table = table.set_column(i, pa.field(f.name, pa.string()), pa.chunked_array(chunks, type=pa.string()))
    return table


def _csv(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pcsv.write_csv(pg_text(table), sink,
                   write_options=pcsv.WriteOptions(include_header=False, quoting_style="needed"))
    return sink.getvalue()


#: PostgreSQL keeps only the first NAMEDATALEN - 1 bytes of an identifier, silently
MAX_IDENTIFIER_BYTES = 63


def checked_identifier(name: str, what: str) -> str:
    """``name`` when PostgreSQL keeps it whole; else a clear error (it would be truncated silently,
    and the sink would no longer find the table or column it wrote)."""
    size = len(name.encode())
    if size > MAX_IDENTIFIER_BYTES:
        raise TableSinkError(
            f"PostgreSQL {what} name {name!r} is {size} bytes; PostgreSQL keeps only the first "
            f"{MAX_IDENTIFIER_BYTES}, so the table sink refuses it. Shorten it (table_name_format, a "
            "RegexRouter, or a ReplaceField rename).")
    return name


class PostgresBackend(TableBackend):
    """``postgresql://user:${env:PGPASSWORD}@host:port/db`` through psycopg 3."""

    def __init__(self, url: str, config: TableSinkConfig) -> None:
        url = url.replace("postgresql+psycopg2://", "postgresql://").replace("postgresql+psycopg://", "postgresql://")
        self.conn = psycopg.connect(url, autocommit=False)
        self.connector = config.name
        self.schema = config.db_schema
        self.offsets = self._name(config.offsets_table)
        self._create_if_missing(f"CREATE TABLE IF NOT EXISTS {self.offsets} (connector text, topic text, \"partition\" "
                                "integer, next_offset bigint NOT NULL, PRIMARY KEY (connector, topic, \"partition\"))")

    def _create_if_missing(self, sql: str) -> None:
        """Run a ``CREATE TABLE IF NOT EXISTS``; another run creating the same table at the same moment is
        not an error (PostgreSQL's IF NOT EXISTS can still trip over the catalog's unique index then)."""
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql)
            self.conn.commit()
        except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
            self.conn.rollback()

    def _name(self, table: str) -> str:
        return f"{quote(self.schema)}.{quote(table)}" if self.schema else quote(table)

    def columns(self, table: str) -> dict[str, str] | None:
        checked_identifier(table, "table")
        with self.conn.cursor() as cur:
            cur.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s "
                        "AND table_schema = coalesce(%s, current_schema()) ORDER BY ordinal_position",
                        [table, self.schema])
            rows = cur.fetchall()
        self.conn.commit()
        return dict(rows) if rows else None

    def create(self, table: str, schema: pa.Schema, pk: list[str]) -> None:
        checked_identifier(table, "table")
        for f in schema:
            checked_identifier(f.name, "column")
        cols = [f"{quote(f.name)} {pg_type(f.type)}" + (" NOT NULL" if f.name in pk else "") for f in schema]
        if pk:
            cols.append(f"PRIMARY KEY ({', '.join(quote(c) for c in pk)})")
        self._create_if_missing(f"CREATE TABLE IF NOT EXISTS {self._name(table)} ({', '.join(cols)})")

    def add_columns(self, table: str, fields: list[pa.Field]) -> None:
        with self.conn.cursor() as cur:
            for f in fields:
                checked_identifier(f.name, "column")
                cur.execute(f"ALTER TABLE {self._name(table)} ADD COLUMN {quote(f.name)} {pg_type(f.type)}")
        self.conn.commit()

    def _stage(self, cur: psycopg.Cursor, t: str, name: str, data: pa.Table) -> None:
        cols = ", ".join(quote(c) for c in data.column_names)
        cur.execute(f"CREATE TEMP TABLE {name} ON COMMIT DROP AS SELECT {cols} FROM {t} WITH NO DATA")
        with cur.copy(f"COPY {name} ({cols}) FROM STDIN (FORMAT csv)") as copy:
            for batch in data.to_batches(max_chunksize=200_000):
                copy.write(_csv(pa.Table.from_batches([batch])))

    def apply(self, writes: list[TableWrite], mode: str, offset: tuple[str, int, int], expected: int | None) -> None:
        table = self.offsets
        try:
            with self.conn.cursor() as cur:
                # the offset first: a concurrent run of the connector waits on this row, then finds it moved
                if not self._store_offset(cur, offset, expected):
                    self.conn.rollback()
                    raise fenced(self.connector, offset, expected, self._current(offset))
                for k, w in enumerate(writes):  # staging tables live until the commit: one name per write
                    table, t = w.table, self._name(w.table)
                    if w.truncate:  # DELETE, not TRUNCATE: no ACCESS EXCLUSIVE lock on readers of the replica
                        cur.execute(f"DELETE FROM {t}")
                    if w.deletes is not None:
                        self._stage(cur, t, f"_hr_del{k}", w.deletes)
                        cond = " AND ".join(f"{t}.{quote(c)} = d.{quote(c)}" for c in w.pk)
                        cur.execute(f"DELETE FROM {t} USING _hr_del{k} d WHERE {cond}")
                    if w.rows is not None:
                        self._stage(cur, t, f"_hr_rows{k}", w.rows)
                        if sql := merge_sql(t, f"_hr_rows{k}", w.rows.column_names, w.pk, mode):
                            cur.execute(sql)
            self.conn.commit()
        except psycopg.Error as e:
            self.conn.rollback()
            raise TableSinkError(f"writing to table {table!r} failed (auto_evolve only adds columns): {e}") from e

    def _store_offset(self, cur: psycopg.Cursor, offset: tuple[str, int, int], expected: int | None) -> bool:
        """Store the next offset where it still is ``expected`` (None: where no row exists); False if not."""
        topic, partition, nxt = offset
        if expected is None:
            cur.execute(f"INSERT INTO {self.offsets} VALUES (%s, %s, %s, %s) ON CONFLICT (connector, topic, "
                        "\"partition\") DO NOTHING", [self.connector, topic, partition, nxt])
        else:
            cur.execute(f"UPDATE {self.offsets} SET next_offset = %s WHERE connector = %s AND topic = %s AND "
                        "\"partition\" = %s AND next_offset = %s", [nxt, self.connector, topic, partition, expected])
        return cur.rowcount == 1

    def _current(self, offset: tuple[str, int, int]) -> int | None:
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT next_offset FROM {self.offsets} WHERE connector = %s AND topic = %s AND "
                        "\"partition\" = %s", [self.connector, offset[0], offset[1]])
            row = cur.fetchone()
        self.conn.commit()
        return None if row is None else row[0]

    def stored_offsets(self) -> dict[tuple[str, int], int]:
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT topic, \"partition\", next_offset FROM {self.offsets} WHERE connector = %s",
                        [self.connector])
            rows = cur.fetchall()
        self.conn.commit()
        return {(t, p): o for t, p, o in rows}

    def close(self) -> None:
        self.conn.close()
