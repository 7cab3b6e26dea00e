"""Asset checks: the sink's lag stays under a threshold (cheap metadata calls only)."""


import os

import dagster as dg

from assets.keys import SinkAsset, sink_assets
from integrations.config import ParquetSinkConfig, TableSinkConfig
from integrations.runtime.sink_runner import lag
from resources.kafka import KafkaResource

DEFAULT_MAX_LAG = int(os.environ.get("HEADRACE_MAX_LAG", "1000000"))


def _lag_check(config: ParquetSinkConfig | TableSinkConfig, asset: SinkAsset) -> dg.AssetChecksDefinition:
    topics = list(asset.sources)

    @dg.asset_check(asset=asset.key, name="lag_within_threshold",
                    description=f"Records of {', '.join(map(repr, topics))} not yet in the dataset ≤ {DEFAULT_MAX_LAG}")
    def _check(kafka: KafkaResource) -> dg.AssetCheckResult:
        behind = sum(lag(kafka.settings(), config.consumer_group, topics).values())
        return dg.AssetCheckResult(
            passed=behind <= DEFAULT_MAX_LAG, severity=dg.AssetCheckSeverity.WARN,
            metadata={"lag": behind, "threshold": DEFAULT_MAX_LAG},
        )

    return _check


def lag_checks(config: ParquetSinkConfig | TableSinkConfig) -> list[dg.AssetChecksDefinition]:
    """One check per dataset or table: records of its source topics not yet committed by the sink's group ≤
    the threshold."""
    return [_lag_check(config, a) for a in sink_assets(config)]
