"""The Definitions: every connector file in ``connectors/`` (or ``$HEADRACE_CONNECTORS_DIR``).

``build_definitions`` is the one loader: the repository's ``workspace.yaml`` project and the Dagster
Component (``headrace.ConnectorsComponent``, in any ``dg`` project) both build through it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from assets.broken import scan_for_dagster
from assets.cdc_checks import slot_lag_checks
from assets.checks import sink_checks
from assets.factory import chain_sinks, connector_defs, external_topic_specs
from assets.sensors import connector_sensor
from assets.translator import HeadraceTranslator, build_translated
from integrations.config import default_connectors_dir, load_folder
from integrations.errors import ConfigError
from integrations.registry import is_source
from resources.kafka import KafkaResource

log = logging.getLogger("headrace.assets")

#: one resource object shared by every build, so several components' definitions merge
DEFAULT_KAFKA = KafkaResource()


def _connector_defs(configs: Sequence[object], tolerant: bool) -> tuple[list[object], dict[str, object]]:
    """Each connector's definitions. A connector whose definitions cannot be built (a valid file whose
    routing or partitions Dagster refuses) raises its one-line ConfigError, or, ``tolerant`` (the code
    location), is left out with that line logged so the others load."""
    kept, built = [], {}
    for c in configs:
        try:
            built[c.name] = connector_defs(c)
            kept.append(c)
        except ConfigError as e:
            if not tolerant:
                raise
            log.error("connector %s not loaded: %s", c.name, str(e).splitlines()[0] if str(e) else type(e).__name__)
    return kept, built


def _build(configs: Sequence[object], kafka: KafkaResource, external_topics: bool,
           tolerant: bool = False) -> dg.Definitions:
    assets, specs, jobs, sensors, checks, produced = [], [], [], [], [], set()
    configs, built = _connector_defs(configs, tolerant)
    chained = chain_sinks(list(configs), built)
    for config in configs:
        d = built[config.name]
        assets += d.assets
        specs += d.specs
        jobs += d.jobs
        sensors += d.sensors or [connector_sensor(config, d.sensor_job, chained.get(config.name, []))]
        if is_source(config):
            produced |= set(d.keys)
            checks += slot_lag_checks(config, d.keys)  # postgres_cdc only
        else:  # lag (also between runs, by its checks sensor) and reconciliation
            own, checks_sensor = sink_checks(config, configs)
            checks += own
            sensors.append(checks_sensor)
    if external_topics:
        specs += external_topic_specs(configs, produced)
    return dg.Definitions(
        assets=[*specs, *assets], jobs=jobs, sensors=sensors, asset_checks=checks, resources={"kafka": kafka},
    )


def build_definitions(folder: str | Path | None = None, *, configs: Sequence[object] | None = None,
                      translator: HeadraceTranslator | None = None,
                      kafka: KafkaResource | None = None, external_topics: bool = True,
                      tolerant: bool = False) -> dg.Definitions:
    """Definitions for every connector in a folder (invalid files raise one clear ConfigError), or for
    already validated ``configs``; ``translator`` decides keys, groups, owners, tags and descriptions.
    ``external_topics=False`` leaves out the asset specs of topics that sinks read but no source here
    produces (when other definitions declare them). ``tolerant`` (the code location): a connector
    whose definitions cannot be built is left out with one logged error line instead of raising."""
    if configs is None:
        configs = load_folder(folder or default_connectors_dir())
    elif folder is not None:
        raise ConfigError("build_definitions takes a folder or configs, not both")
    seen: dict[str, object] = {}
    for c in configs:
        if c.name in seen:
            raise ConfigError(f"connector name {c.name!r} is used twice")
        seen[c.name] = c
    resource = kafka or DEFAULT_KAFKA
    return build_translated(lambda: _build(configs, resource, external_topics, tolerant), configs, translator)


def __getattr__(name: str) -> dg.Definitions:
    """``defs`` (what workspace.yaml loads): the repository's connectors, built on first access only, so
    importing this module (the Component does) never loads the repository's own connector folder."""
    if name == "defs":
        from assets.ops_jobs import ops_definitions

        global defs
        # every valid connector; each broken file is shown as an asset whose check fails with its error
        configs, broken = scan_for_dagster(default_connectors_dir())
        # the operations jobs (status, pause/resume, offsets) for this project's connectors
        defs = dg.Definitions.merge(build_definitions(configs=configs, tolerant=True), ops_definitions(configs),
                                    broken)
        return defs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
