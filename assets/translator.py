"""The translator: how Headrace's assets are named and described, in the style of dagster-sling's
``DagsterSlingTranslator`` and dagster-dlt's ``DagsterDltTranslator``.

One override point, :meth:`HeadraceTranslator.get_asset_spec`, receives :class:`AssetProps` (what the
asset is, its connector, its default key and spec) and returns the ``AssetSpec`` to use. Keys, groups,
owners, tags, descriptions, metadata, kinds, code versions and automation conditions may change.
Lineage follows changed keys: a topic renamed by the translator is the dep of every sink that reads it.
Deps and partitions returned by the translator are ignored (they follow from the connectors).

Every build, translated or not, gives each asset its catalog metadata (:func:`assets.metadata.spec_catalog`)
and the ``owners`` and ``tags`` written in its connector's YAML (a topic: its producing source's) before
any translator sees the spec, so a translator can still change them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import dagster as dg

from assets.keys import KeyOrigin, Naming, naming
from integrations.errors import ConfigError

# Dagster 1.13 copies a sensor with ``owners=[]`` whenever it resolves the sensor's job or metadata
# (``SensorDefinition.with_attributes``), which warns that the beta parameter ``owners`` was used although
# nobody set it, once in every process that loads the code location (code server, each run worker and
# step process): the BetaWarnings repeated in ``dagster dev``. Only that warning is silenced.
warnings.filterwarnings("ignore", message=r"Parameter `owners` of initializer `SensorDefinition\.__init__`",
                        category=dg.BetaWarning)

AssetKind = Literal["source_table", "source_folder", "topic", "parquet_dataset", "warehouse_table"]

#: AssetSpec attributes a translator may change (key is handled separately; deps follow the keys)
_ATTRIBUTES = ("group_name", "owners", "tags", "description", "metadata", "kinds", "code_version",
               "automation_condition", "freshness_policy")


@dataclass(frozen=True)
class AssetProps:
    """What one Headrace asset is, as a translator sees it.

    ``kind``: ``source_table`` (a table or custom query a SQL source reads), ``source_folder`` (a file
    source's spooling folder), ``topic`` (a Kafka topic), ``parquet_dataset`` or ``warehouse_table``
    (what a sink writes). ``connector``: the connector config that declares the asset (for a topic, the
    source connector producing it; None for a topic written outside Headrace). ``name``: the source
    table, folder, topic, dataset folder or target table (None for a custom query or a dynamically
    routed sink). ``topics``: the topic a source input writes to, or the topics a sink asset reads.
    ``key`` and ``spec``: the default key and spec (``spec.deps`` use default keys)."""

    kind: AssetKind
    key: dg.AssetKey
    spec: dg.AssetSpec
    connector: object | None
    name: str | None
    topics: tuple[str, ...]


class HeadraceTranslator:
    """Decides the ``AssetSpec`` of every Headrace asset. Subclass it and override
    :meth:`get_asset_spec`; pass an instance to ``build_definitions(translator=...)`` (or subclass
    ``ConnectorsComponent`` and override its ``get_asset_spec``).

    Example::

        class Prefixed(HeadraceTranslator):
            def get_asset_spec(self, props):
                spec = super().get_asset_spec(props)
                return spec.replace_attributes(key=spec.key.with_prefix("acme"), owners=["team:data"])
    """

    def get_asset_spec(self, props: AssetProps) -> dg.AssetSpec:
        """The spec of the asset ``props`` describes; the default is Headrace's own (``props.spec``)."""
        return props.spec


class ShortLabels(HeadraceTranslator):
    """The keys of Headrace before its labels were qualified: the last part without the parts before it
    (``parquet/lake/shop_orders`` instead of ``parquet/lake/lake__shop_orders``). For a project whose
    asset histories started under those keys (keys name histories); a topic, a dataset and a table of
    one name then share a label in the asset graph."""

    def get_asset_spec(self, props: AssetProps) -> dg.AssetSpec:
        """The default spec, its key's last part without the qualifying parts."""
        spec = super().get_asset_spec(props)
        path = list(spec.key.path)
        prefix = "__".join(path[1:-1]) + "__"
        if len(path) <= 2 or not path[-1].startswith(prefix):
            return spec
        return spec.replace_attributes(key=dg.AssetKey([*path[:-1], path[-1].removeprefix(prefix)]))


def _specs_of(defs: dg.Definitions) -> list[dg.AssetSpec]:
    out: list[dg.AssetSpec] = []
    for a in defs.assets or []:
        out += [a] if isinstance(a, dg.AssetSpec) else list(getattr(a, "specs", []))
    return out


def _props(spec: dg.AssetSpec, origin: KeyOrigin | None, by_name: dict[str, object]) -> AssetProps:
    if origin is None:  # not handed out by assets.keys (cannot happen for Headrace's own assets)
        raise ConfigError(f"asset {spec.key.to_user_string()}: unknown to the translator layer")
    connector = origin.connector
    if origin.kind == "topic":
        connector = by_name.get(str(spec.metadata.get("connector", "")))  # the producing source; None if external
    return AssetProps(kind=origin.kind, key=spec.key, spec=spec, connector=connector, name=origin.name,
                      topics=origin.topics)


def _apply(spec: dg.AssetSpec, translated: dg.AssetSpec | None) -> dg.AssetSpec:
    """``spec`` (built under the new keys) with the translator's other attributes."""
    if translated is None:
        return spec
    kinds = set(translated.kinds or ())
    tags = {k: v for k, v in (translated.tags or {}).items() if not k.startswith("dagster/kind/")}
    return spec.replace_attributes(
        group_name=translated.group_name, owners=list(translated.owners or []), tags=tags,
        description=translated.description, metadata=dict(translated.metadata or {}), kinds=kinds,
        code_version=translated.code_version, automation_condition=translated.automation_condition,
        freshness_policy=translated.freshness_policy,
    )


def _catalog(spec: dg.AssetSpec, origin: KeyOrigin | None, by_name: dict[str, object]) -> dg.AssetSpec:
    """``spec`` with its catalog metadata and its connector's YAML owners and tags."""
    from assets.metadata import spec_catalog

    if origin is None:
        return spec
    connector = origin.connector
    if origin.kind == "topic":
        connector = by_name.get(str(spec.metadata.get("connector", "")))
    meta = spec_catalog(origin.kind, connector, origin.name, origin.topics)
    owners = list(dict.fromkeys([*(spec.owners or []), *getattr(connector, "owners", [])]))
    tags = {**getattr(connector, "tags", {}), **(spec.tags or {})}
    extra = {}
    if origin.kind in ("parquet_dataset", "warehouse_table") and spec.freshness_policy is None:
        from assets.checks import freshness_policy

        extra["freshness_policy"] = freshness_policy(connector)
    return spec.replace_attributes(metadata={**meta, **(spec.metadata or {})}, owners=owners, tags=tags, **extra)


def _map_specs(defs: dg.Definitions, func: Callable[[dg.AssetSpec], dg.AssetSpec]) -> dg.Definitions:
    with warnings.catch_warnings():  # map_asset_specs is a "preview" API in Dagster 1.13
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return defs.map_asset_specs(func=func)


def is_identity(translator: HeadraceTranslator | None) -> bool:
    """Whether ``translator`` certainly leaves every spec as it is (no second build needed)."""
    return translator is None or type(translator) is HeadraceTranslator


def build_translated(build: Callable[[], dg.Definitions], configs: Sequence[object],
                     translator: HeadraceTranslator | None) -> dg.Definitions:
    """``build()``'s definitions with ``translator``'s specs.

    Two passes: the first builds the default definitions and records what each key names; the
    translator then gives every asset its spec; the second builds again with the new keys (so deps,
    jobs, checks and the keys runs report all use them) and applies the other attributes. Without a
    translator one pass: the default specs with their catalog metadata, owners and tags."""
    by_name = {getattr(c, "name", ""): c for c in configs}
    with naming(Naming()) as first:
        defaults = build()
    if is_identity(translator):
        return _map_specs(defaults, lambda s: _catalog(s, first.origins.get(s.key), by_name))
    renamed: dict[dg.AssetKey, dg.AssetKey] = {}
    translated: dict[dg.AssetKey, dg.AssetSpec] = {}
    for spec in _specs_of(defaults):
        spec = _catalog(spec, first.origins.get(spec.key), by_name)
        out = translator.get_asset_spec(_props(spec, first.origins.get(spec.key), by_name))
        if not isinstance(out, dg.AssetSpec):
            raise ConfigError(f"{type(translator).__name__}.get_asset_spec returned {type(out).__name__} for "
                              f"{spec.key.to_user_string()}; expected a dagster AssetSpec")
        if out.key in translated:
            other = next(k for k, v in renamed.items() if v == out.key)
            raise ConfigError(f"{type(translator).__name__} gives two assets the key {out.key.to_user_string()}: "
                              f"{other.to_user_string()} and {spec.key.to_user_string()}")
        renamed[spec.key] = out.key
        translated[out.key] = out
    with naming(Naming(renamed={k: v for k, v in renamed.items() if k != v})):
        defs = build()
    return _map_specs(defs, lambda s: _apply(s, translated.get(s.key)))
