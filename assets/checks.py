"""Asset checks: the sink's lag stays under a threshold (cheap metadata calls only)."""


import os

import dagster as dg

from assets.factory import _sink_key
from integrations.config import ParquetSinkConfig, TableSinkConfig
from integrations.runtime.sink_runner import lag
from resources.kafka import KafkaResource

DEFAULT_MAX_LAG = int(os.environ.get("HEADRACE_MAX_LAG", "1000000"))


def _lag_check(config: ParquetSinkConfig | TableSinkConfig, topic: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=_sink_key(config, topic), name="lag_within_threshold",
                    description=f"Records of {topic!r} not yet in the dataset ≤ {DEFAULT_MAX_LAG}")
    def _check(kafka: KafkaResource) -> dg.AssetCheckResult:
        behind = lag(kafka.settings(), config.consumer_group, [topic])[topic]
        return dg.AssetCheckResult(
            passed=behind <= DEFAULT_MAX_LAG, severity=dg.AssetCheckSeverity.WARN,
            metadata={"lag": behind, "threshold": DEFAULT_MAX_LAG},
        )

    return _check


def lag_checks(config: ParquetSinkConfig | TableSinkConfig) -> list[dg.AssetChecksDefinition]:
    """One check per dataset: records not yet committed by the sink's group ≤ the threshold."""
    return [_lag_check(config, topic) for topic in config.topics]
