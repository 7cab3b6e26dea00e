"""Avro and JSON-with-schema end to end: PostgreSQL → Kafka → Parquet, against a real Schema
Registry-compatible server (Apicurio Registry from Maven Central, Confluent API at /apis/ccompat/v7,
started by infra/schema-registry/setup.sh). The sink declares no schema: the types come from the
registry (Avro) or the envelope (json_schema). Schema evolution: a table that gains a column
registers a second, compatible version, and the sink writes the new column.
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import subprocess
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from confluent_kafka.schema_registry import SchemaRegistryClient

from integrations.config import ParquetSinkConfig, SqlSourceConfig
from integrations.runtime.sink_runner import run_sink
from integrations.runtime.source_runner import run_source
from tests.conftest import REPO

REGISTRY = os.environ.get("HEADRACE_SCHEMA_REGISTRY_URL",
                          f"http://127.0.0.1:{os.environ.get('HEADRACE_SCHEMA_REGISTRY_PORT', '18081')}"
                          "/apis/ccompat/v7")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=3) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def schema_registry() -> str:
    """The registry URL; starts the local one (infra/schema-registry/setup.sh) when it is not up."""
    if not _answers(REGISTRY):
        proc = subprocess.run(["bash", str(REPO / "infra/schema-registry/setup.sh")], capture_output=True,
                              text=True, timeout=600)
        if proc.returncode != 0 or not _answers(REGISTRY):
            pytest.fail(f"the schema registry is required and did not start: {proc.stderr[-2000:]}", pytrace=False)
    return REGISTRY


ROWS = [
    (1, decimal.Decimal("12345678901234.567890"), dt.datetime(2024, 3, 31, 1, 59, 59, 999999, tzinfo=dt.UTC),
     dt.datetime(2024, 10, 27, 2, 30, 0, 1), dt.date(2024, 2, 29), "emoji 😀", b"\x00\xff", True, 1.5, 32767),
    (2, decimal.Decimal("-0.000001"), dt.datetime(1960, 1, 1, tzinfo=dt.UTC), dt.datetime(2000, 1, 1),
     dt.date(1900, 1, 1), "", b"", False, -2.5e-300, -32768),
    (3, None, None, None, None, None, None, None, None, None),
]
COLUMNS = ["id", "amount", "at", "local_at", "day", "txt", "raw", "flag", "ratio", "small"]


def _make_table(pg_url: str) -> None:
    eng = sa.create_engine(pg_url)
    with eng.begin() as c:
        c.execute(sa.text(
            "CREATE TABLE orders (id bigint PRIMARY KEY, amount numeric(20,6), at timestamptz, local_at timestamp, "
            "day date, txt text, raw bytea, flag boolean, ratio double precision, small smallint)"))
        for r in ROWS:
            c.execute(sa.text("INSERT INTO orders VALUES (:id, :amount, :at, :local_at, :day, :txt, :raw, :flag, "
                              ":ratio, :small)"), dict(zip(COLUMNS, r, strict=True)))
    eng.dispose()


def _read(root: Path, topic: str) -> pa.Table:
    files = sorted(f for f in (root / topic).rglob("*.parquet") if not f.name.startswith("."))
    return pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive").sort_by("id")


@pytest.mark.parametrize("converter", ["avro", "json_schema"])
def test_sql_to_kafka_to_parquet_without_a_declared_schema(converter, schema_registry, pg_url, kafka, topic_factory,
                                                           unique, tmp_path):
    _make_table(pg_url)
    topic, offsets = topic_factory(f"orders-{converter}", create=False), topic_factory("offsets")
    conv = ({"type": "avro", "schema_registry_url": schema_registry} if converter == "avro"
            else {"type": "json", "schemas_enable": True})
    src = SqlSourceConfig(name=f"src-{unique}", type="sql_source", connection_url=pg_url, mode="incrementing",
                          incrementing_column="id", query="SELECT * FROM orders", topic_prefix=topic,
                          value_converter=conv)
    assert run_source(src, kafka, offsets).rows == 3
    sink = ParquetSinkConfig(name=f"sink-{unique}", type="parquet_sink", topics=[topic], path=str(tmp_path),
                             value_converter=conv)
    assert run_sink(sink, kafka).rows == 3
    out = _read(tmp_path, topic)
    types = dict(zip(out.column_names, out.schema.types, strict=True))
    assert types["amount"] == pa.decimal128(20, 6)
    assert types["at"] == pa.timestamp("us", tz="UTC") and types["local_at"] == pa.timestamp("us")
    assert types["day"] == pa.date32() and types["raw"] == pa.binary() and types["small"] == pa.int16()
    assert [tuple(r[c] for c in COLUMNS) for r in out.to_pylist()] == ROWS

    # schema evolution: the table gains a column; the source produces the new schema, the sink accepts it
    eng = sa.create_engine(pg_url)
    with eng.begin() as c:
        c.execute(sa.text("ALTER TABLE orders ADD COLUMN note text"))
        c.execute(sa.text("INSERT INTO orders (id, note) VALUES (4, 'new column')"))
    eng.dispose()
    assert run_source(src, kafka, offsets).rows == 1
    assert run_sink(sink, kafka).rows == 1
    out = _read(tmp_path, topic)
    assert out.column("note").to_pylist() == [None, None, None, "new column"]
    assert out.column("id").to_pylist() == [1, 2, 3, 4]
    if converter == "avro":
        client = SchemaRegistryClient({"url": schema_registry})
        assert sorted(client.get_versions(f"{topic}-value")) == [1, 2]
        latest = client.get_latest_version(f"{topic}-value")
        assert '"name":"note"' in latest.schema.schema_str.replace(" ", "")
        client.delete_subject(f"{topic}-value", permanent=False)


def test_avro_poison_and_foreign_bytes_go_to_the_dlq(schema_registry, kafka, topic_factory, unique, tmp_path):
    from integrations.converters.avro import AvroConverter
    from tests.helpers import read_messages
    from tests.integration.test_errors import headers_of, produce_raw

    topic, dlq = topic_factory("avro-poison"), topic_factory("avro-poison-dlq", create=False)
    conv = AvroConverter(schema_registry)
    good = conv.encode_values(pa.table({"id": pa.array(range(6), pa.int64()), "s": [f"s{i}" for i in range(6)]}),
                              topic).to_pylist()
    values = [good[0], good[1], b'{"id": 2}', good[3], good[4][:-2], good[5]]  # plain JSON, truncated Avro
    produce_raw(kafka, topic, values)
    cfg = ParquetSinkConfig(name=f"avro-{unique}", type="parquet_sink", topics=[topic], path=str(tmp_path),
                            value_converter={"type": "avro", "schema_registry_url": schema_registry},
                            errors_tolerance="all", dlq_topic=dlq)
    res = run_sink(cfg, kafka)
    assert (res.rows, res.dead_lettered) == (4, 2)
    assert _read(tmp_path, topic).column("id").to_pylist() == [0, 1, 3, 5]
    dead = read_messages(kafka, dlq)
    assert [m.value() for m in dead] == [values[2], values[4]]
    assert [headers_of(m)["__connect.errors.offset"] for m in dead] == ["2", "4"]
    assert {headers_of(m)["__connect.errors.class.name"] for m in dead} == {"io.confluent.connect.avro.AvroConverter"}
    SchemaRegistryClient({"url": schema_registry}).delete_subject(f"{topic}-value", permanent=False)


def test_unknown_schema_id_is_a_bad_record_not_an_outage(schema_registry):
    from integrations.converters.avro import AvroConverter
    from integrations.converters.json import ConversionError
    from integrations.runtime.errors import is_transient

    with pytest.raises(ConversionError, match="fetching schema id 2147483647") as exc:
        AvroConverter(schema_registry).decode([b"\x00\x7f\xff\xff\xff\x02"])
    assert not is_transient(exc.value)


def test_table_sink_upserts_and_deletes_on_avro_keys(schema_registry, kafka, topic_factory, unique, tmp_path):
    """key_converter avro: pk_mode record_key reads the key fields through the registry."""
    from integrations.config import TableSinkConfig
    from integrations.converters.avro import AvroConverter
    from tests.integration.test_table_sink import _fetch

    topic = topic_factory("avro-keys")
    keys = AvroConverter(schema_registry, is_key=True).encode_values(
        pa.table({"id": pa.array([1, 2, 1, 3, 2], pa.int64()), "region": ["eu", "us", "eu", "eu", "us"]}), topic)
    values = AvroConverter(schema_registry).encode_values(
        pa.table({"amount": pa.array([10, 20, 11, 30, 0], pa.int64())}), topic).to_pylist()
    values[4] = None  # a tombstone for (2, us)
    p = kafka.producer()
    for k, v in zip(keys.to_pylist(), values, strict=True):
        p.produce(topic, key=k, value=v)
    assert p.flush(30) == 0
    conv = {"type": "avro", "schema_registry_url": schema_registry}
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    cfg = TableSinkConfig(type="table_sink", name=f"avk-{unique}", topics=[topic], connection_url=url,
                          key_converter=conv, value_converter=conv, auto_create=True, insert_mode="upsert",
                          pk_mode="record_key", delete_enabled=True)
    res = run_sink(cfg, kafka)
    assert (res.rows, res.tombstones) == (4, 1)
    assert _fetch(url, f'SELECT id, region, amount FROM "{topic}" ORDER BY id') == [(1, "eu", 11), (3, "eu", 30)]
    client = SchemaRegistryClient({"url": schema_registry})
    for subject in (f"{topic}-key", f"{topic}-value"):
        client.delete_subject(subject, permanent=False)
