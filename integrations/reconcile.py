"""Reconciliation of one pipeline, from cheap queries only: rows in the source table (up to the source's
stored offset) = records in the topic = rows in the dataset or table.

- Source rows: ``COUNT(*)`` of the table's rows the stored offset covers (incrementing and
  timestamp+incrementing SQL sources; other modes re-read or cannot be bounded, so no figure).
- Topic records: end offset minus log start per partition. With an ``exactly_once`` source every
  transaction also takes one offset (its commit marker), so the topic may only be larger.
- Sink records: the topic's records before the sink's next offsets (what it has read so far).
- Output rows: Parquet footers of the dataset, or ``COUNT(*)`` of the table.

The pipeline reconciles when source rows = topic records (≤ with exactly-once) and output rows = sink
records. It is only comparable when nothing may legitimately drop or merge records: no transforms on
either side, an ``insert`` table sink, one source topic per dataset; :func:`comparable` says why not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from integrations.config import ParquetSinkConfig, SqlSourceConfig, TableSinkConfig, resolve_url


@dataclass(frozen=True)
class Reconciliation:
    """The figures of one pipeline (a source table → topic → dataset or table)."""

    topic: str
    source_rows: int | None
    topic_records: int
    sink_records: int
    output_rows: int
    transactional: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether the figures agree (see the module docstring)."""
        ok = self.output_rows == self.sink_records
        if self.source_rows is not None:
            ok &= (self.source_rows <= self.topic_records) if self.transactional else \
                (self.source_rows == self.topic_records)
        return ok

    def describe(self, output: str) -> str:
        """One line with the three numbers, e.g. ``source 120 rows = topic 120 records = dataset 120 rows``."""
        src = "source not countable" if self.source_rows is None else f"source {self.source_rows} rows"
        sink = "" if self.sink_records == self.topic_records else f" (read by the sink: {self.sink_records})"
        verdict = "agree" if self.passed else "DIFFER"
        return (f"{src}, topic {self.topic!r} {self.topic_records} records{sink}, {output} {self.output_rows} rows: "
                f"{verdict}")


def comparable(source: object | None, sink: ParquetSinkConfig | TableSinkConfig, topics: tuple[str, ...]
               ) -> str | None:
    """None when a pipeline's counts must agree; else why they need not."""
    if len(topics) != 1:
        return "the dataset merges several topics"
    if sink.transforms:
        return "the sink's transforms may drop or route records"
    if isinstance(sink, TableSinkConfig) and sink.insert_mode != "insert":
        return f"insert_mode {sink.insert_mode} merges records by key"
    if source is not None and getattr(source, "transforms", None):
        return "the source's transforms may drop or route rows"
    return None


def _source_rows(source: SqlSourceConfig, table: str, offsets: dict[str, dict[str, Any]]) -> int | None:
    """Rows of ``table`` the source's stored offset covers; None when the mode has no such bound."""
    import sqlalchemy as sa

    if source.type != "sql_source" or source.query or source.mode not in ("incrementing", "timestamp+incrementing"):
        return None
    off = offsets.get(orjson.dumps({"table": table}, option=orjson.OPT_SORT_KEYS).decode()) or {}
    if "incrementing" not in off:
        return 0
    schema, _, name = table.rpartition(".")
    cols = [source.incrementing_column, *(source.timestamp_column or [])]
    src = sa.table(name, *[sa.column(c) for c in cols], schema=schema or None)
    inc = src.c[source.incrementing_column]
    cond = inc <= off["incrementing"]
    if source.mode == "timestamp+incrementing":
        import datetime as dt

        ts_cols = [src.c[c] for c in source.timestamp_column]
        ts = ts_cols[0] if len(ts_cols) == 1 else sa.func.coalesce(*ts_cols)
        last = dt.datetime.fromisoformat(off["timestamp"])
        if last.tzinfo is not None and source.connection_url.split(":", 1)[0].startswith("sqlite"):
            last = last.replace(tzinfo=None)
        cond = sa.or_(ts < last, sa.and_(ts == last, cond))
    eng = sa.create_engine(resolve_url(source.connection_url))
    try:
        with eng.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(src).where(cond)).scalar_one())
    finally:
        eng.dispose()


def reconcile(source: object | None, table: str | None, sink: ParquetSinkConfig | TableSinkConfig, topic: str,
              output: str, kafka: Any) -> Reconciliation:
    """The figures of ``source``'s ``table`` → ``topic`` → ``sink``'s ``output`` (topic folder or table)."""
    from integrations.catalog import dataset_stats, table_stats
    from integrations.offsets import OffsetStore
    from integrations.runtime.sink_runner import build_sink

    notes: list[str] = []
    marks = kafka.watermarks(topic)
    topic_records = sum(hi - lo for lo, hi in marks.values())
    if any(lo > 0 for lo, _hi in marks.values()):
        notes.append("retention deleted the topic's oldest records")
    built = build_sink(sink)
    try:
        stored = built.stored_offsets(list(sink.topics))
    finally:
        built.close()
    positions = ({p: o for (t, p), o in stored.items() if t == topic and o is not None} if stored is not None
                 else kafka.committed(sink.consumer_group, topic))
    sink_records = sum(max(min(positions.get(p) or lo, hi) - lo, 0) for p, (lo, hi) in marks.items())
    stats = table_stats(sink, output) if isinstance(sink, TableSinkConfig) else dataset_stats(sink, output)
    source_rows = None
    if source is not None and table is not None:
        source_rows = _source_rows(source, table, OffsetStore(kafka).read(source.name))
    return Reconciliation(topic, source_rows, topic_records, sink_records, stats.rows or 0,
                          transactional=bool(getattr(source, "exactly_once", False)), notes=notes)
