"""Quix Streams: a Kafka Connect JSON envelope topic → PostgreSQL upsert with its PostgreSQL sink.

Argument (JSON): {"bootstrap", "topic", "group", "rows", "host", "port", "dbname", "user", "password",
"table"}. Unwraps the payload, turns created_at (epoch ms, Connect's Timestamp) into a datetime, upserts on
id (``upsert_on_primary_key=True``, no metadata columns); stops after ``rows`` messages. Stock otherwise.
"""

import datetime as dt
import json
import sys

from quixstreams import Application
from quixstreams.sinks.community.postgresql import PostgreSQLSink

args = json.loads(sys.argv[1])
UTC = dt.UTC


def unwrap(v: dict) -> dict:
    """The envelope's payload, with created_at as a datetime."""
    p = v["payload"]
    p["created_at"] = dt.datetime.fromtimestamp(p["created_at"] / 1000, UTC)
    return p


app = Application(broker_address=args["bootstrap"], consumer_group=args["group"], auto_offset_reset="earliest",
                  auto_create_topics=False, use_changelog_topics=False)
sdf = app.dataframe(app.topic(args["topic"], value_deserializer="json")).apply(unwrap)
sdf.sink(PostgreSQLSink(host=args["host"], port=args["port"], dbname=args["dbname"], user=args["user"],
                        password=args["password"], table_name=args["table"], primary_key_columns="id",
                        upsert_on_primary_key=True, include_metadata=False))
app.run(count=args["rows"], timeout=60)
