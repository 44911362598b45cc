"""Whole-model functional equivalence (paper §4.1): type check, then value check on stored outputs.

A comparison is vector arithmetic over two models' stored outputs on the same validation inputs;
it never runs inference itself (design §3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from sommelier_core.errors import IncompatibleModels, NonFiniteValues
from sommelier_core.models import Signature, Task

DifferenceKind = Literal["disagreement", "relative_l2"]


@dataclass(frozen=True)
class Comparison:
    """The empirical difference of `candidate_id` from `reference_id` on `n` shared inputs.

    For classifiers `difference` is the top-1 disagreement rate (symmetric, a metric); for vector
    outputs it is mean ‖ref − cand‖ / mean ‖ref‖ (asymmetric: normalised by the reference) and
    `relative_spread` is the sample standard deviation of ‖ref − cand‖ / mean ‖ref‖, which the
    statistical bound needs.
    """

    reference_id: str
    candidate_id: str
    kind: DifferenceKind
    difference: float
    n: int
    relative_spread: float = 0.0

    @property
    def task(self) -> Task:
        """The task whose measure this is: a disagreement rate compares classifiers, relative l2 vectors."""
        return "classification" if self.kind == "disagreement" else "regression"


def check_compatible(
    reference_id: str,
    reference: Signature,
    candidate_id: str,
    candidate: Signature,
    reference_labels: tuple[str, ...] | None = None,
    candidate_labels: tuple[str, ...] | None = None,
) -> None:
    """Raise `IncompatibleModels` unless the two signatures (and declared label vocabularies) match.

    Batch size and tensor names are ignored; rank, dtype and the other dims must agree (paper §4.1
    input/output layer check). Labels are compared only when both models declare them.
    """
    if reference.input_key() != candidate.input_key():
        raise IncompatibleModels(
            f"{reference_id} takes {reference.input_key()}; {candidate_id} takes {candidate.input_key()}"
        )
    ref_out = ";".join(t.canonical() for t in reference.outputs)
    cand_out = ";".join(t.canonical() for t in candidate.outputs)
    if ref_out != cand_out:
        raise IncompatibleModels(f"{reference_id} outputs {ref_out}; {candidate_id} outputs {cand_out}")
    if reference_labels is not None and candidate_labels is not None and reference_labels != candidate_labels:
        raise IncompatibleModels(
            f"{reference_id} and {candidate_id} declare different output labels "
            f"({list(reference_labels[:3])}… vs {list(candidate_labels[:3])}…)"
        )


def check_finite_outputs(model_id: str, outputs: np.ndarray, dataset: str = "") -> None:
    """Raise `NonFiniteValues` naming the model when any of its outputs is NaN or ±inf (how many samples, the
    first one), since nothing computed from them — a disagreement, a distance, a bound — would mean anything."""
    values = np.asarray(outputs)
    if values.size == 0 or not np.issubdtype(values.dtype, np.floating):
        return  # integer or boolean outputs are always finite
    rows = values.reshape(len(values), -1) if values.ndim else values.reshape(1, 1)
    bad = ~np.isfinite(rows).all(axis=1)
    if bad.any():
        on = f" on {dataset}" if dataset else ""
        raise NonFiniteValues(
            f"{model_id}: {int(bad.sum())} of {len(rows)} outputs{on} hold NaN or ±inf (first: sample "
            f"{int(np.argmax(bad))}); expected finite outputs"
        )


def disagreement_rate(reference_outputs: np.ndarray, candidate_outputs: np.ndarray) -> float:
    """Fraction of inputs whose top-1 class differs (label-free)."""
    return float(np.mean(np.argmax(reference_outputs, axis=1) != np.argmax(candidate_outputs, axis=1)))


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of classifier outputs against integer labels."""
    return float(np.mean(np.argmax(outputs, axis=1) == labels))


def compare_outputs(
    reference_id: str,
    reference_outputs: np.ndarray,
    candidate_id: str,
    candidate_outputs: np.ndarray,
    task: Task,
) -> Comparison:
    """The empirical difference of two models' outputs on the same inputs, by task.

    Outputs holding NaN or ±inf raise `NonFiniteValues` naming the model: their difference would be a silent
    wrong answer (NaN rows tie under argmax, so two models that disagree could score 0). So do empty outputs.
    """
    if reference_outputs.shape != candidate_outputs.shape:
        raise IncompatibleModels(
            f"{reference_id} produced outputs {reference_outputs.shape}; "
            f"{candidate_id} produced {candidate_outputs.shape} on the same inputs"
        )
    if reference_outputs.ndim == 0 or len(reference_outputs) == 0:
        raise IncompatibleModels(
            f"{reference_id} and {candidate_id} produced outputs of shape {reference_outputs.shape}; "
            "expected at least one sample to compare on"
        )
    check_finite_outputs(reference_id, reference_outputs)
    check_finite_outputs(candidate_id, candidate_outputs)
    n = int(reference_outputs.shape[0])
    if task == "classification":
        rate = disagreement_rate(reference_outputs, candidate_outputs)
        return Comparison(reference_id, candidate_id, "disagreement", rate, n)
    ref = reference_outputs.reshape(n, -1).astype(np.float64)
    dist = np.linalg.norm(ref - candidate_outputs.reshape(n, -1), axis=1)
    scale = float(np.mean(np.linalg.norm(ref, axis=1))) or 1.0
    spread = float(np.std(dist, ddof=1) / scale) if n > 1 else 0.0
    return Comparison(reference_id, candidate_id, "relative_l2", float(np.mean(dist) / scale), n, spread)


@dataclass(frozen=True)
class PairScores:
    """A model's comparisons with its sampled peers, in both directions (the measure is asymmetric)."""

    model_id: str
    comparisons: tuple[Comparison, ...]
