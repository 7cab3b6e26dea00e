"""How a pipeline's counts compare (issue 14 item 6): exact where nothing may drop or merge records, a
bound (with its reason) where something may (filters, routers, Debezium's unwrap, upserts on other keys,
deletes, tombstones, dead letters, CDC), and no figure only where records may be added (a Python
transform) or several topics merge. The verdicts below are what the ``reconciled`` check shows."""

from __future__ import annotations

import pytest

from integrations.loading import load_connector
from integrations.reconcile import Plan, Reconciliation, comparable, plan
from tests.helpers import write_connector

SQL = {"name": "src", "type": "sql_source", "connection_url": "sqlite:///shop.db", "mode": "incrementing",
       "incrementing_column": "id", "tables": ["orders"], "topic_prefix": "shop."}
CDC = {"name": "cdc", "type": "postgres_cdc", "connection_url": "postgresql://u@h/db", "topic_prefix": "pg"}
LAKE = {"name": "lake", "type": "parquet_sink", "topics": ["shop.orders"], "path": "lake"}
TABLE = {"name": "wh", "type": "table_sink", "topics": ["shop.orders"], "connection_url": "duckdb:///wh.duckdb",
         "auto_create": True}
FILTER = [{"type": "Filter", "predicate": {"type": "RecordIsTombstone"}}]
PYTHON = [{"type": "Python", "function": "tests.helpers:write_connector"}]


def _load(tmp_path, raw: dict, **extra):  # noqa: ANN001, ANN202
    return load_connector(write_connector(tmp_path, {**raw, **extra}))


def _plan(tmp_path, source: dict | None, sink: dict, topics: tuple[str, ...] = ("shop.orders",)) -> Plan | None:  # noqa: ANN001
    return plan(_load(tmp_path, source) if source else None, _load(tmp_path, sink), topics)


def test_plain_pipelines_compare_exactly(tmp_path):
    assert _plan(tmp_path, SQL, LAKE) == Plan("equal", "equal", False, ())
    assert _plan(tmp_path, {**SQL, "exactly_once": True}, TABLE) == Plan("equal", "equal", True, ())
    assert _plan(tmp_path, None, LAKE) == Plan(None, "equal", False, ())  # a topic written outside Headrace
    keyed = {**TABLE, "insert_mode": "upsert", "pk_mode": "record_value", "pk_fields": ["id"]}
    assert _plan(tmp_path, {**SQL, "key_columns": ["id"]}, keyed) == Plan("equal", "by_key", False, ())


@pytest.mark.parametrize(("source", "sink", "expected"), [
    (SQL, {**LAKE, "transforms": FILTER}, ("equal", "at_most", "the sink's transform Filter may drop or route records")),
    (SQL, {**TABLE, "insert_mode": "upsert", "pk_mode": "record_value", "pk_fields": ["amount"]},
     ("equal", "at_most", "insert_mode upsert merges records by key")),
    (SQL, {**TABLE, "insert_mode": "upsert", "pk_mode": "record_key", "delete_enabled": True},
     ("equal", "at_most", "insert_mode upsert merges records by key; tombstones delete rows")),
    (SQL, {**LAKE, "errors_tolerance": "all"}, ("equal", "at_most", "records that fail go to the dead-letter topic")),
    ({**SQL, "transforms": FILTER}, LAKE, ("at_least", "equal", "the source's transform Filter may drop or route rows")),
    ({**SQL, "transforms": FILTER, "exactly_once": True}, LAKE,
     (None, "equal", "the source's transform Filter may drop or route rows")),  # markers and drops: no bound
    (CDC, {**LAKE, "topics": ["pg.public.orders"]},
     (None, "at_most", "the dataset skips the tombstones that follow deletes")),
    ({**CDC, "tombstones_on_delete": False}, {**LAKE, "topics": ["pg.public.orders"]}, (None, "equal", "")),
    (CDC, {**TABLE, "topics": ["pg.public.orders"], "transforms": [
        {"type": "ExtractNewRecordState", "delete_handling_mode": "none", "drop_tombstones": False}],
        "insert_mode": "upsert", "pk_mode": "record_key", "delete_enabled": True},
     (None, "at_most", "the sink's transform ExtractNewRecordState may drop or route records; insert_mode upsert "
                       "merges records by key; tombstones delete rows")),
])
def test_pipelines_that_may_drop_or_merge_compare_as_bounds(tmp_path, source, sink, expected):
    p = _plan(tmp_path, source, sink, tuple(sink["topics"]))
    assert (p.source, p.sink, "; ".join(p.bounds)) == expected
    assert comparable(_load(tmp_path, source), _load(tmp_path, sink), tuple(sink["topics"])) == (
        p.bounds[0] if p.bounds else None)


def test_records_that_may_be_added_or_merged_from_several_topics_are_not_counted(tmp_path):
    assert _plan(tmp_path, SQL, {**LAKE, "transforms": PYTHON}) is None
    assert comparable(_load(tmp_path, SQL), _load(tmp_path, {**LAKE, "transforms": PYTHON}), ("shop.orders",)) == \
        "the sink's transform Python may add records"
    assert _plan(tmp_path, None, {**LAKE, "topics": ["a", "b"]}, ("a", "b")) is None


def _rec(plan_: Plan, source: int | None, topic: int, read: int, output: int) -> Reconciliation:
    return Reconciliation("t", source, topic, read, output, plan=plan_)


def test_bounds_fail_only_when_they_are_broken():
    at_most = Plan("equal", "at_most", False, ("the sink's transform Filter may drop or route records",))
    assert _rec(at_most, 10, 10, 10, 7).passed
    assert not _rec(at_most, 10, 10, 10, 11).passed  # more rows than records read: duplicated
    assert not _rec(at_most, 10, 12, 12, 7).passed  # the topic holds more than the source produced
    assert _rec(at_most, 10, 10, 10, 7).describe("dataset") == (
        "source 10 rows, topic 't' 10 records, dataset 7 rows (at most the records read): agree; "
        "the sink's transform Filter may drop or route records")
    at_least = Plan("at_least", "equal", False, ("the source's transform Filter may drop or route rows",))
    assert _rec(at_least, 10, 6, 6, 6).passed
    assert not _rec(at_least, 10, 11, 11, 11).passed
    assert not _rec(at_least, 10, 6, 6, 5).passed  # a record lost in the sink
    assert _rec(at_least, 10, 6, 6, 6).describe("table").startswith(
        "source 10 rows (at least the topic's records), topic 't' 6 records, table 6 rows: agree")


def test_behind_an_exactly_once_source_the_output_holds_the_source_rows():
    """Commit markers take offsets: 10 rows in 3 transactions are 13 offsets. Once the sink has read them
    all, the dataset must hold the 10 rows; before, no more than it read."""
    eos = Plan("equal", "equal", True, ())
    assert _rec(eos, 10, 13, 13, 10).passed
    assert not _rec(eos, 10, 13, 13, 9).passed
    assert not _rec(eos, 10, 13, 13, 11).passed
    assert _rec(eos, 10, 13, 6, 5).passed  # still reading
    assert not _rec(eos, 10, 13, 6, 7).passed
    assert not _rec(eos, 14, 13, 13, 13).passed  # the source stored an offset past what the topic holds
