"""The CDC connector's slot-lag asset check (``slot_lag_within_threshold``).

A replication slot keeps every WAL segment the connector has not confirmed: a paused or failing
connector makes the database's disk grow. The check reads ``pg_replication_slots`` (a catalog read,
never a decode) and fails when the slot is more than ``slot_lag_max_bytes`` behind, or has lost its
WAL. It is evaluated on each of the connector's topic assets, on demand (the UI's "Execute") and by the
connector's checks schedule.
"""

from collections.abc import Iterator, Sequence

import dagster as dg

from assets.keys import clean

SLOT_LAG_CHECK = "slot_lag_within_threshold"


def slot_lag_results(config: object, keys: Sequence[dg.AssetKey]) -> list[dg.AssetCheckResult]:
    """One result per topic asset (the slot is the connector's): passed, with the lag figures."""
    from integrations.sources.postgres_cdc_checks import slot_lag_verdict

    passed, text, figures = slot_lag_verdict(config)
    meta = {"description": text, **figures}
    return [dg.AssetCheckResult(asset_key=k, check_name=SLOT_LAG_CHECK, passed=passed, metadata=meta,
                                severity=dg.AssetCheckSeverity.WARN) for k in keys]


def slot_lag_checks(config: object, keys: Sequence[dg.AssetKey]) -> list[dg.AssetChecksDefinition]:
    """The slot-lag check of a ``postgres_cdc`` connector over its topic assets (none for other types)."""
    if getattr(config, "type", None) != "postgres_cdc" or not keys:
        return []
    specs = [dg.AssetCheckSpec(SLOT_LAG_CHECK, asset=k, description=f"The replication slot of {config.name} is at "
                               f"most slot_lag_max_bytes ({config.slot_lag_max_bytes:,}) behind the WAL")
             for k in keys]

    @dg.multi_asset_check(specs=specs, name=f"{clean(config.name)}_slot_lag")
    def _check() -> Iterator[dg.AssetCheckResult]:
        yield from slot_lag_results(config, keys)

    return [_check]
