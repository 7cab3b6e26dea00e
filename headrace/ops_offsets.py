"""Inspect and move a connector's offsets (Kafka Connect's KIP-875: GET/PATCH/DELETE offsets), for
sources and sinks. No Dagster here: the caller checks for runs in flight first.

Where offsets live, and how a change goes through the connector's fence so a run that is somehow
still writing (a second deployment, a stalled step) can never publish over it:

- **Sources**: the offsets topic (:class:`OffsetStore`). The change is written in a transaction of the
  connector's transactional producer (``headrace-source-<name>``); its ``init_transactions`` (taken
  before the offsets are read) fences any older run and aborts its open transaction; that run then
  fails at its next offset write.
- **Parquet sinks**: the consumer group's committed offsets, committed with
  ``send_offsets_to_transaction`` by the connector's transactional producer
  (``headrace-sink-<name>``), initialised before the offsets are read: a running run is fenced (its
  open offset transaction aborted) and its next publish finds the group's offset moved (``SinkFenced``).
- **Table sinks**: the offsets table in the target database, updated with the backends' own
  conditional update (``next_offset = <what was read>``), so a run holding the old offset is fenced
  at its next transaction. The consumer group's offsets (what sensors watch) are set to match.

Targets: ``earliest`` / ``latest`` / a timestamp, or explicit values. For sinks these are offsets per
topic-partition (the log start, the last stable offset, ``offsets_for_times``). For SQL sources,
``earliest`` forgets the stored offsets (everything is read again), ``latest`` stores the tables'
current maxima (only rows added later are read), and a timestamp stores it as the last timestamp
read (timestamp modes). File sources support ``earliest`` and explicit values.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import orjson
from confluent_kafka import TopicPartition

from integrations.config import FileSourceConfig, SqlSourceConfig, TableSinkConfig
from integrations.errors import ConfigError, HeadraceError
from integrations.kafka.cluster import KafkaSettings
from integrations.offsets import OffsetStore
from integrations.registry import is_source

TIMEOUT = 30.0
LOCK_TIMEOUT = 10.0  # seconds a table sink's change waits for a run's open transaction


def _fence_producer(kafka: KafkaSettings, transactional_id: str) -> Any:
    """A transactional producer holding a connector's fence (``init_transactions`` is the caller's)."""
    return kafka.producer(**{"transactional.id": transactional_id, "transaction.timeout.ms": 60_000,
                             "message.timeout.ms": min(kafka.message_timeout_ms, 60_000), "linger.ms": 0})


class OffsetsMoved(HeadraceError):
    """The offsets changed between reading and writing them (another writer); nothing was changed."""


@dataclass
class OffsetsChange:
    """Offsets before and after a change: ``{partition: offset}`` (sources: partition JSON → offset
    object or None; sinks: ``topic[partition]`` → next offset or None)."""

    connector: str
    kind: str
    before: dict[str, Any]
    after: dict[str, Any]
    changed: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One ``partition: before -> after`` line per changed partition."""
        def show(v: Any) -> str:
            return "none" if v is None else (v if isinstance(v, str) else orjson.dumps(v).decode())
        return [f"{k}: {show(self.before.get(k))} -> {show(self.after.get(k))}" for k in self.changed]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (for ``--json`` and Dagster metadata)."""
        return {"connector": self.connector, "kind": self.kind, "changed": self.changed,
                "before": {k: self.before.get(k) for k in self.changed},
                "after": {k: self.after.get(k) for k in self.changed}}


def kind_of(config: Any) -> str:
    """``source``, ``parquet_sink`` or ``table_sink``."""
    if is_source(config):
        return "source"
    return "table_sink" if isinstance(config, TableSinkConfig) else "parquet_sink"


def tp_name(topic: str, partition: int) -> str:
    """How a topic-partition is shown: ``topic[partition]``."""
    return f"{topic}[{partition}]"


# --- reading ------------------------------------------------------------------------------------------

def _missing_duckdb(config: TableSinkConfig) -> bool:
    from integrations.config import resolve_path, resolve_url

    url = resolve_url(config.connection_url)
    if not url.lower().startswith("duckdb://"):
        return False
    path = url.split("://", 1)[1].removeprefix("/")
    return path != ":memory:" and not resolve_path(path).exists()


def sink_offsets(config: Any, kafka: KafkaSettings) -> dict[tuple[str, int], int | None]:
    """A sink's next offset per topic-partition of its topics (None: nothing committed or stored)."""
    out: dict[tuple[str, int], int | None] = {}
    stored = None
    if isinstance(config, TableSinkConfig) and _missing_duckdb(config):
        stored = {}  # no database file yet: nothing stored (and reading must not create it)
    elif isinstance(config, TableSinkConfig):
        from integrations.sinks.table import open_backend

        backend = open_backend(config)
        try:
            stored = backend.stored_offsets()
        finally:
            backend.close()
    for topic in config.topics:
        committed = None if stored is not None else kafka.committed(config.consumer_group, topic)
        for p in kafka.partitions(topic):
            out[(topic, p)] = stored.get((topic, p)) if stored is not None else committed.get(p)
    return out


