"""ExtractNewRecordState on CDC events: at the source (keys kept through the chain) and its modes."""

from __future__ import annotations

from tests.integration.cdc_helpers import Cdc, cdc_fixture, envelopes  # noqa: F401 (fixture)


def test_unwrap_at_the_source_rewrite_and_add_fields(cdc: Cdc) -> None:
    cdc.sql("CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    cdc.overrides["transforms"] = [{"type": "ExtractNewRecordState", "delete_handling_mode": "rewrite",
                                    "add_fields": "op,table,source.lsn"}]
    cdc.run()  # snapshot: two reads
    cdc.sql("UPDATE t SET v = 'c' WHERE id = 1", "DELETE FROM t WHERE id = 2", "TRUNCATE t")
    cdc.run()
    got = [(k, v) for k, v in envelopes(cdc.kafka, cdc.topic("t"))]
    # tombstones dropped (drop_tombstones default), the truncate dropped, keys kept
    assert [(k["id"], v["v"], v["__op"], v["__deleted"]) for k, v in got] == [
        (1, "a", "r", "false"), (2, "b", "r", "false"), (1, "c", "u", "false"), (2, None, "d", "true")]  # DEFAULT identity: the old key only
    assert all(v["__table"] == "t" and v["__source_lsn"] > 0 for _k, v in got)
    assert set(got[0][1]) == {"id", "v", "__deleted", "__op", "__table", "__source_lsn"}


def test_unwrap_drop_mode_keeps_only_new_states(cdc: Cdc) -> None:
    cdc.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    cdc.overrides.update(snapshot_mode="never", transforms=[{"type": "ExtractNewRecordState"}])
    cdc.run()
    cdc.sql("INSERT INTO t VALUES (1, 'a'), (2, 'b')", "DELETE FROM t WHERE id = 1")
    cdc.run()
    assert [(k, v) for k, v in envelopes(cdc.kafka, cdc.topic("t"))] == [
        ({"id": 1}, {"id": 1, "v": "a"}), ({"id": 2}, {"id": 2, "v": "b"})]
