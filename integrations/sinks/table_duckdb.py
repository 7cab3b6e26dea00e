"""DuckDB backend of the table sink: batches are scanned straight from Arrow, never row by row."""

from __future__ import annotations

import contextlib

import duckdb
import pyarrow as pa

from integrations.config import TableSinkConfig, resolve_path
from integrations.sinks.table import TableBackend, TableSinkError, TableWrite, fenced, merge_sql, quote


def _duck_type(t: pa.DataType, con: duckdb.DuckDBPyConnection) -> str:
    if pa.types.is_null(t):
        return "VARCHAR"
    con.register("_hr_type", pa.table({"c": pa.array([], t)}))
    try:
        return con.sql("DESCRIBE SELECT * FROM _hr_type").fetchall()[0][1]
    finally:
        con.unregister("_hr_type")


class DuckDBBackend(TableBackend):
    """``duckdb:///<file>`` (relative to $HEADRACE_HOME) or ``duckdb:///:memory:``."""

    def __init__(self, url: str, config: TableSinkConfig) -> None:
        path = url.split("://", 1)[1].removeprefix("/")
        if path != ":memory:":
            p = resolve_path(path)
            p.parent.mkdir(parents=True, exist_ok=True)
            path = str(p)
        self.con = duckdb.connect(path)
        self.connector = config.name
        self.schema = config.db_schema
        self.offsets = self._name(config.offsets_table)
        self.con.execute(
            f"CREATE TABLE IF NOT EXISTS {self.offsets} (connector VARCHAR, topic VARCHAR, \"partition\" INTEGER, "
            "next_offset BIGINT NOT NULL, PRIMARY KEY (connector, topic, \"partition\"))")

    def _name(self, table: str) -> str:
        return f"{quote(self.schema)}.{quote(table)}" if self.schema else quote(table)

    def columns(self, table: str) -> dict[str, str] | None:
        rows = self.con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
            "AND table_schema = coalesce(?, current_schema()) ORDER BY ordinal_position", [table, self.schema]
        ).fetchall()
        return dict(rows) if rows else None

    def create(self, table: str, schema: pa.Schema, pk: list[str]) -> None:
        cols = [f"{quote(f.name)} {_duck_type(f.type, self.con)}" + (" NOT NULL" if f.name in pk else "")
                for f in schema]
        if pk:
            cols.append(f"PRIMARY KEY ({', '.join(quote(c) for c in pk)})")
        self.con.execute(f"CREATE TABLE IF NOT EXISTS {self._name(table)} ({', '.join(cols)})")

    def add_columns(self, table: str, fields: list[pa.Field]) -> None:
        for f in fields:
            self.con.execute(f"ALTER TABLE {self._name(table)} ADD COLUMN {quote(f.name)} {_duck_type(f.type, self.con)}")

    def apply(self, writes: list[TableWrite], mode: str, offset: tuple[str, int, int], expected: int | None) -> None:
        con = self.con
        table = self.offsets
        con.execute("BEGIN")
        try:
            topic, partition, nxt = offset
            if expected is None:  # the offset first: a run that lost the race writes nothing
                stored = con.execute(f"INSERT INTO {self.offsets} VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                     [self.connector, topic, partition, nxt]).fetchone()[0]
            else:
                stored = con.execute(f"UPDATE {self.offsets} SET next_offset = ? WHERE connector = ? AND topic = ? "
                                     "AND \"partition\" = ? AND next_offset = ?",
                                     [nxt, self.connector, topic, partition, expected]).fetchone()[0]
            if stored != 1:
                con.execute("ROLLBACK")
                raise fenced(self.connector, offset, expected, self._current(offset))
            for w in writes:
                table, t = w.table, self._name(w.table)
                if w.truncate:
                    con.execute(f"DELETE FROM {t}")
                if w.deletes is not None:
                    con.register("_hr_del", w.deletes)
                    cond = " AND ".join(f"{t}.{quote(c)} = d.{quote(c)}" for c in w.pk)
                    con.execute(f"DELETE FROM {t} USING _hr_del d WHERE {cond}")
                    con.unregister("_hr_del")
                if w.rows is not None:
                    con.register("_hr_rows", w.rows)
                    if sql := merge_sql(t, "_hr_rows", w.rows.column_names, w.pk, mode):
                        con.execute(sql)
                    con.unregister("_hr_rows")
            con.execute("COMMIT")
        except duckdb.TransactionException as e:  # a concurrent transaction (same process) updated the offset
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            if "onflict" not in str(e):
                raise TableSinkError(f"writing to table {table!r} failed: {e}") from e
            raise fenced(self.connector, offset, expected, self._current(offset)) from None
        except duckdb.Error as e:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise TableSinkError(f"writing to table {table!r} failed (auto_evolve only adds columns): {e}") from e

    def _current(self, offset: tuple[str, int, int]) -> int | None:
        row = self.con.execute(f"SELECT next_offset FROM {self.offsets} WHERE connector = ? AND topic = ? AND "
                               "\"partition\" = ?", [self.connector, offset[0], offset[1]]).fetchone()
        return None if row is None else row[0]

    def stored_offsets(self) -> dict[tuple[str, int], int]:
        rows = self.con.execute(f"SELECT topic, \"partition\", next_offset FROM {self.offsets} WHERE connector = ?",
                                [self.connector]).fetchall()
        return {(t, p): o for t, p, o in rows}

    def close(self) -> None:
        self.con.close()
