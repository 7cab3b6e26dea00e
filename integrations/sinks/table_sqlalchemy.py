"""Generic SQLAlchemy backend of the table sink (SQLite, MySQL, ...): batched executemany.

Upsert is portable: delete the batch's keys, then insert, in the same transaction.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from integrations.config import TableSinkConfig
from integrations.converters.json import interval_iso
from integrations.sinks.table import TableBackend, TableSinkError, TableWrite, fenced


class _Moved(Exception):  # noqa: N818 (control flow within apply)
    """The conditional offset update found another run's offset."""

#: SQLite keeps NUMERIC values as 8-byte floats: exact only up to 15 significant digits
SQLITE_MAX_DECIMAL_DIGITS = 15


def sa_type(t: pa.DataType, dialect: str = "") -> sa.types.TypeEngine:
    """The SQLAlchemy column type for an Arrow type (``dialect``: the target's, for its limits)."""
    if pa.types.is_null(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        return sa.Text()
    if pa.types.is_boolean(t):
        return sa.Boolean()
    if pa.types.is_integer(t):
        return sa.BigInteger()
    if pa.types.is_floating(t):
        return sa.Float()
    if pa.types.is_decimal(t):
        if dialect == "sqlite" and t.precision > SQLITE_MAX_DECIMAL_DIGITS:
            raise TableSinkError(
                f"Arrow type {t} would lose digits in SQLite, which keeps NUMERIC values as 8-byte floats (exact "
                f"to {SQLITE_MAX_DECIMAL_DIGITS} digits); cast the field to string with a Cast transform, or write "
                "to PostgreSQL or DuckDB")
        return sa.Numeric(t.precision, t.scale)
    if pa.types.is_timestamp(t):
        return sa.DateTime(timezone=t.tz is not None)
    if pa.types.is_date(t):
        return sa.Date()
    if pa.types.is_time(t):
        return sa.Time()
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return sa.LargeBinary()
    if pa.types.is_interval(t):  # no portable interval type: ISO-8601 text (see sa_values)
        return sa.Text()
    raise TableSinkError(f"Arrow type {t} has no SQL column mapping in the table sink (lists, structs and maps "
                         "need a PostgreSQL or DuckDB target); drop or flatten the field with a transform")


def sa_values(table: pa.Table, dialect: str = "") -> pa.Table:
    """Columns as the generic backend stores them: intervals as ISO-8601 durations
    (``P<months>M<days>DT<seconds>S``, the JSON converter's form); others untouched. SQLite turns a
    NaN float into NULL, so a NaN bound for SQLite is refused with an error naming the column."""
    for i, f in enumerate(table.schema):
        if dialect == "sqlite" and pa.types.is_floating(f.type) and pc.any(pc.is_nan(table.column(i))).as_py():
            raise TableSinkError(f"column {f.name!r} holds NaN, which SQLite stores as NULL; write to PostgreSQL "
                                 "or DuckDB, or replace NaN upstream")
        if pa.types.is_interval(f.type):
            col = table.column(i)
            new = pa.chunked_array([interval_iso(c) for c in col.chunks], type=pa.string())
            table = table.set_column(i, pa.field(f.name, pa.string()), new)
    return table


class SqlAlchemyBackend(TableBackend):
    """Any SQLAlchemy URL; identifiers are quoted by the dialect."""

    def __init__(self, url: str, config: TableSinkConfig) -> None:
        self.engine = sa.create_engine(url)
        self.connector = config.name
        self.schema = config.db_schema
        self.batch = config.batch_size
        md = sa.MetaData(schema=self.schema)
        self.offsets = sa.Table(
            config.offsets_table, md,
            sa.Column("connector", sa.String(200), primary_key=True), sa.Column("topic", sa.String(255), primary_key=True),
            sa.Column("partition", sa.Integer, primary_key=True), sa.Column("next_offset", sa.BigInteger, nullable=False))
        md.create_all(self.engine)

    def columns(self, table: str) -> dict[str, str] | None:
        insp = sa.inspect(self.engine)
        if not insp.has_table(table, schema=self.schema):
            return None
        return {c["name"]: str(c["type"]) for c in insp.get_columns(table, schema=self.schema)}

    def create(self, table: str, schema: pa.Schema, pk: list[str]) -> None:
        cols = [sa.Column(f.name, sa_type(f.type, self.engine.dialect.name), primary_key=f.name in pk, autoincrement=False) for f in schema]
        t = sa.Table(table, sa.MetaData(schema=self.schema), *cols)
        t.create(self.engine, checkfirst=True)

    def add_columns(self, table: str, fields: list[pa.Field]) -> None:
        prep = self.engine.dialect.identifier_preparer
        name = prep.format_table(sa.Table(table, sa.MetaData(schema=self.schema)))
        with self.engine.begin() as c:
            for f in fields:
                typ = sa_type(f.type, self.engine.dialect.name).compile(dialect=self.engine.dialect)
                c.execute(sa.text(f"ALTER TABLE {name} ADD COLUMN {prep.quote(f.name)} {typ}"))

    def _write(self, c: sa.Connection, w: TableWrite, mode: str) -> None:
        t, pk, rows = sa.Table(w.table, sa.MetaData(schema=self.schema), autoload_with=c), w.pk, w.rows
        rows = sa_values(rows, c.dialect.name) if rows is not None else None
        if w.truncate:
            c.execute(t.delete())
        keyed = [w.deletes] if w.deletes is not None else []
        if rows is not None and mode == "upsert":
            keyed.append(rows.select(pk))
        for keys in keyed:
            where = sa.and_(*[t.c[k] == sa.bindparam(f"_k{i}") for i, k in enumerate(pk)])
            for chunk in keys.to_batches(self.batch):
                params = [{f"_k{i}": r[k] for i, k in enumerate(pk)} for r in chunk.to_pylist()]
                c.execute(t.delete().where(where), params)
        if rows is None:
            return
        if mode == "update":
            where = sa.and_(*[t.c[k] == sa.bindparam(f"_k{i}") for i, k in enumerate(pk)])
            rest = [x for x in rows.column_names if x not in pk]
            stmt = t.update().where(where).values({x: sa.bindparam(f"_v{j}") for j, x in enumerate(rest)})
            for chunk in rows.to_batches(self.batch):
                params = [{**{f"_k{i}": r[k] for i, k in enumerate(pk)},
                           **{f"_v{j}": r[x] for j, x in enumerate(rest)}} for r in chunk.to_pylist()]
                c.execute(stmt, params)
        else:
            for chunk in rows.to_batches(self.batch):
                c.execute(t.insert(), chunk.to_pylist())

    def apply(self, writes: list[TableWrite], mode: str, offset: tuple[str, int, int], expected: int | None) -> None:
        table = self.offsets.name
        o = self.offsets
        mine = sa.and_(o.c.connector == self.connector, o.c.topic == offset[0], o.c.partition == offset[1])
        try:
            with self.engine.begin() as c:
                # the offset first, conditional on the one the run holds: a run that lost the race writes nothing
                if expected is None:
                    try:
                        with c.begin_nested():
                            c.execute(o.insert().values(connector=self.connector, topic=offset[0],
                                                        partition=offset[1], next_offset=offset[2]))
                        stored = 1
                    except sa.exc.IntegrityError:
                        stored = 0
                else:
                    stored = c.execute(o.update().where(mine, o.c.next_offset == expected)
                                       .values(next_offset=offset[2])).rowcount
                if stored != 1:
                    raise _Moved
                for w in writes:
                    table = w.table
                    self._write(c, w, mode)
        except _Moved:
            with self.engine.connect() as c:
                current = c.execute(sa.select(o.c.next_offset).where(mine)).scalar()
            raise fenced(self.connector, offset, expected, current) from None
        except sa.exc.SQLAlchemyError as e:
            raise TableSinkError(f"writing to table {table!r} failed (auto_evolve only adds columns): {e}") from e

    def stored_offsets(self) -> dict[tuple[str, int], int]:
        o = self.offsets
        with self.engine.connect() as c:
            rows = c.execute(sa.select(o.c.topic, o.c.partition, o.c.next_offset).where(o.c.connector == self.connector))
            return {(t, p): n for t, p, n in rows}

    def close(self) -> None:
        self.engine.dispose()
