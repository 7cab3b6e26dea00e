"""A plain script: confluent-kafka consume → json.loads → pandas → Parquet (run in the peers' virtualenv).

Argument (JSON): {"bootstrap", "topic", "group", "dir", "rows", "flush"}. What a user writes by hand: consume
batches, parse each value with json.loads, a DataFrame per ``flush`` rows written with pandas' to_parquet
(pyarrow, zstd), offsets committed after each file; stops after ``rows`` messages.
"""

import json
import os
import sys

import pandas as pd
from confluent_kafka import Consumer

args = json.loads(sys.argv[1])
c = Consumer({"bootstrap.servers": args["bootstrap"], "group.id": args["group"], "auto.offset.reset": "earliest",
              "enable.auto.commit": False})
c.subscribe([args["topic"]])
os.makedirs(args["dir"], exist_ok=True)
rows, buf, part = 0, [], 0
while rows < args["rows"]:
    msgs = c.consume(num_messages=10_000, timeout=1.0)
    good = [m for m in msgs if m.error() is None]
    buf.extend(json.loads(m.value()) for m in good)
    rows += len(good)
    if len(buf) >= args["flush"] or (buf and rows >= args["rows"]):
        df = pd.DataFrame(buf)
        df["created_at"] = pd.to_datetime(df["created_at"], utc=True, format="ISO8601")
        df.to_parquet(os.path.join(args["dir"], f"part-{part:05d}.parquet"), compression="zstd", index=False)
        c.commit(asynchronous=False)
        buf, part = [], part + 1
c.close()
