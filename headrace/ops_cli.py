"""The operations commands of ``headrace``: ``status``, ``pause`` / ``resume``, ``offsets show|reset|set``,
``snapshot`` (a CDC re-snapshot).

Each prints what it did; offsets changes print ``partition: before -> after`` and are refused while a
run of the connector is in flight (Dagster instance at ``$DAGSTER_HOME``). See docs/operations.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from integrations.config import default_connectors_dir, load_connector, load_folder
from integrations.errors import ConfigError
from integrations.kafka.cluster import KafkaSettings


def connector(name: str, folder: str) -> Any:
    """A connector by name (in ``folder``) or by the path of its YAML file."""
    from integrations.config import find_connector

    if name.endswith((".yaml", ".yml")):
        return load_connector(name)
    config, warnings = find_connector(name, folder)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    return config


def status(args: argparse.Namespace) -> int:
    """``headrace status [CONNECTOR] [--json]``."""
    from headrace.ops_status import as_json, collect, render

    configs = [connector(args.name, args.dir)] if args.name else load_folder(Path(args.dir))
    if not configs:
        raise ConfigError(f"{args.dir}: no connector files (*.yaml)")
    rows = collect(configs, KafkaSettings.from_env())
    width = shutil.get_terminal_size((160, 24)).columns if sys.stdout.isatty() else None
    print(as_json(rows) if args.json else render(rows, width), end="")
    if not args.json:
        print()
    return 0


def pause_resume(args: argparse.Namespace) -> int:
    """``headrace pause|resume CONNECTOR``: stop or start the connector's sensor."""
    from headrace.ops_dagster import dagster_home, open_instance, set_sensor, workspace_origins

    config = connector(args.name, args.dir)
    dagster_home().mkdir(parents=True, exist_ok=True)
    with open_instance() as instance:
        before, after = set_sensor(instance, config.name, args.cmd == "resume", workspace_origins(args.workspace))
    verb = "resumed" if args.cmd == "resume" else "paused"
    same = " (it already was)" if before == after else ""
    print(f"{verb} {config.name}: sensor {before} -> {after}{same} (DAGSTER_HOME={dagster_home()})")
    if args.cmd == "pause":
        print("a run already in flight finishes its batch; terminate it in the UI to stop it sooner")
    return 0


def _explicit(args: argparse.Namespace, config: Any) -> dict[Any, Any]:
    from headrace import ops_offsets
    from integrations.registry import is_source

    parts, offs = args.partition or [], args.offset or []
    if not parts or len(parts) != len(offs):
        raise ConfigError("set needs one --offset per --partition (repeat the pair for several partitions)")
    if is_source(config):
        return ops_offsets.source_explicit(config, list(zip(parts, offs, strict=True)))
    values = []
    for p, o in zip(parts, offs, strict=True):
        try:
            values.append((args.topic, int(p), int(o)))
        except ValueError:
            raise ConfigError(f"--partition {p!r} --offset {o!r}: a sink takes integers") from None
    return ops_offsets.sink_explicit(config, KafkaSettings.from_env(), values)


def offsets(args: argparse.Namespace) -> int:
    """``headrace offsets show|reset|set CONNECTOR``."""
    from headrace import ops_offsets
    from integrations.registry import is_source

    kafka = KafkaSettings.from_env()
    if args.action == "show":
        try:
            config = connector(args.name, args.dir)
        except ConfigError:
            if args.name.endswith((".yaml", ".yml")):
                raise
            config = None  # not a connector here: show what the offsets topic holds under that name
        if config is None:
            from integrations.offsets import OffsetStore

            print(json.dumps(OffsetStore(kafka).read(args.name), indent=2))
        else:
            print(json.dumps(ops_offsets.show(config, kafka), indent=2))
        return 0
    config = connector(args.name, args.dir)
    args.config = config
    from headrace.ops_dagster import open_instance, refuse_in_flight

    with open_instance() as instance:
        refuse_in_flight(instance, config.name)
    if args.action == "set" and (args.to or args.to_timestamp):
        raise ConfigError("set takes --partition/--offset pairs; --to-* targets are for reset")
    if args.action == "reset":
        to = "timestamp" if args.to_timestamp else args.to or ("earliest" if is_source(config) else None)
        if to is None:
            raise ConfigError("reset needs a target: --to-earliest, --to-latest or --to-timestamp ISO")
        change = ops_offsets.reset(config, kafka, to, args.to_timestamp)
    else:
        change = ops_offsets.apply(config, kafka, _explicit(args, config))
    if args.json:
        print(json.dumps(change.as_dict(), indent=2, default=str))
    elif not change.changed:
        print(f"{config.name}: offsets unchanged (already there)")
    else:
        print(f"{config.name}: {args.action} {len(change.changed)} partition(s)")
        for line in change.lines():
            print(f"  {line}")
    return 0