def show(config: Any, kafka: KafkaSettings) -> dict[str, Any]:
    """The connector's offsets: ``{partition JSON: offset}`` (sources) or ``{topic[p]: offset}`` (sinks)."""
    if is_source(config):
        return OffsetStore(kafka).read(config.name)
    return {tp_name(t, p): o for (t, p), o in sink_offsets(config, kafka).items()}


# --- planning a change ----------------------------------------------------------------------------

def parse_instant(text: str) -> dt.datetime:
    """An ISO 8601 instant (``2026-01-02T03:04:05+00:00``; a naive one is UTC)."""
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--to-timestamp {text!r} is not an ISO 8601 time (e.g. 2026-01-02T03:04:05Z)") from None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


def sink_targets(config: Any, kafka: KafkaSettings, to: str, timestamp: str | None = None
                 ) -> dict[tuple[str, int], int]:
    """Where ``reset`` moves each topic-partition of a sink: the log start, the last stable offset, or
    the first offset at or after ``timestamp`` (the last stable offset when there is none)."""
    out: dict[tuple[str, int], int] = {}
    for topic in config.topics:
        marks = kafka.watermarks(topic)
        if to == "timestamp":
            ms = int(parse_instant(timestamp or "").timestamp() * 1000)
            c = kafka.consumer(group_id=f"headrace-offsets-{config.name}")
            try:
                found = c.offsets_for_times([TopicPartition(topic, p, ms) for p in marks], timeout=TIMEOUT)
            finally:
                c.close()
            for tp in found:
                low, high = marks[tp.partition]
                out[(topic, tp.partition)] = high if tp.offset < 0 else min(max(tp.offset, low), high)
        else:
            for p, (low, high) in marks.items():
                out[(topic, p)] = low if to == "earliest" else high
    return out


def sink_explicit(config: Any, kafka: KafkaSettings, values: list[tuple[str | None, int, int]]
                  ) -> dict[tuple[str, int], int]:
    """Explicit ``(topic or None, partition, offset)`` values, checked against the topics' partitions and
    their ``[log start, last stable offset]``."""
    out: dict[tuple[str, int], int] = {}
    for topic, partition, offset in values:
        if topic is None:
            if len(config.topics) != 1:
                raise ConfigError(f"connector {config.name} reads {len(config.topics)} topics; name one with "
                                  f"--topic ({', '.join(config.topics)})")
            topic = config.topics[0]
        if topic not in config.topics:
            raise ConfigError(f"connector {config.name} does not read topic {topic!r} ({', '.join(config.topics)})")
        marks = kafka.watermarks(topic)
        if partition not in marks:
            raise ConfigError(f"topic {topic} has no partition {partition} (partitions: {sorted(marks)})")
        low, high = marks[partition]
        if not low <= offset <= high:
            raise ConfigError(f"offset {offset} for {tp_name(topic, partition)} is outside the log "
                              f"[{low}, {high}]")
        out[(topic, partition)] = offset
    return out


