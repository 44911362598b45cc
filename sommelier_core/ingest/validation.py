"""Choosing the validation inputs a model is run on: a built-in dataset, a user's `.npz` file, or a dataset of the
project configuration matched to the model's signature.

Each model gets the dataset that fits its own input signature, so one repository may hold models of several
input shapes. Configured datasets (`sommelier.yaml`, `sommelier data add NAME PATH [--for SIGNATURE|TASK]`) are
tried first, most specific first: one declared `for` the model's input signature (`float32[?,3,32,32]`, or a
shape `3x32x32`), then one declared for its task (read from its first output: rank 2 is classification) whose
samples fit, then one declared for nothing whose samples fit; within a level the first in the file wins.
Otherwise the built-in set of that input shape. A model nothing fits fails alone, with a message naming its
signature and the `sommelier data add` command that would give it data.

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
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sommelier_core import defaults
from sommelier_core.errors import InputTooLarge, InvalidValue, NonFiniteValues, SommelierError
from sommelier_core.models import Signature, TensorSpec, task_for_output_rank
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
        f"configure a dataset for it: `sommelier data add NAME PATH --for {_signature_text(input_shape)}` "
        "(an .npz with 'x' and optional 'y', or a folder of images or .npy arrays)"
    )


def validation_input_shape(
    model_id: str,
    signature: Signature,
    data: str = "",
    configured: Sequence[ConfiguredDataset] | None = None,
) -> tuple[int, ...]:
    """The shape of one validation input (batch dim excluded) the model is run on, without loading the data.

    The dataset is chosen as `validation_set_for` chooses it (deterministic from the signature, `data` and the
    configured datasets); an `.npz` is read only as far as the header of its `x`. What a model with symbolic
    spatial dims is profiled at when no resolution is configured. Raises `DatasetError` as `validation_set_for`
    does.
    """
    spec = signature.inputs[0]
    if not data:
        chosen = configured_dataset_for(model_id, signature, _configured(configured))
        if chosen is not None:
            return chosen.sample_shape()
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


def validation_set_for(
    model_id: str,
    signature: Signature,
    data: str = "",
    samples: int | None = None,
    configured: Sequence[ConfiguredDataset] | None = None,
) -> Dataset:
    """The validation inputs for a model: `data` if given, else the configured dataset matching its signature
    (`configured`; None reads the project configuration's), else the built-in set matching its input shape.

    Symbolic input dims match any size (`shape_fits`); the concrete ones must equal the dataset's.
    """
    spec = signature.inputs[0]
    chosen = None if data else configured_dataset_for(model_id, signature, _configured(configured))
    if data:
        dataset = resolve_dataset(data, samples)
    elif chosen is not None:
        dataset = chosen.load(samples)
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


TASKS = ("classification", "regression")
"""What a dataset's `for` may name besides a signature: the task of the models it is for."""
_SIGNATURE_TARGET = re.compile(r"^(?:(?P<dtype>[a-z][a-z0-9]*)\[(?P<dims>[^\]]*)\]|(?P<shape>\d+(?:x\d+)*))$")


@dataclass(frozen=True)
class ConfiguredDataset:
    """A validation dataset of the project configuration: an `.npz` or a folder (`dataset_folders`)."""

    name: str
    path: Path
    target: str = ""
    """What it is for: an input signature (`float32[?,3,32,32]`, as `Signature.input_key` writes the first
    input), a shape without batch (`3x32x32`), a task (`classification`, `regression`), or empty (any model
    its samples fit)."""
    preprocessing: tuple[tuple[str, Any], ...] = ()
    """How a folder of images becomes inputs (`dataset_folders`), as sorted (key, value) pairs."""

    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one input (batch excluded), read from the `.npz` header or the folder's first file."""
        if Path(self.path).is_dir():
            from sommelier_core.ingest.dataset_folders import folder_sample_shape

            return _as_dataset_error(lambda: folder_sample_shape(self.path, dict(self.preprocessing)))
        return _npz_sample_shape(Path(self.path))

    def load(self, samples: int | None = None) -> Dataset:
        """Its inputs (the first `samples` when given), named after the dataset."""
        if Path(self.path).is_dir():
            from sommelier_core.ingest.dataset_folders import load_folder_dataset

            data = _as_dataset_error(lambda: load_folder_dataset(self.path, dict(self.preprocessing), samples))
        else:
            data = resolve_dataset(str(self.path), samples)
        return Dataset(self.name, data.x, data.y)


def check_dataset_target(target: str, where: str) -> None:
    """Raise `DatasetError` naming `where` unless `target` is empty, a task, a signature or a shape."""
    if target and target not in TASKS and not _SIGNATURE_TARGET.match(target.replace(" ", "")):
        raise DatasetError(
            f"{where}: expected an input signature such as float32[?,3,32,32], a shape such as 3x32x32, or a task "
            f"({', '.join(TASKS)}); got {target!r}"
        )


def configured_dataset_for(
    model_id: str, signature: Signature, datasets: Sequence[ConfiguredDataset]
) -> ConfiguredDataset | None:
    """The configured dataset for a model (module docstring: signature, then task, then any that fits), or None."""
    if not datasets:
        return None
    spec = signature.inputs[0]
    task = task_for_output_rank(len(signature.outputs[0].shape) if signature.outputs else None)
    by_signature = [d for d in datasets if d.target and d.target not in TASKS and _target_matches(d.target, spec)]
    if by_signature:
        return by_signature[0]
    for level in ([d for d in datasets if d.target == task], [d for d in datasets if not d.target]):
        for dataset in level:
            if shape_fits(tuple(spec.shape[1:]), dataset.sample_shape()):
                return dataset
    return None


def _target_matches(target: str, spec: TensorSpec) -> bool:
    """Whether a signature or shape target names this input (symbolic dims on either side match any size)."""
    found = _SIGNATURE_TARGET.match(target.replace(" ", ""))
    if found is None:
        return False
    if found["shape"]:
        dims: list[str] = found["shape"].split("x")
    else:
        if found["dtype"] != spec.dtype:
            return False
        dims = [d for d in found["dims"].split(",") if d][1:]  # the batch dim is written `?`
    declared = spec.shape[1:]
    if len(dims) != len(declared):
        return False
    return all(not d.isdigit() or not isinstance(m, int) or int(d) == m for d, m in zip(dims, declared, strict=True))


def _configured(configured: Sequence[ConfiguredDataset] | None) -> Sequence[ConfiguredDataset]:
    """`configured`, or when None the project configuration's datasets (paths resolved)."""
    if configured is not None:
        return configured
    from sommelier_core.ingest.project_config import load_project_config

    return load_project_config().resolved_datasets()


def _signature_text(input_shape: Sequence[int | str | None]) -> str:
    """A first input's shape as a `--for` signature: `float32[?,1,8,8]` (dtype assumed float32)."""
    dims = ["?"] + [str(d) if isinstance(d, int) else "?" for d in list(input_shape)[1:]]
    return f"float32[{','.join(dims)}]"


def _as_dataset_error(read: Any) -> Any:
    from sommelier_core.ingest.dataset_folders import FolderDatasetError

    try:
        return read()
    except FolderDatasetError as exc:
        raise DatasetError(str(exc)) from exc
