"""Per-device profiles through the real pipeline: model × device partitions, the operator table asset and its
MLflow run, estimated latency for an imported device (marked in hits), and memory under the query's batch size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import polars as pl
import pytest
from dagster import AssetKey, MultiPartitionKey

import sommelier_core
from sommelier_core.index.resource import ESTIMATED, MEASURED, ResourceStore, build_resource_index
from sommelier_core.profiling import OperatorLatencyTable
from sommelier_core.querying.api import Index, load_index, run_query
from sommelier_core.store import ModelStore

SOMMELIER = str(Path(sys.executable).parent / "sommelier")


def _cli(*args: str, root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "SOMMELIER_HOME": str(root)}
    return subprocess.run([SOMMELIER, *args], capture_output=True, text=True, env=env, timeout=300)


def _models(indexed_store) -> list[str]:
    return sorted(set(indexed_store.first_run.models) - set(indexed_store.first_run.failures))


def test_every_model_is_profiled_on_every_present_device_as_its_own_partition(indexed_store):
    materialized = indexed_store.instance.get_materialized_partitions(AssetKey("device_profile"))
    expected = {MultiPartitionKey({"model": m, "device": "cpu"}) for m in _models(indexed_store)}
    assert expected <= set(materialized)
    assert indexed_store.instance.get_dynamic_partitions("devices") == ["cpu"]
    store = ModelStore(indexed_store.root)
    profile = store.load_record("device_profile@cpu", _models(indexed_store)[0])
    latency = profile.latency[0]
    assert latency.device == "cpu" and latency.batch_size == 1 and 0 < latency.median_ms <= latency.p90_ms
    assert latency.threads >= 1 and latency.repeats == 30
    assert len(profile.operators[0].graph.nodes) == len(profile.operators[0].node_us) > 0


def test_the_operator_table_is_an_asset_per_device_and_an_mlflow_artifact(indexed_store):
    assert "cpu" in indexed_store.instance.get_materialized_partitions(AssetKey("operator_table"))
    table = OperatorLatencyTable.read(indexed_store.root / "index" / "operator_table" / "cpu.parquet")
    assert table.device == "cpu" and table.entries.height > 0
    models_in_table = {m for cell in table.entries["models"].to_list() for m in cell.split(",")}
    assert set(_models(indexed_store)) <= models_in_table
    # the calibration sweep is part of every device's table (the predictors for unseen operators are fitted on it)
    assert sum(m.startswith("calibration/") for m in models_in_table) > 1000
    mlflow.set_tracking_uri(f"sqlite:///{indexed_store.root / 'mlflow' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["sommelier"], output_format="list")
    table_runs = [r for r in runs if r.data.tags.get("sommelier.kind") == "operator_table"]
    assert table_runs and table_runs[0].data.tags["sommelier.device"] == "cpu"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(table_runs[0].info.run_id)}
    assert {"operator_table_cpu.parquet", "latency_cpu.csv"} <= artifacts


def test_resource_index_rows_are_measured_on_the_profiled_device(indexed_store):
    resource = load_index(indexed_store.root / "index").resource
    assert set(resource["latency_source"].to_list()) == {MEASURED}
    assert set(resource["device"].to_list()) == {"cpu"}


def _index_with_imported_device(indexed_store, device: str) -> Index:
    """The stored records plus the cpu table imported under another name, indexed as the asset does."""
    store = ModelStore(indexed_store.root)
    models = _models(indexed_store)
    profiles = store.records("model_profile", models)
    measured = list(store.records("device_profile@cpu", models).values())
    table = OperatorLatencyTable.read(store.index_dir / "operator_table" / "cpu.parquet", device)
    frame = build_resource_index(list(profiles.values()), measured, [table])
    return Index(load_index(store.index_dir).semantic, frame)


def test_queries_on_a_device_known_by_its_table_alone_use_estimates_marked_as_such(indexed_store):
    index = _index_with_imported_device(indexed_store, "edge-cpu")
    edge = index.resource.filter(pl.col("device") == "edge-cpu")
    assert set(edge["latency_source"].to_list()) == {ESTIMATED}
    assert edge.height == index.resource.filter(pl.col("device") == "cpu").height
    assert edge["latency_p90_ms"].null_count() == edge.height  # an estimate has no spread
    ref = next(m for m in _models(indexed_store) if m.startswith("zoo-torch/cnn"))
    estimated = sommelier_core.query(ref=ref, within=1.0, device="edge-cpu", latency_ms=1e6, index=index)
    measured = sommelier_core.query(ref=ref, within=1.0, device="cpu", latency_ms=1e6, index=index)
    assert estimated and all(h.profile.latency_estimated and h.profile.device == "edge-cpu" for h in estimated)
    assert all(np.isfinite(h.profile.latency_ms) and h.profile.latency_ms > 0 for h in estimated)
    assert measured and not any(h.profile.latency_estimated for h in measured)
    text = f"FIND MODELS LIKE '{ref}' WITHIN 100% ON edge-cpu WHERE latency@edge-cpu < 1000 s"
    assert run_query(text, index=index).hits[0].to_json()["profile"]["latency_estimated"] is True


def test_memory_budget_is_evaluated_at_the_query_batch_size():
    rows = []
    for model, act in (("a", 100), ("b", 300)):
        for batch in (1, 8):
            rows.append(
                {
                    "model_id": model,
                    "fingerprint": model,
                    "onnx_path": f"{model}.onnx",
                    "device": "cpu",
                    "batch_size": batch,
                    "params": 10,
                    "macs": 1000 * batch,
                    "flops": 2000 * batch,
                    "weight_bytes": 400,
                    "peak_activation_bytes": act * batch,
                    "memory_bytes": 400 + act * batch,
                    "latency_ms": 1.0 * batch,
                    "latency_p90_ms": 1.0 * batch,
                    "threads": 2,
                    "latency_source": MEASURED,
                }
            )
    frame = pl.DataFrame(rows)
    store = ResourceStore.from_frame(frame)
    assert store.batch_size == 1 and list(store.column("memory_bytes")) == [500, 700]
    at8 = store.at_batch(8)
    assert at8.model_ids == store.model_ids and list(at8.column("memory_bytes")) == [1200, 2800]
    assert list(at8.column("latency_ms", "cpu")) == [8.0, 8.0]
    semantic = pl.DataFrame(
        schema={"reference_id": pl.Utf8, "candidate_id": pl.Utf8, "lower": pl.Float64, "upper": pl.Float64,
                "empirical": pl.Float64, "provenance": pl.Utf8, "kind": pl.Utf8}
    )  # fmt: skip
    index = Index(semantic, frame)
    # memory < 1 KiB: both models at batch 1 (500, 700 B), only `a` at batch 8 (1200 vs 2800 B → neither)
    assert [h.model_id for h in run_query("FIND MODELS WHERE memory < 1 KiB", index=index).hits] == ["a", "b"]
    assert [h.model_id for h in run_query("FIND MODELS WHERE memory < 2 KiB BATCH 8", index=index).hits] == ["a"]
    hit = run_query("FIND MODELS WHERE memory < 2 KiB BATCH 8", index=index).hits[0]
    assert (hit.profile.memory_bytes, hit.profile.macs, hit.profile.latency_ms) == (1200, 8000, 8.0)


def test_cli_exports_imports_and_estimates_with_a_device_table(indexed_store, tmp_path):
    root = tmp_path / "store"
    exported = tmp_path / "cpu-table.parquet"
    out = _cli("device", "export", "cpu", "--out", str(exported), root=indexed_store.root)
    assert out.returncode == 0, out.stderr
    imported = _cli("device", "import", str(exported), "--name", "lab-cpu", root=root)
    assert imported.returncode == 0, imported.stderr
    assert "lab-cpu" in _cli("device", "list", root=root).stdout
    model = ModelStore(indexed_store.root).onnx_path(next(m for m in _models(indexed_store) if "cnn" in m))
    args = ["profile", str(model), "--operators", "3", "--estimate", str(root / "devices" / "lab-cpu.parquet")]
    profiled = _cli(*args, "--memory", "1,8", "--json", root=root)
    assert profiled.returncode == 0, profiled.stderr
    payload = json.loads(profiled.stdout)
    assert set(payload["estimated_latency_ms"]) == {"lab-cpu"} and payload["estimated_latency_ms"]["lab-cpu"] > 0
    assert len(payload["operators"]) == 3 and payload["latency_ms"]["cpu"] > 0
    memory = {m["batch_size"]: m["memory_bytes"] for m in payload["memory"]}
    assert memory[8] > memory[1]
    missing = _cli("device", "export", "tpu", "--out", str(tmp_path / "x.parquet"), root=indexed_store.root)
    assert missing.returncode == 2 and "tpu" in missing.stderr


@pytest.mark.parametrize("bad", ["not parquet"])
def test_importing_something_that_is_not_a_table_is_a_clear_error(tmp_path, bad):
    junk = tmp_path / "junk.parquet"
    junk.write_text(bad)
    result = _cli("device", "import", str(junk), "--name", "x", root=tmp_path)
    assert result.returncode == 2 and "operator latency table" in result.stderr
