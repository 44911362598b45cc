"""The Dagster definitions load, and the repository sensor adds partitions for new models."""

from __future__ import annotations

import json

import pytest
from dagster import DagsterInstance, DeleteDynamicPartitionsRequest, build_sensor_context

from pipelines.definitions import defs
from pipelines.sensors import make_repository_sensor
from resources.repositories import RepositoriesResource, RepositoryConfig
from resources.store import ModelStoreResource
from sommelier_core import stages
from sommelier_core.models import FetchedModel
from tests.conftest import two_class_onnx
from tests.store_records import onnx_model


def _lab_repository(tmp_path) -> RepositoriesResource:
    """A repository `lab`: a folder holding one ONNX model, `first.onnx` (listed as `lab/first`)."""
    folder = tmp_path / "onnx"
    folder.mkdir()
    two_class_onnx(folder / "first.onnx")
    return RepositoriesResource(repositories=[RepositoryConfig(kind="onnx", name="lab", location=[str(folder)])])


def test_definitions_hold_every_stage_jobs_sensor_and_schedule():
    graph = defs.resolve_asset_graph()
    names = {key.path[-1] for key in graph.get_all_asset_keys()}
    assert names == {
        "fetched_model",
        "onnx_model",
        "model_outputs",
        "model_cushions",
        "model_profile",
        "device_profile",
        "operator_table",
        "peers",
        "pair_scores",
        "pair_bounds",
        "segment_matches",
        "synthesized_index",
        "semantic_index",
        "resource_index",
        "registry_verdicts",
    }
    assert defs.resolve_job_def("index_models") is not None
    assert defs.resolve_job_def("build_index") is not None
    assert defs.resolve_job_def("profile_devices") is not None
    assert defs.resolve_job_def("build_operator_tables") is not None
    assert defs.resolve_sensor_def("repository_sensor") is not None
    assert defs.resolve_schedule_def("reindex_nightly") is not None


def _partitioning(partitions_def) -> str:
    """A Dagster partitions definition as the stage table spells it."""
    from dagster import MultiPartitionsDefinition

    if partitions_def is None:
        return "none"
    if isinstance(partitions_def, MultiPartitionsDefinition):
        dimensions = {d.name: d.partitions_def.name for d in partitions_def.partitions_defs}
        return "model×device" if dimensions == {"model": stages.MODELS, "device": stages.DEVICES} else str(dimensions)
    return {stages.MODELS: "model", stages.DEVICES: "device"}[partitions_def.name]


def test_the_asset_graph_is_the_stage_table_keys_groups_partitioning_and_reads():
    graph = defs.resolve_asset_graph()
    found = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        found[key.to_user_string()] = (
            node.group_name,
            _partitioning(node.partitions_def),
            sorted(parent.to_user_string() for parent in node.parent_keys),
        )
    table = {s.name: (s.group, s.partitioning, sorted(s.reads)) for s in stages.STAGES}
    assert found == table


def test_every_stage_reads_only_stages_before_it_and_index_run_runs_each_in_one_wave():
    from pipelines.stages import WAVES

    for position, stage in enumerate(stages.STAGES):
        for name in stage.reads:
            upstream = stages.stage(name)
            assert stages.STAGES.index(upstream) < position and upstream.wave <= stage.wave, (stage.name, name)
    assert sorted(name for wave in WAVES for name in wave) == sorted(s.name for s in stages.STAGES)
    assert {s.group for s in stages.STAGES} == set(stages.GROUPS)


def test_each_job_selects_the_stages_partitioned_its_way():
    expected = {
        "index_models": stages.PER_MODEL_STAGES,
        "profile_devices": ("device_profile",),
        "build_operator_tables": ("operator_table",),
        "build_index": ("semantic_index", "resource_index", "synthesized_index", "registry_verdicts"),
    }
    for job_name, names in expected.items():
        job = defs.resolve_job_def(job_name)
        assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} == set(names), job_name


