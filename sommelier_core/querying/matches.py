"""The models surviving a plan's stages, carried from one stage to the next with their bounds."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Matches:
    """Surviving models, with their bounds to the reference when the semantic stage ran.

    `upper`/`lower`/`provenance` start as the candidate-list entries' and change where the refine
    stage measured a pair; `measured` holds those pairs' empirical differences by position.
    """

    positions: np.ndarray
    entries: np.ndarray | None = None  # index into the packed candidate lists, aligned with positions
    upper: np.ndarray | None = None
    lower: np.ndarray | None = None
    provenance: np.ndarray | None = None
    measured: dict[int, float] = field(default_factory=dict)

    def take(self, keep: np.ndarray) -> Matches:
        """The matches selected by a boolean mask or an index array."""

        def pick(values: np.ndarray | None) -> np.ndarray | None:
            return values[keep] if values is not None else None

        return Matches(
            self.positions[keep],
            pick(self.entries),
            pick(self.upper),
            pick(self.lower),
            pick(self.provenance),
            self.measured,
        )
