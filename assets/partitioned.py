"""A time-partitioned Parquet sink → Dagster: a partitioned multi-asset whose runs rebuild windows
from Kafka (backfills), and a streaming job that records which time partitions it touched.

A range backfill is one run (``BackfillPolicy.single_run()``) that rebuilds the whole range at once,
then records one materialization per partition with that partition's own figures: its window, the
rows and files in its folders (Parquet footers), and the folders replaced.
"""

import datetime as dt
from collections.abc import Callable, Iterator

import dagster as dg

from assets.keys import SinkAsset, clean
from assets.orphan_guard import die_with_run_worker
from assets.shared import CONNECTOR_TAG, RANGES_TAG, RETRY, ConnectorDefs, executor, pool_of, skippable
from assets.sinks import FolderOwners
from assets.stop_bridge import stoppable
from integrations.config import ParquetSinkConfig
from resources.kafka import KafkaResource


def _offsets_of(result: object, sources: tuple[str, ...]) -> dict:
    read = result.offsets()
    return read.get(sources[0], {}) if len(sources) == 1 else {t: read.get(t, {}) for t in sources}


def log_streamed(context: dg.OpExecutionContext, config: ParquetSinkConfig,
                 partitions: dg.TimeWindowPartitionsDefinition, owners: FolderOwners, result: object) -> int:
    """Log a materialization of every time partition a streaming micro-batch wrote (per owning asset);
    returns how many."""
    sources = getattr(result.stats, "sources", {})
    touched = touched_partitions(config, partitions, result.stats.files,
                                 lambda f, folder: owners.of_file(f, folder, sources))
    for f in sorted(touched.pop(None, ())):
        context.log.warning(f"{config.name}: wrote time partition {f} of a folder no asset owns")
    for a in owners.assets:
        for pk in sorted(touched.get(a.key, ())):
            context.log_event(dg.AssetMaterialization(
                asset_key=a.key, partition=pk,
                metadata={"offsets": dg.MetadataValue.json(_offsets_of(result, a.sources)),
                          "written_by": dg.MetadataValue.text("streaming micro-batch")}))
    n = sum(map(len, touched.values()))
    context.log.info(f"{config.name}: streamed {result.rows} rows into {n} time partition(s)")
    return n


class PartitionFigures:
    """Per-partition figures of a window rebuild: each file and replaced folder belongs to the
    partitions its folder's span overlaps (a folder wider than a partition, e.g. a daily folder of
    hourly partitions, counts in each of them: ``shared_folders`` says so)."""

    def __init__(self, config: ParquetSinkConfig, partitions: dg.TimeWindowPartitionsDefinition, fs: object) -> None:
        from integrations.sinks.parquet_partitioners import Partitioner

        self.partitions, self.fs, self.part = partitions, fs, Partitioner(config)
        self.depth = self.part.fmt.count("/") + 1
        self._keys: dict[str, list[str]] = {}
        self._rows: dict[str, int] = {}

    def keys_of_folder(self, rel: str) -> list[str]:
        """Partition keys whose windows overlap the span of partition folder ``rel`` (e.g. ``day=…``)."""
        if rel not in self._keys:
            span = self.part.folder_window(rel)
            self._keys[rel] = [] if span is None else _partition_keys(self.partitions, tuple(
                dt.datetime.fromtimestamp(ms / 1000, dt.UTC) for ms in span))
        return self._keys[rel]

    def _rows_of(self, f: str) -> int:
        if f not in self._rows:
            import pyarrow.parquet as pq

            self._rows[f] = pq.read_metadata(f, filesystem=self.fs).num_rows
        return self._rows[f]

    def _folder(self, f: str) -> str:
        return "/".join(f.replace("\\", "/").split("/")[-1 - self.depth:-1])

    def of(self, pk: str, files: list[str], paths: list[str]) -> dict:
        """Metadata of partition ``pk``: its own window, and the rows, files and replaced folders of it."""
        mine = [f for f in files if pk in self.keys_of_folder(self._folder(f))]
        folders = [p for p in paths if pk in self.keys_of_folder(p.split("/", 1)[-1])]
        shared = sorted({self._folder(f) for f in mine if len(self.keys_of_folder(self._folder(f))) > 1})
        together = sorted({k for p in folders for k in self.keys_of_folder(p.split("/", 1)[-1])} | {pk})
        w = self.partitions.time_window_for_partition_key(pk)
        rows = sum(self._rows_of(f) for f in mine)
        meta = {
            "rows": dg.MetadataValue.int(rows),
            "dagster/row_count": dg.MetadataValue.int(rows),  # a partition's rows are all its rows
            "window": dg.MetadataValue.text(f"[{w.start.isoformat()}, {w.end.isoformat()})"),
            "files": dg.MetadataValue.int(len(mine)),
            "paths_replaced": dg.MetadataValue.json(folders),
            "partitions_rewritten": dg.MetadataValue.json(together),
        }
        if shared:
            meta["shared_folders"] = dg.MetadataValue.json(shared)
        return meta


