"""Table sink, like Kafka Connect's JDBC sink, exactly once: rows and offsets in one transaction.

Per topic-partition the sink converts and transforms each delivery (a Filter may drop records),
buffers up to ``batch_size`` kept messages, then in one database transaction: deletes the keys of
tombstones (``delete_enabled``), inserts / upserts / updates the rows, and stores the next offset
(past dropped and dead-lettered records too) in ``offsets_table``. With routing transforms each
message goes to the table ``table_name_format`` gives for its routed topic; one transaction then
writes every table the batch reaches, and the stored offset is still the source topic-partition's. On start the runtime asks ``stored_offsets`` and
resumes from there, so a crash between the database commit and the consumer-group commit never applies a batch
twice (the group offsets are informational). Within a batch only the last event of each key counts.

Backends: DuckDB (Arrow scan, no per-row Python), PostgreSQL (COPY from Arrow-written CSV into a
staging table, then ``INSERT … ON CONFLICT``), any other SQLAlchemy database (batched executemany).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from operator import methodcaller

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from integrations.config import TableSinkConfig, resolve_url
from integrations.sinks.base import Decoded, Sink, SinkStats, SinkWriteError, message_offsets
from integrations.sinks.fencing import OffsetsBackwards, SinkFenced, backwards_message, one_line
from integrations.sinks.table_truncate import TruncateEvents
from integrations.transforms.batch import is_primitive

_value = methodcaller("value")

class TableSinkError(SinkWriteError):
    """A batch could not be written to its table (missing table, incompatible columns, ...)."""


_NUMERIC = ("INT", "NUMERIC", "DECIMAL", "DOUBLE", "REAL", "FLOAT", "BOOL")
KAFKA_PK = ["__connect_topic", "__connect_partition", "__connect_offset"]


def open_backend(config: TableSinkConfig) -> TableBackend:
    """The backend for the connection URL (secrets resolved only here)."""
    url = resolve_url(config.connection_url)
    scheme = url.split("://", 1)[0].lower()
    if scheme == "duckdb":
        from integrations.sinks.table_duckdb import DuckDBBackend

        return DuckDBBackend(url, config)
    if scheme in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
        from integrations.sinks.table_postgres import PostgresBackend

        return PostgresBackend(url, config)
    from integrations.sinks.table_sqlalchemy import SqlAlchemyBackend

    return SqlAlchemyBackend(url, config)


@dataclass
class TableWrite:
    """What one transaction does to one table: empty it (``truncate``), delete ``deletes`` keys, then write
    ``rows`` (either may be None)."""

    table: str
    rows: pa.Table | None
    deletes: pa.Table | None
    pk: list[str]
    truncate: bool = False


class TableBackend:
    """What a database must do for the table sink; each call of ``apply`` is one transaction."""

    def columns(self, table: str) -> dict[str, str] | None:
        """``{column: type}`` of an existing table, in order; None when it does not exist."""
        raise NotImplementedError

    def create(self, table: str, schema: pa.Schema, pk: list[str]) -> None:
        raise NotImplementedError

    def add_columns(self, table: str, fields: list[pa.Field]) -> None:
        raise NotImplementedError

    def apply(self, writes: list[TableWrite], mode: str, offset: tuple[str, int, int], expected: int | None) -> None:
        """Apply every write (deletes, then rows, table by table) and store ``(topic, partition, next
        offset)`` in one transaction; with no writes, only the offset.

        The offset is stored only where it still is ``expected`` (None: no row yet), checked first in
        the transaction: an UPDATE … WHERE next_offset = expected, or an INSERT that finds the row
        another run inserted. When it is not, the transaction is rolled back and :class:`SinkFenced`
        raised (``fenced``): another run of the connector wrote this partition meanwhile."""
        raise NotImplementedError

    def stored_offsets(self) -> dict[tuple[str, int], int]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection."""


def fenced(connector: str, offset: tuple[str, int, int], expected: int | None, current: int | None) -> SinkFenced:
    """The error of a transaction whose conditional offset update found another run's offset."""
    from integrations.sinks.fencing import fenced_message

    return SinkFenced(fenced_message(connector, offset[0], offset[1], expected, current))


