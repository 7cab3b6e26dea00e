"""avro_roundtrip_fastavro: the avro_roundtrip engine against the issue's ceiling, fastavro alone.

The harness measures one ceiling per case. ``avro_roundtrip`` uses the stronger one (a hand-written
numpy codec for its schema); this case runs the same engine, rows and checks against fastavro alone
(one ``schemaless_writer`` / ``schemaless_reader`` call per record), the ceiling the issue defines.
See bench/cases/avro_roundtrip.py.
"""

from __future__ import annotations

from bench.cases.avro_roundtrip import DEFAULT_ROWS, engine, setup, teardown
from bench.cases.avro_roundtrip import ceiling_fastavro as ceiling

NAME = "avro_roundtrip_fastavro"

__all__ = ["DEFAULT_ROWS", "NAME", "ceiling", "engine", "setup", "teardown"]
