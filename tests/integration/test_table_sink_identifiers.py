"""PostgreSQL keeps only 63 bytes of an identifier: the table sink refuses longer table and column
names with a clear error before writing anything, and takes a name of exactly 63 bytes."""

from __future__ import annotations

import psycopg
import pytest

from integrations.config import TableSinkConfig
from integrations.runtime.sink_runner import run_sink
from integrations.sinks.table import TableSinkError
from tests.integration.sink_helpers import produce, stored_offsets


def _cfg(pg_url: str, topic: str, unique: str, table: str, **kw) -> TableSinkConfig:
    return TableSinkConfig(type="table_sink", name=f"ident-{unique}", topics=[topic], connection_url=pg_url,
                           auto_create=True, table_name_format=table, **kw)


def _tables(pg_url: str, prefix: str) -> list[str]:
    with psycopg.connect(pg_url) as c:
        return [r[0] for r in c.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE %s",
                                        [prefix + "%"]).fetchall()]


@pytest.mark.parametrize("tolerance", ["none", "all"])
def test_a_table_name_over_63_bytes_is_refused_before_any_write(pg_url, kafka, topic_factory, unique, tolerance):
    topic = topic_factory("ident")
    produce(kafka, topic, [(0, None, {"id": i}, None) for i in range(3)])
    long_name = f"t{unique}_" + "é" * 30  # 12 ASCII bytes + 60 bytes of two-byte characters
    cfg = _cfg(pg_url, topic, unique, long_name, errors_tolerance=tolerance)
    with pytest.raises(TableSinkError, match=r"table name .* is 72 bytes; PostgreSQL keeps only the first 63"):
        run_sink(cfg, kafka)
    assert _tables(pg_url, f"t{unique}") == []
    assert stored_offsets(cfg) == {}


def test_a_column_name_over_63_bytes_is_refused_and_63_bytes_work(pg_url, kafka, topic_factory, unique):
    topic = topic_factory("identc")
    ok_table = f"t{unique}_" + "x" * (63 - len(f"t{unique}_"))
    assert len(ok_table.encode()) == 63
    long_col = "c" * 64
    produce(kafka, topic, [(0, None, {"id": 1, long_col: 1}, None)])
    cfg = _cfg(pg_url, topic, unique, ok_table)
    try:
        with pytest.raises(TableSinkError, match=f"column name '{long_col}' is 64 bytes"):
            run_sink(cfg, kafka)
        assert _tables(pg_url, f"t{unique}") == []
        topic2 = topic_factory("identd")
        produce(kafka, topic2, [(0, None, {"id": 1, "c" * 63: 7}, None)])
        res = run_sink(cfg.model_copy(update={"topics": [topic2], "name": f"ident2-{unique}"}), kafka)
        assert res.rows == 1
        with psycopg.connect(pg_url) as c:
            assert c.execute(f'SELECT id, "{"c" * 63}" FROM "{ok_table}"').fetchall() == [(1, 7)]
    finally:
        with psycopg.connect(pg_url, autocommit=True) as c:
            c.execute(f'DROP TABLE IF EXISTS "{ok_table}"')
