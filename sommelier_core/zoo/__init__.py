"""The built-in model zoo: offline datasets, small seeded architectures, and a builder that publishes
them as a local Torch Hub repository and TF-Hub SavedModels with a ground-truth manifest.

Importing this package does not import TensorFlow; only building or loading Keras models does.
"""

from sommelier_core.zoo.build import build_zoo, model_seed
from sommelier_core.zoo.datasets import BUILTIN_DATASETS, Dataset, dataset_for_input_shape, load_dataset
from sommelier_core.zoo.manifest import ZooManifest, ZooModel, load_manifest
from sommelier_core.zoo.torchhub import list_entry_points

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
