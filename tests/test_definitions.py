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
        "peers",
        "pair_scores",
        "pair_bounds",
        "semantic_index",
        "resource_index",
    }
    assert defs.resolve_job_def("index_models") is not None
    assert defs.resolve_job_def("build_index") is not None
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
