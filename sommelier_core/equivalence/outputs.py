"""Each model's outputs on its validation set, computed once and stored compactly (design §3 value check).

The validation set is run in batches of a fixed size (`defaults.OUTPUTS_BATCH_SIZE`, or the batch size the model's
input declares), and each batch's outputs go straight into the store's compact record (`store.compact_outputs`):
top-1 labels for classifiers, float16 vectors with a per-sample error bound otherwise. Memory is one batch, whatever
the set's size; the batch size is recorded, so a model whose arithmetic depends on the batch (dynamic int8
quantization) gives the same outputs each time. Every output of a multi-output model is stored and compared (or
only those the caller names), and the record lists them.

Comparisons read the compact records (`pair_measure.compare_stored`): exactly the disagreement the full outputs give;
for vectors, an interval around what the full outputs would give, by which the bound is widened so it stays sound.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sommelier_core import defaults
from sommelier_core.equivalence.compare import check_finite_outputs
from sommelier_core.errors import IncompatibleModels, NonFiniteValues
from sommelier_core.inference import open_session
from sommelier_core.models import Task
from sommelier_core.store import ModelStore
from sommelier_core.store.compact_outputs import StoredOutput, kind_for_task
from sommelier_core.zoo.datasets import Dataset


@dataclass(frozen=True)
class ModelOutputs:
    """Where a model's validation outputs are stored and what they were computed on.

    Two models' outputs are comparable when `dataset`, `n` and `signature_key` agree (and their
    declared labels, if any). `signature_key` is taken at the validation inputs' shape
    (`Signature.at_input_shape`), so a model with symbolic spatial dims compares with fixed ones run on
    the same data.
    """

    model_id: str
    dataset: str
    n: int
    path: str
    """The directory of the compact outputs (`outputs/`); for a record written before them, the full `outputs.npy`."""
    signature_key: str
    task: Task
    labels: tuple[str, ...] | None
    accuracy: float | None
    stored: tuple[StoredOutput, ...] = ()
    """Every output compared, in the model's output order, as stored (empty: a record of full outputs, `path`)."""
    batch_size: int = 0
    """Samples per ONNX Runtime run the outputs were computed with (0: not recorded, before compact records)."""

    def comparable_with(self, other: ModelOutputs) -> bool:
        """Whether the two stored outputs can be compared element by element."""
        labels_agree = self.labels is None or other.labels is None or self.labels == other.labels
        return (
            self.dataset == other.dataset
            and self.n == other.n
            and self.signature_key == other.signature_key
            and self.task == other.task
            and labels_agree
        )

    @property
    def output_names(self) -> tuple[str, ...]:
        """The names of the outputs compared (empty for a record of full outputs: its first output)."""
        return tuple(output.name for output in self.stored)


def output_batches(
    onnx_path: Path | str,
    x: np.ndarray,
    batch_size: int = defaults.OUTPUTS_BATCH_SIZE,
    output_names: Sequence[str] | None = None,
) -> tuple[int, Iterator[tuple[tuple[str, ...], list[np.ndarray]]]]:
    """(the batch size used, an iterator of (output names, their values) for consecutive batches of `x`): every
    output of the model unless `output_names` picks some. A model whose input declares a fixed batch size runs at it
    (the last batch padded by repeating its last sample, the padding dropped); any other at `batch_size`."""
    session = open_session(onnx_path, spin=False)
    declared = session.get_inputs()[0].shape[0]
    fixed = isinstance(declared, int) and declared > 0
    size = declared if fixed else batch_size
    if size < 1:
        raise ValueError(f"batch size must be ≥ 1, got {size}")
    available = [o.name for o in session.get_outputs()]
    names = tuple(output_names) if output_names else tuple(available)
    unknown = [name for name in names if name not in available]
    if unknown:
        raise IncompatibleModels(f"{onnx_path} has no output {unknown[0]!r}; its outputs are {available}")
    input_name = session.get_inputs()[0].name

    def batches() -> Iterator[tuple[tuple[str, ...], list[np.ndarray]]]:
        for start in range(0, len(x), size):
            batch = x[start : start + size]
            rows = len(batch)
            if rows < size and fixed:
                batch = np.concatenate([batch, np.repeat(batch[-1:], size - rows, axis=0)])
            values = session.run(list(names), {input_name: batch})
            yield names, [np.asarray(v)[:rows] for v in values]

    return size, batches()


