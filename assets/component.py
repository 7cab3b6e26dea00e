"""``headrace.ConnectorsComponent``: Headrace connectors inside any ``dg`` project.

The component builds its definitions through :func:`assets.definitions.build_definitions`, the same
loader as the repository's ``workspace.yaml`` project, so both load the same connectors the same way.
"""

# No `from __future__ import annotations`: Dagster reads the dataclass fields' types at runtime.
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import dagster as dg
from dagster.components.component_scaffolding import scaffold_component
from dagster.components.resolved.errors import ResolutionException
from dagster.components.utils.translation import TranslationFn, TranslationFnResolver
from pydantic import TypeAdapter, ValidationError

from assets.translator import AssetProps, HeadraceTranslator
from integrations.config import CONNECTOR_TYPES, ConnectorConfig
from integrations.errors import ConfigError
from integrations.loading import BrokenConnector, scan_connectors
from integrations.transforms.config import PREDICATE_TYPES, TRANSFORM_TYPES


def _field_path(loc: tuple[Any, ...]) -> list[str | int]:
    """A pydantic error location inside one connector, without the union tags pydantic adds (the
    connector type, transform and predicate types)."""
    out: list[str | int] = []
    for i, p in enumerate(loc):
        prev = out[-1] if out else None
        if (i == 0 and p in CONNECTOR_TYPES) or (isinstance(prev, int) and p in TRANSFORM_TYPES) or (
                prev == "predicate" and p in PREDICATE_TYPES):
            continue
        out.append(p)
    return out


