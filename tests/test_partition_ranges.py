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
    assert one_fails.metadata["Failed"].value == "b, c"
    assert one_fails.metadata["Partitions failed"].value == 2
    only_warned = merged_check("c", {"a": warned})
    assert only_warned.severity == AssetCheckSeverity.WARN


def test_an_index_run_in_ranges_fails_only_the_bad_model_and_indexes_the_rest(tmp_path):
    from sommelier_bench.index_cost import generate_onnx_repository

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
