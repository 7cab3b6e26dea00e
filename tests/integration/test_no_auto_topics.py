"""No accidental topics: a sink's sensor, its lag probe and lag check, and a sink run against a topic
that does not exist create nothing; the source then creates the topic with its configured partition
count; an existing topic with another count draws a warning naming both. Real broker, which runs with
``auto.create.topics.enable=false`` (and every client with ``allow.auto.create.topics=false``)."""

from __future__ import annotations

import logging
import time

import dagster as dg
from confluent_kafka.admin import AdminClient

from assets.checks import lag_checks
from assets.factory import sink_defs
from assets.sensors import connector_sensor
from integrations.config import ParquetSinkConfig, SqlSourceConfig
from integrations.kafka.cluster import KafkaSettings
from integrations.kafka.local import LocalKafka
from integrations.runtime.checks import sink_pending
from integrations.runtime.sink_runner import lag, run_sink
from integrations.runtime.source_runner import run_source
from resources.kafka import KafkaResource
from tests.conftest import free_port, remove_broker
from tests.integration.source_helpers import gaps_and_duplicates, numbered_table, read_ids


def _exists(kafka, topic: str) -> bool:
    return topic in kafka.admin().list_topics(timeout=10).topics


def test_probes_and_sinks_create_no_topic_then_the_source_creates_it_with_its_partitions(
        pg_url, kafka, topic_factory, unique, tmp_path):
    table = f"auto_{unique}"
    prefix = topic_factory("auto", create=False)
    topic = prefix + table
    offsets = topic_factory("auto-offs", create=False)
    sink = ParquetSinkConfig(name=f"auto-sink-{unique}", type="parquet_sink", topics=[topic],
                             path=str(tmp_path / "pq"))
    try:
        _probe_then_produce(pg_url, kafka, table, prefix, topic, offsets, sink, unique)
    finally:
        kafka.delete_topics([topic])


def _probe_then_produce(pg_url, kafka, table, prefix, topic, offsets, sink, unique) -> None:

    # the engine's probes
    assert kafka.partitions(topic) == [] and kafka.watermarks(topic) == {}
    assert kafka.committed(sink.consumer_group, topic) == {}
    assert sink_pending(sink, kafka) == []
    assert sum(lag(kafka, sink.consumer_group, [topic]).values()) == 0
    # the Dagster sensor and lag check
    defs = sink_defs(sink)
    sensor = connector_sensor(sink, defs.sensor_job)
    instance = dg.DagsterInstance.ephemeral()
    with dg.build_sensor_context(instance=instance, resources={"kafka": KafkaResource()}) as ctx:
        evaluated = sensor(ctx)
    assert isinstance(evaluated, dg.SkipReason) and "no lag" in evaluated.skip_message
    (check,) = lag_checks(sink)
    assert check(kafka=KafkaResource()).metadata["lag"].value == 0
    # a sink run
    assert run_sink(sink, kafka).rows == 0
    assert not _exists(kafka, topic), "a probe or the sink created the topic"

    # the source creates it, with the configured partition count
    numbered_table(pg_url, table, 3000)
    src = SqlSourceConfig(name=f"auto-src-{unique}", type="sql_source", connection_url=pg_url, mode="incrementing",
                          incrementing_column="id", tables=[table], topic_prefix=prefix, key_columns=["id"],
                          topic_partitions=3)
    assert run_source(src, kafka, offsets).rows == 3000
    assert kafka.partitions(topic) == [0, 1, 2]
    assert gaps_and_duplicates(read_ids(kafka, topic), 3000) == (0, 0)
    assert run_sink(sink, kafka).rows == 3000


def test_an_existing_topic_with_another_partition_count_draws_a_warning(pg_url, kafka, topic_factory, unique,
                                                                         caplog):
    table = f"warn_{unique}"
    prefix = topic_factory("warn", create=False)
    topic = prefix + table
    kafka.ensure_topic(topic, partitions=2)
    offsets = topic_factory("warn-offs", create=False)
    numbered_table(pg_url, table, 100)
    src = SqlSourceConfig(name=f"warn-{unique}", type="sql_source", connection_url=pg_url, mode="incrementing",
                          incrementing_column="id", tables=[table], topic_prefix=prefix, topic_partitions=3)
    try:
        with caplog.at_level(logging.WARNING, logger="headrace.kafka"):
            assert run_source(src, kafka, offsets).rows == 100
        warned = [r.getMessage() for r in caplog.records if r.name == "headrace.kafka"]
        assert warned == [f"topic {topic!r} has 2 partition(s) but the connector is configured for 3 "
                          "(topic_partitions); it is used as it is"]
        assert kafka.partitions(topic) == [0, 1]
        assert gaps_and_duplicates(read_ids(kafka, topic), 100) == (0, 0)
    finally:
        kafka.delete_topics([topic])


def test_clients_create_no_topic_on_a_broker_that_auto_creates(kafka, tmp_path):
    """Clusters elsewhere may auto-create topics (Kafka's default): the engine's clients never ask them to.
    Without ``allow.auto.create.topics=false`` the admin client's metadata lookup of a missing topic made
    the broker create it with one partition."""
    broker = LocalKafka(port=free_port(), controller_port=free_port(), heap="256m",
                        extra_properties=("auto.create.topics.enable=true",))
    broker.up(wait=120)
    try:
        settings = KafkaSettings(bootstrap_servers=broker.bootstrap, client_config={})
        sink = ParquetSinkConfig(name="auto-elsewhere", type="parquet_sink", topics=["missing"], path=str(tmp_path))
        assert settings.partitions("missing") == [] and settings.watermarks("missing") == {}
        assert settings.committed(sink.consumer_group, "missing") == {}
        assert sink_pending(sink, settings) == []
        assert sum(lag(settings, sink.consumer_group, ["missing"]).values()) == 0
        assert run_sink(sink, settings).rows == 0
        time.sleep(1)
        assert "missing" not in settings.admin().list_topics(timeout=10).topics
        # the control: a client that allows it does create the topic on this broker
        AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(topic="control", timeout=10)
        deadline = time.monotonic() + 10
        while "control" not in settings.admin().list_topics(timeout=10).topics:
            assert time.monotonic() < deadline, "the broker did not auto-create: the test proves nothing"
            time.sleep(0.2)
    finally:
        remove_broker(broker)
