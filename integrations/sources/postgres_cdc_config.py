"""Configuration of the ``postgres_cdc`` source (change data capture over logical decoding, wal2json).

Field names follow Debezium's PostgreSQL connector in snake_case (``slot.name`` → ``slot_name``,
``topic.prefix`` → ``topic_prefix`` …). ``integrations.config`` imports this model into its
``ConnectorConfig`` union; importing this module first loads ``integrations.config`` (see the end).
"""

from __future__ import annotations

import re
import sys
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

if "integrations.config" not in sys.modules or not hasattr(sys.modules["integrations.config"], "_ConnectorBase"):
    # imported before integrations.config: let it load (it imports this module back, completely),
    # then re-export what that import defined
    del sys.modules[__name__]
    import importlib

    import integrations.config as _config  # noqa: E402

    # integrations.config imported this module back (then it holds the class); if it does not, import
    # this module again now that integrations.config is loaded
    PostgresCdcConfig = getattr(_config, "PostgresCdcConfig", None) or importlib.import_module(  # type: ignore[assignment]
        __name__).PostgresCdcConfig
else:
    from integrations.config import _ConnectorBase, _illegal_topic, check_regexes
    from integrations.paths import check_url_path as _check_url_path

    SnapshotMode = Literal["initial", "never", "initial_only", "when_needed"]

    class PostgresCdcConfig(_ConnectorBase):  # type: ignore[no-redef]
        """Change data capture from PostgreSQL (every insert, update, delete and truncate), like Debezium's."""

        type: Literal["postgres_cdc"]
        connection_url: Annotated[
            str, Field(description="postgresql://user:${env:PGPASS}@host:port/db; the user needs REPLICATION "
                                   "(or superuser) and SELECT on the captured tables")
        ]
        topic_prefix: Annotated[
            str, Field(min_length=1, description="Topics are <topic_prefix>.<schema>.<table> (Debezium's topic.prefix)")
        ]
        slot_name: Annotated[
            str | None, Field(description="Logical replication slot (default headrace_<name>); created with "
                                          "wal2json when missing, reused when present")
        ] = None
        publication_name: Annotated[
            str | None, Field(description="Publication listing the captured tables (default headrace_<name>); "
                                          "wal2json does not read it: it records and fixes the table set")
        ] = None
        publication_autocreate: Annotated[
            Literal["filtered", "all_tables", "disabled"],
            Field(description="filtered: create/keep the publication FOR TABLE the captured tables; all_tables: "
                              "FOR ALL TABLES; disabled: use the publication if it exists, never create it"),
        ] = "filtered"
        table_include: Annotated[
            list[str], Field(description="Regexes (full match) of schema.table to capture (default: every table "
                                         "of the database outside pg_catalog and information_schema)")
        ] = []
        table_exclude: Annotated[list[str], Field(description="Regexes (full match) of schema.table to leave out")] = []
        snapshot_mode: Annotated[
            SnapshotMode,
            Field(description="initial: snapshot once, then stream; never: stream only; initial_only: snapshot, "
                              "no streaming; when_needed: like initial, and snapshot again when the slot or "
                              "its position is lost"),
        ] = "initial"
        snapshot_strategy: Annotated[
            Literal["blocking", "incremental"],
            Field(description="How a due snapshot (initial, when_needed) reads: blocking (every table in key-ordered "
                              "chunks, then the stream) or incremental (DBLog: the chunks interleave with the "
                              "stream through watermarks in the signal table; needs signal_data_collection)"),
        ] = "blocking"
        snapshot_fetch_size: Annotated[
            int, Field(gt=0, le=10_000_000, description="Rows per snapshot chunk (key-ordered, resumable)")
        ] = 100_000
        batch_max_events: Annotated[
            int, Field(gt=0, le=10_000_000, description="Row changes per decoding call and per produced batch")
        ] = 100_000
        read_ahead_wal_bytes: Annotated[
            int | None, Field(ge=0, description="Pending WAL (bytes from the slot's position to the run's bound) "
                                                "above which a run decodes the next batch from a temporary copy "
                                                "of the slot while it produces the current one (0: always; null: "
                                                "never; needs one free replication slot while the run lasts)")
        ] = 16 << 20
        max_events_per_run: Annotated[
            int | None, Field(gt=0, description="Cap on changes moved by one micro-batch (default: all pending "
                                                "up to the WAL position at the run's start)")
        ] = None
        tombstones_on_delete: Annotated[
            bool, Field(description="A tombstone (null value) follows each delete, for log compaction")
        ] = True
        heartbeat_interval: Annotated[
            float, Field(ge=0, description="Seconds; > 0: a run that finds no change of the captured tables "
                                           "still stores the WAL position and advances the slot (0: off)")
        ] = 0.0
        signal_data_collection: Annotated[
            str | None,
            Field(description="schema.table of a signal table (columns id, type, data): inserting "
                              "('<id>', 'execute-snapshot', '{\"data-collections\": [\"public.orders\"]}') "
                              "re-snapshots those tables while streaming goes on (Debezium's signals)"),
        ] = None
        slot_drop_on_stop: Annotated[
            bool, Field(description="Drop the slot when the connector closes (the WAL it held is released and "
                                    "the position is lost): for tests and throwaway connectors")
        ] = False
        topic_partitions: Annotated[int, Field(gt=0, le=10_000)] = 1
        topic_replication_factor: Annotated[int, Field(gt=0, le=10)] = 1
        slot_lag_max_bytes: Annotated[
            int, Field(gt=0, description="The asset check slot_lag_within_threshold fails when the slot holds "
                                         "more WAL than this past its confirmed position")
        ] = 1 << 30
        exactly_once: Annotated[
            bool, Field(description="Each batch's events and its offset go to Kafka in one transaction")
        ] = False

        #: the runner's row budget truncates batches, which a change stream must not do: the source
        #: enforces ``max_events_per_run`` itself, at transaction-safe positions
        max_rows_per_run: ClassVar[None] = None
        #: keys come from each table's primary key (set per batch by the source)
        key_columns: ClassVar[list[str]] = []
        #: what the Dagster layer reads of SQL-like sources (no custom query, tables found by regexes)
        query: ClassVar[None] = None
        tables: ClassVar[list[str]] = []
        schema_pattern: ClassVar[None] = None

        _url = field_validator("connection_url")(classmethod(lambda cls, v: _check_url_path(v)))

        _regexes = field_validator("table_include", "table_exclude")(classmethod(lambda cls, v: check_regexes(v)))

        @field_validator("connection_url")
        @classmethod
        def _postgres(cls, v: str) -> str:
            if not re.match(r"postgres(ql)?(\+\w+)?://", v):
                raise ValueError("postgres_cdc reads PostgreSQL: the URL starts with postgresql://")
            return v

        @model_validator(mode="after")
        def _topics(self) -> PostgresCdcConfig:
            problem = _illegal_topic(f"{self.topic_prefix}.public.t", self.transforms, "topic_prefix")
            if problem:
                raise ValueError(problem)
            if self.snapshot_strategy == "incremental" and not self.signal_data_collection:
                raise ValueError("snapshot_strategy incremental needs signal_data_collection (a table with columns "
                                 "id text, type text, data text that the connector's user may INSERT into): its "
                                 "watermarks go there")
            return self

        @property
        def slot(self) -> str:
            """The replication slot's name."""
            return self.slot_name or "headrace_" + re.sub(r"[^a-z0-9_]", "_", self.name.lower())

        @property
        def publication(self) -> str:
            """The publication's name."""
            return self.publication_name or "headrace_" + re.sub(r"[^a-z0-9_]", "_", self.name.lower())

        @property
        def source_names(self) -> list[str]:
            """``schema.table`` of the captured tables (a catalog read; the plain ``table_include`` names when
            the database is down)."""
            from integrations.sources.postgres_cdc_checks import captured_tables

            return captured_tables(self)

        def topic_problem(self, table: str) -> str | None:
            """Why ``table``'s topic is not a legal Kafka topic name after the routers (None: it is)."""
            return _illegal_topic(self.topic_for(table), self.transforms, f"table {table!r}")

        def topic_for(self, table: Any = "") -> str:
            """``<topic_prefix>.<schema>.<table>`` (``table`` is ``schema.table``; no schema: public)."""
            table = str(table)
            if "." not in table:
                table = "public." + table
            return f"{self.topic_prefix}.{table}"
