"""The Dagster definitions load, and the repository sensor adds partitions for new models."""

from __future__ import annotations

from dagster import DagsterInstance, build_sensor_context

from pipelines.definitions import defs
from pipelines.sensors import make_repository_sensor
from resources.repositories import RepositoriesResource, RepositoryConfig
from resources.store import ModelStoreResource
from tests.conftest import two_class_onnx


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
    }
    assert defs.resolve_job_def("index_models") is not None
    assert defs.resolve_job_def("build_index") is not None
    assert defs.resolve_job_def("profile_devices") is not None
    assert defs.resolve_job_def("build_operator_tables") is not None
    assert defs.resolve_sensor_def("repository_sensor") is not None
    assert defs.resolve_schedule_def("reindex_nightly") is not None


def test_repository_sensor_adds_partitions_and_requests_a_run_per_new_model(tmp_path):
    folder = tmp_path / "onnx"
    folder.mkdir()
    two_class_onnx(folder / "first.onnx")
    config = RepositoryConfig(kind="onnx", name="lab", location=[str(folder)])
    repositories = RepositoriesResource(repositories=[config])
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
        two_class_onnx(folder / "second.onnx")
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


def test_repository_sensor_requests_a_profile_per_device_for_converted_models(tmp_path):
    from sommelier_core.store import ModelStore

    folder = tmp_path / "onnx"
    folder.mkdir()
    two_class_onnx(folder / "first.onnx")
    ModelStore(tmp_path).save_record("onnx_model", "lab/first", {"converted": True})
    config = RepositoryConfig(kind="onnx", name="lab", location=[str(folder)])
    sensor = make_repository_sensor("index_models", profile_devices=True)
    with DagsterInstance.ephemeral() as instance:
        result = sensor(
            build_sensor_context(
                instance=instance,
                resources={
                    "repositories": RepositoriesResource(repositories=[config]),
                    "store": ModelStoreResource(root=str(tmp_path)),
                },
            )
        )
    device_runs = [r for r in result.run_requests if r.job_name == "profile_devices"]
    assert [r.partition_key.keys_by_dimension for r in device_runs] == [{"model": "lab/first", "device": "cpu"}]
    assert any(req.partitions_def_name == "devices" for req in result.dynamic_partitions_requests)