def snapshot(args: argparse.Namespace) -> int:
    """``headrace snapshot CONNECTOR --table T [--filter SQL]``: ask a CDC connector for a re-snapshot;
    ``--stop [--table T]``: stop its incremental snapshot (of those tables, else of all)."""
    from integrations.sources.postgres_cdc_signals import request_snapshot, request_stop

    config = connector(args.name, args.dir)
    if args.stop:
        if args.filter:
            raise ConfigError("--stop takes no --filter")
        sid = request_stop(config, args.table)
        print(f"{config.name}: stop of the incremental snapshot of {', '.join(args.table or ['every table'])} "
              f"requested (signal {sid}); it takes effect in the connector's next micro-batch")
        return 0
    if not args.table:
        raise ConfigError("name the tables to snapshot with --table")
    sid = request_snapshot(config, args.table, args.filter)
    where = f" where {args.filter}" if args.filter else ""
    print(f"{config.name}: snapshot of {', '.join(args.table)}{where} requested (signal {sid}); it runs in the "
          "connector's next micro-batch, after the changes committed before it")
    return 0


def add_commands(sub: Any) -> None:
    """Register the operations subcommands on the ``headrace`` parser."""
    folder = str(default_connectors_dir())
    s = sub.add_parser("status", help="sensor state, last run, offsets, lag and dead letters per connector")
    s.add_argument("name", nargs="?", help="one connector (default: every connector in --dir)")
    s.add_argument("--dir", default=folder)
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=status)
    for cmd, what in (("pause", "stop"), ("resume", "start")):
        p = sub.add_parser(cmd, help=f"{what} a connector's sensor in the Dagster instance ($DAGSTER_HOME)")
        p.add_argument("name")
        p.add_argument("--dir", default=folder)
        p.add_argument("-w", "--workspace", help="workspace.yaml of the code location (default: the repository's)")
        p.set_defaults(func=pause_resume)
    o = sub.add_parser("offsets", help="show, reset or set a connector's offsets (sources and sinks)")
    o.add_argument("action", choices=["show", "reset", "set"])
    o.add_argument("name")
    o.add_argument("--dir", default=folder)
    to = o.add_mutually_exclusive_group()
    to.add_argument("--to-earliest", dest="to", action="store_const", const="earliest")
    to.add_argument("--to-latest", dest="to", action="store_const", const="latest")
    to.add_argument("--to-timestamp", metavar="ISO", help="first record at or after this time (sinks); "
                    "last timestamp read (SQL sources)")
    o.add_argument("--partition", action="append", metavar="N|JSON",
                   help="set: a topic partition number (sinks) or a source partition JSON; repeatable")
    o.add_argument("--offset", action="append", metavar="X|JSON",
                   help="set: the next offset (sinks) or the source offset JSON (null forgets it)")
    o.add_argument("--topic", help="set, sinks reading several topics: the topic of --partition")
    o.add_argument("--json", action="store_true", help="print the change as JSON")
    o.set_defaults(func=offsets)
    n = sub.add_parser("snapshot", help="re-snapshot tables (or a key range) of a postgres_cdc connector while "
                                        "it streams (an execute-snapshot signal)")
    n.add_argument("name")
    n.add_argument("--table", action="append", metavar="SCHEMA.TABLE", help="repeatable")
    n.add_argument("--stop", action="store_true", help="stop the incremental snapshot (of --table, else of all)")
    n.add_argument("--filter", metavar="SQL", help="only the rows matching this condition, e.g. 'id BETWEEN 1 AND 999'")
    n.add_argument("--dir", default=folder)
    n.set_defaults(func=snapshot)
