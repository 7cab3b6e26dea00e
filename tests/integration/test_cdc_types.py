"""Column types through CDC: a row read by the snapshot and the same row streamed give the same ``after``
(so replicas built from either agree), with exact values for the typed ones."""

from __future__ import annotations

from tests.integration.cdc_helpers import Cdc, cdc_fixture, envelopes  # noqa: F401 (fixture)

COLUMNS = """id int PRIMARY KEY, si smallint, bi bigint, nm numeric(12,3), nu numeric, r real, d double precision,
    b boolean, t text, vc varchar(10), ch char(3), dt date, ts timestamp, tz timestamptz, tm time, iv interval,
    u uuid, j json, jb jsonb, by bytea, arr int[]"""
VALUES = """{id}, -32768, 9007199254740993, -12345.678, 123456789012345678901234567890.5, 1.5, -2.25e-10,
    true, E'quote" back\\\\ slash\\nnew line, comma \u00e9\u6f22 "value":1', 'abc', 'xy', '2024-02-29',
    '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.5+02', '13:14:15', '1 day 2 hours',
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{"a": [1, 2]}}', '{{"b": null}}', '\\x00ff', '{{1,2,3}}'"""


def test_snapshot_and_stream_agree_on_every_type(cdc: Cdc) -> None:
    cdc.sql(f"CREATE TABLE typed ({COLUMNS})", f"INSERT INTO typed VALUES ({VALUES.format(id=1)})",
            "INSERT INTO typed (id) VALUES (3)")
    cdc.run()  # snapshot: rows 1 and 3
    cdc.sql(f"INSERT INTO typed VALUES ({VALUES.format(id=2)})", "INSERT INTO typed (id) VALUES (4)")
    cdc.run()
    rows = {k["id"]: v for k, v in envelopes(cdc.kafka, cdc.topic("typed"))}
    assert [rows[i]["op"] for i in (1, 2, 3, 4)] == ["r", "c", "r", "c"]
    snap, stream = dict(rows[1]["after"]), dict(rows[2]["after"])
    assert snap.pop("id") == 1 and stream.pop("id") == 2
    assert snap == stream
    assert {k: v for k, v in rows[3]["after"].items() if k != "id"} == \
        {k: v for k, v in rows[4]["after"].items() if k != "id"} == {k: None for k in snap}
    assert snap["si"] == -32768 and snap["bi"] == 9007199254740993 and snap["b"] is True
    assert snap["nm"] == -12345.678 and snap["nu"] == "123456789012345678901234567890.5"
    assert snap["r"] == 1.5 and snap["d"] == -2.25e-10
    assert snap["t"] == 'quote" back\\ slash\nnew line, comma é漢 "value":1'
    assert snap["vc"] == "abc" and snap["ch"] == "xy " and snap["dt"] == "2024-02-29"
    assert snap["ts"].startswith("2024-01-02") and "03:04:05.123456" in snap["ts"]
    assert "01:04:05.5" in snap["tz"]  # the instant in UTC
    assert snap["u"] == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" and snap["arr"] == "{1,2,3}"
    assert snap["jb"] == '{"b": null}' and snap["by"] == "00ff"  # bytea: hex, as wal2json prints it
