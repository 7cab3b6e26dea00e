"""The project's local broker keeps records with old timestamps.

Kafka's default time retention (a week) deletes a segment, the active one included, once its newest
record is older than that: records produced with 2024 timestamps vanished at the broker's first
retention check, 30 s after it started, and a sink then read nothing. The local broker retains by
size only. A throwaway broker here runs its retention check every second; a control topic with an
explicit week of retention proves the check ran, while the default topic keeps every record.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from confluent_kafka import TopicPartition

from integrations.kafka.cluster import KafkaSettings
from integrations.kafka.local import LocalKafka
from tests.conftest import free_port, remove_broker

OLD = 1_710_000_000_000  # 2024-03-09, long past a week of retention


@pytest.fixture(scope="module")
def eager_broker(kafka) -> Iterator[KafkaSettings]:
    """A broker whose retention check runs every second (the shared one provides the jars)."""
    broker = LocalKafka(port=free_port(), controller_port=free_port(), heap="256m",
                        extra_properties=("log.initial.task.delay.ms=500", "log.retention.check.interval.ms=1000"))
    broker.up(wait=120)
    try:
        yield KafkaSettings(bootstrap_servers=broker.bootstrap, client_config={})
    finally:
        remove_broker(broker)


def _low_high(settings: KafkaSettings, topic: str) -> tuple[int, int]:
    c = settings.consumer(group_id="retention-probe")
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        c.close()


def test_records_with_old_timestamps_survive_the_retention_check(eager_broker):
    settings = eager_broker
    settings.ensure_topic("kept")
    settings.ensure_topic("week", config={"retention.ms": str(7 * 86_400_000)})
    p = settings.producer()
    for topic in ("kept", "week"):
        for i in range(5):
            p.produce(topic, value=b"%d" % i, timestamp=OLD + i)
    assert p.flush(30) == 0
    del p  # no client may outlive the broker
    deadline = time.monotonic() + 60
    while _low_high(settings, "week") != (5, 5) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _low_high(settings, "week") == (5, 5), "the retention check never ran on the control topic"
    assert _low_high(settings, "kept") == (0, 5)
    c = settings.consumer(group_id="retention-reader")
    try:
        c.assign([TopicPartition("kept", 0, 0)])
        values = [m.value() for m in c.consume(num_messages=10, timeout=10) if not m.error()]
    finally:
        c.close()
    assert values == [b"0", b"1", b"2", b"3", b"4"]