def _partition_json(config: Any, text: str) -> str:
    try:
        part = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ConfigError(f"source partition {text!r} is not JSON (e.g. '{{\"table\": \"orders\"}}')") from None
    if not isinstance(part, dict):
        raise ConfigError(f"source partition {text!r} must be a JSON object, e.g. {{\"table\": \"orders\"}}")
    if isinstance(config, SqlSourceConfig):
        from integrations.sources.sql import list_tables

        names = ["query"] if config.query else sorted({*config.source_names, *list_tables(config)})
        known = [{"query": "query"}] if config.query else [{"table": t} for t in names]
        if part not in known:
            raise ConfigError(f"connector {config.name}: unknown source partition {text} (known: "
                              + ", ".join(orjson.dumps(k).decode() for k in known) + ")")
    if isinstance(config, FileSourceConfig) and set(part) != {"file"}:
        raise ConfigError(f"connector {config.name}: a file source partition is {{\"file\": \"<path>\"}}, not {text}")
    return orjson.dumps(part, option=orjson.OPT_SORT_KEYS).decode()


def source_explicit(config: Any, values: list[tuple[str, str]]) -> dict[str, dict[str, Any] | None]:
    """Explicit ``(partition JSON, offset JSON)`` values (offset ``null`` forgets the partition)."""
    out: dict[str, dict[str, Any] | None] = {}
    for part, off in values:
        try:
            value = orjson.loads(off)
        except orjson.JSONDecodeError:
            raise ConfigError(f"source offset {off!r} is not JSON (e.g. '{{\"incrementing\": 42}}')") from None
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"source offset {off!r} must be a JSON object or null")
        out[_partition_json(config, part)] = value
    return out


