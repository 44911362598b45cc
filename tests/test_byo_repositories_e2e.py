"""Bring your own repositories, end to end: `sommelier.yaml` names an ONNX folder whose ids collided in the store,
a model of another input shape with its own dataset and one with none, a real MLflow registry, and an untrusted
Torch Hub repository with hostile code. One real index run (Dagster, ONNX Runtime, MLflow; no mocks)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.digits_models import fixed_digits_classifier
from tests.mlflow_models import register_onnx, tracking_uri


def linear_classifier(path: Path, shape: tuple[int, ...], seed: int) -> None:
    """(N, *shape) → (N, 10): flatten, then a seeded linear map."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        initializer=[
            numpy_helper.from_array(rng.normal(size=(size, 10)).astype(np.float32), "w"),
            numpy_helper.from_array(np.array([-1, size], dtype=np.int64), "shape"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


HOSTILE_HUBCONF = """
import pathlib
pathlib.Path({marker!r}).write_text("ran")

def payload(pretrained=True):
    import torch
    return torch.load({weights!r}, weights_only=False)
"""


@dataclass
class Indexed:
    root: Path
    summary: object
    lines: list[str]
    registry_uri: str
    marker: Path


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> Indexed:
    from dagster import DagsterInstance

    from pipelines.definitions import build_resources
    from pipelines.index_run import run_index
    from resources.settings import IndexSettings

    root = tmp_path_factory.mktemp("byo")
    lab = root / "lab"
    lab.mkdir()
    fixed_digits_classifier(lab / "col:x.onnx", seed=0)
    fixed_digits_classifier(lab / "col_x.onnx", seed=1)
    linear_classifier(lab / "wide16.onnx", (1, 16, 16), seed=2)
    linear_classifier(lab / "odd.onnx", (3, 5), seed=3)
    rng = np.random.default_rng(0)
    np.savez(root / "sixteen.npz", x=rng.normal(size=(40, 1, 16, 16)).astype(np.float32))
    uri = tracking_uri(root / "registry")
    register_onnx(uri, root / "registry", "digits", seed=0)  # the same network as lab/col:x
    register_onnx(uri, root / "registry", "digits", seed=4)
    hub = root / "hub"
    hub.mkdir()
    marker = root / "hostile-code-ran"
    (hub / "hubconf.py").write_text(HOSTILE_HUBCONF.format(marker=str(marker), weights=str(hub / "w.pt")))
    (hub / "sommelier.json").write_text(json.dumps({"payload": {"input_shape": [1, 8, 8]}}))
    (root / "sommelier.yaml").write_text(
        "version: 1\n"
        "repositories:\n"
        "  - {name: lab, kind: onnx, location: lab}\n"
        "  - {name: reg, kind: mlflow, location: 'sqlite:///registry/mlflow.db'}\n"
        "  - {name: evil, kind: torchhub, location: hub}\n"
        "datasets:\n"
        "  - {name: sixteen, path: sixteen.npz, for: 'float32[?,1,16,16]'}\n"
    )
    # MLflow exports the tracking and registry URIs it is pointed at: restored too, or later tests' stores would
    # send their runs to this one
    kept = ("SOMMELIER_HOME", "SOMMELIER_CONFIG", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    previous = {k: os.environ.get(k) for k in kept}
    os.environ["SOMMELIER_HOME"] = str(root)
    os.environ.pop("SOMMELIER_CONFIG", None)
    try:
        (root / "dagster").mkdir()
        instance = DagsterInstance.local_temp(str(root / "dagster"))
        resources = build_resources("local") | {
            "settings": IndexSettings(operator_sweep=False, latency_repeats=5, profile_runs=2)
        }
        lines: list[str] = []
        summary = run_index(echo=lines.append, instance=instance, resources=resources)
        yield Indexed(root, summary, lines, uri, marker)
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_the_configured_repositories_are_indexed_and_bad_models_fail_alone(indexed: Indexed) -> None:
    assert sorted(indexed.summary.models) == [
        "evil/payload", "lab/col:x", "lab/col_x", "lab/odd", "lab/wide16", "reg/digits/v1", "reg/digits/v2"
    ]
    assert sorted(indexed.summary.failures) == ["evil/payload", "lab/odd"], indexed.summary.failures


def test_ids_that_shared_a_directory_are_both_indexed_and_told_apart(indexed: Indexed) -> None:
    import polars as pl

    resource = pl.read_parquet(indexed.root / "index" / "resource_index.parquet")
    semantic = pl.read_parquet(indexed.root / "index" / "semantic_index.parquet")
    counts = resource.filter(pl.col("model_id").str.starts_with("lab/col")).group_by("model_id").len()
    assert dict(counts.iter_rows()) == {"lab/col:x": 1, "lab/col_x": 1}
    pair = semantic.filter((pl.col("reference_id") == "lab/col:x") & (pl.col("candidate_id") == "lab/col_x"))
    assert pair.height == 1 and pair["provenance"][0] != "identical" and pair["lower"][0] > 0.5
    # the same network registered in MLflow is the one lab/col:x's record holds
    same = semantic.filter((pl.col("reference_id") == "lab/col:x") & (pl.col("candidate_id") == "reg/digits/v1"))
    assert same["upper"][0] < 0.05


def test_each_model_ran_on_the_dataset_of_its_signature(indexed: Indexed) -> None:
    from resources.store import ModelStoreResource
    from sommelier_core.stages import MODEL_OUTPUTS

    store = ModelStoreResource(root=str(indexed.root)).store()
    assert store.load_record(MODEL_OUTPUTS.name, "lab/wide16").dataset == "sixteen"
    assert store.load_record(MODEL_OUTPUTS.name, "lab/col_x").dataset == "digits"
    assert "(N, 3, 5)" in indexed.summary.failures["lab/odd"]
    assert "sommelier data add NAME PATH --for float32[?,3,5]" in indexed.summary.failures["lab/odd"]


def test_the_untrusted_torch_hub_is_refused_without_running_its_code(indexed: Indexed) -> None:
    failure = indexed.summary.failures["evil/payload"]
    assert "'evil' is not trusted" in failure and "--trust" in failure
    assert not indexed.marker.exists()


def test_verdicts_are_written_back_to_the_registry(indexed: Indexed) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(indexed.registry_uri, registry_uri=indexed.registry_uri)
    tags = client.get_model_version("digits", "1").tags
    equivalents = [e["model"] for e in json.loads(tags["sommelier.equivalents"])]
    assert "lab/col:x" in equivalents and tags["sommelier.threshold"] == "0.05"
    assert float(tags["sommelier.bound"]) <= 0.05 and tags["sommelier.nearest"] in equivalents
    assert "sommelier.bound" in client.get_model_version("digits", "2").tags
