"""Poison pills on a sink and a source, under errors_tolerance none and all, against the real broker.

Under none the connector stops with a clear error and no offset moves past the bad record; under
all the good records flow and the dead-letter topic holds exactly the bad ones, with Kafka
Connect's context headers.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest

from integrations.config import ParquetSinkConfig, SqlSourceConfig
from integrations.errors import KafkaUnavailable
from integrations.kafka.cluster import KafkaSettings
from integrations.offsets import OffsetStore
from integrations.runtime.error_config import ErrorSettings
from integrations.runtime.errors import ErrorHandler, RecordError, TransientError
from integrations.runtime.sink_runner import run_sink
from integrations.runtime.source_runner import run_source
from tests.helpers import produce_all, read_messages

GOOD = lambda i: orjson.dumps({"id": i, "name": f"n{i}"})  # noqa: E731
POISON = {
    3: b'{"id": 3, "name": ',  # malformed JSON
    5: b'{"id": "five", "name": "x"}',  # wrong type
    7: b'{"id": 7, "name": "bad \xff utf-8"}',  # invalid UTF-8
}


def produce_raw(kafka: KafkaSettings, topic: str, values: list[bytes], keys: list[bytes | None] | None = None
                ) -> None:
    produce_all(kafka, topic, ({"value": v, "key": None if keys is None else keys[i], "headers": [("origin", b"test")]}
                               for i, v in enumerate(values)), **{"linger.ms": 5})


def ids_in(root: Path, topic: str) -> list[int]:
    return sorted(i for f in (root / topic).rglob("*.parquet") if not f.name.startswith(".")
                  for i in pq.read_table(f).column("id").to_pylist())


def headers_of(m) -> dict[str, str]:
    return {k: v.decode() for k, v in m.headers() or [] if k.startswith("__connect.errors.")}


def test_sink_poison_pills_stop_under_none_and_are_dead_lettered_under_all(kafka, topic_factory, unique, tmp_path):
    topic, dlq = topic_factory("poison"), topic_factory("poison-dlq", create=False)
    values = [POISON.get(i, GOOD(i)) for i in range(10)]
    produce_raw(kafka, topic, values, keys=[str(i).encode() for i in range(10)])
    base = dict(name=f"poison-{unique}", type="parquet_sink", topics=[topic], path=str(tmp_path),
                value_schema={"id": "int64", "name": "string"}, flush_size=1000)

    # none: stops at offset 3, after writing and committing exactly the records before it
    for _ in range(2):  # a re-run stops at the same place, with no duplicates
        with pytest.raises(RecordError, match=rf"VALUE_CONVERTER failed for the record at topic {topic} "
                                              r"partition 0 offset 3.*errors_tolerance is 'none'"):
            run_sink(ParquetSinkConfig(**base))
        assert kafka.committed(f"headrace-poison-{unique}", topic) == {0: 3}
        assert ids_in(tmp_path, topic) == [0, 1, 2]
    assert dlq not in kafka.admin().list_topics(timeout=10).topics

    # all: the good records flow, the DLQ holds exactly the three bad ones
    res = run_sink(ParquetSinkConfig(**base, errors_tolerance="all", dlq_topic=dlq, errors_log_enable=True))
    assert (res.rows, res.dead_lettered, res.failed) == (4, 3, 3)
    assert kafka.committed(f"headrace-poison-{unique}", topic) == {0: 10}
    assert ids_in(tmp_path, topic) == [0, 1, 2, 4, 6, 8, 9]
    dead = read_messages(kafka, dlq)
    assert [m.value() for m in dead] == [POISON[3], POISON[5], POISON[7]]
    assert [m.key() for m in dead] == [b"3", b"5", b"7"]
    for m, off in zip(dead, (3, 5, 7), strict=True):
        h = headers_of(m)
        assert {k: h[k] for k in list(h) if "exception" not in k} == {
            "__connect.errors.topic": topic, "__connect.errors.partition": "0",
            "__connect.errors.offset": str(off), "__connect.errors.connector.name": f"poison-{unique}",
            "__connect.errors.task.id": "0", "__connect.errors.stage": "VALUE_CONVERTER",
            "__connect.errors.class.name": "org.apache.kafka.connect.json.JsonConverter",
        }
        assert h["__connect.errors.exception.class.name"] == "integrations.converters.json.ConversionError"
        assert "ConversionError" in h["__connect.errors.exception.stacktrace"]
        assert ("origin", b"test") in m.headers()  # the original headers are kept
    assert "malformed JSON" in headers_of(dead[0])["__connect.errors.exception.message"]
    assert "changed from string" in headers_of(dead[1])["__connect.errors.exception.message"] or \
        "string" in headers_of(dead[1])["__connect.errors.exception.message"]
    assert "UTF8" in headers_of(dead[2])["__connect.errors.exception.message"].replace("-", "").upper()
    # nothing left: a further run moves nothing and dead-letters nothing
    again = run_sink(ParquetSinkConfig(**base, errors_tolerance="all", dlq_topic=dlq))
    assert (again.rows, again.dead_lettered) == (0, 0)


def test_sink_tolerates_without_dlq_and_counts_failures(kafka, topic_factory, unique, tmp_path):
    topic = topic_factory("poison-nodlq")
    produce_raw(kafka, topic, [POISON.get(i, GOOD(i)) for i in range(10)])
    cfg = ParquetSinkConfig(name=f"nodlq-{unique}", type="parquet_sink", topics=[topic], path=str(tmp_path),
                            errors_tolerance="all")  # no value_schema: types are inferred
    res = run_sink(cfg)
    assert (res.rows, res.dead_lettered, res.failed) == (7, 0, 3)
    assert ids_in(tmp_path, topic) == [0, 1, 2, 4, 6, 8, 9]


def _items_db(path: Path, big: int, bad_qty: int) -> str:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, qty TEXT, note TEXT)")
    for i in range(1, 11):
        note = "x" * 5_000_000 if i == big else f"note {i}"  # 5 MB: over the broker's 4 MB and the producer's 1 MB
        con.execute("INSERT INTO items VALUES (?, ?, ?)", (i, "abc" if i == bad_qty else str(i * 10), note))
    con.commit()
    con.close()
    return f"sqlite:///{path}"


def test_source_poison_rows_stop_under_none_and_are_dead_lettered_under_all(kafka, topic_factory, unique, tmp_path):
    url = _items_db(tmp_path / "src.db", big=5, bad_qty=8)
    offsets = topic_factory("offsets")
    topic, dlq = topic_factory("src-poison", create=False), topic_factory("src-poison-dlq", create=False)
    base = dict(type="sql_source", connection_url=url, mode="incrementing", incrementing_column="id",
                query="SELECT * FROM items", topic_prefix=topic, batch_max_rows=3,
                transforms=[{"type": "Cast.Value", "spec": "qty:int32"}])

    cfg = SqlSourceConfig(name=f"srcnone-{unique}", **base)
    with pytest.raises(RecordError, match=r"KAFKA_PRODUCE failed .* record of 5000\d+ bytes exceeds the "
                                          r"producer's message.max.bytes"):
        run_source(cfg, kafka, offsets)
    # the first batch (ids 1-3) went out and its offset was stored; nothing of the failing batch did
    assert [orjson.loads(m.value())["id"] for m in read_messages(kafka, topic)] == [1, 2, 3]
    assert OffsetStore(kafka, offsets).read(cfg.name)['{"query":"query"}']["incrementing"] == 3

    cfg = SqlSourceConfig(name=f"srcall-{unique}", **base, errors_tolerance="all", dlq_topic=dlq)
    res = run_source(cfg, kafka, offsets)
    assert (res.rows, res.dead_lettered) == (8, 2)
    sent = [orjson.loads(m.value()) for m in read_messages(kafka, topic)]
    assert [r["id"] for r in sent] == [1, 2, 3, 1, 2, 3, 4, 6, 7, 9, 10]
    assert OffsetStore(kafka, offsets).read(cfg.name)['{"query":"query"}']["incrementing"] == 10
    dead = read_messages(kafka, dlq)
    assert len(dead) == 2
    big, cast = sorted(dead, key=lambda m: headers_of(m)["__connect.errors.stage"])
    hb, hc = headers_of(big), headers_of(cast)
    assert hb["__connect.errors.stage"] == "KAFKA_PRODUCE" and hb["__connect.errors.topic"] == topic
    assert hb["__connect.errors.partition"] == '{"query":"query"}'
    assert hb["__connect.errors.offset"] == '{"incrementing":6}'  # the offset stored after that batch
    assert dict(big.headers())["__headrace.errors.value.truncated"] == b"true"
    assert int(dict(big.headers())["__headrace.errors.value.original.size"]) > 5_000_000
    assert orjson.loads(big.value()[:0] + b"{}") == {} and big.value().startswith(b'{"id":5,')
    assert hc["__connect.errors.stage"] == "TRANSFORMATION"
    assert orjson.loads(cast.value()) == {"id": 8, "qty": "abc", "note": "note 8"}
    assert hc["__connect.errors.offset"] == '{"incrementing":9}'


def test_retry_backoff_is_exponential_capped_and_bounded():
    sleeps: list[float] = []

    def fake_sleep(s: float) -> None:
        sleeps.append(s)

    calls = [0]

    def flaky() -> str:
        calls[0] += 1
        if calls[0] < 5:
            raise ConnectionError("refused")
        return "ok"

    h = ErrorHandler(ErrorSettings(errors_retry_timeout=-1, errors_retry_delay_max=1.0), "c", sleep=fake_sleep)
    assert h.retry(flaky, "x") == "ok"
    assert sleeps == [0.3, 0.6, 1.0, 1.0]
    with pytest.raises(ValueError):  # bad data is never retried
        h.retry(lambda: (_ for _ in ()).throw(ValueError("bad")), "x")
    # a lost connection is retried by default (connection_retry_timeout, 300 s); 0 leaves errors_retry_timeout
    no_retry = ErrorHandler(ErrorSettings(connection_retry_timeout=0), "c", sleep=fake_sleep)
    with pytest.raises(ConnectionError):
        no_retry.retry(lambda: (_ for _ in ()).throw(ConnectionError("refused")), "x")


def test_unreachable_broker_is_retried_until_errors_retry_timeout(tmp_path):
    dead = KafkaSettings(bootstrap_servers="127.0.0.1:1", connect_retries=1)
    cfg = ParquetSinkConfig(name="unreachable", type="parquet_sink", topics=["t"], path=str(tmp_path),
                            errors_retry_timeout=8, errors_retry_delay_max=1)
    started = time.monotonic()  # each attempt itself waits ~3 s for metadata
    with pytest.raises(TransientError, match=r"connecting to Kafka still failing after [2-9] attempts over 8s"):
        run_sink(cfg, dead)
    assert 6.0 <= time.monotonic() - started < 40
    with pytest.raises(KafkaUnavailable):  # no retry budget: the first failure is final
        run_sink(cfg.model_copy(update={"errors_retry_timeout": 0}), dead)


def test_dlq_topic_cannot_be_a_topic_the_sink_reads(kafka, tmp_path):
    from integrations.errors import ConfigError

    cfg = ParquetSinkConfig(name="loop", type="parquet_sink", topics=["a", "b"], path=str(tmp_path),
                            errors_tolerance="all", dlq_topic="b")
    with pytest.raises(ConfigError, match="dlq_topic 'b' is also one of its topics"):
        run_sink(cfg, kafka)
