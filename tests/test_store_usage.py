"""`sommelier store du`: bytes per area, per kind of file, per model (MLflow's ONNX copies shown), and in all."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sommelier_cli.main import main
from sommelier_core.store.usage import model_file_kind, projected_hub_bytes, store_usage


def _file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


@pytest.fixture
def store(tmp_path) -> Path:
    """A store root with two models, an index, calibration profiles, Dagster, MLflow and a zoo; sizes by hand."""
    root = tmp_path / "store"
    model = root / "models" / "lab__a"
    _file(model / "model.onnx", 1000)
    _file(model / "outputs" / "0.top1.npy", 428)  # 300 labels + the 128-byte header
    _file(model / "fetched" / "a.pt", 500)
    (model / "model_outputs.json").write_text(json.dumps({"model_id": "lab/a", "pad": "y" * 100}))
    _file(root / "models" / "lab__b" / "outputs.npy", 12_128)  # a store from before compact records
    _file(root / "index" / "semantic_index.parquet", 2000)
    _file(root / "calibration" / "profiles-v7-cpu-t0-r10x2.json", 3000)
    _file(root / "dagster" / "storage" / "runs.db", 4000)
    _file(root / "mlflow" / "artifacts" / "1" / "r" / "artifacts" / "model" / "model.onnx", 1000)
    _file(root / "mlflow" / "artifacts" / "1" / "r" / "artifacts" / "table.parquet", 50)
    _file(root / "zoo" / "torchhub" / "w.pt", 7000)
    _file(root / "store.json", 40)
    (root / "models" / "lab__a" / "linked.onnx").symlink_to(root / "zoo" / "torchhub" / "w.pt")  # not counted
    return root


def test_bytes_are_added_up_per_area_per_model_and_kind_and_mlflow_copies_show(store):
    usage = store_usage(store)
    record = (store / "models" / "lab__a" / "model_outputs.json").stat().st_size
    assert usage.bytes_by_area == {
        "calibration": 3000,
        "dagster": 4000,
        "index": 2000,
        "mlflow": 1050,
        "models": 1000 + 428 + 500 + record + 12_128,
        "root": 40,
        "zoo": 7000,
    }
    assert usage.total_bytes == sum(usage.bytes_by_area.values())
    assert usage.bytes_beyond("zoo") == usage.total_bytes - 7000
    a, b = usage.models
    assert (a.model_id, a.bytes_by_kind) == ("lab/a", {"onnx": 1000, "outputs": 428, "records": record, "fetched": 500})
    assert a.bytes_without_onnx == 428 + record
    assert (b.model_id, b.bytes_by_kind) == ("lab__b", {"outputs": 12_128})  # no record: named by its directory
    assert usage.mlflow_bytes_by_kind == {"onnx": 1000, "other": 50}


def test_file_kinds_inside_a_model_directory():
    kinds = {
        "model.onnx": "onnx",
        "outputs/0.values.npy": "outputs",
        "outputs/0.error.npy": "outputs",
        "outputs-custom.npy": "outputs",
        "device_profile@cpu.json": "records",
        "fetched/saved_model/variables/v.data": "fetched",
        "synthesized/x.bin": "other",
    }
    assert {name: model_file_kind(Path(name)) for name in kinds} == kinds


def test_sommelier_store_du_prints_areas_kinds_and_models_and_json_with_every_model(store, monkeypatch, capsys):
    monkeypatch.setenv("SOMMELIER_HOME", str(store))
    assert main(["store", "du"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"Store {store}: ")
    assert re.search(r"\n    zoo +6\.8 KiB\n", text) and "  MLflow artifacts by kind" in text
    assert "    lab/a" in text and "onnx 1000 B" not in text and "onnx 1,000 B" in text
    assert main(["store", "du", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total_bytes"] == store_usage(store).total_bytes
    assert [m["model_id"] for m in report["models"]] == ["lab/a", "lab__b"]
    assert report["mlflow_artifact_bytes_by_kind"] == {"onnx": 1000, "other": 50}


def test_a_store_that_does_not_exist_has_no_bytes(tmp_path):
    assert store_usage(tmp_path / "nowhere").total_bytes == 0


def test_the_projection_of_an_imagenet_sized_hub_counts_two_bytes_per_label():
    # 100 000 classifiers × (10 000 labels × 2 bytes + 128-byte header + 30 KB of records) + 1 GB shared
    projected = projected_hub_bytes(100_000, 10_000, 1_000, records_bytes_per_model=30_000, shared_bytes=1e9)
    assert projected == 100_000 * (20_000 + 128 + 30_000) + 1e9


def test_a_file_hard_linked_into_mlflow_takes_its_bytes_once(store):
    artifact = store / "mlflow" / "artifacts" / "2" / "s" / "artifacts" / "model" / "model.onnx"
    artifact.parent.mkdir(parents=True)
    artifact.hardlink_to(store / "models" / "lab__a" / "model.onnx")
    usage = store_usage(store)
    assert usage.bytes_by_area["mlflow"] == 1050 and usage.linked_bytes_by_area == {"mlflow": 1000}
    assert usage.models[0].bytes_by_kind["onnx"] == 1000  # the model's own cost counts it
    assert usage.mlflow_bytes_by_kind == {"onnx": 1000, "other": 50}  # the unlinked copy only
