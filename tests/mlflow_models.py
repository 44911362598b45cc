"""A real MLflow Model Registry (SQLite tracking store) with model versions of several flavours, for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.digits_models import fixed_digits_classifier


def tracking_uri(folder: Path) -> str:
    """A SQLite tracking URI under `folder` (artifacts next to it)."""
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def _experiment(uri: str, folder: Path) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name("models")
    if found is not None:
        return found.experiment_id
    return client.create_experiment("models", artifact_location=(folder / "artifacts").as_uri())


def register_onnx(uri: str, folder: Path, name: str, seed: int, tags: dict | None = None) -> str:
    """Log the linear 8×8-digits classifier of `seed` as an ONNX model and register a new version of `name`."""
    import mlflow
    import onnx
    from mlflow.models import infer_signature

    path = folder / f"{name}-{seed}.onnx"
    folder.mkdir(parents=True, exist_ok=True)
    fixed_digits_classifier(path, seed)
    signature = infer_signature(np.zeros((2, 1, 8, 8), np.float32), np.zeros((2, 10), np.float32))
    return _log(uri, folder, lambda: mlflow.onnx.log_model(
        onnx.load(path), name="model", registered_model_name=name, signature=signature
    ), name, tags)


def register_pytorch(uri: str, folder: Path, name: str, seed: int) -> str:
    """Log a torch linear classifier (a pickled module, as MLflow's pytorch flavour saves it) as a new version."""
    import mlflow
    import torch
    from mlflow.models import infer_signature

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    signature = infer_signature(np.zeros((2, 1, 8, 8), np.float32), np.zeros((2, 10), np.float32))
    return _log(uri, folder, lambda: mlflow.pytorch.log_model(
        model, name="model", registered_model_name=name, signature=signature, serialization_format="pickle"
    ), name, None)


def register_pyfunc(uri: str, folder: Path, name: str) -> str:
    """A python_function-only version: listed by MLflow, skipped by Sommelier."""
    import mlflow
    import mlflow.pyfunc

    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    return _log(uri, folder, lambda: mlflow.pyfunc.log_model(
        name="model", python_model=Constant(), registered_model_name=name
    ), name, None)


def _log(uri: str, folder: Path, log, name: str, tags: dict | None) -> str:
    import mlflow
    from mlflow import MlflowClient

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        with mlflow.start_run(experiment_id=_experiment(uri, folder)):
            log()
    finally:  # the registry URI is put back by conftest's per-test fixture
        mlflow.set_tracking_uri(previous)
    client = MlflowClient(uri, registry_uri=uri)
    version = max(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    for key, value in (tags or {}).items():
        client.set_model_version_tag(name, str(version), key, value)
    return str(version)