def quote(name: str) -> str:
    """A double-quoted SQL identifier (embedded quotes doubled)."""
    if "\x00" in name:
        raise TableSinkError(f"identifier {name!r} contains a NUL character")
    return '"' + name.replace('"', '""') + '"'


def merge_sql(target: str, staging: str, columns: list[str], pk: list[str], mode: str) -> str | None:
    """The statement that applies staged rows to ``target``: INSERT, INSERT … ON CONFLICT, or UPDATE … FROM.

    Shared by the DuckDB and PostgreSQL backends (same SQL in both); None when an update has nothing to set.
    """
    cols = ", ".join(quote(c) for c in columns)
    rest = [c for c in columns if c not in pk]
    if mode == "update":
        sets = ", ".join(f"{quote(c)} = s.{quote(c)}" for c in rest)
        cond = " AND ".join(f"{target}.{quote(c)} = s.{quote(c)}" for c in pk)
        return f"UPDATE {target} SET {sets} FROM {staging} s WHERE {cond}" if sets else None
    sql = f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {staging}"
    if mode == "upsert":
        keys = ", ".join(quote(c) for c in pk)
        sets = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in rest)
        sql += f" ON CONFLICT ({keys}) DO " + (f"UPDATE SET {sets}" if sets else "NOTHING")
    return sql