def _dotted(path: list[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _problem(context: dg.ResolutionContext, index: int, path: list[str | int], message: str,
             first: bool) -> str:
    """One error line ``<file>:<line> - <field>: <message>`` (the first with the YAML snippet)."""
    field = _dotted([*context.path, index, *path])
    tree = context.source_position_tree
    if tree is None:
        return f"{field}: {message}"
    src = tree.source_error(yaml_path=[*context.path, index, *path], inline_error_message=message, value_error=True)
    return f"{src.file_name}:{src.start_line_no} - {field}: {message}" + (f"\n{src.snippet}" if first else "")


def _dates_as_text(value: Any) -> Any:
    """YAML dates and timestamps back to ISO text, as Headrace reads connector files (Dagster's YAML
    loader makes them ``date``/``datetime`` objects; string fields such as an InsertField's
    ``static_value`` must get text)."""
    if isinstance(value, dict):
        return {k: _dates_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates_as_text(v) for v in value]
    if isinstance(value, dt.date):  # datetime is a date too
        return value.isoformat()
    return value


def _resolve_connectors(context: dg.ResolutionContext, raw: list[dict[str, Any]] | None) -> list[object] | None:
    """Validate inline connectors with Headrace's connector models; every problem names the defs.yaml
    file, its line and the field."""
    if raw is None:
        return None
    adapter = TypeAdapter(ConnectorConfig)
    configs, problems = [], []
    for i, item in enumerate(raw):
        if "type" not in item:
            problems.append(_problem(context, i, [], f"field 'type' is required; allowed: "
                                                     f"{', '.join(CONNECTOR_TYPES)}", not problems))
            continue
        try:
            configs.append(adapter.validate_python(_dates_as_text(item)))
        except ValidationError as e:
            for err in e.errors():
                path = _field_path(err["loc"])
                msg, got = err["msg"].removeprefix("Value error, "), err.get("input")
                if err["type"] == "missing":
                    msg = "is required"
                elif err["type"] == "extra_forbidden":
                    msg = f"is not a known option (value {got!r})"
                elif err["type"] == "union_tag_invalid" and not path:
                    path, msg = ["type"], f"got {item.get('type')!r}; allowed: {', '.join(CONNECTOR_TYPES)}"
                elif not isinstance(got, dict):
                    msg += f" (got {got!r})"
                problems.append(_problem(context, i, path, msg, not problems))
    if problems:
        raise ResolutionException(f"{len(problems)} problem(s) in inline connectors:\n" + "\n".join(problems))
    return configs


def _translation_vars(props: AssetProps) -> dict[str, object]:
    return {"props": props, "kind": props.kind, "connector": props.connector}


class _ComponentTranslator(HeadraceTranslator):
    """The translator of a component: its ``get_asset_spec`` (which a subclass may override)."""

    def __init__(self, component: "ConnectorsComponent") -> None:
        self.component = component

    def get_asset_spec(self, props: AssetProps) -> dg.AssetSpec:
        return self.component.get_asset_spec(props)


_SCAFFOLD = """\
# Headrace connectors: every connector file in connectors/ (one connector per file, the same format
# as Headrace's own connectors/ folder), plus any written inline below. See docs/dagster-component.md.
type: {type_name}

attributes:
  connectors_dir: connectors
  # connectors:                    # inline connectors take the same fields as a connector file
  #   - name: shop-source
  #     type: sql_source
  #     connection_url: sqlite:///${{env:HEADRACE_HOME}}/shop.db
  #     mode: incrementing
  #     incrementing_column: id
  #     tables: [orders]
  #     topic_prefix: shop.
  # translation:                   # AssetSpec attributes, templated with spec, props, kind, connector
  #   key_prefix: headrace
  #   group_name: "{{{{ connector.name if connector else 'external_topics' }}}}"
  #   owners: [team:data]
"""


class ConnectorsScaffolder(dg.Scaffolder):
    """``dg scaffold defs headrace.ConnectorsComponent NAME``: a commented defs.yaml reading ``connectors/``."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        """Write defs.yaml and an empty ``connectors/`` folder next to it."""
        if request.scaffold_format != "yaml" or request.append:
            scaffold_component(request, {"connectors_dir": "connectors"})
            return
        request.target_path.mkdir(parents=True, exist_ok=True)
        (request.target_path / "defs.yaml").write_text(_SCAFFOLD.format(type_name=request.type_name))
        (request.target_path / "connectors").mkdir(exist_ok=True)


@dg.scaffold_with(ConnectorsScaffolder)
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
                                        "this defs.yaml; a broken file is skipped and shown as a failing "
                                        "asset check in the group broken_connectors"),
    ] = None
    connectors: Annotated[
        list[object] | None,
        dg.Resolver(_resolve_connectors, model_field_type=list[dict[str, Any]] | None, inject_before_resolve=False,
                    description="Connectors written inline: each a mapping with 'name', 'type' (sql_source, "
                                "file_source, parquet_sink, table_sink) and that type's fields, as in a connector "
                                "file (see docs/); secrets as ${env:VAR}. Checked when the component loads: an "
                                "error names this file, the line and the field"),
    ] = None
    translation: Annotated[
        TranslationFn[AssetProps],
        TranslationFnResolver(template_vars_for_translation_fn=_translation_vars),
    ] | None = None
    external_topics: Annotated[
        bool,
        dg.Resolver.default(description="Declare topics that sinks read but no source of this component produces "
                                        "as external assets (group external_topics). Set false when another "
                                        "component produces them, or their keys collide"),
    ] = True
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
        """The valid connectors: every loadable file of ``connectors_dir`` (relative to ``folder``), then the
        inline ones (see :meth:`scan_configs` for the broken files)."""
        return self.scan_configs(folder)[0]

    def scan_configs(self, folder: Path) -> tuple[list[object], list[BrokenConnector]]:
        """The valid connectors (files of ``connectors_dir``, then the inline ones) and the broken files."""
        if self.connectors_dir is None and not self.connectors:
            raise ConfigError(f"{folder / 'defs.yaml'}: set 'connectors_dir' or 'connectors' (at least one connector)")
        configs: list[object] = []
        broken: list[BrokenConnector] = []
        if self.connectors_dir is not None:
            where = folder / self.connectors_dir
            if not where.is_dir():
                raise ConfigError(f"{folder / 'defs.yaml'}: field 'connectors_dir': {str(where)!r} is not a folder")
            configs, broken = scan_connectors(where)
        seen = {c.name for c in configs}
        for i, c in enumerate(self.connectors or []):
            if c.name in seen:
                raise ConfigError(f"{folder / 'defs.yaml'}: field 'connectors[{i}].name': {c.name!r} is already used "
                                  "by another connector of this component")
            seen.add(c.name)
            configs.append(c)
        return configs, broken

    def _translator(self) -> HeadraceTranslator | None:
        plain = type(self).get_asset_spec is ConnectorsComponent.get_asset_spec and self.translation is None
        return None if plain else _ComponentTranslator(self)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        """The connectors' assets, sensors, jobs, checks and the ``kafka`` resource."""
        from assets.broken import broken_defs
        from assets.definitions import DEFAULT_KAFKA, build_definitions
        from resources.kafka import KafkaResource

        kafka = KafkaResource(bootstrap_servers=self.bootstrap_servers) if self.bootstrap_servers else DEFAULT_KAFKA
        configs, broken = self.scan_configs(Path(context.path))
        defs = build_definitions(configs=configs, translator=self._translator(), kafka=kafka,
                                 external_topics=self.external_topics, tolerant=True)
        label = f"{Path(context.path).name}_{Path(self.connectors_dir or 'inline').name}"
        return dg.Definitions.merge(defs, broken_defs(broken, label)) if broken else defs
