"""A plain script: confluent-kafka consume → json.loads → psycopg ``INSERT … ON CONFLICT`` (executemany).

Argument (JSON): {"bootstrap", "topic", "group", "rows", "url", "table", "batch"}. What a user writes by
hand: per batch of messages, keep the last value per id (a batch may hold an id twice, which ON CONFLICT
DO UPDATE refuses), executemany the upsert (psycopg 3 pipelines it), commit, then commit the offsets.
"""

import datetime as dt
import json
import sys

import psycopg
from confluent_kafka import Consumer

args = json.loads(sys.argv[1])
UTC = dt.UTC
c = Consumer({"bootstrap.servers": args["bootstrap"], "group.id": args["group"], "auto.offset.reset": "earliest",
              "enable.auto.commit": False})
c.subscribe([args["topic"]])
sql = (f'INSERT INTO "{args["table"]}" (id, qty, amount, name, created_at) VALUES (%s, %s, %s, %s, %s) '
       "ON CONFLICT (id) DO UPDATE SET qty = EXCLUDED.qty, amount = EXCLUDED.amount, name = EXCLUDED.name, "
       "created_at = EXCLUDED.created_at")
rows = 0
with psycopg.connect(args["url"]) as conn:
    while rows < args["rows"]:
        msgs = [m for m in c.consume(num_messages=args["batch"], timeout=1.0) if m.error() is None]
        if not msgs:
            continue
        last = {}
        for m in msgs:
            p = json.loads(m.value())["payload"]
            last[p["id"]] = (p["id"], p["qty"], p["amount"], p["name"],
                             dt.datetime.fromtimestamp(p["created_at"] / 1000, UTC))
        with conn.cursor() as cur:
            cur.executemany(sql, list(last.values()))
        conn.commit()
        c.commit(asynchronous=False)
        rows += len(msgs)
c.close()
