"""Reconciliation of one pipeline, from cheap queries only: rows in the source table (up to the source's
stored offset), records in the topic, rows in the dataset or table.

- Source rows: ``COUNT(*)`` of the table's rows the stored offset covers (incrementing and
  timestamp+incrementing SQL sources; other modes re-read or cannot be bounded, and a CDC source's
  events are changes, not rows: no figure).
- Topic records: end offset minus log start per partition. With an ``exactly_once`` source every
  transaction also takes one offset (its commit marker), so the topic may only be larger.
- Sink records: the topic's records before the sink's next offsets (what it has read so far).
- Output rows: Parquet footers of the dataset, or ``COUNT(*)`` of the table.

Each leg is compared as strictly as the pipeline allows (:func:`plan`):

- source rows = topic records, or ``≥`` when a source transform may drop rows (Filter, a router);
- output rows = records read, or ``≤`` when records may legitimately be dropped or merged: a sink's
  Filter, router or Debezium unwrap, an upsert or update table on keys other than the source's rows,
  deletes by tombstone, tombstones a Parquet sink skips (behind a CDC source), records sent to the
  dead-letter topic (``errors_tolerance: all``);
- an upsert table keyed by an incrementing SQL source's own column holds one row per source row
  (duplicates in the topic merge), compared once the sink has read the whole topic;
- behind an exactly-once source the output holds the source's rows once the sink has read the topic.

A pipeline gets no figure only when its records cannot be counted at all: a dataset of several topics
or a Python transform (it may add records). :func:`comparable` says whether every leg is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from integrations.config import ParquetSinkConfig, SqlSourceConfig, TableSinkConfig, resolve_url

#: transforms that may drop records or send them to another topic or table (never add any)
_DROPPING = ("Filter", "RegexRouter", "TimestampRouter", "ExtractNewRecordState")


@dataclass(frozen=True)
class Plan:
    """How one pipeline's counts must compare.

    ``source``: the source's rows against the topic's records: ``"equal"`` (``≤`` behind an exactly-once
    source), ``"at_least"`` (a source transform may drop rows) or None (no countable source).
    ``sink``: the output's rows against the records the sink has read: ``"equal"``, ``"at_most"`` (records
    may be dropped or merged) or ``"by_key"`` (an upsert table keyed by the source's rows).
    ``bounds``: why a leg is a bound, in words."""

    source: Literal["equal", "at_least"] | None
    sink: Literal["equal", "at_most", "by_key"]
    transactional: bool = False
    bounds: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reconciliation:
    """The figures of one pipeline (a source table → topic → dataset or table) and how they compare."""

    topic: str
    source_rows: int | None
    topic_records: int
    sink_records: int
    output_rows: int
    plan: Plan = field(default_factory=lambda: Plan("equal", "equal"))
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether the figures agree (see the module docstring)."""
        src, sink, p = self.source_rows, self.sink_records, self.plan
        read_all = sink >= self.topic_records
        if p.sink == "by_key":  # duplicates merge: the table holds the source's rows once the topic is read
            if src is None or not read_all:
                return self.output_rows <= sink
            return self.output_rows == src and src <= self.topic_records
        ok = True
        if src is not None and p.source == "equal":
            ok = src <= self.topic_records if p.transactional else src == self.topic_records
        elif src is not None and p.source == "at_least":
            ok = self.topic_records <= src
        if p.sink == "at_most":
            return ok and self.output_rows <= sink
        if p.transactional:  # commit markers take offsets: the rows are the source's once the topic is read
            ok &= self.output_rows <= sink
            if src is not None and p.source == "equal" and read_all:
                ok &= self.output_rows == src
            return ok
        return ok and self.output_rows == sink

    def describe(self, output: str) -> str:
        """One line with the three numbers, e.g. ``source 120 rows, topic 'x' 120 records, dataset 120
        rows: agree``; a bound names why (``... dataset 80 rows (at most the records read: the sink's
        transform Filter may drop or route records): agree``)."""
        src = "source not countable" if self.source_rows is None else f"source {self.source_rows} rows"
        if self.source_rows is not None and self.plan.source == "at_least":
            src += " (at least the topic's records)"
        sink = "" if self.sink_records == self.topic_records else f" (read by the sink: {self.sink_records})"
        verdict = "agree" if self.passed else "DIFFER"
        per_key = " (one per key)" if self.plan.sink == "by_key" else ""
        if self.plan.sink == "at_most":
            per_key = " (at most the records read)"
        why = f"; {'; '.join(self.plan.bounds)}" if self.plan.bounds else ""
        return (f"{src}, topic {self.topic!r} {self.topic_records} records{sink}, {output} {self.output_rows} rows"
                f"{per_key}: {verdict}{why}")


def _kind(transforms: list[Any] | None) -> tuple[str | None, str | None]:
    """The first transform that may drop or route records, and the first that may add records (a Python
    function); None where there is none."""
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
    dropping = adding = None
    for t in transforms or []:
        if isinstance(t, keeping):
            continue
        name = str(getattr(t, "type", type(t).__name__))  # as written in the YAML
        if type(t).__name__.removesuffix("Config") in _DROPPING:
            dropping = dropping or name
        else:
            adding = adding or name
    return dropping, adding


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


def _countable(source: object | None) -> bool:
    """Whether the source's rows up to its stored offset can be counted (see :func:`_source_rows`)."""
    return isinstance(source, SqlSourceConfig) and not source.query and source.mode in (
        "incrementing", "timestamp+incrementing")


def why_not(source: object | None, sink: ParquetSinkConfig | TableSinkConfig, topics: tuple[str, ...]) -> str | None:
    """Why a pipeline's records cannot be counted at all (None: :func:`plan` gives how they compare)."""
    if len(topics) != 1:
        return "the dataset merges several topics"
    for side, transforms in (("sink", sink.transforms), ("source", getattr(source, "transforms", None))):
        if (name := _kind(transforms)[1]) is not None:
            return f"the {side}'s transform {name} may add records"
    return None


def plan(source: object | None, sink: ParquetSinkConfig | TableSinkConfig, topics: tuple[str, ...]) -> Plan | None:
    """How the counts of ``source`` → ``topics`` → ``sink`` must compare; None when they cannot be
    counted (:func:`why_not`)."""
    if why_not(source, sink, topics) is not None:
        return None
    transactional = bool(getattr(source, "exactly_once", False))
    src_bounds: list[str] = []
    src_drop = _kind(getattr(source, "transforms", None))[0]
    leg: Literal["equal", "at_least"] | None = None
    if _countable(source):
        leg = "equal"
        if src_drop is not None:
            leg = None if transactional else "at_least"  # markers and drops together: no bound holds
            src_bounds.append(f"the source's transform {src_drop} may drop or route rows")
    bounds: list[str] = []  # why the output may hold fewer rows than the records read
    sink_drop = _kind(sink.transforms)[0]
    if sink_drop is not None:
        bounds.append(f"the sink's transform {sink_drop} may drop or route records")
    if isinstance(sink, TableSinkConfig):
        if sink.insert_mode == "upsert" and _keyed_like(source, sink) and src_drop is None and sink_drop is None \
                and not sink.delete_enabled and getattr(sink, "errors_tolerance", "none") != "all":
            return Plan(leg, "by_key", transactional)
        if sink.insert_mode != "insert":
            bounds.append(f"insert_mode {sink.insert_mode} merges records by key")
        if sink.delete_enabled:
            bounds.append("tombstones delete rows")
    elif getattr(source, "type", "") == "postgres_cdc" and getattr(source, "tombstones_on_delete", False):
        bounds.append("the dataset skips the tombstones that follow deletes")
    if getattr(sink, "errors_tolerance", "none") == "all":
        bounds.append("records that fail go to the dead-letter topic")
    return Plan(leg, "at_most" if bounds else "equal", transactional, (*src_bounds, *bounds))


def comparable(source: object | None, sink: ParquetSinkConfig | TableSinkConfig, topics: tuple[str, ...]
               ) -> str | None:
    """None when every count of a pipeline must agree exactly; else why one need not (or cannot be
    counted)."""
    if (why := why_not(source, sink, topics)) is not None:
        return why
    p = plan(source, sink, topics)
    return p.bounds[0] if p is not None and p.bounds else None


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
    how = plan(source, sink, (topic,)) or Plan(None, "at_most")
    if how.sink == "by_key" and sink_records < topic_records:
        notes.append("the sink has not read the whole topic yet: its table is compared with the source's rows "
                     "once it has")
    return Reconciliation(topic, source_rows, topic_records, sink_records, stats.rows or 0, plan=how, notes=notes)
