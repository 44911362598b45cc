"""Choosing the validation inputs a model is run on: a built-in dataset or a user's `.npz` file.

The `.npz` format is the same everywhere a dataset is passed: an array `x` of inputs (batch first)
and an optional integer array `y` of labels. A symbolic input dimension (a model exported with dynamic
H, W) matches any size: such a model is compared on whichever dataset's concrete dims agree with its
declared ones, and its validation inputs fix the resolution it is profiled at (`validation_input_shape`).

Inputs must be finite: a dataset holding NaN or ±inf would give outputs whose comparison is a silent wrong
answer, so it is refused when read. Inputs Sommelier generates itself from a declared shape (parity inputs,
profiling feeds) are sized first and refused above the input budget (`check_input_budget`).
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from sommelier_core import defaults
from sommelier_core.errors import InputTooLarge, InvalidValue, NonFiniteValues, SommelierError
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


class NonFiniteInputs(DatasetError, NonFiniteValues):
    """A dataset's inputs hold NaN or ±inf (or values float32 cannot hold)."""


INPUT_BUDGET_ENV = "SOMMELIER_INPUT_BUDGET_BYTES"
"""The environment variable that overrides `defaults.INPUT_BUDGET_BYTES` (a whole number of bytes)."""


def load_npz_dataset(path: Path) -> Dataset:
    """A dataset from an `.npz` file with `x` (inputs, batch first, at least one, finite as float32) and optional
    `y` (whole-number labels, one per input)."""
    path = Path(path)
    try:
        with np.load(path) as data:
            if "x" not in data:
                raise DatasetError(f"{path}: expected an array named 'x' (inputs); found {sorted(data.files)}")
            raw_x = data["x"]
            raw_y = data["y"] if "y" in data else None
            with np.errstate(over="ignore"):  # values beyond float32 become ±inf, refused below
                x = raw_x.astype(np.float32)
    except (OSError, ValueError, TypeError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: not a readable .npz file ({exc})") from exc
    if x.ndim < 1 or len(x) == 0:
        raise DatasetError(f"{path}: 'x' has shape {x.shape}; expected at least one input, batch dimension first")
    _check_finite_inputs(path, x)
    y = None if raw_y is None else _labels(path, raw_y, len(x))
    return Dataset(name=path.stem, x=x, y=y)


def _check_finite_inputs(path: Path, x: np.ndarray) -> None:
    """Refuse inputs holding NaN, ±inf or values beyond float32's range (they become ±inf when read)."""
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        raise NonFiniteInputs(
            f"{path}: {int(bad.sum())} of {len(x)} inputs in 'x' hold NaN, ±inf or values beyond float32's range "
            f"(first: sample {first}); expected finite inputs"
        )


def _labels(path: Path, raw: np.ndarray, count: int) -> np.ndarray:
    """`y` as int64 labels: one per input, whole numbers (a float array of whole numbers is taken as it is)."""
    if raw.ndim != 1 or len(raw) != count:
        raise DatasetError(f"{path}: 'y' has shape {raw.shape}; expected {count} labels, one per input in 'x'")
    if raw.dtype.kind in "iub":
        return raw.astype(np.int64)
    try:
        values = raw.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: 'y' of dtype {raw.dtype} is not labels; expected whole numbers") from exc
    whole = np.isfinite(values) & (values == np.round(values)) & (np.abs(values) < 2**62)
    if not whole.all():
        first = int(np.argmin(whole))
        shown = float(values[first])
        raise DatasetError(f"{path}: 'y' holds {shown!r} at position {first}; expected whole-number labels")
    return values.astype(np.int64)


def input_budget_bytes() -> int:
    """The input budget in bytes: `$SOMMELIER_INPUT_BUDGET_BYTES` when set, else `defaults.INPUT_BUDGET_BYTES`."""
    text = os.environ.get(INPUT_BUDGET_ENV, "").strip()
    if not text:
        return defaults.INPUT_BUDGET_BYTES
    try:
        budget = int(text)
    except ValueError:
        budget = 0
    if budget < 1:
        raise InvalidValue(f"${INPUT_BUDGET_ENV}={text!r}: expected a whole number of bytes ≥ 1")
    return budget


def check_input_budget(
    label: str, inputs: Mapping[str, tuple[Sequence[int], np.dtype]], budget_bytes: int | None = None
) -> int:
    """The bytes the inputs of one run take (input name → (shape, dtype)), computed from the dims alone.

    Raises `InputTooLarge` naming the model (`label`), each input's dims and the budget when they would take
    more than `budget_bytes` (default `input_budget_bytes()`), and `InvalidValue` for a negative dimension — so a
    caller checks before it allocates anything.
    """
    budget = input_budget_bytes() if budget_bytes is None else budget_bytes
    total = 0
    for name, (shape, dtype) in inputs.items():
        dims = [int(d) for d in shape]
        if any(d < 0 for d in dims):
            raise InvalidValue(f"{label}: input {name!r} declares shape {tuple(dims)}; expected sizes ≥ 0")
        total += math.prod(dims) * np.dtype(dtype).itemsize
    if total > budget:
        shapes = ", ".join(f"{name!r} {tuple(int(d) for d in s)} {np.dtype(t).name}" for name, (s, t) in inputs.items())
        raise InputTooLarge(
            f"{label}: inputs {shapes} would take {_bytes_text(total)}, above the input budget of "
            f"{_bytes_text(budget)}; expected smaller declared dims (or raise ${INPUT_BUDGET_ENV})"
        )
    return total


def _bytes_text(count: int) -> str:
    """A byte count for people: 536870912 → `512.0 MiB`."""
    value, unit = float(count), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{value:.1f} {unit}" if unit != "B" else f"{count} B"


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