def test_repository_sensor_adds_partitions_and_requests_a_run_per_new_model(tmp_path):
    repositories = _lab_repository(tmp_path)
    sensor = make_repository_sensor("index_models")
    with DagsterInstance.ephemeral() as instance:
        result = sensor(
            build_sensor_context(
                instance=instance,
                resources={"repositories": repositories, "store": ModelStoreResource(root=str(tmp_path))},
            )
        )
        assert [r.partition_key for r in result.run_requests] == ["lab/first"]
        assert result.dynamic_partitions_requests[0].partition_keys == ["lab/first"]
        instance.add_dynamic_partitions("models", ["lab/first"])
        two_class_onnx(tmp_path / "onnx" / "second.onnx")
        grown = sensor(
            build_sensor_context(
                instance=instance,
                resources={"repositories": repositories, "store": ModelStoreResource(root=str(tmp_path))},
            )
        )
        assert grown.dynamic_partitions_requests[0].partition_keys == ["lab/second"]


def test_profile_is_partitioned_by_model_and_device_so_a_new_device_is_a_new_partition():
    from dagster import AssetKey, MultiPartitionsDefinition

    graph = defs.resolve_asset_graph()
    partitions = graph.get(AssetKey("device_profile")).partitions_def
    assert isinstance(partitions, MultiPartitionsDefinition)
    assert {d.name for d in partitions.partitions_defs} == {"model", "device"}
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("models", ["zoo/a", "zoo/b"])
        instance.add_dynamic_partitions("devices", ["cpu"])
        before = set(partitions.get_partition_keys(dynamic_partitions_store=instance))
        instance.add_dynamic_partitions("devices", ["edge-npu"])
        after = set(partitions.get_partition_keys(dynamic_partitions_store=instance))
    assert len(before) == 2 and len(after) == 4
    assert {k.keys_by_dimension["device"] for k in after - before} == {"edge-npu"}


def test_repository_sensor_profiles_converted_models_per_device_and_again_when_the_file_changes(tmp_path):
    from dataclasses import replace

    from sommelier_core.profiling import DeviceProfile
    from sommelier_core.store import ModelStore

    repositories = _lab_repository(tmp_path)
    (entry,) = repositories.list_models().entries
    store = ModelStore(tmp_path)
    store.save_record("fetched_model", entry.model_id, FetchedModel(entry, "onnx", tmp_path / "lab" / "first.onnx"))
    store.save_record("onnx_model", entry.model_id, onnx_model(entry.model_id, tmp_path, fingerprint="file-1"))
    sensor = make_repository_sensor("index_models", profile_devices=True)

    def device_runs(instance):
        resources = {"repositories": repositories, "store": ModelStoreResource(root=str(tmp_path))}
        result = sensor(build_sensor_context(instance=instance, resources=resources))
        return result, [r for r in result.run_requests if r.job_name == "profile_devices"]

    with DagsterInstance.ephemeral() as instance:
        result, runs = device_runs(instance)
        assert [r.partition_key.keys_by_dimension for r in runs] == [{"model": "lab/first", "device": "cpu"}]
        assert any(req.partitions_def_name == "devices" for req in result.dynamic_partitions_requests)
        profile = DeviceProfile(entry.model_id, "cpu", (), (), 0.0, onnx_fingerprint="file-1")
        store.save_record("device_profile@cpu", entry.model_id, profile)
        assert device_runs(instance)[1] == []
        store.save_record(
            "onnx_model", entry.model_id, onnx_model(entry.model_id, tmp_path, fingerprint="file-2")
        )  # republished
        (run,) = device_runs(instance)[1]
        assert run.run_key == "lab/first@file-2@cpu"
        # a newer version listed but not converted yet: profiling now would measure the old file
        newer = replace(entry, version=entry.version + "-next")
        store.save_record("fetched_model", entry.model_id, FetchedModel(newer, "onnx", tmp_path / "lab" / "first.onnx"))
        assert device_runs(instance)[1] == []


def test_a_device_profiling_sensor_must_run_the_per_model_job():
    with pytest.raises(ValueError, match="index_models"):
        make_repository_sensor("build_index", profile_devices=True)


