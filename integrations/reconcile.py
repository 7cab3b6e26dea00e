"""Reconciliation of one pipeline, from cheap queries only: rows in the source table (up to the source's
stored offset) = records in the topic = rows in the dataset or table.

- Source rows: ``COUNT(*)`` of the table's rows the stored offset covers (incrementing and
  timestamp+incrementing SQL sources; other modes re-read or cannot be bounded, so no figure).
- Topic records: end offset minus log start per partition. With an ``exactly_once`` source every
  transaction also takes one offset (its commit marker), so the topic may only be larger.
- Sink records: the topic's records before the sink's next offsets (what it has read so far).
- Output rows: Parquet footers of the dataset, or ``COUNT(*)`` of the table.

The pipeline reconciles when source rows = topic records (≤ with exactly-once) and output rows = sink
records. It is only comparable when nothing may legitimately drop or merge records: only transforms
that keep every record where they are (no Filter, routers, Python functions or Debezium's unwrap, which
drops deletes), one source topic per dataset, and an ``insert`` table sink, or an ``upsert`` one fed by
an incrementing SQL source keyed by the sink's primary key (each source row is one key, so the table
holds one row per source row; duplicates in the topic merge, and the table is compared with the
source's rows once the sink has read the whole topic). :func:`comparable` says why not.
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
    by_key: bool = False  # an upsert table: one row per key, compared with the source's rows

    @property
    def passed(self) -> bool:
        """Whether the figures agree (see the module docstring)."""
        if self.by_key:  # duplicates merge: the table holds the source's rows once the topic is read
            if self.source_rows is None or self.sink_records < self.topic_records:
                return self.output_rows <= self.sink_records
            return self.output_rows == self.source_rows and self.source_rows <= self.topic_records
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
        per_key = " (one per key)" if self.by_key else ""
        return (f"{src}, topic {self.topic!r} {self.topic_records} records{sink}, {output} {self.output_rows} rows"
                f"{per_key}: {verdict}")


def _dropping(transforms: list[Any] | None) -> str | None:
    """The first transform that may drop, route or multiply records (None: all keep every record)."""
    from integrations.transforms.config import (
        CastConfig,
        DropHeadersConfig,
        ExtractFieldConfig,
        FlattenConfig,
        HeaderFromConfig,
        HoistFieldConfig,
        InsertFieldConfig,
        InsertHeaderConfig,
        MaskFieldConfig,
        ReplaceFieldConfig,
        SetSchemaMetadataConfig,
        TimestampConverterConfig,
        ValueToKeyConfig,
    )

    keeping = (CastConfig, DropHeadersConfig, ExtractFieldConfig, FlattenConfig, HeaderFromConfig, HoistFieldConfig,
               InsertFieldConfig, InsertHeaderConfig, MaskFieldConfig, ReplaceFieldConfig, SetSchemaMetadataConfig,
               TimestampConverterConfig, ValueToKeyConfig)
    for t in transforms or []:
        if not isinstance(t, keeping):
            return type(t).__name__.removesuffix("Config")
    return None


def _keyed_like(source: object | None, sink: TableSinkConfig) -> bool:
    """Whether an upsert table's key is the source's own row identity: an incrementing SQL source whose
    ``key_columns`` are the incrementing column, and a sink keyed by that record key or value field."""
    if not isinstance(source, SqlSourceConfig) or source.query or source.mode not in (
            "incrementing", "timestamp+incrementing"):
        return False
    if list(source.key_columns or []) != [source.incrementing_column]:
        return False
    if sink.pk_mode == "record_key":
        return list(sink.pk_fields or [source.incrementing_column]) == [source.incrementing_column]
    return sink.pk_mode == "record_value" and list(sink.pk_fields or []) == [source.incrementing_column]


def comparable(source: object | None, sink: ParquetSinkConfig | TableSinkConfig, topics: tuple[str, ...]
               ) -> str | None:
    """None when a pipeline's counts must agree; else why they need not."""
    if len(topics) != 1:
        return "the dataset merges several topics"
    if (name := _dropping(sink.transforms)) is not None:
        return f"the sink's transform {name} may drop or route records"
    if isinstance(sink, TableSinkConfig) and sink.insert_mode != "insert" and not (
            sink.insert_mode == "upsert" and _keyed_like(source, sink)):
        return f"insert_mode {sink.insert_mode} merges records by key"
    if source is not None and (name := _dropping(getattr(source, "transforms", None))) is not None:
        return f"the source's transform {name} may drop or route rows"
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
    by_key = isinstance(sink, TableSinkConfig) and sink.insert_mode == "upsert"
    if by_key and sink_records < topic_records:
        notes.append("the sink has not read the whole topic yet: its table is compared with the source's rows "
                     "once it has")
    return Reconciliation(topic, source_rows, topic_records, sink_records, stats.rows or 0,
                          transactional=bool(getattr(source, "exactly_once", False)), notes=notes, by_key=by_key)
