"""What limits Headrace in each peer case, and the peer problems found while measuring (with reproductions).

Kept here so that a rerun of ``make bench-peers`` keeps them; update a note when a profile moves the limit.
"""

from __future__ import annotations

_STARTUP = (
    "Every Headrace figure here is a whole `headrace run` process, and start-up is a large part of it: "
    "1-2.5 s per process on this machine depending on load (a 10k-row table-sink run takes 1.05 s at load "
    "1.6; the incremental case's two processes take 3.5-3.7 s at load 1.8 and 4.2-5.1 s at load 4; "
    "`headrace --help` alone takes 2.2 s at load 6), nearly all of it imports "
    "(`integrations.config` pulls in the transforms and with them numpy and pyarrow.compute, ~1.2 s; the "
    "runners add ADBC and SQLAlchemy). Lazy imports, so that start-up pays only for what the connector "
    "uses, are part of issue 14."
)

#: case name → what limits Headrace there (and which issue addresses it), shown under the case's table.
LIMITS: dict[str, str] = {
    "sql_to_kafka": (
        "per-record `produce()` with lz4 and acks=all, DuckDB `to_json` and the ADBC COPY read (Headrace runs "
        "at 0.95 of its bare-library ceiling in `make bench`), plus start-up. Debezium's snapshot spends "
        "~5-6 s of each run starting the JVM and the worker (a 10k-row snapshot takes 6.6 s), the rest "
        "producing one Connect record at a time; "
        "its tuned variant (bigger queue and batches, lz4) is not clearly faster (median 38.9 s against "
        "38.3 s), so its limit is not the "
        "producer settings. " + _STARTUP
    ),
    "kafka_to_parquet": (
        "consume, `pyarrow.json` parsing and the zstd write (0.94 of its ceiling in `make bench`), plus "
        "start-up. " + _STARTUP
    ),
    "kafka_to_postgres_upsert": (
        "PostgreSQL's INSERT … ON CONFLICT path on the same 2 cores (the table sink runs at 0.98 of its "
        "bare-library ceiling in `make bench`, ~100k rows/s), plus start-up. Goal missed: 3.3× (10.4 s "
        "against the JDBC sink's 34.6 s at load 1.9-3.7; 3.0× against its tuned variant); 5× needs 6.9 s. A separate pair of runs at load 2.5 "
        "took 10.3-11.6 s on the envelope topic and 9.1-11.6 s on the same data as plain JSON, so the Connect "
        "envelope is not the cost. Cutting start-up (issue 14) gains 1-2 s; the rest is PostgreSQL's own "
        "upsert rate on these 2 cores, which no open issue addresses (a new one would have to find a faster "
        "write path than COPY into a staging table + INSERT … ON CONFLICT). " + _STARTUP
    ),
    "sql_to_parquet": (
        "two processes where dlt has one: the SQL source into Kafka, then the Parquet sink out of it, each "
        "with its own start-up (2-4 s of the 8.1 s together), and every row travels through Kafka (JSON "
        "produce with acks=all, then consume and parse) where dlt with connectorx writes Parquet straight "
        "from the query's Arrow batches. The Kafka hop is the point of Headrace (the topic is the durable, "
        "replayable copy that other sinks read), so this case can approach dlt only by cutting start-up "
        "(issue 14) and overlapping the two halves (issue 14's long-lived streaming runs). Goal missed: "
        "0.36× against dlt with connectorx (8.1 s against 2.9 s), 0.73× against its pyarrow backend. "
        + _STARTUP
    ),
    "incremental": (
        "start-up, twice (source and sink processes) against dlt's one process: moving 10k rows takes well "
        "under a second in either; the rest is imports, connections and the offsets-topic read. Goal missed "
        "(0.57×: 3.6 s against 2.0 s) until issue 14 cuts start-up; a long-lived run (continuous mode) pays "
        "it once. " + _STARTUP
    ),
    "cdc": (
        "wal2json decoding through `pg_logical_slot_peek_changes` (the server decodes wal2json v2 at "
        "~125k changes/s here against ~217k for pgoutput, docs/cdc.md) and per-record produce, plus "
        "start-up (1-2 s of 11.6 s). Debezium's figure includes its JVM and worker start (~5 s). Goal "
        "missed: 2.19× (11.6 s against 25.3 s; 4× needs 6.3 s, i.e. ~100k events/s with start-up); issue 13 "
        "tracks the CDC rate (≥ 100k events/s in `make bench`). " + _STARTUP
    ),
    "file_to_kafka": (
        "the CSV parse, DuckDB `to_json` and per-record produce (csv_to_kafka in `make bench`), plus "
        "start-up. FileStreamSource does less work (no parsing, no key, strings not JSON) and never "
        "delivered the file's last line (see the peer problems below), so no ratio is given. " + _STARTUP
    ),
}

#: peer problems, each with a reproduction.
PROBLEMS: list[str] = [
    "**Quix Streams 3.28.1's PostgreSQL sink drops a column for a whole batch when the column is null in the "
    "batch's first row.** `PostgreSQLSink.write` leaves a None value out of each row's dict and "
    "`_insert_rows` takes the INSERT's column list from `rows[0].keys()`, so every value of that column "
    "in the batch is lost (a later upsert of the same id in another batch may restore it). Reproduction: "
    "`pytest tests/peers/test_peers_smoke.py -k kafka_to_postgres` (10k messages, the first has "
    "`name: null`: the table ends with 0 of 6,300 non-null names). At 1M messages it depends on where "
    "checkpoints cut the batches (30% of the ids are upserted again later, which can restore a name): in "
    "the 09:20 run, one of three runs ended with 439,015 of 630,000 non-null names, so the side is "
    "reported WRONG. The row count and the sum of qty are right either way, which is why this case also "
    "checks the count of non-null names.",
    "**Kafka Connect 4.1.1's FileStreamSource leaves the last lines of a file unsent until the file grows.** "
    "`FileStreamSourceTask.poll` returns as soon as a batch holds `batch.size` (2000) records, keeping the "
    "lines already read into its buffer; the next poll extracts lines only after `reader.ready()`, which "
    "stays false at end of file, so those lines wait for more data. A file of 10,001 lines (a header and "
    "10,000 rows) delivers exactly 10,000 and then nothing. Reproduction: "
    "`pytest tests/peers/test_peers_smoke.py -k file_to_kafka` (the run is reported WRONG: stalled at "
    "10,000 of 10,001 lines). It shows whenever a file's line count is not a multiple of 2000 plus what "
    "fits in the last read.",
    "**Debezium 3.4.1-3.4.3's JDBC sink is not complete on the Maven Central served here** "
    "(`debezium-sink` 3.4.3 and `debezium-connector-jdbc` 3.4.1/3.4.2 are missing), so both Debezium "
    "connectors are 3.4.0.Final. The Debezium plugin folders also must not carry their own Jackson jars: "
    "with them the JDBC sink's task dies at start with `Jdk8Module not a subtype` "
    "(bench/peers/install.py removes them, as Debezium's own plugin archives leave them out).",
    "**Kafka Connect's default plugin discovery costs ~12 s of every worker start here** "
    "(`plugin.discovery=hybrid_warn` scans every plugin jar by reflection; the worker's log then advises "
    "`service_load`). Every Connect run here uses `plugin.discovery=service_load` and a plugin path holding "
    "only the one plugin the run needs.",
]
