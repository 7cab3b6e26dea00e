"""Helpers for the CDC tests: a connector config per test, its topics, slot and offsets cleaned up after,
and readers of Debezium envelopes from a topic."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
import pytest

from integrations.config import PostgresCdcConfig
from integrations.kafka.cluster import KafkaSettings
from integrations.runtime.source_runner import SourceResult, run_source
from tests.helpers import read_topic


@dataclass
class Cdc:
    """One test's CDC connector: its database, config, offsets topic and what to clean up."""

    kafka: KafkaSettings
    pg_url: str
    name: str
    prefix: str
    offsets_topic: str
    overrides: dict[str, Any] = field(default_factory=dict)
    topics: set[str] = field(default_factory=set)

    @property
    def slot(self) -> str:
        return f"hr_{self.name}"

    def settings(self, **extra: Any) -> dict[str, Any]:
        """The connector's fields (with the test's overrides): for a config here or a YAML file to run."""
        return {"type": "postgres_cdc", "name": self.name, "connection_url": self.pg_url, "topic_prefix": self.prefix,
                "slot_name": self.slot, "publication_name": f"hr_{self.name}", **self.overrides, **extra}

    def config(self, **extra: Any) -> PostgresCdcConfig:
        return PostgresCdcConfig(**self.settings(**extra))

    def temporary_slots(self) -> list[str]:
        """Temporary replication slots named after this connector's slot (read-ahead copies) that still exist."""
        return [r[0] for r in self.query("SELECT slot_name FROM pg_replication_slots WHERE temporary")
                if r[0].startswith(self.slot)]

    def topic(self, table: str) -> str:
        t = f"{self.prefix}.public.{table}"
        self.topics.add(t)
        return t

    def run(self, **extra: Any) -> SourceResult:
        self.topics.update(f"{self.prefix}.public.{t}" for t in ("snapshot", "heartbeat"))
        return run_source(self.config(**extra), self.kafka, self.offsets_topic)

    def sql(self, *statements: str) -> None:
        """Run statements, each committed with a WAL flush: the test server runs with synchronous_commit
        off, and a CDC run reads only up to the flushed WAL (what it cannot miss)."""
        with psycopg.connect(self.pg_url, autocommit=True) as c:
            c.execute("SET synchronous_commit = on")
            for s in statements:
                c.execute(s)

    def query(self, q: str) -> list[tuple]:
        with psycopg.connect(self.pg_url, autocommit=True) as c:
            return c.execute(q).fetchall()


@pytest.fixture(name="cdc")
def cdc_fixture(kafka: KafkaSettings, pg_url: str, unique: str) -> Iterator[Cdc]:
    """A CDC connector on the test's fresh database; its slot, topics and offsets are removed afterwards
    (before the database is dropped: a slot holds WAL and blocks DROP DATABASE)."""
    c = Cdc(kafka, pg_url, f"cdc{unique}", f"cdc{unique}", f"headrace-offsets-cdc-{unique}")
    yield c
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                     "WHERE slot_name LIKE %s AND active_pid IS NOT NULL", (f"%{unique}%",))
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE %s",
                     (f"%{unique}%",))
        conn.execute(f'DROP PUBLICATION IF EXISTS "hr_{c.name}"')
    kafka.delete_topics(sorted(c.topics | {c.offsets_topic}))


def envelopes(kafka: KafkaSettings, topic: str) -> list[tuple[Any, dict | None]]:
    """(key, value) of every record of ``topic`` in order, both parsed from JSON (None: a tombstone)."""
    return [(None if k is None else orjson.loads(k), None if v is None else orjson.loads(v))
            for k, v, _p, _o in read_topic(kafka, topic)]


def ops_by_key(records: list[tuple[Any, dict | None]], key: str = "id") -> dict[Any, list[str]]:
    """The op sequence per key (``-`` for a tombstone); truncates (no key) under ``None``."""
    out: dict[Any, list[str]] = {}
    for k, v in records:
        kk = None if k is None else k[key]
        out.setdefault(kk, []).append("-" if v is None else v["op"])
    return out


def unique_name() -> str:
    """A short random suffix."""
    return uuid.uuid4().hex[:8]
