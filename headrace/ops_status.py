"""``headrace status``: one row per connector — its sensor's state, its last run, its offsets, its lag
and its dead-letter count — as a table or as JSON.

- **sensor**: the state stored in the Dagster instance (running / stopped / never started).
- **last run**: the latest run tagged ``headrace/connector=<name>``: status, start and end (UTC).
- **offsets**: per source partition (sources, from the offsets topic) or per topic-partition
  (sinks: the consumer group's, or the table sink's own offsets table).
- **lag**: sinks: records between their offsets and the topics' last stable offsets. Sources have no
  Kafka-side lag: SQL sources count the tables with rows past the stored offset, file sources the
  ready files not finished (``lag_unit`` says which).
- **dead letters**: messages in the connector's ``dlq_topic`` (none when it has none).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from headrace import ops_offsets
from integrations.config import FileSourceConfig, SqlSourceConfig
from integrations.kafka.cluster import KafkaSettings
from integrations.offsets import OffsetStore


@dataclass
class ConnectorStatus:
    """One row of ``headrace status``."""

    connector: str
    kind: str
    sensor: str
    last_run: dict[str, Any] | None
    offsets: dict[str, Any]
    lag: int | None
    lag_unit: str
    dead_letters: int | None
    dlq_topic: str | None
    problems: list[str]


def _utc(v: Any) -> dt.datetime | None:
    if v is None:
        return None
    d = v if isinstance(v, dt.datetime) else dt.datetime.fromisoformat(str(v))
    return d.replace(tzinfo=dt.UTC) if d.tzinfo is None else d.astimezone(dt.UTC)


def _sql_behind(config: SqlSourceConfig, stored: dict[str, Any]) -> int:
    """Tables (or the query) with rows past the stored offset (bulk mode: every table)."""
    from integrations.runtime.checks import sql_source_maxima

    maxima = sql_source_maxima(config)
    if config.mode == "bulk":
        return len(maxima)
    behind = 0
    for name, values in maxima.items():
        off = stored.get(orjson.dumps({"query" if config.query else "table": name},
                                      option=orjson.OPT_SORT_KEYS).decode()) or {}
        vals, new = iter(values), False
        if config.incrementing_column:
            v = next(vals)
            new |= v is not None and (off.get("incrementing") is None or v > off["incrementing"])
        if config.timestamp_column:
            v = _utc(next(vals))
            new |= v is not None and (off.get("timestamp") is None or v > _utc(off["timestamp"]))
        behind += new
    return behind


def _files_pending(config: FileSourceConfig, stored: dict[str, Any]) -> int:
    from integrations.sources.files import list_ready_files

    pending = 0
    for rel, _size, _mtime in list_ready_files(config):
        off = stored.get(orjson.dumps({"file": rel}, option=orjson.OPT_SORT_KEYS).decode())
        pending += not (off and off.get("done"))
    return pending


def dead_letters(kafka: KafkaSettings, topic: str | None) -> int | None:
    """Messages in a dead-letter topic (0 when it does not exist yet; None without a DLQ)."""
    if not topic:
        return None
    return sum(high - low for low, high in kafka.watermarks(topic).values())


def _problem(what: str, e: Exception) -> str:
    from integrations.config import redact_url

    text = next((x.strip() for x in str(e).splitlines() if x.strip()), type(e).__name__)
    return f"{what}: {redact_url(text)}"


def connector_status(config: Any, kafka: KafkaSettings, instance: Any) -> ConnectorStatus:
    """The status row of one connector (``instance``: a Dagster instance, or None). A part that cannot
    be read (a database down, a missing table) is left empty and named in ``problems``."""
    from headrace.ops_dagster import last_run, sensor_state

    kind = ops_offsets.kind_of(config)
    problems: list[str] = []
    offsets: dict[str, Any] = {}
    lag, unit = None, "records"
    try:
        if kind == "source":
            offsets = OffsetStore(kafka).read(config.name)
        else:
            raw = ops_offsets.sink_offsets(config, kafka)
            offsets = {ops_offsets.tp_name(t, p): o for (t, p), o in raw.items()}
    except Exception as e:  # noqa: BLE001 (one unreadable part does not hide the rest of the table)
        problems.append(_problem("offsets", e))
    try:
        if kind == "source" and isinstance(config, SqlSourceConfig):
            unit = "tables with new rows"
            lag = _sql_behind(config, offsets)
        elif kind == "source":
            unit = "files not finished"
            lag = _files_pending(config, offsets)
        elif not problems:
            lag = 0
            marks = {t: kafka.watermarks(t) for t in config.topics}
            for (t, p), o in raw.items():
                low, high = marks[t].get(p, (0, 0))
                lag += high - max(o if o is not None else low, low)
    except Exception as e:  # noqa: BLE001
        lag = None
        problems.append(_problem("lag", e))
    run = last_run(instance, config.name)
    dlq = getattr(config, "dlq_topic", None)
    return ConnectorStatus(config.name, kind, sensor_state(instance, config.name),
                           asdict(run) if run else None, offsets, lag, unit, dead_letters(kafka, dlq), dlq,
                           problems)


def collect(configs: list[Any], kafka: KafkaSettings) -> list[ConnectorStatus]:
    """Status rows of ``configs``, reading the Dagster instance at ``$DAGSTER_HOME`` once."""
    from headrace.ops_dagster import open_instance

    with open_instance() as instance:
        return [connector_status(c, kafka, instance) for c in configs]


def _offset_text(key: str, value: Any) -> str:
    if value is None:
        return f"{key}=none"
    if not isinstance(value, dict):
        return f"{key}={value}"
    try:
        part = orjson.loads(key)
        label = ",".join(str(v) for v in part.values()) if isinstance(part, dict) else key
    except orjson.JSONDecodeError:
        label = key
    shown = {k: v for k, v in value.items() if k not in ("safe_samples", "stopped", "blake2b", "mtime_ns", "size")}
    return f"{label}: " + " ".join(f"{k}={v}" for k, v in shown.items())


def rows(statuses: list[ConnectorStatus]) -> list[list[str]]:
    """Table cells: connector, sensor, last run, offsets, lag, dead letters."""
    out = []
    for s in statuses:
        r = s.last_run
        last = "never" if r is None else f"{r['status'].lower()} {r['started'] or ''}".strip()
        offsets = "\n".join(_offset_text(k, v) for k, v in sorted(s.offsets.items())) or "none"
        lag = "\n".join([*([] if s.lag is None else [f"{s.lag} {s.lag_unit}"]), *s.problems])
        dlq = "-" if s.dead_letters is None else f"{s.dead_letters} ({s.dlq_topic})"
        out.append([f"{s.connector}\n({s.kind})", s.sensor, last, offsets, lag, dlq])
    return out


HEADERS = ["connector", "sensor", "last run", "offsets", "lag", "dead letters"]


def render(statuses: list[ConnectorStatus], width: int | None = None) -> str:
    """The status table as text (rich's table; plain, no colours). ``width``: the terminal's, which long
    cells wrap to fit; None (a file or pipe): the table's natural width, no cell wrapped."""
    import io

    from rich.console import Console
    from rich.table import Table

    table = Table(*HEADERS, show_lines=True)
    for r in rows(statuses):
        table.add_row(*r)
    buf = io.StringIO()
    Console(file=buf, width=width or 10_000, no_color=True, highlight=False, soft_wrap=False).print(table)
    return buf.getvalue()


def as_json(statuses: list[ConnectorStatus]) -> str:
    """The rows as a JSON array."""
    return orjson.dumps([asdict(s) for s in statuses], option=orjson.OPT_INDENT_2).decode()


def rows_markdown(statuses: list[ConnectorStatus]) -> str:
    """The status table as Markdown (Dagster metadata)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", "<br>")
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows(statuses)]
    return "\n".join(lines)