def test_repository_sensor_deletes_the_partition_of_a_model_its_repository_no_longer_lists(tmp_path):
    resources = {
        "repositories": _lab_repository(tmp_path),
        "store": ModelStoreResource(root=str(tmp_path)),
    }
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("models", ["lab/first", "lab/gone"])
        result = make_repository_sensor("index_models")(build_sensor_context(instance=instance, resources=resources))
    deletions = [r for r in result.dynamic_partitions_requests if isinstance(r, DeleteDynamicPartitionsRequest)]
    assert [(r.partitions_def_name, list(r.partition_keys)) for r in deletions] == [("models", ["lab/gone"])]


def test_metadata_reads_with_three_significant_digits_separators_and_units():
    from assets.metadata import byte_size, count, percent, significant, size, table

    assert significant(0.028558499934661086) == 0.0286
    assert significant(1234.5) == 1230.0 and significant(-6.714) == -6.71 and significant(0.0) == 0.0
    assert count(96848, "MACs").value == "96,848 MACs"
    assert byte_size(512) == "512 B" and byte_size(1541120) == "1.47 MiB"
    assert size(1541120).value == "1.47 MiB (1,541,120 bytes)"
    assert percent(0.01234) == "1.23 %"
    rows = table([{"model": "a", "upper": None, "MACs": 108544}, {"model": "b", "upper": 0.123456, "MACs": 7}])
    assert [c.type for c in rows.schema.columns] == ["string", "float", "int"]
    assert [r.data for r in rows.records] == [
        {"model": "a", "upper": None, "MACs": "108,544"},
        {"model": "b", "upper": 0.123, "MACs": "7"},
    ]


# -- the small zoo indexed end to end by `sommelier index` (tests/conftest.py) ---------------------------------


def test_index_runs_are_named_jobs_of_the_workspace_location_not_ephemeral_ones(indexed_store):
    from pipelines.jobs import JOBS, REPOSITORY_LABEL

    runs = indexed_store.instance.get_runs()
    assert runs and {r.job_name for r in runs} <= {job.name for job in JOBS}
    assert {r.job_name for r in runs} >= {"index_models", "build_index", "profile_devices"}
    # the origin of a job of the workspace's code location: what the Overview timeline files runs under
    assert {r.remote_job_origin.repository_origin.get_label() for r in runs} == {REPOSITORY_LABEL}


def test_index_runs_evaluate_the_asset_checks_of_every_model_and_index(indexed_store):
    from dagster import AssetCheckKey, AssetKey
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as Status

    storage = indexed_store.instance.event_log_storage
    for asset_name, check_name in [
        ("onnx_model", "conversion_parity"),
        ("pair_bounds", "lower_within_upper"),
        ("pair_bounds", "bound_covers_measured"),
        ("semantic_index", "semantic_index_consistency"),
        ("semantic_index", "semantic_index_bounds"),
        ("resource_index", "resource_index_consistency"),
    ]:
        history = storage.get_asset_check_execution_history(AssetCheckKey(AssetKey(asset_name), check_name), limit=100)
        statuses = {record.status for record in history}
        assert Status.SUCCEEDED in statuses and Status.FAILED not in statuses, (asset_name, check_name, statuses)


# -- the cluster deployment's pieces, without the cluster (tests/test_cluster.py runs against it) -------------------


def test_both_deployments_index_the_repositories_and_settings_the_environment_names(monkeypatch, tmp_path):
    from pipelines.definitions import build_resources

    listed = [{"kind": "onnx", "name": "lab", "location": [str(tmp_path)]}]
    monkeypatch.setenv("SOMMELIER_REPOSITORIES", json.dumps(listed))
    monkeypatch.setenv("SOMMELIER_INDEX_SETTINGS", '{"operator_sweep": false, "peers": 3}')
    for deployment in ("local", "cluster"):
        resources = build_resources(deployment)
        (config,) = resources["repositories"].repositories
        assert (config.kind, config.name, config.location) == ("onnx", "lab", [str(tmp_path)])
        assert resources["settings"].operator_sweep is False and resources["settings"].peers == 3
    monkeypatch.setenv("SOMMELIER_INDEX_SETTINGS", "[1, 2]")
    with pytest.raises(ValueError, match="SOMMELIER_INDEX_SETTINGS: expected a JSON object"):
        build_resources("local")


