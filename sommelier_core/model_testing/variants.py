"""Scoring inputs by how much a model's equivalent variants disagree with it.

The variants come from one query on the store's index — the models whose bound on their difference from
the model under test is within `within` — so on the inputs the model was made for they agree with it
(that is what the bound says); an input where several of them answer differently lies where the model's
behaviour is not pinned down by its training distribution. Two scores per input:

- `disagreement`: the share of variants whose top-1 class differs from the model's (0, 1/N, …, 1);
- `divergence`: the mean total-variation distance between the model's and each variant's class
  probabilities (softmax of the outputs) — continuous, so it ranks inputs the vote count ties.

`score` (what `DisagreementTester.score` returns) is `disagreement + divergence / (N + 1)`: the vote
first, ties broken by how far the distributions are apart (divergence ≤ 1, so the tie-break is below one
vote's 1/N).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from sommelier_core.errors import UnknownModel
from sommelier_core.inference import run_onnx
from sommelier_core.querying import Hit, load_index, query
from sommelier_core.settings import index_dir as default_index_dir

IDENTICAL = "identical"
"""Provenance of a hit with the model's own fingerprint: it cannot disagree, so it is never a variant."""


@dataclass(frozen=True)
class DisagreementScores:
    """Per input: the share of variants disagreeing on the top-1 class, and the mean distance between distributions."""

    disagreement: np.ndarray
    divergence: np.ndarray
    variants: int

    @property
    def score(self) -> np.ndarray:
        """One number per input, higher = more suspicious: the vote, ties broken by the divergence."""
        return self.disagreement + self.divergence / (self.variants + 1)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities from outputs (rows that already sum to 1 and are non-negative stay as they are)."""
    logits = np.asarray(logits, dtype=np.float64)
    if np.all(logits >= 0) and np.allclose(logits.sum(axis=1), 1.0, atol=1e-4):
        return logits
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def pick_variants(hits: Sequence[Hit], n: int, spread: bool = True) -> list[Hit]:
    """N of the hits (ranked by similarity): the N closest, or (`spread`) N evenly spaced over the ranking.

    The closest variants of a model are often its own near copies (weight noise, light pruning), which
    disagree with it where it disagrees with itself; spreading the picks over the equivalent range
    brings in variants that were trained or built differently, and still within the bound.
    """
    usable = [h for h in hits if h.provenance != IDENTICAL]
    if n < 1:
        raise ValueError(f"n must be at least 1 variant, got {n}")
    if len(usable) <= n or not spread:
        return usable[:n]
    positions = np.unique(np.round(np.linspace(0, len(usable) - 1, n)).astype(int))
    return [usable[i] for i in positions]


class DisagreementTester:
    """A model under test and N equivalent variants, answering with ONNX Runtime."""

    def __init__(self, model_id: str, model_path: str | Path, variants: Sequence[Hit]) -> None:
        if not variants:
            raise UnknownModel(f"no equivalent variant of {model_id} to test it with")
        self.model_id = model_id
        self.model_path = str(model_path)
        self.variants = list(variants)

    @classmethod
    def from_query(
        cls,
        model_id: str,
        n: int = 5,
        within: float = 0.05,
        index_dir: Path | None = None,
        spread: bool = True,
        **conditions: object,
    ) -> DisagreementTester:
        """The model's N equivalent variants from the store's index (`query(ref=model_id, within=…)`).

        `conditions` are passed to `sommelier_core.query` (e.g. `flops=0.5`, `where="params < 1M"`).
        """
        directory = Path(index_dir) if index_dir is not None else default_index_dir()
        hits = query(ref=model_id, within=within, index_dir=directory, **conditions)
        if not hits:
            raise UnknownModel(f"no model is within {within:.1%} of {model_id} in the index at {directory}")
        resource = load_index(directory).resource.filter(pl.col("model_id") == model_id)
        if resource.is_empty():
            raise UnknownModel(f"{model_id} has no ONNX file in the index at {directory}")
        return cls(model_id, resource["onnx_path"][0], pick_variants(hits, n, spread))

    @property
    def variant_ids(self) -> list[str]:
        """The variants' model ids."""
        return [h.model_id for h in self.variants]

    def outputs(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """The model's outputs on `x` and each variant's."""
        return run_onnx(self.model_path, x), [run_onnx(h.onnx_path, x) for h in self.variants]

    def scores(self, x: np.ndarray) -> DisagreementScores:
        """Both scores for every input of `x`."""
        model, variants = self.outputs(np.asarray(x, dtype=np.float32))
        return disagreement_scores(model, variants)

    def score(self, x: np.ndarray) -> np.ndarray:
        """One suspicion score per input (higher = the variants disagree more with the model)."""
        return self.scores(x).score


def disagreement_scores(model: np.ndarray, variants: Sequence[np.ndarray]) -> DisagreementScores:
    """The scores from stored outputs: the model's (N, classes) and each variant's."""
    top = model.argmax(axis=1)
    probabilities = softmax(model)
    votes = np.mean([v.argmax(axis=1) != top for v in variants], axis=0)
    distance = np.mean([0.5 * np.abs(softmax(v) - probabilities).sum(axis=1) for v in variants], axis=0)
    return DisagreementScores(votes.astype(np.float64), distance, len(variants))
