"""Several models per Dagster run (issue 14): how a wave's models are cut into partition-key ranges, how a range's
checks are reported, and an index run in ranges with a bad model among them, on real Dagster, MLflow and ONNX
Runtime."""

from __future__ import annotations

from dagster import AssetCheckResult, AssetCheckSeverity, DagsterInstance

from assets.stage_asset import merged_check
from pipelines.definitions import build_resources
from pipelines.index_run import run_index
from pipelines.stages import range_chunks
from resources.repositories import RepositoriesResource, RepositoryConfig
from resources.settings import IndexSettings
from resources.store import ModelStoreResource, StoreIOManager

ORDER = ["a", "b", "c", "d", "e", "f", "g"]


def test_chunks_are_consecutive_partitions_at_most_size_long():
    assert range_chunks(["a", "b", "c", "d", "e"], ORDER, 2) == [["a", "b"], ["c", "d"], ["e"]]


def test_a_partition_left_out_splits_the_chunk_around_it():
    # "c" is up to date: a range from "b" to "d" would run it too
    assert range_chunks(["d", "b", "e", "a"], ORDER, 10) == [["a", "b"], ["d", "e"]]


def test_keys_not_among_the_partitions_are_left_out():
    assert range_chunks(["a", "zz"], ORDER, 3) == [["a"]]


def test_a_range_check_passes_only_when_every_partition_passed_and_names_those_that_failed():
    passed = AssetCheckResult(check_name="c", passed=True)
    failed = AssetCheckResult(check_name="c", passed=False, metadata={"Pairs": 3})
    warned = AssetCheckResult(check_name="c", passed=False, severity=AssetCheckSeverity.WARN)
    all_pass = merged_check("c", {"a": passed, "b": passed})
    assert all_pass.passed and all_pass.metadata["Partitions checked"].value == 2
    one_fails = merged_check("c", {"a": passed, "b": warned, "c": failed})
    assert not one_fails.passed
    assert one_fails.severity == AssetCheckSeverity.ERROR  # the most severe of the failures
    assert one_fails.metadata["Not passing"].value == "b, c"
    assert one_fails.metadata["Partitions not passing"].value == 2
    only_warned = merged_check("c", {"a": warned})
    assert only_warned.severity == AssetCheckSeverity.WARN


def test_an_index_run_in_ranges_fails_only_the_bad_model_and_indexes_the_rest(tmp_path, monkeypatch):
    from sommelier_bench.index_cost import generate_onnx_repository

    monkeypatch.setenv("SOMMELIER_HOME", str(tmp_path))  # its MLflow too, not another test's store
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    folder = tmp_path / "repository"
    generate_onnx_repository(folder, 5)
    (folder / "cnn_00002.onnx").write_bytes(b"not an onnx file")  # first in partition order: inside the first range
    resources = build_resources("local") | {
        "store": ModelStoreResource(root=str(tmp_path)),
        "io_manager": StoreIOManager(root=str(tmp_path)),
        "repositories": RepositoriesResource(
            repositories=[RepositoryConfig(kind="onnx", name="gen", location=[str(folder)])]
        ),
        "settings": IndexSettings(operator_sweep=False, latency_repeats=2, profile_runs=1, partitions_per_run=4),
    }
    lines: list[str] = []
    with DagsterInstance.ephemeral() as instance:
        summary = run_index(echo=lines.append, instance=instance, resources=resources)
        runs = instance.get_runs()
    assert set(summary.failures) == {"gen/cnn_00002"}, summary.failures
    assert "cnn_00002.onnx" in summary.failures["gen/cnn_00002"]
    assert any("in one run FAILED" in line for line in lines), lines  # the range ran, then one model per run
    assert any("[analysis 1–4/4]" in line for line in lines), lines  # the four good models: one run
    import polars as pl

    indexed = pl.read_parquet(tmp_path / "index" / "resource_index.parquet")["model_id"].to_list()
    assert sorted(indexed) == ["gen/linear_00000", "gen/linear_00004", "gen/mlp1d_00003", "gen/mlp_00001"]
    # per model, one run per wave would be 3 × 5 = 15 runs, plus the table and the index
    assert len(runs) < 15, [r.job_name for r in runs]


def _generated_repository_resources(tmp_path, models: int) -> dict:
    from sommelier_bench.index_cost import generate_onnx_repository

    folder = tmp_path / "repository"
    generate_onnx_repository(folder, models)
    return build_resources("local") | {
        "store": ModelStoreResource(root=str(tmp_path)),
        "io_manager": StoreIOManager(root=str(tmp_path)),
        "repositories": RepositoriesResource(
            repositories=[RepositoryConfig(kind="onnx", name="gen", location=[str(folder)])]
        ),
    }


def test_a_range_run_stores_each_models_record_and_gives_each_its_own_metadata_and_check(tmp_path, monkeypatch):
    from dagster import AssetKey, DagsterEventType, materialize
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from assets.partitions import models_partitions
    from pipelines.definitions import all_assets
    from sommelier_core.store import ModelStore

    monkeypatch.setenv("SOMMELIER_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    resources = _generated_repository_resources(tmp_path, 3)
    keys = ["gen/linear_00000", "gen/mlp_00001", "gen/cnn_00002"]
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions(models_partitions.name, keys)
        for start, end in [(keys[0], keys[1]), (keys[2], keys[2])]:  # a range of two, then a range of one
            result = materialize(
                all_assets,
                selection=["fetched_model", "onnx_model"],
                resources=resources,
                instance=instance,
                tags={ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end},
            )
            assert result.success
        events = instance.fetch_materializations(AssetKey("fetched_model"), limit=10).records
        checks = [e for e in result.all_events if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION]
    by_partition = {e.partition_key: e.asset_materialization.metadata for e in events}
    assert set(by_partition) == set(keys)
    for key in keys:  # each model's own metadata, not the range's
        assert key.split("/")[1] in str(by_partition[key]["Source"].value), by_partition[key]
    store = ModelStore(tmp_path)
    assert {store.load_record("onnx_model", key).model_id for key in keys} == set(keys)
    assert checks and all(e.event_specific_data.passed for e in checks)
