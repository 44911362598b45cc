"""A model's validation outputs as the measures need them: top-1 labels for classifiers, compact vectors otherwise.

Stored full, a classifier's outputs cost n × classes × 4 bytes (40 MB for 1 000 classes on 10 000 samples), but
the disagreement rate (design §3) reads only each sample's top-1 class, and no bound reads more of them (the
margin γ of the `arora` bound is measured by the cushions stage on the model itself). So each output is kept as
one of two kinds, in its own `.npy` file under `models/<safe id>/outputs/`:

- `top1` (classification): the index of each sample's largest value, in the smallest unsigned integer type that
  holds the class count (1 byte up to 256 classes, 2 up to 65 536). The disagreement computed from them is exactly
  the one computed from the full outputs: both are `argmax` of the same float32 values.
- `values` (regression, embeddings): the outputs in float16 when every value fits its range (half the bytes), with
  `<k>.error.npy` holding, per sample, an upper bound on ‖stored − computed‖₂ (the exact float64 norm of the
  rounding, rounded up to float32), so a relative-l2 measure from stored vectors comes with a sound error interval
  (`equivalence.outputs.relative_l2_interval`); kept in float32 (no error file: exact) when a value would overflow.
  A random-projection sketch was not chosen: its error holds only with a probability that would have to be added
  to δ, and it needs hundreds of dimensions for a useful error — more than most embeddings have.

`OutputsWriter` fills the files batch by batch (memory-mapped, so memory is bounded by the batch, not by n), then
moves them into place together; `StoredArrays` is what a reader gets back, for every output of the model.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from sommelier_core.errors import IncompatibleModels

OutputKind = Literal["top1", "values"]
FLOAT16_MAX = float(np.finfo(np.float16).max)
_CHUNK_ROWS = 4096
MAX_DENSE_COLUMNS = 1 << 16
"""Most columns of the one-hot array `StoredArrays.dense` builds from the top-1 labels of a multi-output classifier
(one column per combination of classes)."""


@dataclass(frozen=True)
class StoredOutput:
    """One output of a model as stored: its name, what is kept of it, and the files holding it."""

    name: str
    kind: OutputKind
    shape: tuple[int, ...]
    """Per-sample shape of the model's output (`(classes,)` for a classifier's scores)."""
    dtype: str
    """numpy dtype of the stored array (`uint8`/`uint16`/`uint32` labels, `float16` or `float32` values)."""
    path: Path
    """The `.npy` file: one label per sample (`top1`) or the values, `(n, *shape)`."""
    error_path: Path | None = None
    """For float16 values: per sample, an upper bound on ‖stored − computed‖₂ (float32). None: stored exactly."""

    @property
    def exact(self) -> bool:
        """Whether what is stored is exactly what the measure reads (labels, or vectors kept at full precision)."""
        return self.error_path is None

    @property
    def classes(self) -> int:
        """How many values the top-1 label picks among (the product of the per-sample shape)."""
        return math.prod(self.shape)


@dataclass(frozen=True)
class StoredArrays:
    """Every stored output of one model, read back: labels `(n,)` for `top1`, values `(n, *shape)` otherwise,
    and for inexact values the per-sample error bound `(n,)` (None where exact)."""

    outputs: tuple[StoredOutput, ...]
    arrays: tuple[np.ndarray, ...]
    errors: tuple[np.ndarray | None, ...]

    @property
    def n(self) -> int:
        """How many samples."""
        return len(self.arrays[0]) if self.arrays else 0

    @property
    def layout(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """(kind, per-sample shape) of each output: two models' arrays compare when their layouts are equal."""
        return tuple((o.kind, o.shape) for o in self.outputs)

    @property
    def exact(self) -> bool:
        """Whether no output carries a storage error."""
        return all(e is None for e in self.errors)

    def labels(self) -> np.ndarray:
        """The top-1 labels of every output, `(n, outputs)` (int64); `IncompatibleModels` if one is not a label."""
        if any(o.kind != "top1" for o in self.outputs):
            raise IncompatibleModels(f"outputs {[o.name for o in self.outputs]} are not all stored as top-1 labels")
        return np.stack([a.astype(np.int64) for a in self.arrays], axis=1)

    def vectors(self) -> np.ndarray:
        """Every output's values flattened per sample and concatenated, `(n, Σ dims)` float64 (what relative l2
        compares for a multi-output model)."""
        if any(o.kind != "values" for o in self.outputs):
            raise IncompatibleModels(f"outputs {[o.name for o in self.outputs]} are not all stored as values")
        return np.concatenate([a.reshape(len(a), -1).astype(np.float64) for a in self.arrays], axis=1)

    def vector_errors(self) -> np.ndarray:
        """Per sample, an upper bound on ‖stored − computed‖₂ over the concatenated vectors (zeros where exact)."""
        total = np.zeros(self.n, dtype=np.float64)
        for error in self.errors:
            if error is not None:
                total += error.astype(np.float64) ** 2
        return np.sqrt(total) * (1 + 1e-12)  # the square root rounds; a relative nudge keeps it an upper bound

    def dense(self) -> np.ndarray:
        """A float32 array that the array-based comparisons read exactly as the stored record.

        Labels become a one-hot `(n, classes)` array, whose argmax is the stored label (for several outputs, one
        column per combination of their classes, so two samples' argmaxes differ exactly when a label does);
        values are returned as stored (one output) or concatenated per sample (several).
        """
        if all(o.kind == "top1" for o in self.outputs):
            columns = math.prod(o.classes for o in self.outputs)
            if columns > MAX_DENSE_COLUMNS:
                raise IncompatibleModels(
                    f"outputs {[o.name for o in self.outputs]} have {columns:,} label combinations; compare their "
                    "stored labels (`equivalence.outputs.compare_stored`) instead"
                )
            combined = np.zeros(self.n, dtype=np.int64)
            for output, labels in zip(self.outputs, self.arrays, strict=True):
                combined = combined * output.classes + labels.astype(np.int64)
            one_hot = np.zeros((self.n, columns), dtype=np.float32)
            one_hot[np.arange(self.n), combined] = 1.0
            return one_hot
        if len(self.arrays) == 1:
            return self.arrays[0].astype(np.float32)
        return self.vectors().astype(np.float32)

    @classmethod
    def from_full(
        cls, outputs: np.ndarray, kind: OutputKind, name: str = "output", path: Path = Path()
    ) -> StoredArrays:
        """The record a full output array (the format before compact records, `outputs.npy`) amounts to, exactly:
        its top-1 labels, or its values unchanged."""
        n = len(outputs)
        if kind == "top1":
            shape = tuple(outputs.shape[1:])
            labels = np.argmax(outputs.reshape(n, -1), axis=1).astype(label_dtype(math.prod(shape)))
            stored = StoredOutput(name, "top1", shape, labels.dtype.name, path)
            return cls((stored,), (labels,), (None,))
        stored = StoredOutput(name, "values", tuple(outputs.shape[1:]), outputs.dtype.name, path)
        return cls((stored,), (outputs,), (None,))


