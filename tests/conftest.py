"""Shared fixtures: the small built-in zoo, and a store indexed end to end by the real pipeline.

The end-to-end store runs the real Dagster (a persistent SQLite instance in a temporary dir),
MLflow (SQLite tracking store) and ONNX Runtime on the small zoo plus an ONNX folder holding a
model with incompatible outputs and, after the first index, a corrupt file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def _mlflow_tracking_uri_kept_per_test():
    """`mlflow.set_tracking_uri` exports `MLFLOW_TRACKING_URI`, which Sommelier reads as the user's tracking store,
    and `mlflow.set_registry_uri` sets a process-wide registry (and exports `MLFLOW_REGISTRY_URI`): a test that
    points MLflow at one store must not send the runs or registered models of later tests there."""
    from mlflow.tracking._model_registry import utils as registry_utils

    before = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    registry_before = registry_utils._registry_uri
    yield
    registry_utils._registry_uri = registry_before
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def small_zoo(tmp_path_factory) -> Path:
    """The small built-in zoo, built once per test session."""
    from sommelier_core.zoo import build_zoo

    out = tmp_path_factory.mktemp("zoo")
    build_zoo(out, small=True, seed=0)
    return out


def two_class_onnx(path: Path) -> Path:
    """An ONNX model taking digits-shaped input (N,1,8,8) but with 2 outputs: incompatible with the zoo."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(64, 2)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([-1, 64], dtype=np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["y"])],
        "two_class",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        initializer=[weight, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@dataclass
class IndexedStore:
    """A store root indexed by the real pipeline, with the run summaries."""

    root: Path
    zoo: Path
    extra: Path
    instance: object
    resources: dict
    first_run: object
    second_run: object
    index_after_first_run: dict


@pytest.fixture(scope="session")
def indexed_store(small_zoo, tmp_path_factory) -> IndexedStore:
    """Index the small zoo + an ONNX folder twice: the second time with a corrupt `.onnx` added."""
    import polars as pl
    from dagster import DagsterInstance

    from pipelines.definitions import build_resources
    from pipelines.index_run import run_index
    from resources.repositories import RepositoriesResource, RepositoryConfig
    from resources.settings import IndexSettings

    root = tmp_path_factory.mktemp("store")
    extra = root / "extra-onnx"
    extra.mkdir()
    two_class_onnx(extra / "two_class.onnx")
    # the store's own MLflow, whatever tracking URI an earlier test left exported
    kept = ("SOMMELIER_HOME", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    previous = {name: os.environ.pop(name, None) for name in kept}
    os.environ["SOMMELIER_HOME"] = str(root)
    try:
        (root / "dagster").mkdir()
        instance = DagsterInstance.local_temp(str(root / "dagster"))
        resources = build_resources("local") | {
            "repositories": RepositoriesResource(
                repositories=[
                    # the zoo is ours: trusted (its hubconf and SavedModels run when loaded)
                    RepositoryConfig(
                        kind="torchhub", name="zoo-torch", location=[str(small_zoo / "torchhub")], trusted=True
                    ),
                    RepositoryConfig(kind="tfhub", name="zoo-tf", location=[str(small_zoo / "tfhub")], trusted=True),
                    RepositoryConfig(kind="onnx", name="extra", location=[str(extra)]),
                ]
            ),
            # the calibration sweep runs as in production (every device's table has it), in one round, not two
            "settings": IndexSettings(operator_sweep_rounds=1),
        }
        first = run_index(echo=print, instance=instance, resources=resources)
        snapshot = {
            name: pl.read_parquet(root / "index" / f"{name}.parquet") for name in ("semantic_index", "resource_index")
        }
        (extra / "broken.onnx").write_bytes(b"this is not an onnx protobuf")
        second = run_index(echo=print, instance=instance, resources=resources)
        yield IndexedStore(root, small_zoo, extra, instance, resources, first, second, snapshot)
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def mlflow_client(database: Path):
    """A client on a store's SQLite tracking database with its model registry in the same database, as Sommelier's
    tracker uses it (MLflow's default registry is process-wide, and another test may have pointed it elsewhere)."""
    import mlflow

    uri = f"sqlite:///{database}"
    return mlflow.MlflowClient(uri, registry_uri=uri)