def partitioned_parquet_defs(config: ParquetSinkConfig, specs: list[dg.AssetSpec],
                              partitions: dg.TimeWindowPartitionsDefinition, assets: list[SinkAsset]
                              ) -> ConnectorDefs:
    """The backfill multi-asset (window rebuilds) and the streaming job of a time-partitioned Parquet sink."""
    keys = [s.key for s in specs]
    tags = {CONNECTOR_TAG: config.name}
    owners = FolderOwners(config, assets)

    @dg.multi_asset(
        name=f"{clean(config.name)}_backfill", specs=skippable(specs), partitions_def=partitions, can_subset=False,
        backfill_policy=dg.BackfillPolicy.single_run(), retry_policy=RETRY, pool=pool_of(config.name),
        op_tags=tags,
        description=f"Rebuilds the time partitions of {config.name} from Kafka (offsets_for_times); idempotent",
    )
    def _backfill(context: dg.AssetExecutionContext, kafka: KafkaResource) -> Iterator:
        from integrations.sinks.parquet_partitioners import open_root
        from integrations.sinks.windows import rebuild_window

        die_with_run_worker()
        window = context.partition_time_window
        res = rebuild_window(config, window.start, window.end, kafka.settings())
        span = [t.astimezone(window.start.tzinfo).isoformat() for t in res.window]
        context.log.info(f"{config.name}: rebuilt [{window.start}, {window.end}) as [{span[0]}, {span[1]}) "
                         f"(the whole folders) with {res.rows} rows; kept {len(res.carried)} streamed file(s)")
        fs, root = open_root(config)[:2]
        paths, files = replaced_by_asset(owners, res.paths, res.files, (fs, root))
        for p in paths.pop(None, []):
            context.log.warning(f"{config.name}: rebuilt {p}, a folder no asset of the connector owns")
        figures = PartitionFigures(config, partitions, fs)
        for a in assets:
            offsets = {f"{r.topic}[{r.partition}]": [r.start, r.end] for r in res.ranges if r.topic in a.sources}
            for pk in context.partition_keys:  # each partition its own rows, window, files and folders
                meta = {**figures.of(pk, files.get(a.key, []), paths.get(a.key, [])),
                        "rebuilt_window": dg.MetadataValue.text(f"[{span[0]}, {span[1]})"),
                        "offsets": dg.MetadataValue.json(offsets),  # what the run read, for the whole range
                        "partitions_in_run": dg.MetadataValue.int(len(context.partition_keys))}
                if len(context.partition_keys) == 1:
                    yield dg.MaterializeResult(asset_key=a.key, metadata=meta)
                else:  # a range: one materialization per partition (its output is left out)
                    context.log_event(dg.AssetMaterialization(asset_key=a.key, partition=pk, metadata=meta))

    @dg.op(name=f"{clean(config.name)}_stream", retry_policy=RETRY, pool=pool_of(config.name), tags=tags)
    def _stream(context: dg.OpExecutionContext, kafka: KafkaResource) -> None:
        from integrations.runtime.checks import ranges_from_tag
        from integrations.runtime.sink_runner import run_sink

        die_with_run_worker()
        tag = context.run.tags.get(RANGES_TAG)
        result = stoppable(context, run_sink, config, kafka.settings(), ranges=ranges_from_tag(tag) if tag else None)
        log_streamed(context, config, partitions, owners, result)

    @dg.job(name=f"{clean(config.name)}_job", tags=tags, executor_def=executor(),
            description=f"Streaming micro-batch of {config.name} (records the time partitions it touched)")
    def _stream_job() -> None:
        _stream()

    backfill_job = dg.define_asset_job(f"{clean(config.name)}_backfill_job", selection=dg.AssetSelection.assets(*keys),
                                       partitions_def=partitions, tags=tags, executor_def=executor())
    return ConnectorDefs(assets=[_backfill], jobs=[_stream_job, backfill_job], keys=keys, sensor_job=_stream_job)