def label_dtype(classes: int) -> np.dtype:
    """The smallest unsigned integer type that holds a label among `classes`."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if classes <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def kind_for_task(task: str) -> OutputKind:
    """What is kept of a model's outputs for its task: top-1 labels for classification, values otherwise."""
    return "top1" if task == "classification" else "values"


class OutputsWriter:
    """Writes one model's outputs batch by batch into memory-mapped `.npy` files in a scratch directory, then
    moves them to `directory` together (`finish`): memory stays at one batch whatever n is, and a reader never
    sees half a record (the files are in place before the stage's record, which holds their checksums, is written).
    """

    def __init__(self, directory: Path, n: int, kind: OutputKind) -> None:
        self.directory = Path(directory)
        self.scratch = self.directory.with_name(f".{self.directory.name}.tmp")
        self.n = n
        self.kind = kind
        self._rows = 0
        self._names: list[str] = []
        self._shapes: list[tuple[int, ...]] = []
        self._arrays: list[np.memmap] = []
        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True)

    def add(self, names: Sequence[str], batch: Sequence[np.ndarray]) -> None:
        """Append one batch: `batch[k]` is output `names[k]` for the next `len(batch[k])` samples."""
        if not self._arrays:
            self._open(names, batch)
        rows = len(batch[0])
        if self._rows + rows > self.n:
            raise ValueError(f"{self._rows + rows} rows written where {self.n} were declared")
        for k, (target, values) in enumerate(zip(self._arrays, batch, strict=True)):
            if values.shape[1:] != target.shape[1:] and self.kind == "values":
                raise IncompatibleModels(
                    f"output {names[k]!r} has per-sample shape {values.shape[1:]} in one batch and "
                    f"{target.shape[1:]} in another; expected the same shape for every batch"
                )
            if self.kind == "top1":
                target[self._rows : self._rows + rows] = np.argmax(values.reshape(rows, -1), axis=1)
            else:
                target[self._rows : self._rows + rows] = values
        self._rows += rows

    def _open(self, names: Sequence[str], batch: Sequence[np.ndarray]) -> None:
        self._names = list(names)
        self._shapes = [tuple(int(d) for d in values.shape[1:]) for values in batch]
        for k, values in enumerate(batch):
            if self.kind == "top1":
                dtype, shape = label_dtype(math.prod(self._shapes[k])), (self.n,)
            else:
                dtype = np.float32 if values.dtype.kind == "f" else values.dtype
                shape = (self.n, *self._shapes[k])
            path = self.scratch / f"{k}.{self.kind}.npy"
            self._arrays.append(np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape))

    def finish(self) -> tuple[StoredOutput, ...]:
        """Close the files (float values kept in float16 with their error bound where they fit), move them into
        `directory` (replacing what was there) and say what is stored."""
        if self._rows != self.n:
            raise ValueError(f"{self._rows} rows written where {self.n} were declared")
        stored = []
        for k, (name, array) in enumerate(zip(self._names, self._arrays, strict=True)):
            array.flush()
            final = self.directory / f"{k}.{self.kind}.npy"
            error_path = None
            dtype = array.dtype
            if self.kind == "values" and array.dtype == np.float32 and _fits_float16(array):
                error_path = self.directory / f"{k}.error.npy"
                _write_float16(array, self.scratch / f"{k}.half.npy", self.scratch / error_path.name)
                os.replace(self.scratch / f"{k}.half.npy", self.scratch / final.name)
                dtype = np.dtype(np.float16)
            stored.append(StoredOutput(name, self.kind, self._shapes[k], dtype.name, final, error_path))
        self._arrays.clear()
        shutil.rmtree(self.directory, ignore_errors=True)
        os.replace(self.scratch, self.directory)
        return tuple(stored)

    def abandon(self) -> None:
        """Remove the scratch files (a failed run leaves nothing behind)."""
        self._arrays.clear()
        shutil.rmtree(self.scratch, ignore_errors=True)


