"""What limits each benchmark: a short note per case, appended below the table in BENCHMARKS.md.

Kept here (not in BENCHMARKS.md) so that a rerun of ``make bench`` keeps them. Update a note when a
profile shows the limit has moved.
"""

from __future__ import annotations

NOTES: dict[str, str] = {
    "sql_to_kafka": (
        "Producing dominates: one confluent-kafka `produce()` call per record (~1.4 µs in the C call, driven "
        "by `map` so no Python bytecode runs per record), librdkafka's lz4 compression and the broker's "
        "acks=all writes, all on the same 2 cores as PostgreSQL and the broker. Then DuckDB `to_json` "
        "(~0.4 s per 1M rows) and the ADBC COPY read (~1.25 s per 1M, overlapped with producing by the "
        "source's prefetch thread). Engine-only costs left: the offsets-topic read at start (~20 ms) and one "
        "acknowledged offset write per 100k-row batch. The ceiling streams one COPY query and produces the "
        "same JSON and keys with the same loop, flushed per chunk like the engine; engine and ceiling are "
        "within noise of each other."
    ),
    "sql_to_kafka_exactly_once": (
        "`exactly_once: true`: each 100k-row batch's records and its offset go to Kafka in one transaction "
        "(begin, produce, the offset record, commit), so the producer cannot keep several batches in flight "
        "across a commit and the broker writes the transaction markers. The ceiling is the bare transactional "
        "confluent-kafka producer doing the same work with the same batches and commits. Compare with "
        "sql_to_kafka in the same run for the price of exactly-once. It varies with load: in the run above "
        "(a test suite running beside it) the transactional case was not slower than sql_to_kafka (its bare "
        "ceiling was not either); in an earlier run on a busier machine it ran at 0.68x of at-least-once, and "
        "its ceiling at 0.63x. One commit takes 1-13 ms per 100k-row batch on a quiet broker. Engine and "
        "ceiling stay within 10% of each other."
    ),
    "kafka_to_parquet": (
        "Consuming was idle most of the time until this pass: librdkafka stops fetching whenever its local "
        "queue holds queued.min.messages and waits fetch.queue.backoff.ms (default 1 s) before it fetches "
        "again, so a fast batch consumer drained the queue and then sat idle (1M messages took ~2.5 s with "
        "~0.9 s of CPU). The consumer settings now use 10 ms (0.87 s per 1M); engine and ceilings share them. "
        "What is left is `pyarrow.json` parsing (~0.75 s per 1M), `Consumer.consume()` building one Python "
        "`Message` per record (~0.5 s per 1M), and the zstd Parquet write (~0.3 s per 1M). The engine's "
        "per-message work is `map` over the C accessors (one topic-partition, consecutive offsets: no Python "
        "per message). Watermarks now come from one ListOffsets request on the shared admin connection: "
        "a new consumer's first `get_watermark_offsets` waited ~700 ms for metadata in about a third of "
        "runs, which cost the engine (two lookups per run) and the ceilings (one) alike; both use the "
        "admin request now. Engine-only costs left: ~30 ms fixed (the committed lookup, consumer "
        "creation), full UTF-8 validation of each batch and newline detection."
    ),
    "sql_to_kafka_fast": (
        "The same limits as sql_to_kafka (per-record produce, to_json, the COPY read) with 500k-row chunks "
        "and no key. Not re-profiled in this pass."
    ),
    "csv_to_kafka": (
        "Per-record produce and DuckDB to_json, as sql_to_kafka, plus the CSV parse. The ceiling reads the "
        "CSV with pyarrow, encodes each 500k-row slice with DuckDB to_json and produces it with the same "
        "C-level `map` loop as the engine, waiting for every acknowledgement per slice as the engine does."
    ),
    "kafka_to_duckdb_upsert": (
        "Consume (~0.9 s per 1M since the fetch back-off fix, see kafka_to_parquet), `pyarrow.json` parsing "
        "(~0.8 s), keeping the last row per id and the DuckDB upsert from Arrow (~0.8 s per 1M), one after "
        "the other. The table sink used to make three Python calls per message (value, offset, tombstone "
        "check), ~0.6 s per 1M; offsets of a consecutive run now come from its ends and values are mapped in "
        "C. Each `Message` is a GC-tracked object, so engine and ceiling both raise CPython's "
        "young-generation threshold to 100k while consuming. The shared ceiling loop `read_batches` extracts "
        "values with `map` over the C accessors and never asks for more messages than remain, so it never "
        "waits at the tail. Tried and not adopted: consuming, or writing, in a background thread while the "
        "next batch is read (measured on the ceiling: 3.75 s → 3.5 s per 1M before the back-off fix; the GIL "
        "and the 2 cores are shared with librdkafka's threads and the broker)."
    ),
    "kafka_to_postgres_upsert": (
        "Consume, then COPY into a staging table and INSERT … ON CONFLICT in PostgreSQL on the same 2 cores. "
        "PostgreSQL's ON CONFLICT update path alone runs near 100k rows/s here. The ceiling shares "
        "`read_batches` (see kafka_to_duckdb_upsert)."
    ),
    "kafka_to_parquet_daily": (
        "As kafka_to_parquet plus splitting each segment by day; the sink asks for messages (record "
        "timestamps), so the per-message path is taken. The ceiling shares `read_batches` (see "
        "kafka_to_duckdb_upsert)."
    ),
    "transform_chain": (
        "Pure Arrow compute on an in-memory table; both sides run the same pyarrow.compute kernels, the "
        "engine adds the chain's per-transform dispatch."
    ),
    "avro_roundtrip": (
        "Flat records, so the engine runs its generic vectorised codec (avro_flat.py with avro_swar.py): "
        "every record is built in one row of a byte matrix with one unaligned 64-bit store per field per "
        "row (SWAR varints, decimals of up to 8 bytes written straight from Decimal128) and compacted once; "
        "decoding reads 64-bit words per field per row and returns strings as an Arrow string_view over the "
        "message buffer, copied once. About 18 ms to encode and 16 ms to decode 100k rows here, against the "
        "ceiling's ~17 ms and ~16 ms. The ceiling is the same work (framing, one Python `bytes` per message "
        "both ways) hand-written for this one schema with the same tricks and byte-identical to fastavro; "
        "it skips what a generic codec must do: checking the UTF-8 of decoded strings, looking up the "
        "writer schema, and building the Schema Registry client (~30-50 ms once per run, timed on the "
        "engine side). Both figures include `to_pylist` of the messages (~6 ms per 100k) and `pa.array` "
        "of them (~3 ms). Rows wider than 4 KiB fall back to the older byte-at-a-time codec "
        "(avro_scatter.py), which is about half as fast. The issue's own ceiling, fastavro alone (one call "
        "per record), is reported as avro_roundtrip_fastavro."
    ),
    "dagster_latency": (
        "Not a throughput case: rows/s and the ratio only say how long each part took (engine: rows committed "
        "0.2–3 s apart, then drained; ceiling: as many one-row batches through the engine alone). See the "
        "latency section. Micro-batch time: a sensor tick (the daemon's loop passes every 5 s) and its check, "
        "the 1 s run queue, a run worker start (3.5–9 s here under load), then the steps (source 1–2 s, DuckDB "
        "0.4 s, Parquet 1.4 s). Continuous: the loops' idle sleep and the engine's per-batch work."
    ),
    "cdc_to_kafka": (
        "1,000,000 row changes (600k inserts in 20 transactions, one UPDATE of 300k rows, one DELETE of 100k) "
        "from a fresh wal2json slot: Debezium envelopes, JSON converter, a tombstone after each delete (1.1M "
        "records). The WAL pending is far above `read_ahead_wal_bytes`, so the run reads ahead: a thread "
        "decodes and parses batch n+1 from a temporary copy of the slot while batch n is enveloped, converted "
        "and produced (44k events/s before read-ahead, measured as a whole process in the peers case). What "
        "limits it now is CPU on the 2 cores: per 100k changes the server's wal2json decoding (~0.8 s, in the "
        "PostgreSQL backend), the parse (RE2 quoting of bare numbers ~0.2-0.3 s and pyarrow.json ~0.25 s, in "
        "the read-ahead thread), then on the main thread envelopes (~0.2 s), DuckDB to_json (~0.25 s) and "
        "produce (~0.25 s), beside the broker. The ceiling reads ahead the same way but produces wal2json's "
        "documents as they come (no parse, no envelope, no JSON conversion, no tombstones): a floor of "
        "decoding plus transport, faster than any code doing the engine's work. Peak RSS ~1 GB: the 300k-row "
        "UPDATE is one transaction, which a decoding call returns whole (next to the batch in flight). Issue "
        "13's goals, 100k events/s and 0.8 of the ceiling, are not met."
    ),
    "cdc_snapshot": (
        "A 1,000,000-row table snapshotted (`snapshot_mode: initial_only`): chunks of 100k rows in key order "
        "(`WHERE id > last ORDER BY id LIMIT n`), every column read as PostgreSQL's text output through ADBC's "
        "binary COPY on a second session (3x the former `row_to_json` lines through psycopg) and cast in "
        "Arrow, the next chunk read in a thread while this one is enveloped column-wise, converted to JSON and "
        "produced. The ceiling streams the table in one ADBC query with native types and builds the same "
        "envelopes with DuckDB's to_json. Engine and ceiling are within noise of each other (the text casts "
        "that keep a snapshot row identical to the same row streamed from wal2json cost about what the "
        "prefetch saves). Issue 13's goal of 200k rows/s is not met in this harness: the ceiling itself runs "
        "at 168-180k here (~210k when the same loops run repeatedly in one process)."
    ),
    "kafka_to_parquet_4p": (
        "1,000,000 JSON messages on a 4-partition topic drained into Parquet by `tasks_max` forked task "
        "processes (each `run_sink(config, task=i)` on the partitions it owns, as the multiprocess executor's "
        "steps would, without their start-up); the ceiling is the bare consume → pyarrow.json → Parquet loop "
        "in as many processes over the same partitions. The table row is 2 tasks; docs/scale.md has 1, 2 and "
        "4 tasks from the same quiet run (scaling efficiency 0.62 for 2 tasks, 0.36 for 4, against the "
        "ceiling's 0.77 and 0.36): each task process needs most of a core, and the broker shares the two."
    ),
    "sql_to_kafka_parallel": (
        "A 1,000,000-row PostgreSQL table in bulk mode read in 2 key ranges by 2 forked task processes "
        "(`tasks_max: 2`, each `run_source(config, task=i)`); the ceiling is 2 processes each streaming its "
        "range with ADBC and producing it as sql_to_kafka's ceiling does. docs/scale.md has 1 range and 2 "
        "ranges as threads within one task (`read_ranges: 2`) from the same quiet run: a second range gives "
        "1.18x (the ceiling 1.41x), PostgreSQL's COPY, the broker and two producers sharing two cores."
    ),
    "pg_to_parquet_e2e": (
        "End to end through both connectors in one process: the SQL source (ADBC COPY read, DuckDB to_json, "
        "the produce loop, one stored offset per 100k rows) and then the Parquet sink (consume, JSON parse with "
        "the value schema, 250k-row zstd files, a fenced offset commit per file). The ceiling runs the two "
        "bare loops of sql_to_kafka and kafka_to_parquet back to back, so the ratio is what the two connectors "
        "cost over their libraries together. Against dlt with "
        "connectorx, which writes Parquet straight from the query (no Kafka hop, nothing durable in between), "
        "`make bench-peers` measures whole processes with their start-up: see 'Against the peers'. From the "
        "single-connector cases, the source half is about two thirds of the time (sql_to_kafka ~196k rows/s, "
        "kafka_to_parquet ~350k rows/s). The figure above was measured with the test suite running beside it "
        "(1M rows in 7.7-13.1 s). The issue 15 goal (at least 1.0x dlt + connectorx) is not met."
    ),
}
