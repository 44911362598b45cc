"""Choosing the validation inputs a model is run on: a built-in dataset or a user's `.npz` file.

The `.npz` format is the same everywhere a dataset is passed: an array `x` of inputs (batch first)
and an optional integer array `y` of labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sommelier_core.errors import SommelierError
from sommelier_core.models import Signature
from sommelier_core.zoo.datasets import BUILTIN_DATASETS, Dataset, dataset_for_input_shape, load_dataset


class DatasetError(SommelierError):
    """A dataset cannot be read or does not fit the model."""


def load_npz_dataset(path: Path) -> Dataset:
    """A dataset from an `.npz` file with `x` (inputs) and optional `y` (labels)."""
    path = Path(path)
    try:
        with np.load(path) as data:
            if "x" not in data:
                raise DatasetError(f"{path}: expected an array named 'x' (inputs); found {sorted(data.files)}")
            x = data["x"].astype(np.float32)
            y = data["y"].astype(np.int64) if "y" in data else None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from exc
    if y is not None and len(y) != len(x):
        raise DatasetError(f"{path}: 'y' has {len(y)} labels for {len(x)} inputs in 'x'")
    return Dataset(name=path.stem, x=x, y=y)


def resolve_dataset(name_or_path: str, samples: int | None = None) -> Dataset:
    """A built-in dataset by name (validation split) or an `.npz` file by path."""
    if name_or_path in BUILTIN_DATASETS:
        return load_dataset(name_or_path, split="val", n=samples)
    if name_or_path.endswith(".npz") or Path(name_or_path).exists():
        data = load_npz_dataset(Path(name_or_path))
        if samples is None:
            return data
        return Dataset(data.name, data.x[:samples], None if data.y is None else data.y[:samples])
    known = ", ".join(BUILTIN_DATASETS)
    raise DatasetError(f"unknown dataset {name_or_path!r}: expected one of {known} or an .npz path")


def validation_set_for(model_id: str, signature: Signature, data: str = "", samples: int | None = None) -> Dataset:
    """The validation inputs for a model: `data` if given, else the built-in set matching its input shape."""
    spec = signature.inputs[0]
    shape = tuple(d for d in spec.shape[1:])
    if data:
        dataset = resolve_dataset(data, samples)
    else:
        name = dataset_for_input_shape(tuple(int(d) for d in shape)) if all(isinstance(d, int) for d in shape) else None
        if name is None:
            raise DatasetError(
                f"{model_id}: no built-in validation set for input shape {list(shape)}; "
                "configure a dataset (.npz with 'x' and optional 'y')"
            )
        dataset = load_dataset(name, split="val", n=samples)
    if tuple(dataset.x.shape[1:]) != shape:
        found = list(dataset.x.shape[1:])
        raise DatasetError(f"{model_id} takes inputs {list(shape)}; dataset {dataset.name} has {found}")
    return dataset
