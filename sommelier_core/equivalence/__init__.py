"""Functional equivalence of whole models (paper §4.1): outputs, comparisons, cushions, peers and bounds.

- `outputs`: a model's outputs on its validation set, computed once and stored (`compute_outputs`).
- `compare`: the type check and the value check on two stored outputs (`compare_outputs`).
- `cushions`: layer and interlayer cushions, what the architecture term of the bound needs.
- `peers`: the five compatible peers a model is compared with, seeded by its id (`sample_peers`).
- `bound`: an upper (and lower) bound on the true difference, per bound mode (`bound_comparison`).
- `pair_measure`: one stored pair measured and bounded as the index would, also at query time.
"""

from sommelier_core.equivalence.bound import BOUND_MODE_SPECS, PairBound, PairBounds, bound_comparison
from sommelier_core.equivalence.compare import Comparison, PairScores, check_compatible, compare_outputs
from sommelier_core.equivalence.cushions import ModelCushions, compute_cushions
from sommelier_core.equivalence.outputs import ModelOutputs, compute_outputs
from sommelier_core.equivalence.pair_measure import BoundSettings, bound_stored_pair
from sommelier_core.equivalence.peers import PeerSample, sample_peers

__all__ = [
    "BOUND_MODE_SPECS",
    "BoundSettings",
    "Comparison",
    "ModelCushions",
    "ModelOutputs",
    "PairBound",
    "PairBounds",
    "PairScores",
    "PeerSample",
    "bound_comparison",
    "bound_stored_pair",
    "check_compatible",
    "compare_outputs",
    "compute_cushions",
    "compute_outputs",
    "sample_peers",
]
