"""Issue 14 item 7: one broken connector file does not take down the others.

A folder with one valid sink and two broken files (bad YAML, an unknown field) loads: the valid
connector's assets, job and sensor are there, and each broken file is an asset in the group
``broken_connectors`` whose check ``connector_file_valid`` fails with the file's one-line error. Proven
through the Component (in process) and through a code server queried with Dagster's GraphQL API, with
the check run launched over GraphQL. ``headrace validate`` still fails on the folder (exit 2).
"""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import yaml
from dagster.components.testing.utils import component_defs
from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

from assets.broken import BROKEN_GROUP, CHECK_NAME
from assets.component import ConnectorsComponent
from assets.keys import clean
from tests.conftest import REPO, run_cli
from tests.helpers import write_connector

BAD_YAML = "name: other\ntype: parquet_sink\ntopics: [a\n"
BAD_FIELD = "name: typo\ntype: parquet_sink\ntopics: [b]\npath: lake\nflush_sizee: 3\n"


def _folder(tmp_path: Path) -> Path:
    c = tmp_path / "connectors"
    write_connector(c, {"name": "good", "type": "parquet_sink", "topics": ["shop.orders"], "path": "lake"})
    (c / "unparsable.yaml").write_text(BAD_YAML)
    (c / "typo.yaml").write_text(BAD_FIELD)
    return c


def _errors(c: Path) -> dict[str, str]:
    return {
        "broken_connector/unparsable": f"{c / 'unparsable.yaml'}: not valid YAML at line 4, column 1: expected ',' "
                                       "or ']', but got '<stream end>' (while parsing a flow sequence)",
        "broken_connector/typo": f"{c / 'typo.yaml'}: field 'flush_sizee' is not a known option (value 3)",
    }


def test_component_loads_valid_connectors_beside_broken_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path))
    c = _folder(tmp_path)
    defs = component_defs(component=ConnectorsComponent.resolve_from_yaml(f"connectors_dir: {c}\n"))
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    errors = _errors(c)
    assert set(specs) == {"parquet/good/good__shop_orders", "kafka/shop_orders", *errors}
    label = f"{clean(Path.cwd().name)}_connectors"  # component_defs loads the component from the cwd
    assert {s.name for s in defs.sensors} - {"good_checks_sensor"} == {"good_sensor", f"{label}_broken_files_sensor"}
    for key, error in errors.items():
        assert specs[key].group_name == BROKEN_GROUP
        assert specs[key].description == f"BROKEN connector file, not loaded: {error}"
        assert specs[key].metadata["error"].value == error
    refs = specs["broken_connector/unparsable"].metadata["dagster/code_references"].code_references
    assert [(r.file_path, r.line_number) for r in refs] == [(str((c / "unparsable.yaml").resolve()), 4)]

    job = defs.resolve_job_def(f"{label}_broken_files_job")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance)
        assert result.success
        got = {e.asset_key.to_user_string(): (e.passed, e.severity, e.description)
               for e in result.get_asset_check_evaluations()}
        assert got == {k: (False, dg.AssetCheckSeverity.ERROR, e) for k, e in errors.items()}
        (c / "typo.yaml").write_text(BAD_FIELD.replace("flush_sizee", "flush_size"))  # fixed, not yet reloaded
        result = job.execute_in_process(instance=instance)
        got = {e.asset_key.to_user_string(): (e.passed, e.severity, e.description)
               for e in result.get_asset_check_evaluations()}
        assert got["broken_connector/typo"] == (False, dg.AssetCheckSeverity.WARN, f"{(c / 'typo.yaml').resolve()} is "
                                                "valid now; reload the code location to load connector typo")

    sensor = defs.resolve_sensor_def(f"{label}_broken_files_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    with dg.instance_for_test() as instance:
        first = sensor(dg.build_sensor_context(instance=instance, definitions=defs))
        assert len(first.run_requests) == 1  # once per distinct set of errors
        again = sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor, definitions=defs))
        assert isinstance(again, dg.SkipReason)


