"""Each model's outputs on its validation set, computed once and stored (design §3 value check)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sommelier_core.equivalence.compare import accuracy, check_finite_outputs
from sommelier_core.inference import run_onnx
from sommelier_core.models import Task
from sommelier_core.store import ModelStore
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
    signature_key: str
    task: Task
    labels: tuple[str, ...] | None
    accuracy: float | None

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


def compute_outputs(
    onnx_path: Path, dataset: Dataset, task: Task, model_id: str | None = None
) -> tuple[np.ndarray, float | None]:
    """The model's outputs on the dataset (ONNX Runtime, batched) and its accuracy when labels exist.

    Outputs holding NaN or ±inf raise `NonFiniteValues` naming the model (`model_id`, else the file): stored,
    they would make every comparison with the model a silent wrong answer, so its outputs stage fails instead.
    """
    outputs = run_onnx(onnx_path, dataset.x)
    check_finite_outputs(model_id or str(onnx_path), outputs, dataset.name)
    acc = accuracy(outputs, dataset.y) if task == "classification" and dataset.y is not None else None
    return outputs, acc


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
    outputs = run_onnx(store.onnx_path(model_id), dataset.x)
    check_finite_outputs(model_id, outputs, dataset.name)
    tmp = path.with_name(f".{path.stem}.tmp.npy")
    np.save(tmp, outputs)
    tmp.replace(path)
    return outputs
