"""dlt: a PostgreSQL table → Parquet files on the local filesystem with its sql_database source.

Argument (JSON): {"url", "table", "backend", "dir", "pipelines_dir", "name", "incremental"}. Backend
``pyarrow`` or ``connectorx``; chunk size 100k (the same as Headrace's batches); loader file format
parquet. With "incremental", the table is read with ``dlt.sources.incremental("id")`` and the pipeline's
state (kept in ``pipelines_dir``) makes a rerun read only new rows. Telemetry off; stock otherwise.
"""

import json
import os
import sys

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")

import dlt  # noqa: E402
from dlt.sources.sql_database import sql_table  # noqa: E402

args = json.loads(sys.argv[1])
kw = {"incremental": dlt.sources.incremental("id")} if args.get("incremental") else {}
src = sql_table(credentials=args["url"], table=args["table"], backend=args["backend"], chunk_size=100_000, **kw)
pipe = dlt.pipeline(pipeline_name=args["name"], pipelines_dir=args["pipelines_dir"],
                    destination=dlt.destinations.filesystem(bucket_url="file://" + args["dir"]),
                    dataset_name="bench")
info = pipe.run(src, loader_file_format="parquet")
info.raise_on_failed_jobs()
