"""Cheap checks for sensors: is there new data for a connector? Never consumes or produces data.

Each check returns a fingerprint of the state it saw (a short string) or None when there is nothing
to do; the Dagster layer turns a new fingerprint into a run request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import orjson
import sqlalchemy as sa

from integrations.config import ParquetSinkConfig, SqlSourceConfig, resolve_url
from integrations.kafka.cluster import KafkaSettings
from integrations.offsets import OffsetStore
from integrations.runtime.sink_runner import plan_ranges
from integrations.sinks.base import TopicPartitionRange


def digest(obj: Any) -> str:
    """A short stable hash of a JSON-able object."""
    return hashlib.sha1(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()[:16]


def sql_source_maxima(config: SqlSourceConfig) -> dict[str, list[Any]]:
    """``{table: [MAX(incrementing), MAX(timestamp)]}`` (whichever the mode uses) — one aggregate per table."""
    eng = sa.create_engine(resolve_url(config.connection_url))
    wanted = [c for c in [config.incrementing_column, *(config.timestamp_column or [])] if c]
    out: dict[str, list[Any]] = {}
    try:
        with eng.connect() as conn:
            for name in config.source_names:
                if config.query:
                    src = sa.text(config.query).columns(*[sa.column(c) for c in wanted]).subquery("headrace_q")
                else:
                    schema, _, tname = name.rpartition(".")
                    src = sa.table(tname, *[sa.column(c) for c in wanted], schema=schema or None)
                parts = []
                if config.incrementing_column:
                    parts.append(sa.func.max(src.c[config.incrementing_column]))
                if config.timestamp_column:
                    ts = [src.c[c] for c in config.timestamp_column]
                    parts.append(sa.func.max(ts[0] if len(ts) == 1 else sa.func.coalesce(*ts)))
                if not parts:
                    parts.append(sa.func.count())
                out[name] = list(conn.execute(sa.select(*parts).select_from(src)).one())
    finally:
        eng.dispose()
    return out


def _as_utc(v: Any) -> dt.datetime | None:
    if v is None:
        return None
    d = v if isinstance(v, dt.datetime) else dt.datetime.fromisoformat(str(v))
    return d.replace(tzinfo=dt.UTC) if d.tzinfo is None else d.astimezone(dt.UTC)


def source_fingerprint(config: SqlSourceConfig, kafka: KafkaSettings) -> str | None:
    """A fingerprint of what is new, or None when the stored offsets already cover every table's maximum."""
    if getattr(config, "type", "") == "postgres_cdc":  # CDC: the slot's pending WAL (integrations/sources)
        from integrations.sources.postgres_cdc_checks import cdc_fingerprint

        return cdc_fingerprint(config)
    maxima = sql_source_maxima(config)
    if config.mode == "bulk":
        return digest(maxima)  # bulk re-reads the table on every poll, as in Kafka Connect
    stored = OffsetStore(kafka).read(config.name)
    behind = {}
    for name, values in maxima.items():
        key = orjson.dumps({"query" if config.query else "table": name}, option=orjson.OPT_SORT_KEYS).decode()
        off = stored.get(key) or {}
        vals = iter(values)
        new = False
        if config.incrementing_column:
            db_inc = next(vals)
            new |= db_inc is not None and (off.get("incrementing") is None or db_inc > off["incrementing"])
        if config.timestamp_column:
            db_ts = _as_utc(next(vals))
            new |= db_ts is not None and (off.get("timestamp") is None or db_ts > _as_utc(off["timestamp"]))
        if new:
            behind[name] = {"db": values, "stored": off}
    return digest(behind) if behind else None


def sink_pending(config: ParquetSinkConfig, kafka: KafkaSettings) -> list[TopicPartitionRange]:
    """The ranges a sink run would read now (empty when caught up)."""
    return plan_ranges(kafka, config.consumer_group, config.topics, config.max_records_per_run)


def ranges_to_tag(ranges: list[TopicPartitionRange]) -> str:
    """Compact JSON for a run tag: ``[[topic, partition, start, end], ...]``."""
    return orjson.dumps([[r.topic, r.partition, r.start, r.end] for r in ranges]).decode()


def ranges_from_tag(tag: str) -> list[TopicPartitionRange]:
    """Inverse of ranges_to_tag."""
    return [TopicPartitionRange(t, p, s, e) for t, p, s, e in orjson.loads(tag)]
