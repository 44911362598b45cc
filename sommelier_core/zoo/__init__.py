"""The built-in model zoo: offline datasets, small seeded architectures, and a builder that publishes
them as a local Torch Hub repository and TF-Hub SavedModels with a ground-truth manifest.

Importing this package imports neither TensorFlow nor PyTorch; building or loading models does.
"""

from importlib import import_module

_HOMES = {
    "build_zoo": "build",
    "model_seed": "build",
    "BUILTIN_DATASETS": "datasets",
    "Dataset": "datasets",
    "dataset_for_input_shape": "datasets",
    "load_dataset": "datasets",
    "ZooManifest": "manifest",
    "ZooModel": "manifest",
    "load_manifest": "manifest",
    "list_entry_points": "torchhub",
}


def __getattr__(name: str) -> object:
    """Names load on first use: reading a dataset or a manifest must not import torch (the builder does)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"sommelier_core.zoo.{home}"), name)


__all__ = [
    "BUILTIN_DATASETS",
    "Dataset",
    "ZooManifest",
    "ZooModel",
    "build_zoo",
    "dataset_for_input_shape",
    "list_entry_points",
    "load_dataset",
    "load_manifest",
    "model_seed",
]
