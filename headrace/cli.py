"""The ``headrace`` command: validate connectors, manage local Kafka, run a connector, operate connectors
(``status``, ``pause``/``resume``, ``offsets``; headrace/ops_cli.py), run the demo.

Exit codes (docs/errors.md): 0 success; 1 a runtime failure (Kafka or a database unreachable, a write
or delivery error); 2 a configuration error (invalid connector file, unknown connector, bad
arguments); 128 + the signal number when SIGTERM (143) or SIGINT (130) stopped a run at a batch
boundary. Expected failures are one line on stderr; only a bug prints a traceback, and says so.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

from integrations.config import default_connectors_dir, load_connector, load_folder
from integrations.errors import ConfigError, HeadraceError, KafkaRefused, KafkaUnavailable
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
            raise ConfigError(f"{folder}: no connector files (*.yaml)")
    for c in configs:
        print(f"ok  {c.name} ({c.type})")
    return 0


def _run(args: argparse.Namespace) -> int:
    from integrations.config import find_connector
    from integrations.registry import is_source
    from integrations.runtime import stopping

    if args.name.endswith((".yaml", ".yml")):
        config = load_connector(args.name)
    else:  # only the named connector's own file must be valid; the others are skipped with a warning
        config, warnings = find_connector(args.name, args.dir)
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
    args.config = config  # for the one-line report of a failure
    _check_run_args(args)
    # installed for the rest of the process, not restored: a second SIGTERM while the run winds down
    # (or after it printed its stop line) must change nothing, never kill the process half-way
    stopping.install()
    if sys.stderr.isatty():  # a progress bar (tqdm) on a terminal; progress lines in logs otherwise
        from integrations.runtime import progress

        progress.use_bar()
    if args.continuous:
        return _run_continuous(args, config)
    if is_source(config):  # only the runner this connector needs is imported (start-up time)
        from integrations.runtime.source_runner import run_source

        res = run_source(config, task=args.task)
        out = {"connector": res.connector, "rows": res.rows, "bytes": res.bytes,
               "seconds": round(res.seconds, 3), "topics": {t: s.rows for t, s in res.by_topic().items()}}
    else:
        from integrations.runtime.sink_runner import run_sink

        res = run_sink(config, task=args.task)
        out = {"connector": res.connector, "rows": res.rows, "files": res.stats.files, "offsets": res.offsets(),
               "lag_after": res.lag_after, "seconds": round(res.seconds, 3)}
    print(json.dumps(out))
    return 0


def _check_run_args(args: argparse.Namespace) -> None:
    """Refuse combinations of ``run`` options that make no sense (a configuration error, exit 2)."""
    if args.max_seconds is not None and not args.continuous:
        raise ConfigError("--max-seconds needs --continuous")
    if args.max_seconds is not None and not args.max_seconds > 0:
        raise ConfigError(f"--max-seconds must be > 0, got {args.max_seconds:g}")
    if args.continuous and args.task is not None:
        raise ConfigError("--task cannot be combined with --continuous (a continuous run reads every task's "
                          "partitions in one loop)")


def _run_continuous(args: argparse.Namespace, config: object) -> int:
    """``headrace run NAME --continuous``: the engine's continuous loop (as Dagster's
    ``<connector>_continuous_job`` runs it) until ``--max-seconds`` (default: the connector's
    ``continuous.max_run_seconds`` if it declares ``continuous``, else until stopped). SIGTERM/SIGINT end
    it at a batch boundary (``StopRequested``: the caller prints the stop line, exit 143/130)."""
    from integrations.registry import is_source
    from integrations.runtime.continuous import FOREVER, run_sink_continuous, run_source_continuous

    budget = args.max_seconds
    if budget is None and getattr(config, "continuous", None) is None:
        budget = FOREVER
    loop = run_source_continuous if is_source(config) else run_sink_continuous
    res = loop(config, max_seconds=budget)
    print(json.dumps({"connector": res.connector, "mode": "continuous", "batches": res.batches, "rows": res.rows,
                      "turns": res.turns, "seconds": round(res.seconds, 3),
                      ("topics" if is_source(config) else "rows_per_topic"): res.by_target}))
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


def _first_line(text: str, secrets: tuple[str, ...] = ()) -> str:
    """The first non-empty line of an error text, with URL passwords and ``secrets`` masked."""
    from integrations.config import redact_url

    line = next((x.strip() for x in str(text).splitlines() if x.strip()), "")
    for secret in secrets:
        if secret:
            line = line.replace(secret, "***")
    return redact_url(line)


def _database(config: object) -> tuple[str, tuple[str, ...]]:
    """``host:port/database`` of the connector's database (never the password), and the secrets to mask."""
    url = getattr(config, "connection_url", None)
    if not url:
        return "the database", ()
    from integrations.config import redact_url, resolve_url

    try:
        import sqlalchemy as sa

        u = sa.make_url(resolve_url(url))
    except Exception:  # noqa: BLE001  (an unresolvable URL: show what the file says, redacted)
        return redact_url(url), ()
    if u.host:
        where = f"{u.host}:{u.port}" if u.port else u.host
        return f"{u.drivername} database at {where}/{u.database or ''}", (u.password or "",)
    return f"{u.drivername} database {u.database or ':memory:'}", (u.password or "",)