def _sql_value(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return dt.datetime.fromisoformat(v).isoformat()
        except ValueError:
            return v
    return v.isoformat() if isinstance(v, dt.datetime | dt.date) else v


def source_targets(config: Any, kafka: KafkaSettings, to: str, timestamp: str | None = None
                   ) -> dict[str, dict[str, Any] | None]:
    """Where ``reset`` moves a source: forget everything (earliest), the tables' current maxima
    (latest, SQL sources), or a last-read timestamp (SQL sources in a timestamp mode)."""
    if to == "earliest":
        return dict.fromkeys(OffsetStore(kafka).read(config.name))
    if not isinstance(config, SqlSourceConfig):
        raise ConfigError(f"connector {config.name}: a file source resets only --to-earliest (or use `set`)")
    if config.mode == "bulk":
        raise ConfigError(f"connector {config.name}: mode bulk keeps no offsets; nothing to reset")
    def key(name: str) -> str:
        return orjson.dumps({"query" if config.query else "table": name}, option=orjson.OPT_SORT_KEYS).decode()
    if to == "timestamp":
        if not config.timestamp_column:
            raise ConfigError(f"connector {config.name}: --to-timestamp needs a timestamp mode (mode is {config.mode})")
        parse_instant(timestamp or "")  # checks the text; a naive time stays naive (the column's wall time)
        at = dt.datetime.fromisoformat(timestamp or "")
        return {key(n): {"timestamp": at.isoformat()} for n in config.source_names}
    from integrations.runtime.checks import sql_source_maxima

    out: dict[str, dict[str, Any] | None] = {}
    for name, values in sql_source_maxima(config).items():
        vals, off = iter(values), {}
        if config.incrementing_column:
            off["incrementing"] = _sql_value(next(vals))
        if config.timestamp_column:
            off["timestamp"] = _sql_value(next(vals))
        off = {k: v for k, v in off.items() if v is not None}
        out[key(name)] = off or None  # an empty table: nothing to skip
    return out


# --- writing, through the connector's fence ----------------------------------------------------------

def _fenced(config: Any, kafka: KafkaSettings) -> Any:
    """The connector's fence producer, initialised: any run still holding the fence is fenced and its
    open transaction (records, offsets) aborted, so offsets read after this are final until we write."""
    if is_source(config):
        from integrations.runtime.source_fence import transactional_id

        tid = transactional_id(config.name)
    else:
        from integrations.sinks.fencing import fence_id

        tid = fence_id(config.name, getattr(config, "task_id", None))
    p = _fence_producer(kafka, tid)
    p.init_transactions(TIMEOUT)
    return p


def _in_transaction(p: Any, write: Any) -> None:
    p.begin_transaction()
    try:
        write()
        p.commit_transaction(TIMEOUT)
    except BaseException:
        p.abort_transaction(TIMEOUT)
        raise


def _write_table_sink(config: Any, kafka: KafkaSettings, new: dict[tuple[str, int], int],
                      before: dict[tuple[str, int], int | None]) -> None:
    from integrations.sinks.fencing import SinkFenced
    from integrations.sinks.table import open_backend

    backend = open_backend(config)
    conn = getattr(backend, "conn", None)
    if type(conn).__module__.startswith("psycopg"):  # never wait forever on a paused run's offsets row
        with conn.cursor() as cur:
            cur.execute(f"SET lock_timeout = '{int(LOCK_TIMEOUT * 1000)}ms'")
        conn.commit()
    try:
        for (topic, part), offset in new.items():
            locked = False
            try:  # the backends' conditional update: only where the offset still is what was read
                backend.apply([], config.insert_mode, (topic, part, offset), before.get((topic, part)))
            except SinkFenced as e:
                raise OffsetsMoved(f"connector {config.name}: {e}; stopped before {tp_name(topic, part)}") from None
            except HeadraceError as e:
                if type(e.__cause__).__name__ != "LockNotAvailable":
                    raise
                locked = True
            if locked:  # raised here, outside the handler: not a database failure, so no driver context
                raise OffsetsMoved(f"connector {config.name}: a run still holds its offset of {tp_name(topic, part)} "
                                   f"in an open transaction (waited {LOCK_TIMEOUT:.0f}s); nothing changed there")
    finally:
        backend.close()
    consumer = kafka.consumer(group_id=config.consumer_group)  # the group mirrors progress (sensors read it)
    try:
        consumer.commit(offsets=[TopicPartition(t, part, o) for (t, part), o in new.items()], asynchronous=False)
    finally:
        consumer.close()


def apply(config: Any, kafka: KafkaSettings, new: dict[Any, Any]) -> OffsetsChange:
    """Move the connector's offsets to ``new`` (sources: ``{partition JSON: offset or None}``; sinks:
    ``{(topic, partition): offset}``) through its fence; return before and after."""
    kind = kind_of(config)
    if kind == "source":
        p = _fenced(config, kafka)  # before reading: a paused run's open transaction is aborted first
        store = OffsetStore(kafka)
        store.ensure()
        before = store.read(config.name)
        changed = [k for k, v in new.items() if before.get(k) != v]
        if changed:
            _in_transaction(p, lambda: store.produce_into(p, config.name, {k: new[k] for k in changed}))
        return OffsetsChange(config.name, kind, before, store.read(config.name), changed)
    p = _fenced(config, kafka) if kind == "parquet_sink" else None
    raw = sink_offsets(config, kafka)
    changed_tp = [k for k, v in new.items() if raw.get(k) != v]
    todo = {k: new[k] for k in changed_tp}
    if todo and kind == "table_sink":
        _write_table_sink(config, kafka, todo, raw)
    elif todo:
        consumer = kafka.consumer(group_id=config.consumer_group)
        try:
            _in_transaction(p, lambda: p.send_offsets_to_transaction(
                [TopicPartition(t, part, o) for (t, part), o in todo.items()],
                consumer.consumer_group_metadata(), TIMEOUT))
        finally:
            consumer.close()
    after = sink_offsets(config, kafka)
    return OffsetsChange(config.name, kind, {tp_name(*k): v for k, v in raw.items()},
                         {tp_name(*k): v for k, v in after.items()}, [tp_name(*k) for k in changed_tp])


def reset(config: Any, kafka: KafkaSettings, to: str, timestamp: str | None = None) -> OffsetsChange:
    """``reset --to-earliest | --to-latest | --to-timestamp``."""
    if to not in ("earliest", "latest", "timestamp"):
        raise ConfigError(f"reset target {to!r}: use earliest, latest or timestamp")
    if to == "timestamp" and not timestamp:
        raise ConfigError("--to-timestamp needs an ISO 8601 time")
    targets = (source_targets if is_source(config) else sink_targets)(config, kafka, to, timestamp)
    return apply(config, kafka, targets)