def test_validate_still_fails_on_a_broken_file(tmp_path):
    c = _folder(tmp_path)
    proc = run_cli("validate", str(c))
    assert proc.returncode == 2, proc.stderr
    assert "typo.yaml: field 'flush_sizee'" in proc.stderr and "unparsable.yaml: not valid YAML" in proc.stderr


ASSETS = """{ assetNodes { assetKey { path } groupName description
  assetChecksOrError { ... on AssetChecks { checks { name
    executionForLatestMaterialization { status evaluation { description severity } } } } } } }"""
LAUNCH = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""


def test_broken_files_through_graphql(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nrun_coordinator:\n  module: "
                                       "dagster.core.run_coordinator\n  class: DefaultRunCoordinator\n")
    c = _folder(tmp_path)
    for k, v in {"HEADRACE_HOME": str(tmp_path), "DAGSTER_HOME": str(home), "HEADRACE_CONNECTORS_DIR": str(c)}.items():
        monkeypatch.setenv(k, v)
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(yaml.safe_dump({"load_from": [{"python_file": {
        "relative_path": str(REPO / "tests" / "e2e" / "tolerant_location.py"), "working_directory": str(REPO),
        "location_name": "tolerant"}}]}))
    errors = _errors(c)
    with dg.DagsterInstance.get() as instance, define_out_of_process_context(str(workspace), None, instance) as ctx:
        nodes = {"/".join(n["assetKey"]["path"]): n for n in execute_dagster_graphql(ctx, ASSETS).data["assetNodes"]}
        assert set(nodes) == {"parquet/good/good__shop_orders", "kafka/shop_orders", *errors}
        for key, error in errors.items():
            assert nodes[key]["groupName"] == BROKEN_GROUP
            assert nodes[key]["description"] == f"BROKEN connector file, not loaded: {error}"
        params = {"selector": {"repositoryLocationName": "tolerant", "repositoryName": "__repository__",
                               "jobName": "connectors_broken_files_job"}}
        launched = execute_dagster_graphql(ctx, LAUNCH, {"p": params}).data["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]
        deadline = time.monotonic() + 120
        while not instance.get_run_by_id(run_id).is_finished:
            assert time.monotonic() < deadline, "the check run did not finish in 120 s"
            time.sleep(0.5)
        assert instance.get_run_by_id(run_id).is_success
        nodes = {"/".join(n["assetKey"]["path"]): n for n in execute_dagster_graphql(ctx, ASSETS).data["assetNodes"]}
        for key, error in errors.items():
            [check] = nodes[key]["assetChecksOrError"]["checks"]
            assert check["name"] == CHECK_NAME
            assert check["executionForLatestMaterialization"] == {
                "status": "FAILED", "evaluation": {"description": error, "severity": "ERROR"}}
        good = nodes["parquet/good/good__shop_orders"]["assetChecksOrError"]["checks"]
        assert {ch["name"] for ch in good} == {"lag_within_threshold", "dead_letters_within_threshold", "reconciled"}


def test_workspace_location_loads_beside_a_broken_file(tmp_path, monkeypatch):
    """The repository's own code location (workspace.yaml → assets.definitions:defs) with a broken file."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    c = _folder(tmp_path)
    for k, v in {"HEADRACE_HOME": str(tmp_path), "DAGSTER_HOME": str(home), "HEADRACE_CONNECTORS_DIR": str(c)}.items():
        monkeypatch.setenv(k, v)
    with dg.DagsterInstance.get() as instance, \
            define_out_of_process_context(str(REPO / "workspace.yaml"), None, instance) as ctx:
        nodes = {"/".join(n["assetKey"]["path"]): n for n in execute_dagster_graphql(ctx, ASSETS).data["assetNodes"]}
    errors = _errors(c)
    assert set(nodes) == {"parquet/good/good__shop_orders", "kafka/shop_orders", *errors}
    for key, error in errors.items():
        assert nodes[key]["description"] == f"BROKEN connector file, not loaded: {error}"