def compute_outputs(
    onnx_path: Path,
    dataset: Dataset,
    task: Task,
    model_id: str | None = None,
    batch_size: int = defaults.OUTPUTS_BATCH_SIZE,
) -> tuple[np.ndarray, float | None]:
    """The model's first output on the dataset as one array (ONNX Runtime, in fixed batches) and its accuracy when
    labels exist — for callers that hold the outputs in memory; the pipeline streams them (`store_outputs`).

    Outputs holding NaN or ±inf raise `NonFiniteValues` naming the model (`model_id`, else the file): stored,
    they would make every comparison with the model a silent wrong answer, so its outputs stage fails instead.
    """
    first = [values[0] for _, values in output_batches(onnx_path, dataset.x, batch_size)[1]]
    outputs = np.concatenate(first, axis=0)
    check_finite_outputs(model_id or str(onnx_path), outputs, dataset.name)
    acc = (
        _accuracy_count(outputs, dataset.y) / len(outputs)
        if task == "classification" and dataset.y is not None
        else None
    )
    return outputs, acc


def store_outputs(
    store: ModelStore,
    model_id: str,
    onnx_path: Path,
    dataset: Dataset,
    task: Task,
    batch_size: int = defaults.OUTPUTS_BATCH_SIZE,
    output_names: Sequence[str] | None = None,
) -> tuple[tuple[StoredOutput, ...], float | None, int]:
    """Run the model on the dataset batch by batch and write its compact outputs into the store as they come:
    (what is stored per output, accuracy of the first output's top-1 when the set is labelled, the batch size used).

    Memory is one batch. Outputs holding NaN or ±inf raise `NonFiniteValues` naming the model, how many samples and
    the first one, and nothing is kept.
    """
    n = len(dataset.x)
    if n == 0:
        raise IncompatibleModels(f"{model_id}: validation set {dataset.name} has no samples; expected at least one")
    writer = store.outputs_writer(model_id, n, kind_for_task(task))
    correct = 0
    bad_rows, first_bad, start = 0, -1, 0
    try:
        size, batches = output_batches(onnx_path, dataset.x, batch_size, output_names)
        for names, values in batches:
            rows = len(values[0])
            bad = np.zeros(rows, dtype=bool)
            for value in values:
                if np.issubdtype(value.dtype, np.floating):
                    bad |= ~np.isfinite(value.reshape(rows, -1)).all(axis=1)
            if bad.any():
                first_bad = first_bad if first_bad >= 0 else start + int(np.argmax(bad))
                bad_rows += int(bad.sum())
            elif not bad_rows:
                writer.add(names, values)
                if task == "classification" and dataset.y is not None:
                    correct += _accuracy_count(values[0], dataset.y[start : start + rows])
            start += rows
        if bad_rows:
            raise NonFiniteValues(
                f"{model_id}: {bad_rows} of {n} outputs on {dataset.name} hold NaN or ±inf (first: sample "
                f"{first_bad}); expected finite outputs"
            )
        stored = writer.finish()
    except BaseException:
        writer.abandon()
        raise
    accuracy = correct / n if task == "classification" and dataset.y is not None else None
    return stored, accuracy, size


def _accuracy_count(outputs: np.ndarray, labels: np.ndarray) -> int:
    """How many samples' top-1 class is their label."""
    return int(np.sum(np.argmax(outputs.reshape(len(outputs), -1), axis=1) == labels))


def outputs_on(store: ModelStore, model_id: str, dataset: Dataset) -> np.ndarray:
    """A model's outputs on a named extra dataset (e.g. the `custom` bound data), computed once and kept.

    Kept beside the validation outputs as `outputs-<dataset>.npy`, so every pair that needs them reads
    them instead of running the model again. Non-finite outputs raise `NonFiniteValues` and are not kept.
    """
    path = store.model_dir(model_id) / f"outputs-{dataset.name}.npy"
    if path.exists():
        cached = np.load(path)
        if len(cached) == len(dataset.x):
            return cached
    outputs, _ = compute_outputs(store.onnx_path(model_id), dataset, "regression", model_id=model_id)
    tmp = path.with_name(f".{path.stem}.tmp.npy")
    np.save(tmp, outputs)
    tmp.replace(path)
    return outputs


__all__ = [
    "ModelOutputs",
    "compute_outputs",
    "output_batches",
    "outputs_on",
    "store_outputs",
]