def test_an_unknown_deployment_is_refused_naming_the_variable(monkeypatch):
    from sommelier_core.settings import deployment

    monkeypatch.setenv("SOMMELIER_DEPLOYMENT", "kubernetes")
    with pytest.raises(ValueError, match=r"SOMMELIER_DEPLOYMENT='kubernetes': expected one of local, cluster"):
        deployment()


def test_the_cluster_executor_and_its_workers_share_one_celery_configuration(monkeypatch, tmp_path):
    from deploy.local_cluster import Cluster, celery_config_module
    from pipelines.definitions import build_executor
    from sommelier_core.settings import celery_settings

    monkeypatch.setenv("SOMMELIER_CELERY_QUEUE", "lab-queue")
    executor = build_executor("cluster")
    assert executor.name == "celery"
    settings = celery_settings()
    assert settings["task_default_queue"] == "lab-queue"
    # a step whose worker dies goes to another worker; a busy worker is not dropped for a missed heartbeat
    assert settings["task_acks_late"] and settings["task_reject_on_worker_lost"] and settings["broker_heartbeat"] == 0
    cluster = Cluster(state_dir=str(tmp_path), store_root=str(tmp_path), queue="lab-queue")
    worker_module: dict = {}
    exec(celery_config_module(cluster), worker_module)  # what each worker imports as `dagster_celery_config`
    assert {k: worker_module[k] for k in settings} == settings
    assert worker_module["broker_url"] == cluster.broker and worker_module["result_backend"] == "rpc://"
    assert build_executor("local").name == "multiprocess"


def test_the_cluster_mlflow_server_has_a_process_per_worker_and_at_least_two(tmp_path):
    from deploy.local_cluster import Cluster, services

    for workers, processes in ((1, 2), (2, 2), (4, 4)):
        cluster = Cluster(state_dir=str(tmp_path), store_root=str(tmp_path), workers=workers)
        command = next(service.command for service in services(cluster) if service.name == "mlflow")
        assert command[command.index("--workers") + 1] == str(processes)


def test_the_cluster_instance_keeps_runs_in_postgres_and_runs_one_run_per_partition_at_a_time(tmp_path):
    import yaml

    from deploy.local_cluster import Cluster, dagster_yaml

    cluster = Cluster(state_dir=str(tmp_path), store_root=str(tmp_path), database_prefix="lab")
    config = yaml.safe_load(dagster_yaml(cluster))
    assert config["storage"]["postgres"]["postgres_url"].endswith("@127.0.0.1:5432/lab_dagster")
    coordinator = config["run_coordinator"]
    assert coordinator["class"] == "QueuedRunCoordinator"
    limits = coordinator["config"]["tag_concurrency_limits"]
    assert {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits
    env = cluster.environment()
    assert env["SOMMELIER_DEPLOYMENT"] == "cluster" and env["DAGSTER_HOME"] == str(tmp_path / "dagster_home")


def test_a_broker_that_does_not_answer_is_named_with_how_to_start_it():
    from deploy.local_cluster import rabbitmq_problem

    problem = rabbitmq_problem("pyamqp://guest:secret@127.0.0.1:1//")
    assert problem.startswith("RabbitMQ is not reachable at pyamqp://guest@127.0.0.1:1//")
    assert "secret" not in problem and "service rabbitmq-server start" in problem


def test_local_cluster_status_without_a_cluster_says_to_bring_one_up(tmp_path):
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "deploy" / "local-cluster"
    result = subprocess.run(
        [str(script), "status", "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert f"No cluster was brought up in {tmp_path}" in result.stdout and "local-cluster up" in result.stdout
