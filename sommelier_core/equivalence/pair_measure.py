"""Measuring and bounding one (reference, candidate) pair from the model store's stored outputs.

The `bound` stage bounds the pairs the `compare` stage measured for the sampled peers; a query's
refine stage (`querying.refinement`) measures further pairs on demand. Both go through
`bound_stored_pair`, so a pair measured at query time gets exactly the bound the index would have given it: the same
mode, δ and C, the reference's cushions (the measure is asymmetric, paper §4.3), and in `custom`
mode the difference re-measured on the custom data.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
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
from sommelier_core.errors import SommelierError
from sommelier_core.stages import MODEL_CUSHIONS, MODEL_OUTPUTS
from sommelier_core.store import (
    DamagedArtifact,
    DamagedArtifactWarning,
    ModelStore,
    damaged_index_file,
    read_checked,
    write_checked,
)

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


def bound_stored_pair(
    comparison: Comparison,
    settings: BoundSettings,
    models: ModelStore,
    reference_cushions: ModelCushions | None = None,
) -> tuple[PairBound, str | None]:
    """The bound of one measured pair under the index's settings, with a note when it had to fall back.

    `reference_cushions` is the reference's cushions record when the caller holds it; otherwise it is
    read from the store (only the architecture modes need it).
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
        else:
            mode = on_validation_set(mode)
            note = f"custom data does not fit {comparison.reference_id}: bounded on its validation set ({mode})"
    bound, why = bound_with_reference_cushions(comparison, mode, settings.delta, settings.constant, record)
    return bound, why or note


class StoredOutputsMeasurer:
    """A `querying.engine.PairMeasurer` over a model store: compares stored validation outputs, then bounds.

    A candidate whose outputs are missing or not comparable with the reference's gets None (the
    query keeps its index bounds). The reference's outputs are read once per reference. Damaged stored
    outputs or records (`DamagedArtifact`: truncated, bit-flipped, replaced) are never measured: the pair
    keeps its index bound and a `DamagedArtifactWarning` names the file (once per file), so an answer is
    never changed, or left unrefined, without a word.
    """

    def __init__(self, models: ModelStore, settings: BoundSettings) -> None:
        self.models = models
        self.settings = settings
        self._reference: tuple[str, ModelOutputs, np.ndarray, ModelCushions | None] | None = None
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
                comparison = compare_outputs(
                    reference_id, outputs, candidate, self.models.load_outputs(candidate), record.task
                )
                bounds.append(bound_stored_pair(comparison, self.settings, self.models, cushions)[0])
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

    def _load_reference(self, reference_id: str) -> tuple[str, ModelOutputs, np.ndarray, ModelCushions | None]:
        if self._reference is None or self._reference[0] != reference_id:
            record = self.models.load_record(MODEL_OUTPUTS.name, reference_id)
            cushions = None
            if self.settings.mode in ARCHITECTURE_MODES and self.models.has_record(MODEL_CUSHIONS.name, reference_id):
                cushions = self.models.load_record(MODEL_CUSHIONS.name, reference_id)
            self._reference = (reference_id, record, self.models.load_outputs(reference_id), cushions)
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
    "StoredOutputsMeasurer",
    "bound_stored_pair",
    "stored_outputs_measurer",
]