def _fits_float16(array: np.ndarray) -> bool:
    """Whether every value of a float32 array is finite and within float16's range (checked in chunks)."""
    for start in range(0, len(array), _CHUNK_ROWS):
        chunk = np.asarray(array[start : start + _CHUNK_ROWS])
        if chunk.size and (not np.isfinite(chunk).all() or float(np.abs(chunk).max()) > FLOAT16_MAX):
            return False
    return True


def _write_float16(array: np.ndarray, half_path: Path, error_path: Path) -> None:
    """Write `array` rounded to float16 and, per sample, ‖float16 − float32‖₂ computed in float64 and rounded up
    to the next float32 (an upper bound on the storage error, used by the relative-l2 interval)."""
    n = len(array)
    half = np.lib.format.open_memmap(half_path, mode="w+", dtype=np.float16, shape=array.shape)
    errors = np.lib.format.open_memmap(error_path, mode="w+", dtype=np.float32, shape=(n,))
    for start in range(0, n, _CHUNK_ROWS):
        chunk = np.asarray(array[start : start + _CHUNK_ROWS])
        rounded = chunk.astype(np.float16)
        half[start : start + len(chunk)] = rounded
        diff = (rounded.astype(np.float64) - chunk.astype(np.float64)).reshape(len(chunk), -1)
        exact = np.linalg.norm(diff, axis=1)
        error = exact.astype(np.float32)
        errors[start : start + len(chunk)] = np.where(error < exact, np.nextafter(error, np.float32(np.inf)), error)
    half.flush()
    errors.flush()
