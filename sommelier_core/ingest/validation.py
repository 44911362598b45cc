"""Choosing the validation inputs a model is run on: a built-in dataset or a user's `.npz` file.

The `.npz` format is the same everywhere a dataset is passed: an array `x` of inputs (batch first)
and an optional integer array `y` of labels. A symbolic input dimension (a model exported with dynamic
H, W) matches any size: such a model is compared on whichever dataset's concrete dims agree with its
declared ones, and its validation inputs fix the resolution it is profiled at (`validation_input_shape`).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from sommelier_core.errors import SommelierError
from sommelier_core.models import Signature
from sommelier_core.zoo.datasets import (
    BUILTIN_DATASETS,
    Dataset,
    load_dataset,
    sample_shape,
    validation_sets_by_shape,
)


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


def shape_fits(declared: Sequence[int | str | None], sample: Sequence[int]) -> bool:
    """Whether samples of shape `sample` fit an input declared as `declared` (both without the batch dim):
    the same rank, and every concrete declared dimension equal; a symbolic one (a name or None) takes any size."""
    if len(declared) != len(sample):
        return False
    return all(not isinstance(d, int) or int(d) == int(s) for d, s in zip(declared, sample, strict=True))


def builtin_dataset_for(
    model_id: str,
    input_shape: Sequence[int | str | None],
    candidates: Mapping[tuple[int, ...], str] | None = None,
) -> str:
    """The built-in validation set for a model input declared as `input_shape` (batch dim first).

    `candidates` maps sample shapes to dataset names (default: the built-in choice per shape,
    `zoo.datasets.validation_sets_by_shape`). With symbolic dims several could fit; only a unique fit is
    taken, otherwise a `DatasetError` names the model, its input shape and the candidates: guessing would
    compare the model on data of the wrong task.
    """
    candidates = validation_sets_by_shape() if candidates is None else candidates
    declared = tuple(input_shape[1:])
    fitting = [(shape, name) for shape, name in candidates.items() if shape_fits(declared, shape)]
    if len(fitting) == 1:
        return fitting[0][1]
    listed = ", ".join(f"{name} {_shape_text(shape)}" for shape, name in (fitting or candidates.items()))
    why = "several built-in validation sets fit" if fitting else "no built-in validation set fits"
    raise DatasetError(
        f"{model_id}: input shape {_shape_text(input_shape)}: {why} ({listed}); "
        "configure a dataset (.npz with 'x' and optional 'y')"
    )


def validation_input_shape(model_id: str, signature: Signature, data: str = "") -> tuple[int, ...]:
    """The shape of one validation input (batch dim excluded) the model is run on, without loading the data.

    The dataset is chosen as `validation_set_for` chooses it (deterministic from the signature and `data`);
    a configured `.npz` is read only as far as the header of its `x`. What a model with symbolic spatial
    dims is profiled at when no resolution is configured. Raises `DatasetError` as `validation_set_for` does.
    """
    spec = signature.inputs[0]
    if not data:
        return sample_shape(builtin_dataset_for(model_id, spec.shape))
    if data in BUILTIN_DATASETS:
        name, shape = data, sample_shape(data)
    elif data.endswith(".npz"):
        name, shape = Path(data).stem, _npz_sample_shape(Path(data))
    else:
        dataset = resolve_dataset(data, samples=1)
        name, shape = dataset.name, tuple(int(d) for d in dataset.x.shape[1:])
    _check_fits(model_id, spec.shape, name, shape)
    return shape


def validation_set_for(model_id: str, signature: Signature, data: str = "", samples: int | None = None) -> Dataset:
    """The validation inputs for a model: `data` if given, else the built-in set matching its input shape.

    Symbolic input dims match any size (`shape_fits`); the concrete ones must equal the dataset's.
    """
    spec = signature.inputs[0]
    if data:
        dataset = resolve_dataset(data, samples)
    else:
        dataset = load_dataset(builtin_dataset_for(model_id, spec.shape), split="val", n=samples)
    _check_fits(model_id, spec.shape, dataset.name, tuple(int(d) for d in dataset.x.shape[1:]))
    return dataset


def _check_fits(model_id: str, input_shape: Sequence[int | str | None], name: str, sample: tuple[int, ...]) -> None:
    if not shape_fits(tuple(input_shape[1:]), sample):
        raise DatasetError(
            f"{model_id} takes inputs {_shape_text(input_shape[1:])}; dataset {name} has {_shape_text(sample)}"
        )


def _shape_text(shape: Sequence[int | str | None]) -> str:
    """A shape as `(N, 1, H, W)`: symbolic dims by their names (`?` when unnamed)."""
    dims = [str(d) if isinstance(d, int) else (str(d) if d else "?") for d in shape]
    return f"({', '.join(dims)}{',' if len(dims) == 1 else ''})"


def _npz_sample_shape(path: Path) -> tuple[int, ...]:
    """The sample shape of `x` in an `.npz`, from its array header only."""
    try:
        with zipfile.ZipFile(path) as archive, archive.open("x.npy") as member:
            version = np.lib.format.read_magic(member)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, _ = reader(member)
    except KeyError as exc:
        raise DatasetError(f"{path}: expected an array named 'x' (inputs)") from exc
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from exc
    return tuple(int(d) for d in shape[1:])
