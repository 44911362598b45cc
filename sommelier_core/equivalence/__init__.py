"""Functional equivalence of whole models (paper §4.1): outputs, comparisons, cushions, peers and bounds.

- `outputs`: a model's outputs on its validation set, streamed in fixed batches and stored as compact records
  (`store_outputs`; `compute_outputs` in memory).
- `compare`: the type check and the value check on two stored outputs (`compare_outputs`).
- `cushions`: layer and interlayer cushions, what the architecture term of the bound needs.
- `peers`: the five models a new one is compared with: its group's two pivots and three random peers, seeded by
  its id (`choose_peers`).
- `bound`: an upper (and lower) bound on the true difference, per bound mode (`bound_comparison`).
- `pair_measure`: one stored pair measured and bounded as the index would, also at query time.
"""

from sommelier_core.equivalence.bound import BOUND_MODE_SPECS, PairBound, PairBounds, bound_comparison
from sommelier_core.equivalence.compare import Comparison, PairScores, check_compatible, compare_outputs
from sommelier_core.equivalence.cushions import ModelCushions, compute_cushions
from sommelier_core.equivalence.outputs import ModelOutputs, compute_outputs, store_outputs
from sommelier_core.equivalence.pair_measure import BoundSettings, bound_stored_pair
from sommelier_core.equivalence.peers import PeerSample, choose_peers, group_pivots, sample_peers

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
    "choose_peers",
    "compare_outputs",
    "compute_cushions",
    "compute_outputs",
    "group_pivots",
    "sample_peers",
    "store_outputs",
]
