"""Settings and client factories for the Kafka cluster the connectors talk to.

The cluster is ``KAFKA_BOOTSTRAP_SERVERS`` when set (nothing local is started then), else the local
broker on ``127.0.0.1:$HEADRACE_KAFKA_PORT``. Extra librdkafka properties (``security.protocol``,
``sasl.*``, ``ssl.*``) come from ``HEADRACE_KAFKA_CONFIG`` as ``key=value`` pairs separated by ``;``,
with ``${env:VAR}`` for secrets; they are never logged.

No client made here creates a topic by accident: a metadata request for a missing topic (a sensor's
lag probe, a watermark lookup, a sink's partition listing) must not make the broker auto-create it
with its default partition count, so every client sets ``allow.auto.create.topics=false`` (librdkafka
defaults it to true for producers and the admin client). Topics are created only on purpose, by
:meth:`KafkaSettings.ensure_topic` with the configured partition count.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from integrations.errors import KafkaRefused, KafkaUnavailable

log = logging.getLogger("headrace.kafka")
#: set on every client: only ``ensure_topic`` creates topics
NO_AUTO_CREATE = {"allow.auto.create.topics": False}


def _extra_config() -> dict[str, str]:
    from integrations.config import resolve_env

    raw = os.environ.get("HEADRACE_KAFKA_CONFIG", "")
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in raw.split(";"))):
        k, _, v = part.partition("=")
        out[k.strip()] = resolve_env(v.strip())
    return out


#: one AdminClient per (cluster, client config) and process, see ``KafkaSettings.admin``
_ADMINS: dict[tuple, tuple[int, AdminClient]] = {}
#: the last error librdkafka reported to each shared AdminClient (served by ``AdminClient.poll``)
_LAST_ERROR: dict[tuple, KafkaError] = {}
#: errors that mean the broker refused us, with what to check (no secret is ever part of the text)
_REFUSALS = {
    KafkaError._SSL: ("the TLS handshake failed", "check ssl.ca.location against the broker's certificate"),
    KafkaError._AUTHENTICATION: ("authentication failed", "check sasl.mechanism, sasl.username and sasl.password"),
}


@dataclass(frozen=True)
class KafkaSettings:
    """Where the cluster is and how to talk to it."""

    bootstrap_servers: str
    client_config: dict[str, str] = field(default_factory=dict, repr=False)
    connect_retries: int = 5
    connect_backoff: float = 0.5
    message_timeout_ms: int = 120_000

    @classmethod
    def from_env(cls) -> KafkaSettings:
        """Settings from the environment (``KAFKA_BOOTSTRAP_SERVERS`` or the local broker)."""
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or (
            f"127.0.0.1:{os.environ.get('HEADRACE_KAFKA_PORT', '9092')}"
        )
        return cls(
            bootstrap_servers=bootstrap,
            client_config=_extra_config(),
            connect_retries=int(os.environ.get("HEADRACE_KAFKA_CONNECT_RETRIES", "5")),
            message_timeout_ms=int(os.environ.get("HEADRACE_KAFKA_MESSAGE_TIMEOUT_MS", "120000")),
        )

    @property
    def is_external(self) -> bool:
        """True when the user pointed us at an existing cluster."""
        return bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))

    def base(self) -> dict[str, Any]:
        """The client config every client starts from (never creating topics by accident)."""
        # librdkafka's own log lines go to Python logging (``headrace.kafka.client``), not straight to
        # stderr, so the CLI can keep an expected failure to one line (it quiets that logger)
        return {"bootstrap.servers": self.bootstrap_servers, **NO_AUTO_CREATE, **self.client_config,
                "logger": logging.getLogger("headrace.kafka.client")}

    def admin(self) -> AdminClient:
        """The process's AdminClient for this cluster, shared: metadata calls reuse its connection
        instead of paying a new client's bootstrap (~35 ms each) every time."""
        key = self._key()
        hit = _ADMINS.get(key)
        if hit is None or hit[0] != os.getpid():  # a forked child needs its own client
            hit = (os.getpid(), AdminClient({**self.base(), "error_cb": partial(_LAST_ERROR.__setitem__, key)}))
            _ADMINS[key] = hit
        return hit[1]

    def _key(self) -> tuple:
        return (self.bootstrap_servers, tuple(sorted(self.client_config.items())))

    def producer(self, **overrides: Any) -> Producer:
        """An idempotent producer with acks=all, sized for batch throughput."""
        conf = {
            **self.base(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "compression.type": "lz4",
            "message.timeout.ms": self.message_timeout_ms,
            "delivery.report.only.error": True,
            **overrides,
        }
        return Producer(conf)

    def consumer(self, group_id: str, **overrides: Any) -> Consumer:
        """A consumer that never auto-commits and reads only committed records."""
        conf = {
            **self.base(),
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 10_485_760,
            "queued.max.messages.kbytes": 262_144,
            # librdkafka pauses fetching for fetch.queue.backoff.ms (default 1 s) whenever its local
            # queue holds queued.min.messages; a fast batch consumer then drains the queue and waits
            # idle for most of that second. Measured on 1M messages: 2.5 s → 0.87 s to consume.
            "fetch.queue.backoff.ms": 10,
            **overrides,
        }
        return Consumer(conf)

    def wait_available(self) -> None:
        """Check that a broker answers, retrying with exponential backoff; raise KafkaUnavailable."""
        delay, last = self.connect_backoff, None
        _LAST_ERROR.pop(self._key(), None)
        for attempt in range(1, self.connect_retries + 1):
            admin = self.admin()
            try:
                md = admin.list_topics(timeout=3)
                if md.brokers:
                    return
            except KafkaException as e:
                last = e
            # the backoff (and 3 s after the last attempt) serves error_cb, where a refused certificate or
            # password is reported: on a loaded machine the TLS handshake can end after list_topics gave up
            refused = self._refusal(admin, delay if attempt < self.connect_retries else 3.0)
            if refused is not None:
                what, hint = _REFUSALS[refused.code()]
                raise KafkaRefused(f"Kafka at {self.bootstrap_servers} refused the connection: {what} "
                                   f"({refused.str()}); {hint} in HEADRACE_KAFKA_CONFIG")
            delay = min(delay * 2, 10)
        # an unreachable cluster's shared client would keep reconnecting (and logging) for the process's life
        _ADMINS.pop(self._key(), None)
        admin = None  # the traceback keeps this frame: let the client go now, not when it is collected
        raise KafkaUnavailable(
            f"Kafka at {self.bootstrap_servers} is unreachable after {self.connect_retries} attempts"
            + (f" ({last.args[0].str()})" if last else "")
            + "; start it with `headrace kafka up` or set KAFKA_BOOTSTRAP_SERVERS"
        )

    def _refusal(self, admin: Any, wait: float) -> Any:
        """The refusal (bad certificate, bad password...) ``admin``'s error_cb reports within ``wait``
        seconds, or None."""
        deadline = time.monotonic() + wait
        while True:
            admin.poll(max(0.0, min(0.2, deadline - time.monotonic())))
            refused = _LAST_ERROR.get(self._key())
            if refused is not None and refused.code() in _REFUSALS:
                return refused
            if time.monotonic() >= deadline:
                return None

    def ensure_topic(
        self, topic: str, partitions: int = 1, replication: int = 1, config: dict[str, str] | None = None,
        warn_partitions: bool = False,
    ) -> None:
        """Create ``topic`` with ``partitions`` if it does not exist (no error if it does).

        With ``warn_partitions``, an existing topic whose partition count differs from ``partitions`` is
        logged as a warning naming both counts (the topic is left as it is)."""
        admin = self.admin()
        existing = admin.list_topics(timeout=10).topics.get(topic)
        if existing is not None:
            have = len(existing.partitions)
            if warn_partitions and have and have != partitions:
                log.warning("topic %r has %d partition(s) but the connector is configured for %d "
                            "(topic_partitions); it is used as it is", topic, have, partitions)
            return
        fut = admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=replication, config=config or {})]
        )[topic]
        try:
            fut.result(timeout=30)
        except KafkaException as e:
            if e.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
        _wait_for_leader(admin, topic)

    def partitions(self, topic: str) -> list[int]:
        """Partition ids of an existing topic (empty if the topic does not exist)."""
        md = self.admin().list_topics(topic=topic, timeout=10)
        t = md.topics.get(topic)
        if t is None or (t.error is not None and t.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
            return []
        if t.error is not None:  # e.g. a leader election in progress: not "no partitions", so never read nothing
            raise KafkaUnavailable(f"metadata of topic {topic!r} is not available: {t.error.str()}")
        return sorted(t.partitions)

    def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        """``{partition: (low, high)}`` for a topic, the high mark being the last stable offset (what a
        read_committed consumer reaches). Asked through the shared admin client, whose connection is
        already open: a new consumer's first watermark query sometimes waited ~700 ms for metadata."""
        parts = self.partitions(topic)
        if not parts:
            return {}
        admin = self.admin()
        tps = [TopicPartition(topic, p) for p in parts]
        asked = [admin.list_offsets({tp: spec for tp in tps}, isolation_level=IsolationLevel.READ_COMMITTED,
                                    request_timeout=10) for spec in (OffsetSpec.earliest(), OffsetSpec.latest())]
        try:
            low, high = ({tp.partition: f.result(timeout=15).offset for tp, f in futures.items()} for futures in asked)
        except FutureTimeout as e:
            raise KafkaUnavailable(f"no watermarks for {topic} within 15s") from e
        except KafkaException as e:
            if e.args[0].code() in _LEADER_MOVING:
                raise KafkaUnavailable(f"watermarks of {topic} are not available: {e.args[0].str()}") from e
            raise
        return {p: (low[p], high[p]) for p in parts}

    def committed(self, group_id: str, topic: str) -> dict[int, int | None]:
        """The group's committed offset per partition (None where nothing is committed)."""
        c = self.consumer(group_id=group_id)
        try:
            tps = [TopicPartition(topic, p) for p in self.partitions(topic)]
            if not tps:
                return {}
            for attempt in range(20):  # a fresh broker answers NOT_COORDINATOR while it loads __consumer_offsets
                try:
                    got = c.committed(tps, timeout=10)
                    break
                except KafkaException as e:
                    if e.args[0].code() not in _COORDINATOR_MOVING or attempt == 19:
                        raise
                    time.sleep(0.25)
            return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in got}
        finally:
            c.close()

    def delete_topics(self, topics: list[str]) -> None:
        """Delete topics, ignoring those that do not exist."""
        if not topics:
            return
        admin = self.admin()  # keep the client alive until every future resolves
        for _t, fut in admin.delete_topics(topics, operation_timeout=30).items():
            try:
                fut.result(timeout=30)
            except KafkaException as e:
                if e.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                    raise


def forget_clients(bootstrap_servers: str) -> None:
    """Drop the process's shared admin clients for a cluster that was shut down, so they stop
    reconnecting (and logging) for the rest of the process."""
    for key in [k for k in _ADMINS if k[0] == bootstrap_servers]:
        _ADMINS.pop(key, None)


_LEADER_MOVING = frozenset({KafkaError.LEADER_NOT_AVAILABLE, KafkaError.NOT_LEADER_FOR_PARTITION,
                            KafkaError._TRANSPORT, KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT,
                            KafkaError._ALL_BROKERS_DOWN})
_COORDINATOR_MOVING = frozenset({KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                                 KafkaError.COORDINATOR_NOT_AVAILABLE})


def _wait_for_leader(admin: AdminClient, topic: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t = admin.list_topics(topic=topic, timeout=5).topics.get(topic)
        if t and t.error is None and t.partitions and all(p.leader >= 0 for p in t.partitions.values()):
            return
        time.sleep(0.1)