_DB_MODULES = ("sqlalchemy", "psycopg", "psycopg2", "sqlite3", "duckdb", "adbc_driver_manager", "adbc_driver_")


def _db_cause(e: BaseException) -> BaseException | None:
    """The database driver's exception behind ``e`` (its ``__cause__``/``__context__`` chain), if any."""
    seen: set[int] = set()
    cur: BaseException | None = e.__cause__ or e.__context__
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if (type(cur).__module__ or "").startswith(_DB_MODULES):
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


def report_failure(e: BaseException, config: object | None = None) -> int:
    """Print one line for a failure and return the exit code: 2 config, 1 runtime, 128+n stopped.

    Anything not recognised is a bug: it keeps its traceback and says so."""
    from integrations.runtime.stopping import StopRequested

    while (type(e).__module__ or "").startswith("dagster") and (getattr(e, "user_exception", None) or e.__cause__):
        e = getattr(e, "user_exception", None) or e.__cause__  # `headrace demo`: Dagster wraps the step's error
    who = f"connector {config.name}: " if getattr(config, "name", None) else ""
    if isinstance(e, StopRequested):
        print(f"stopped: {e}", file=sys.stderr)
        # Python's shutdown puts default signal actions back, and closing the Kafka clients takes a
        # moment: a repeated SIGTERM/SIGINT then would kill the process. Ignored ones stay ignored.
        import signal

        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)
        return e.exit_code
    if isinstance(e, KeyboardInterrupt):  # outside a run (a run turns SIGINT into StopRequested)
        print("stopped: interrupted (SIGINT)", file=sys.stderr)
        return 130
    if isinstance(e, SystemExit):  # argparse's usage errors (exit 2) and --help (exit 0)
        return e.code if isinstance(e.code, int) else 1
    if isinstance(e, ConfigError):
        print(f"error: {e}", file=sys.stderr)
        return 2
    if isinstance(e, HeadraceError):
        from integrations.config import redact_url

        msg = redact_url(str(e))  # engine messages are redacted already; a URL password never gets through here
        name = getattr(config, "name", None)
        if name and name not in msg and not isinstance(e, (KafkaUnavailable, KafkaRefused)):  # those are cluster-wide
            msg = f"connector {name}: {msg}"
        if _db_cause(e) is not None:  # e.g. the retry budget for a lost connection ran out
            where, secrets = _database(config)
            msg = f"{_first_line(msg, secrets)} ({where}: check that it is up and reachable, the URL and credentials)"
        print(f"error: {msg}", file=sys.stderr)
        return 1
    module = type(e).__module__ or ""
    if module.startswith(_DB_MODULES) and isinstance(e, Exception):
        where, secrets = _database(config)
        cause = getattr(e, "orig", None) or e
        print(f"error: {who}{where} failed: {type(cause).__name__}: {_first_line(str(cause), secrets)} "
              "(check that the database is up and reachable, the URL and credentials, and the table)",
              file=sys.stderr)
        return 1
    from confluent_kafka import KafkaException

    if isinstance(e, KafkaException) or module.startswith(("confluent_kafka", "cimpl")):
        err = e.args[0] if e.args else None
        cause = err.str() if hasattr(err, "str") else str(e)
        print(f"error: {who}Kafka at {KafkaSettings.from_env().bootstrap_servers} failed: {_first_line(cause)} "
              "(check that the broker is up, KAFKA_BOOTSTRAP_SERVERS and HEADRACE_KAFKA_CONFIG)", file=sys.stderr)
        return 1
    if module.startswith("pyarrow"):
        print(f"error: {who}the data could not be converted or written: {type(e).__name__}: {_first_line(str(e))}",
              file=sys.stderr)
        return 1
    if isinstance(e, OSError):
        target = f" ({e.filename})" if e.filename else ""
        print(f"error: {who}{e.strerror or _first_line(str(e))}{target} "
              "(check the path, its permissions and free space)", file=sys.stderr)
        return 1
    import traceback

    traceback.print_exception(e)
    print(f"error: {who}this is a bug in Headrace, not a problem with your setup: {type(e).__name__}: "
          f"{_first_line(str(e))}. Please report it with the traceback above.", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``headrace`` console script."""
    logging.basicConfig(level=os.environ.get("HEADRACE_LOG_LEVEL", "WARNING"), format="%(levelname)s %(message)s")
    # librdkafka repeats every failed connection attempt; the engine reports the outcome in one line
    # (a fenced transactional producer also logs FATAL lines: the run's own error says it in one line)
    kafka_level = os.environ.get("HEADRACE_KAFKA_LOG_LEVEL")
    logging.getLogger("headrace.kafka.client").setLevel(kafka_level or logging.CRITICAL + 10)
    parser = argparse.ArgumentParser(prog="headrace", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("kafka", help="local single-node Kafka (KRaft)")
    k.add_argument("action", choices=["up", "down", "status"])
    k.set_defaults(func=_kafka)
    v = sub.add_parser("validate", help="check connector files")
    v.add_argument("dir", nargs="?", default=str(default_connectors_dir()))
    v.set_defaults(func=_validate)
    r = sub.add_parser("run", help="run one micro-batch of a connector (or, with --continuous, a stream), "
                                   "without Dagster")
    r.add_argument("name", help="connector name, or a path to its YAML file")
    r.add_argument("--dir", default=str(default_connectors_dir()))
    r.add_argument("--task", type=int, default=None,
                   help="with tasks_max > 1: run only this task (0..tasks_max-1); default: every task in turn")
    r.add_argument("--continuous", action="store_true",
                   help="poll in a loop, one micro-batch after another (continuous mode, as Dagster's "
                        "<connector>_continuous_job), until SIGTERM/SIGINT (exit 143/130) or --max-seconds (exit 0)")
    r.add_argument("--max-seconds", type=float, default=None, metavar="N",
                   help="with --continuous: end cleanly after N seconds (default: the connector's "
                        "continuous.max_run_seconds if it declares continuous, else no limit)")
    r.set_defaults(func=_run)
    from headrace.ops_cli import add_commands

    add_commands(sub)  # status, pause, resume, offsets show|reset|set (headrace/ops_cli.py)
    d = sub.add_parser("demo", help="seed the shop database and run every demo connector through Dagster")
    d.set_defaults(func=_demo)
    h = sub.add_parser("dagster-home", help="prepare $DAGSTER_HOME with the project's dagster.yaml")
    h.set_defaults(func=_dagster_home)
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except BaseException as e:  # noqa: BLE001  (every failure ends as one line and an exit code)
        code = report_failure(e, getattr(args, "config", None))
    if args.func is _run:
        _ignore_stop_signals()
    return code


def _ignore_stop_signals() -> None:
    """Ignore SIGTERM and SIGINT once a run is over and its result (or stop line) printed. While Python
    shuts down it puts the default action back in place of its handlers, and a late stop signal would
    kill the process, turning a finished run's exit code (0, or 143 after a clean stop) into -15; an
    ignored signal stays ignored (process-wide, every thread)."""
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
