"""The ``headrace`` command: validate connectors, manage local Kafka, run a connector, run the demo."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from integrations.config import default_connectors_dir, load_connector, load_folder
from integrations.errors import HeadraceError
from integrations.kafka.cluster import KafkaSettings
from integrations.kafka.local import REPO_ROOT, LocalKafka, headrace_home


def _kafka(args: argparse.Namespace) -> int:
    settings = KafkaSettings.from_env()
    if settings.is_external:
        print(f"KAFKA_BOOTSTRAP_SERVERS is set ({settings.bootstrap_servers}); nothing local is {args.action}.")
        if args.action == "status":
            settings.wait_available()
            print("reachable")
        return 0
    local = LocalKafka()
    print({"up": local.up, "down": local.down, "status": local.status}[args.action]())
    return 0


def _validate(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    if folder.is_file():
        configs = [load_connector(folder)]
    else:
        configs = load_folder(folder)
        if not configs:
            raise HeadraceError(f"{folder}: no connector files (*.yaml)")
    for c in configs:
        print(f"ok  {c.name} ({c.type})")
    return 0


def _find(name: str, folder: str) -> object:
    for c in load_folder(folder):
        if c.name == name:
            return c
    raise HeadraceError(f"no connector named {name!r} in {folder}")


def _run(args: argparse.Namespace) -> int:
    from integrations.registry import is_source
    from integrations.runtime.sink_runner import run_sink
    from integrations.runtime.source_runner import run_source

    config = load_connector(args.name) if args.name.endswith((".yaml", ".yml")) else _find(args.name, args.dir)
    if is_source(config):
        res = run_source(config)
        out = {"connector": res.connector, "rows": res.rows, "bytes": res.bytes, "seconds": round(res.seconds, 3),
               "topics": {t: s.rows for t, s in res.by_topic().items()}}
    else:
        res = run_sink(config)
        out = {"connector": res.connector, "rows": res.rows, "files": res.stats.files, "offsets": res.offsets(),
               "lag_after": res.lag_after, "seconds": round(res.seconds, 3)}
    print(json.dumps(out))
    return 0


def _offsets(args: argparse.Namespace) -> int:
    from integrations.offsets import OffsetStore

    store = OffsetStore(KafkaSettings.from_env())
    if args.action == "reset":
        print(json.dumps({"reset": store.reset(args.name)}))
    else:
        print(json.dumps(store.read(args.name), indent=2))
    return 0


def _dagster_home(_args: argparse.Namespace) -> int:
    """Make $DAGSTER_HOME exist and hold the project's dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or headrace_home() / "dagster")
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    print(home)
    return 0


def _demo(_args: argparse.Namespace) -> int:
    from headrace.demo import run_demo

    return run_demo()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``headrace`` console script."""
    logging.basicConfig(level=os.environ.get("HEADRACE_LOG_LEVEL", "WARNING"), format="%(levelname)s %(message)s")
    parser = argparse.ArgumentParser(prog="headrace", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("kafka", help="local single-node Kafka (KRaft)")
    k.add_argument("action", choices=["up", "down", "status"])
    k.set_defaults(func=_kafka)
    v = sub.add_parser("validate", help="check connector files")
    v.add_argument("dir", nargs="?", default=str(default_connectors_dir()))
    v.set_defaults(func=_validate)
    r = sub.add_parser("run", help="run one micro-batch of a connector, without Dagster")
    r.add_argument("name", help="connector name, or a path to its YAML file")
    r.add_argument("--dir", default=str(default_connectors_dir()))
    r.set_defaults(func=_run)
    o = sub.add_parser("offsets", help="show or reset a source connector's stored offsets")
    o.add_argument("action", choices=["show", "reset"])
    o.add_argument("name")
    o.set_defaults(func=_offsets)
    d = sub.add_parser("demo", help="seed the shop database and run every demo connector through Dagster")
    d.set_defaults(func=_demo)
    h = sub.add_parser("dagster-home", help="prepare $DAGSTER_HOME with the project's dagster.yaml")
    h.set_defaults(func=_dagster_home)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except HeadraceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
