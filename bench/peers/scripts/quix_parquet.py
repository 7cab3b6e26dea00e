"""Quix Streams: a JSON topic → Parquet files with its file sink (run in the peers' virtualenv).

Argument (JSON): {"bootstrap", "topic", "group", "dir", "rows"}. Stops after ``rows`` messages
(``Application.run(count=…)``), then exits; stock settings otherwise (zstd, as Headrace's sink).
"""

import json
import sys

from quixstreams import Application
from quixstreams.sinks.community.file.formats import ParquetFormat
from quixstreams.sinks.community.file.local import LocalFileSink

args = json.loads(sys.argv[1])
app = Application(broker_address=args["bootstrap"], consumer_group=args["group"], auto_offset_reset="earliest",
                  auto_create_topics=False, use_changelog_topics=False)
topic = app.topic(args["topic"], value_deserializer="json")
sdf = app.dataframe(topic)
sdf.sink(LocalFileSink(directory=args["dir"], format=ParquetFormat(compression="zstd")))
app.run(count=args["rows"], timeout=60)
