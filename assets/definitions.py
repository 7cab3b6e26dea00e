"""The Definitions: every connector file in ``connectors/`` (or ``$HEADRACE_CONNECTORS_DIR``)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from assets.checks import lag_checks
from assets.factory import connector_defs, external_topic_specs
from assets.sensors import connector_sensor
from integrations.config import default_connectors_dir, load_folder
from integrations.registry import is_source
from resources.kafka import KafkaResource


def build_definitions(folder: str | Path | None = None) -> dg.Definitions:
    """Definitions for every connector in a folder (invalid files raise one clear ConfigError)."""
    configs = load_folder(folder or default_connectors_dir())
    assets, specs, jobs, sensors, checks, produced = [], [], [], [], [], set()
    for config in configs:
        d = connector_defs(config)
        assets += d.assets
        specs += d.specs
        jobs += d.jobs
        sensors.append(connector_sensor(config, d.sensor_job))
        if is_source(config):
            produced |= set(d.keys)
        else:
            checks += lag_checks(config)
    specs += external_topic_specs(configs, produced)
    return dg.Definitions(
        assets=[*specs, *assets], jobs=jobs, sensors=sensors, asset_checks=checks,
        resources={"kafka": KafkaResource()},
    )


defs = build_definitions()
