"""Measuring and bounding one (reference, candidate) pair from the model store's stored outputs.

The `bound` stage bounds the pairs the `compare` stage measured for the sampled peers; a query's
refine stage (`querying.refinement`) measures further pairs on demand. Both go through
`bound_stored_pair`, so a pair measured at query time gets exactly the bound the index would have given it: the same
mode, δ and C, the reference's cushions (the measure is asymmetric, paper §4.3), and in `custom`
mode the difference re-measured on the custom data.

Both read the compact stored records (`store.compact_outputs`). A classifier's disagreement from stored top-1 labels
is exact, so its bounds are those of the full outputs. Vectors stored in float16 carry a per-sample error bound: the
relative l2 of the computed outputs lies in `outputs.relative_l2_interval`, and the bound takes its upper end (with
the spread's upper bound) for the upper bound and its lower end for the lower bound, so it stays sound.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sommelier_core import defaults
from sommelier_core.equivalence.bound import (
    ARCHITECTURE_MODES,
    ARORA_CONSTANT,
    PairBound,
    bound_mode_spec,
    bound_with_reference_cushions,
    on_validation_set,
)
from sommelier_core.equivalence.compare import Comparison, compare_outputs
from sommelier_core.errors import IncompatibleModels, MissingStageOutput, SommelierError
from sommelier_core.models import Task
from sommelier_core.stages import MODEL_CUSHIONS, MODEL_OUTPUTS
from sommelier_core.store import (
    DamagedArtifact,
    DamagedArtifactWarning,
    ModelStore,
    damaged_index_file,
    read_checked,
    write_checked,
)
from sommelier_core.store.compact_outputs import StoredArrays

if TYPE_CHECKING:  # the runtime imports pull in the model zoo (torch): queries load this module
    from sommelier_core.equivalence.cushions import ModelCushions
    from sommelier_core.equivalence.outputs import ModelOutputs

BOUND_SETTINGS_FILE = "bound_settings.json"


@dataclass(frozen=True)
class BoundSettings:
    """How the index bounds measured pairs: mode, δ, the architecture constant C, custom data."""

    mode: str = defaults.BOUND_MODE
    delta: float = defaults.DELTA
    constant: float = ARORA_CONSTANT
    data: str = ""

    def save(self, index_dir: Path, models: ModelStore) -> None:
        """Record the settings beside the index (with their checksum), so queries bound new pairs the same way."""
        text = json.dumps(asdict(self), indent=2, sort_keys=True, allow_nan=False)
        write_checked(Path(index_dir) / BOUND_SETTINGS_FILE, text.encode())

    @classmethod
    def load(cls, index_dir: Path) -> BoundSettings | None:
        """The settings the index was built with, or None for an index that did not record them;
        `DamagedArtifact` naming the file (and saying to run `sommelier index`) if it is damaged."""
        path = Path(index_dir) / BOUND_SETTINGS_FILE
        try:
            data = read_checked(path)
        except FileNotFoundError:
            return None
        try:
            payload = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise damaged_index_file(path, f"not JSON ({exc})") from None
        kinds = {"mode": str, "delta": float, "constant": float, "data": str}
        if not isinstance(payload, dict) or set(payload) - set(kinds):
            raise damaged_index_file(path, f"not bound settings (expected an object with {', '.join(kinds)})")
        for name, value in payload.items():
            expected = (int, float) if kinds[name] is float else kinds[name]
            if isinstance(value, bool) or not isinstance(value, expected):
                raise damaged_index_file(path, f"{name} is {value!r}, not a {kinds[name].__name__}")
        return cls(**payload)


def compare_stored(
    reference_id: str, reference: StoredArrays, candidate_id: str, candidate: StoredArrays, task: Task
) -> Comparison:
    """The empirical difference of two models from their stored outputs (paper §4.1 value check).

    Classifiers: the fraction of samples where any output's top-1 label differs — for one output exactly the
    disagreement rate of the full outputs (`compare.disagreement_rate`), both being argmax of the same values.
    Vectors: relative l2 over every output concatenated per sample (`compare.compare_outputs`), on the stored
    values; `relative_l2_interval` bounds what the computed values would give.
    """
    if reference.layout != candidate.layout or reference.n != candidate.n:
        raise IncompatibleModels(
            f"{reference_id} stored outputs {list(reference.layout)} on {reference.n} samples; {candidate_id} "
            f"stored {list(candidate.layout)} on {candidate.n}"
        )
    if reference.n == 0:
        raise IncompatibleModels(f"{reference_id} and {candidate_id} stored no samples; expected at least one")
    if task == "classification":
        rate = float(np.mean(np.any(reference.labels() != candidate.labels(), axis=1)))
        return Comparison(reference_id, candidate_id, "disagreement", rate, reference.n)
    return compare_outputs(reference_id, reference.vectors(), candidate_id, candidate.vectors(), task)


@dataclass(frozen=True)
class StorageInterval:
    """Where the relative-l2 measure of the computed outputs lies, given the stored (float16) ones.

    With per-sample stored-error bounds e_r, e_c and stored vectors r̂, ĉ: the distance d_i = ‖r_i − c_i‖ lies
    within d̂_i ± (e_r,i + e_c,i) and the norm ‖r_i‖ within ‖r̂_i‖ ± e_r,i (triangle inequality), so the ratio of
    means lies within [`difference_low`, `difference_high`]; by Minkowski's inequality on the centred distances
    the sample standard deviation grows by at most sqrt(Σ (e_r,i + e_c,i)² / (n − 1)), divided by the smallest
    possible mean norm for `spread_high`.
    """

    difference_low: float
    difference_high: float
    spread_high: float


def relative_l2_interval(reference: StoredArrays, candidate: StoredArrays) -> StorageInterval | None:
    """The interval the exact relative-l2 difference (and an upper bound on its spread) lies in, given two models'
    stored vectors and their storage errors; None when both are stored exactly (the measure is then exact)."""
    if reference.exact and candidate.exact:
        return None
    ref, cand = reference.vectors(), candidate.vectors()
    n = len(ref)
    e_ref, e_cand = reference.vector_errors(), candidate.vector_errors()
    error = e_ref + e_cand
    dist = np.linalg.norm(ref - cand, axis=1)
    norms = np.linalg.norm(ref, axis=1)
    scale_low = float(np.mean(np.maximum(norms - e_ref, 0.0)))
    scale_high = float(np.mean(norms + e_ref))
    mean_high = float(np.mean(dist + error))
    mean_low = float(np.mean(np.maximum(dist - error, 0.0)))
    if scale_low <= 0:  # the reference's norm might be 0: no finite upper bound from these vectors
        return StorageInterval(0.0, np.inf, np.inf)
    spread = 0.0
    if n > 1:
        spread = (float(np.std(dist, ddof=1)) + float(np.sqrt(np.sum(error**2) / (n - 1)))) / scale_low
    nudge = 1 + 1e-9  # the float64 sums above round; a relative nudge keeps the ends outside the exact values
    return StorageInterval(mean_low / scale_high / nudge, mean_high / scale_low * nudge, spread * nudge)


def bound_stored_pair(
    comparison: Comparison,
    settings: BoundSettings,
    models: ModelStore,
    reference_cushions: ModelCushions | None = None,
    stored: tuple[StoredArrays, StoredArrays] | None = None,
) -> tuple[PairBound, str | None]:
    """The bound of one measured pair under the index's settings, with a note when it had to fall back.

    `reference_cushions` is the reference's cushions record when the caller holds it; otherwise it is
    read from the store (only the architecture modes need it). A relative-l2 pair measured on float16-stored
    vectors is widened by their storage error (`relative_l2_interval`); `stored` are the two models' stored
    outputs when the caller holds them, otherwise they are read when a record says they are inexact.
    """
    mode = settings.mode
    record = reference_cushions
    if (
        mode in ARCHITECTURE_MODES
        and record is None
        and models.has_record(MODEL_CUSHIONS.name, comparison.reference_id)
    ):
        record = models.load_record(MODEL_CUSHIONS.name, comparison.reference_id)
    note = None
    if bound_mode_spec(mode).custom_data and record is not None and record.cushions is not None:
        from sommelier_core.equivalence.outputs import outputs_on
        from sommelier_core.ingest.validation import resolve_dataset

        data = resolve_dataset(settings.data)
        if record.dataset == data.name:
            reference_out = outputs_on(models, comparison.reference_id, data)
            candidate_out = outputs_on(models, comparison.candidate_id, data)
            comparison = compare_outputs(
                comparison.reference_id, reference_out, comparison.candidate_id, candidate_out, comparison.task
            )
            bound, why = bound_with_reference_cushions(comparison, mode, settings.delta, settings.constant, record)
            return bound, why
        mode = on_validation_set(mode)
        note = f"custom data does not fit {comparison.reference_id}: bounded on its validation set ({mode})"
    interval = _storage_interval(comparison, models, stored)
    bound, why = bound_with_reference_cushions(comparison, mode, settings.delta, settings.constant, record)
    if interval is not None:
        high = replace(comparison, difference=interval.difference_high, relative_spread=interval.spread_high)
        low = replace(comparison, difference=interval.difference_low, relative_spread=interval.spread_high)
        upper = bound_with_reference_cushions(high, mode, settings.delta, settings.constant, record)[0]
        lower = bound_with_reference_cushions(low, mode, settings.delta, settings.constant, record)[0]
        bound = replace(bound, lower=min(lower.lower, bound.lower), upper=max(upper.upper, bound.upper))
    return bound, why or note


def _storage_interval(
    comparison: Comparison, models: ModelStore, stored: tuple[StoredArrays, StoredArrays] | None
) -> StorageInterval | None:
    """Where the exact relative l2 of a pair lies given its stored vectors; None when they are exact (labels,
    float32 vectors, full outputs) or not in the store (a pair measured on outputs held elsewhere)."""
    if comparison.kind != "relative_l2":
        return None
    if stored is None:
        try:
            ids = (comparison.reference_id, comparison.candidate_id)
            records = [models.load_record(MODEL_OUTPUTS.name, model_id) for model_id in ids]
            if all(output.exact for record in records for output in record.stored):
                return None
            stored = (models.load_stored_outputs(ids[0]), models.load_stored_outputs(ids[1]))
        except MissingStageOutput:
            return None
    return relative_l2_interval(*stored)


class StoredOutputsMeasurer:
    """A `querying.engine.PairMeasurer` over a model store: compares stored validation outputs (the compact records,
    `outputs.compare_stored`), then bounds.

    A candidate whose outputs are missing or not comparable with the reference's gets None (the
    query keeps its index bounds). The reference's outputs are read once per reference. Damaged stored
    outputs or records (`DamagedArtifact`: truncated, bit-flipped, replaced) are never measured: the pair
    keeps its index bound and a `DamagedArtifactWarning` names the file (once per file), so an answer is
    never changed, or left unrefined, without a word.
    """

    def __init__(self, models: ModelStore, settings: BoundSettings) -> None:
        self.models = models
        self.settings = settings
        self._reference: tuple[str, ModelOutputs, StoredArrays, ModelCushions | None] | None = None
        self._warned: set[Path] = set()

    def __call__(self, reference_id: str, candidate_ids: Sequence[str]) -> list[PairBound | None]:
        """One bound per candidate (reference → candidate), None where the pair cannot be measured."""
        try:
            _, record, outputs, cushions = self._load_reference(reference_id)
        except DamagedArtifact as exc:
            self._warn(exc, f"not refining candidates of {reference_id}; their index bounds are kept")
            return [None] * len(candidate_ids)
        except (OSError, SommelierError):
            return [None] * len(candidate_ids)
        bounds: list[PairBound | None] = []
        for candidate in candidate_ids:
            try:
                theirs = self.models.load_record(MODEL_OUTPUTS.name, candidate)
                if not record.comparable_with(theirs):
                    bounds.append(None)
                    continue
                theirs_stored = self.models.load_stored_outputs(candidate)
                comparison = compare_stored(reference_id, outputs, candidate, theirs_stored, record.task)
                pair = (outputs, theirs_stored)
                bounds.append(bound_stored_pair(comparison, self.settings, self.models, cushions, pair)[0])
            except DamagedArtifact as exc:
                self._warn(exc, f"not refining {reference_id} → {candidate}; its index bound is kept")
                bounds.append(None)
            except (OSError, ValueError, SommelierError):
                bounds.append(None)
        return bounds

    def _warn(self, exc: DamagedArtifact, consequence: str) -> None:
        if exc.path not in self._warned:
            self._warned.add(exc.path)
            warnings.warn(f"{consequence}: {exc}", DamagedArtifactWarning, stacklevel=3)

    def _load_reference(self, reference_id: str) -> tuple[str, ModelOutputs, StoredArrays, ModelCushions | None]:
        if self._reference is None or self._reference[0] != reference_id:
            record = self.models.load_record(MODEL_OUTPUTS.name, reference_id)
            cushions = None
            if self.settings.mode in ARCHITECTURE_MODES and self.models.has_record(MODEL_CUSHIONS.name, reference_id):
                cushions = self.models.load_record(MODEL_CUSHIONS.name, reference_id)
            self._reference = (reference_id, record, self.models.load_stored_outputs(reference_id), cushions)
        return self._reference


def stored_outputs_measurer(index_dir: Path) -> StoredOutputsMeasurer | None:
    """The measurer for the store an index directory belongs to; None if the index recorded no settings."""
    settings = BoundSettings.load(index_dir)
    if settings is None:
        return None
    return StoredOutputsMeasurer(ModelStore(Path(index_dir).parent), settings)


__all__ = [
    "BOUND_SETTINGS_FILE",
    "BoundSettings",
    "StorageInterval",
    "StoredOutputsMeasurer",
    "bound_stored_pair",
    "compare_stored",
    "relative_l2_interval",
    "stored_outputs_measurer",
]