def replaced_by_asset(owners: FolderOwners, paths: list[str], files: list[str], fs_root: tuple[object, str]
                      ) -> tuple[dict[dg.AssetKey | None, list[str]], dict[dg.AssetKey | None, list[str]]]:
    """A window rebuild's replaced ``<folder>/<partition path>``s and final files, per owning asset
    (under None: folders no asset owns)."""
    fs, root = fs_root
    by_folder: dict[str, list[str]] = {}
    for f in files:
        rel = f[len(root) + 1:] if f.startswith(f"{root}/") else f
        by_folder.setdefault(rel.split("/", 1)[0], []).append(f)
    out_paths: dict[dg.AssetKey | None, list[str]] = {}
    out_files: dict[dg.AssetKey | None, list[str]] = {}
    owner: dict[str, dg.AssetKey | None] = {}
    for p in paths:
        folder = p.split("/", 1)[0]
        if folder not in owner:
            sample = by_folder.get(folder, [None])[0]
            owner[folder] = owners.of_folder(folder, sample, fs)
            out_files.setdefault(owner[folder], []).extend(by_folder.get(folder, []))
        out_paths.setdefault(owner[folder], []).append(p)
    return out_paths, out_files


def _partition_keys(partitions: dg.TimeWindowPartitionsDefinition,
                    span: tuple[dt.datetime, dt.datetime] | None) -> list[str]:
    """Keys of the partitions whose windows overlap ``[start, end)`` (aware datetimes), in order."""
    if span is None:
        return []
    start, end = span
    day = dt.timedelta(days=2)  # a partition starting before ``start`` can still overlap it
    keys = partitions.get_partition_keys_in_time_window(dg.TimeWindow(start - day, end))
    out = []
    for k in keys:
        w = partitions.time_window_for_partition_key(k)
        if w.start.timestamp() < end.timestamp() and w.end.timestamp() > start.timestamp():
            out.append(k)
    return out


def touched_partitions(config: ParquetSinkConfig, partitions: dg.TimeWindowPartitionsDefinition,
                       files: list[str], owner: Callable[[str, str], dg.AssetKey | None]
                       ) -> dict[dg.AssetKey | None, set[str]]:
    """Dagster partition keys of the time partitions that written files belong to, per owning asset.

    A file's folder stands for the span of instants whose records go there (``folder_window``), and
    every partition overlapping that span is touched: the fall-back night's ``hour=02`` is both
    ``…-02:00`` and ``…-02:00+0100``, a daily folder is each of its hourly partitions.
    ``owner(file, topic folder)`` names the asset a file belongs to (None: no asset owns it)."""
    from integrations.sinks.parquet_partitioners import Partitioner

    part = Partitioner(config)
    depth = part.fmt.count("/") + 1
    keys_of: dict[str, list[str]] = {}
    out: dict[dg.AssetKey | None, set[str]] = {}
    for f in files:
        parts = f.replace("\\", "/").split("/")
        rel, folder = "/".join(parts[-1 - depth:-1]), parts[-2 - depth]
        if rel not in keys_of:
            span = part.folder_window(rel)
            keys_of[rel] = [] if span is None else _partition_keys(partitions, tuple(
                dt.datetime.fromtimestamp(ms / 1000, dt.UTC) for ms in span))
        if keys_of[rel]:
            out.setdefault(owner(f, folder), set()).update(keys_of[rel])
    return out