class TableSink(Sink):
    """Writes records of each topic-partition into ``table_name_format`` with the configured modes."""

    wants_messages = True
    fence = "target"  # offsets are stored with the rows, conditionally on the offset the run started from

    def __init__(self, config: TableSinkConfig, after_write: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.wants_keys = config.pk_mode == "record_key"
        self.stats = SinkStats()
        self.backend = open_backend(config)
        self._after_write = after_write
        self._buf: dict[tuple[str, int], _Pending] = {}
        self._known: dict[str, dict[str, str]] = {}
        self._expected: dict[tuple[str, int], int] = {}  # the stored offset each transaction is conditional on
        self._truncates = TruncateEvents(config) if config.truncate_enabled else None

    def stored_offsets(self, topics: list[str]) -> dict[tuple[str, int], int]:
        """The target's offsets of ``topics``; every transaction of the run is conditional on them (and
        then on the offsets it stored itself)."""
        stored = {k: v for k, v in self.backend.stored_offsets().items() if k[0] in topics}
        self._expected = dict(stored)
        return stored

    def put(self, topic: str, partition: int, records: pa.Table, offsets: pa.Array,
            routed: pa.Array | None = None) -> int | None:
        raise TableSinkError("the table sink takes raw messages (put_messages)")

    def put_messages(
        self, topic: str, partition: int, messages: list, decode: Callable[[list], Decoded]
    ) -> tuple[int, int, int | None]:
        """Convert and transform the messages now; buffer the survivors until ``batch_size``.

        The stored offset moves past every consumed message, including those a Filter dropped (and
        the bad ones the runtime dropped under ``errors_tolerance: all``)."""
        if not messages:
            return 0, 0, None
        if self._truncates is not None:
            cut = self._truncates.first(topic, messages)
            if cut is not None:  # the messages before it, then the truncate alone, then the rest
                rows, dead, durable = self.put_messages(topic, partition, messages[:cut], decode) if cut \
                    else (0, 0, None)
                durable = self._truncate(topic, partition, messages[cut].offset()) or durable
                more = self.put_messages(topic, partition, messages[cut + 1:], decode)
                return rows + more[0], dead + more[1], more[2] if more[2] is not None else durable
        d = decode(messages)
        dead = d.nulls if d.nulls is not None else list(map(_value, messages)).count(None)
        key = (topic, partition)
        durable = None
        buf = self._buf.get(key)
        if buf is not None and d.rows is not None and buf.schema is not None and d.rows.schema != buf.schema:
            durable = self.flush(topic, partition)  # one schema per transaction
            buf = None
        if buf is None:
            buf = self._buf[key] = _Pending()
        buf.add(d, messages)
        if buf.count >= self.config.batch_size:
            durable = self.flush(topic, partition)
        return (d.rows.num_rows if d.rows is not None else 0), dead, durable

    def flush(self, topic: str, partition: int) -> int | None:
        buf = self._buf.pop((topic, partition), None)
        if buf is None or buf.next_offset is None:
            return None
        rows = (pa.concat_tables(buf.rows) if len(buf.rows) > 1 else buf.rows[0]) if buf.rows else None
        offs = np.concatenate(buf.offsets) if buf.offsets else np.empty(0, np.int64)
        live = np.concatenate(buf.live) if buf.live else np.empty(0, bool)
        routed = buf.routed(topic)
        keys_all = buf.key_table()
        size = self.config.batch_size
        n = len(offs)
        at = np.concatenate([[0], np.cumsum(live)])  # row position of each kept message
        durable = None
        for i in range(0, max(n, 1), size):
            j = min(i + size, n)
            end = buf.next_offset if j >= n else int(offs[j - 1]) + 1
            part = rows.slice(int(at[i]), int(at[j] - at[i])) if rows is not None else None
            writes = []
            for to, sel in _by_target(routed[i:j] if routed is not None else None, topic, j - i):
                keys = keys_all.slice(i, j - i) if keys_all is not None else None
                vals, o, lv = part, offs[i:j], live[i:j]
                if sel is not None:
                    vals = vals.filter(pa.array(sel[lv])) if vals is not None else None
                    keys = keys.filter(pa.array(sel)) if keys is not None else None
                    o, lv = o[sel], lv[sel]
                w = self._prepare(to, partition, vals, keys, o, lv)
                if w.rows is not None or w.deletes is not None:
                    writes.append(w)
            durable = self._commit(writes, (topic, partition, end), int(offs[i]) if n else end - 1)
        return durable

    def close(self) -> None:
        self.backend.close()

    def _truncate(self, topic: str, partition: int, offset: int) -> int | None:
        """Apply a truncate event at ``offset``: what is buffered before it first, then one transaction
        that empties the topic's table and stores the offset past the event."""
        durable = self.flush(topic, partition)
        table = self.config.table_for(topic)
        writes = [TableWrite(table, None, None, [], truncate=True)] if self._columns(table) is not None else []
        return self._commit(writes, (topic, partition, offset + 1), offset) or durable

    # -- one transaction -----------------------------------------------------------------------------

    def _commit(self, writes: list[TableWrite], offset: tuple[str, int, int], first: int) -> int:
        """Apply the writes and store ``offset`` in one transaction, fenced on the offset this run holds;
        return the stored next offset. A database error is one line naming what was being written."""
        topic, partition, nxt = offset
        key = (topic, partition)
        expected = self._expected.get(key)
        if expected is not None and nxt < expected:
            raise OffsetsBackwards(backwards_message(self.config.name, topic, partition, expected, nxt))
        try:
            self.backend.apply(writes, self.config.insert_mode, offset, expected)
        except TableSinkError as e:
            names = ", ".join(dict.fromkeys(w.table for w in writes)) or "(offsets only)"
            start = expected if expected is not None else first
            raise TableSinkError(f"connector {self.config.name}: writing {topic}[{partition}] offsets {start}..{nxt - 1} "
                                 f"to table {names} failed: {one_line(e)}") from e.__cause__ or e
        self._expected[key] = nxt
        for w in writes:
            self.stats.rows += w.rows.num_rows if w.rows is not None else 0
            if w.table not in self.stats.files:
                self.stats.files.append(w.table)
        if self._after_write:
            self._after_write(",".join(w.table for w in writes))
        return offset[2]

    def _prepare(self, topic: str, partition: int, values: pa.Table | None, keys: pa.Table | None,
                 offs: np.ndarray, live: np.ndarray) -> TableWrite:
        """The rows and deletes of the kept messages routed to ``topic`` (DDL for its table done here)."""
        cfg = self.config
        if not topic:
            raise TableSinkError("a transform routed records to an empty topic name; no table can be named after it")
        table = cfg.table_for(topic)
        if values is not None and not values.num_rows:
            values = None
        pk: list[str] = []
        rows, deletes = values, None
        if cfg.pk_mode == "kafka":
            pk = cfg.pk_fields or KAFKA_PK
            lo = offs[live]
            rows = rows.append_column(pk[0], pa.array([topic] * len(lo), pa.string())) \
                .append_column(pk[1], pa.array(np.full(len(lo), partition, np.int32))) \
                .append_column(pk[2], pa.array(lo)) if rows is not None else None
        elif cfg.pk_mode == "record_value":
            pk = list(cfg.pk_fields)
            if rows is not None:
                missing = [f for f in pk if f not in rows.column_names]
                if missing:
                    raise TableSinkError(f"pk_fields {missing} are not in the record value (columns: {rows.column_names})")
                rows = self._last_per_key(rows, pk) if cfg.insert_mode != "insert" else rows
        elif cfg.pk_mode == "record_key" and keys is not None and keys.num_rows:
            if not cfg.delete_enabled and not live.all():
                keys = keys.filter(pa.array(live))
                live = np.ones(keys.num_rows, dtype=bool)
            if keys.num_rows:
                key_table = _key_columns(keys, cfg.pk_fields)
                pk = list(cfg.pk_fields) or key_table.column_names
                rows, deletes = self._events(values, key_table.select(pk), live, cfg.insert_mode != "insert")
        if rows is not None and rows.num_rows:
            self._ensure_table(table, rows.schema, pk)
        elif deletes is not None and deletes.num_rows and self._columns(table) is None:
            deletes = None  # nothing to delete from a table that does not exist yet
        return TableWrite(table, rows if rows is not None and rows.num_rows else None,
                          deletes if deletes is not None and deletes.num_rows else None, pk)

    @staticmethod
    def _last_per_key(rows: pa.Table, pk: list[str]) -> pa.Table:
        ordered = rows.append_column("__hr_ord", pa.array(np.arange(rows.num_rows)))
        last = ordered.group_by(pk, use_threads=False).aggregate([("__hr_ord", "max")])
        idx = pc.sort_indices(last.column("__hr_ord_max"))
        return rows.take(last.column("__hr_ord_max").take(idx))

    @staticmethod
    def _events(values: pa.Table | None, keys: pa.Table, live: np.ndarray, dedup: bool
                ) -> tuple[pa.Table | None, pa.Table | None]:
        """Rows to write (key columns replacing same-named value columns) and keys to delete."""
        n = keys.num_rows
        for c in keys.column_names:
            if keys.column(c).null_count:
                raise TableSinkError(f"record key field {c!r} is null in {keys.column(c).null_count} message(s)")
        if dedup:
            ordered = keys.append_column("__hr_ord", pa.array(np.arange(n)))
            last = ordered.group_by(keys.column_names, use_threads=False).aggregate([("__hr_ord", "max")])
            winners = np.sort(last.column("__hr_ord_max").to_numpy())
        else:
            winners = np.arange(n)
        win_live = winners[live[winners]]
        win_dead = winners[~live[winners]]
        rows = None
        if values is not None and len(win_live):
            value_pos = np.cumsum(live) - 1
            rows = values.take(pa.array(value_pos[win_live]))
            k = keys.take(pa.array(win_live))
            for c in keys.column_names:
                if c in rows.column_names:
                    rows = rows.set_column(rows.column_names.index(c), c, k.column(c))
                else:
                    rows = rows.append_column(c, k.column(c))
        deletes = keys.take(pa.array(win_dead)) if len(win_dead) else None
        return rows, deletes

    def _columns(self, table: str) -> dict[str, str] | None:
        if table not in self._known:
            cols = self.backend.columns(table)
            if cols is None:
                return None
            self._known[table] = cols
        return self._known[table]

    def _ensure_table(self, table: str, schema: pa.Schema, pk: list[str]) -> None:
        cols = self._columns(table)
        if cols is None:
            if not self.config.auto_create:
                raise TableSinkError(f"table {table!r} does not exist; create it or set auto_create: true")
            self.backend.create(table, schema, pk)
            self._known.pop(table, None)
            return
        for f in schema:
            have = cols.get(f.name, "").upper()
            if (pa.types.is_string(f.type) or pa.types.is_large_string(f.type)) and any(w in have for w in _NUMERIC):
                raise TableSinkError(f"column {f.name!r} of table {table!r} is {cols[f.name]} but the records carry "
                                     f"text; auto_evolve only adds columns, it never changes a column's type")
        new = [f for f in schema if f.name not in cols]
        if new:
            if not self.config.auto_evolve:
                raise TableSinkError(
                    f"table {table!r} has no column(s) {[f.name for f in new]} found in the records; "
                    "set auto_evolve: true to add them")
            self.backend.add_columns(table, new)
            self._known.pop(table, None)


@dataclass
class _Pending:
    """The transformed messages of one topic-partition waiting for a transaction."""

    rows: list[pa.Table] = field(default_factory=list)
    offsets: list[np.ndarray] = field(default_factory=list)  # offsets of the kept messages
    live: list[np.ndarray] = field(default_factory=list)  # per kept message: has a value (else a tombstone)
    keys: list[pa.Table] = field(default_factory=list)  # keys of the kept messages, per add (pk_mode record_key)
    topics: list[pa.Array | None] = field(default_factory=list)  # routed topics of the kept messages, per add
    count: int = 0
    schema: pa.Schema | None = None
    next_offset: int | None = None  # past the last consumed message, kept or dropped

    def add(self, d: Decoded, messages: list) -> None:
        kept = d.kept
        offsets = message_offsets(messages)
        self.offsets.append(offsets if len(kept) == len(messages) else offsets[kept])
        self.live.append(~d.tombstone)
        if d.keys is not None:
            self.keys.append(d.keys)
        if d.rows is not None:
            self.rows.append(d.rows)
            self.schema = d.rows.schema
        self.topics.append(d.topics)
        self.count += len(kept)
        self.next_offset = messages[-1].offset() + 1

    def key_table(self) -> pa.Table | None:
        """The keys of every kept message, in order (None when keys were not asked for)."""
        if not self.keys:
            return None
        try:
            return pa.concat_tables(self.keys, promote_options="permissive") if len(self.keys) > 1 else self.keys[0]
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise TableSinkError(f"message keys of one batch have different shapes: {e}") from e

    def routed(self, topic: str) -> pa.Array | None:
        """The routed topic of every kept message, or None when none was routed."""
        if all(t is None for t in self.topics):
            return None
        return pa.concat_arrays([pa.array([topic] * len(o), pa.string()) if t is None else t
                                 for t, o in zip(self.topics, self.offsets, strict=True)])


def _by_target(routed: pa.Array | None, topic: str, n: int) -> list[tuple[str, np.ndarray | None]]:
    """``(routed topic, mask of its messages)`` for each topic a chunk reaches (mask None: all of them),
    in order of first appearance."""
    if routed is None:
        return [(topic, None)] if n else []
    names = pc.unique(routed).to_pylist()
    if len(names) == 1:
        return [(names[0], None)]
    return [(name, pc.equal(routed, name).to_numpy(zero_copy_only=False)) for name in names]


def _key_columns(keys: pa.Table, pk_fields: list[str]) -> pa.Table:
    """The primary-key columns from the decoded keys: a struct key's fields; a primitive key
    (the converters' ``__value__`` column) becomes the column ``pk_fields[0]``."""
    if is_primitive(keys):
        if len(pk_fields) != 1:
            raise TableSinkError("primitive (non-struct) message keys need exactly one pk_fields entry naming the column")
        keys = keys.rename_columns(pk_fields)
    if not keys.num_columns:
        raise TableSinkError("pk_mode record_key needs a key on every message; found a null key")
    missing = [f for f in pk_fields if f not in keys.column_names]
    if missing:
        raise TableSinkError(f"pk_fields {missing} are not in the message key (fields: {keys.column_names})")
    cols = [keys.column(f) for f in (pk_fields or keys.column_names)]
    if any(c.null_count for c in cols):
        raise TableSinkError("pk_mode record_key needs a key on every message; found a null key (or a null key field)")
    return keys
