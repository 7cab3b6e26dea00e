"""``headrace.ConnectorsComponent``: Headrace connectors inside any ``dg`` project.

The component builds its definitions through :func:`assets.definitions.build_definitions`, the same
loader as the repository's ``workspace.yaml`` project, so both load the same connectors the same way.
"""

# No `from __future__ import annotations`: Dagster reads the dataclass fields' types at runtime.
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import dagster as dg
from dagster.components.utils.translation import TranslationFn, TranslationFnResolver

from assets.translator import AssetProps, HeadraceTranslator
from integrations.config import ConnectorConfig, load_folder
from integrations.errors import ConfigError


def _translation_vars(props: AssetProps) -> dict[str, object]:
    return {"props": props, "kind": props.kind, "connector": props.connector}


class _ComponentTranslator(HeadraceTranslator):
    """The translator of a component: its ``get_asset_spec`` (which a subclass may override)."""

    def __init__(self, component: "ConnectorsComponent") -> None:
        self.component = component

    def get_asset_spec(self, props: AssetProps) -> dg.AssetSpec:
        return self.component.get_asset_spec(props)


@dataclass
class ConnectorsComponent(dg.Component, dg.Resolvable):
    """Headrace connectors (Kafka Connect's job: SQL tables and files → Kafka → Parquet datasets and
    warehouse tables) as Dagster assets, sensors, jobs and checks.

    Give a folder of connector YAML files (``connectors_dir``, relative to this defs.yaml), connectors
    written inline (``connectors``: the same fields as a connector file, one mapping per connector), or
    both. Each connector becomes a multi-asset with lineage ``source table → topic → dataset/table``, a
    job and a sensor (stopped by default), exactly as in Headrace's own project.

    ``translation`` changes the assets' specs, as in dagster-sling: AssetSpec attributes (``key``,
    ``key_prefix``, ``group_name``, ``owners``, ``tags``, ``description``, ``metadata``, ``kinds``…),
    templated with ``spec`` (the default spec), ``props`` (kind, connector, name, topics, key),
    ``kind`` (source_table, source_folder, topic, parquet_dataset, warehouse_table) and ``connector``.
    Lineage follows changed keys. For Python control, subclass the component and override
    ``get_asset_spec(props)``.

    Example::

        type: headrace.ConnectorsComponent
        attributes:
          connectors_dir: connectors
          translation:
            key_prefix: [shop]
            group_name: "{{ 'lake' if kind == 'parquet_dataset' else spec.group_name }}"
            owners: [team:data]
    """

    connectors_dir: Annotated[
        str | None,
        dg.Resolver.default(description="Folder of connector YAML files (one connector per file), relative to "
                                        "this defs.yaml; every file must be valid"),
    ] = None
    connectors: Annotated[
        list[object] | None,
        dg.Resolver(lambda _context, value: value, model_field_type=list[ConnectorConfig] | None,  # ty: ignore
                    inject_before_resolve=False,
                    description="Connectors written inline: each a mapping with 'name', 'type' (sql_source, "
                                "file_source, parquet_sink, table_sink) and that type's fields; secrets as "
                                "${env:VAR}"),
    ] = None
    translation: Annotated[
        TranslationFn[AssetProps],
        TranslationFnResolver(template_vars_for_translation_fn=_translation_vars),
    ] | None = None
    bootstrap_servers: Annotated[
        str | None,
        dg.Resolver.default(description="Kafka host:port list of the 'kafka' resource (default "
                                        "KAFKA_BOOTSTRAP_SERVERS or the local broker); client secrets come "
                                        "from HEADRACE_KAFKA_CONFIG"),
    ] = None

    def get_asset_spec(self, props: AssetProps) -> dg.AssetSpec:
        """The spec of one asset: Headrace's default with ``translation`` applied. Override in a subclass to
        change keys, groups, owners, tags and descriptions in Python."""
        spec = HeadraceTranslator().get_asset_spec(props)
        return self.translation(spec, props) if self.translation else spec

    def load_configs(self, folder: Path) -> list[object]:
        """The connectors: every file of ``connectors_dir`` (relative to ``folder``), then the inline ones."""
        if self.connectors_dir is None and not self.connectors:
            raise ConfigError(f"{folder / 'defs.yaml'}: set 'connectors_dir' or 'connectors' (at least one connector)")
        configs: list[object] = []
        if self.connectors_dir is not None:
            where = folder / self.connectors_dir
            if not where.is_dir():
                raise ConfigError(f"{folder / 'defs.yaml'}: field 'connectors_dir': {str(where)!r} is not a folder")
            configs += load_folder(where)
        seen = {c.name for c in configs}
        for i, c in enumerate(self.connectors or []):
            if c.name in seen:
                raise ConfigError(f"{folder / 'defs.yaml'}: field 'connectors[{i}].name': {c.name!r} is already used "
                                  "by another connector of this component")
            seen.add(c.name)
            configs.append(c)
        return configs

    def _translator(self) -> HeadraceTranslator | None:
        plain = type(self).get_asset_spec is ConnectorsComponent.get_asset_spec and self.translation is None
        return None if plain else _ComponentTranslator(self)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        """The connectors' assets, sensors, jobs, checks and the ``kafka`` resource."""
        from assets.definitions import DEFAULT_KAFKA, build_definitions
        from resources.kafka import KafkaResource

        kafka = KafkaResource(bootstrap_servers=self.bootstrap_servers) if self.bootstrap_servers else DEFAULT_KAFKA
        return build_definitions(configs=self.load_configs(Path(context.path)), translator=self._translator(),
                                 kafka=kafka)
