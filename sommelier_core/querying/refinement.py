"""Refinement: measuring, at query time, the candidate pairs whose bounds leave the answer open.

Five sampled peers per model leave most pairs with transitive bounds, loose enough
that the top answer is often not the one exhaustive comparison would give (paper Fig. 9a). An engine
given a `PairMeasurer` (the index's stored validation outputs, `pair_measure.StoredOutputsMeasurer`)
measures, at query time and within a budget, exactly the candidates that could still change the
answer: those whose lower bound admits them (≤ WITHIN) but whose upper bound does not, ranking ahead
of the last selected hit (in key order, or the tightest path bound first when the budget cannot cover
them all) — or, ordered by similarity, any with a lower bound below the selected hits' upper bounds (the
tightest path bound first). Path bounds rank well when models share measured neighbours: the group pivots
of `equivalence.peers.choose_peers` give every pair of a group a two-hop path. A lower bound above WITHIN rules a
candidate out for good: every lower bound is ≤ the true difference in the query's direction
(`index.bound_rules`: one hop through a common neighbour, each direction of a pair bounded on its own), which
is ≤ the direct measurement's upper bound. The plan reports how many pairs it measured.
"""

from __future__ import annotations

import numpy as np

from sommelier_core.index.candidate_lists import MEASURED, TRANSITIVE
from sommelier_core.querying.engine import QueryEngine
from sommelier_core.querying.language import SIMILARITY
from sommelier_core.querying.matches import Matches
from sommelier_core.querying.plan import QueryPlan

REFINE_BATCH = 8
"""Pairs measured per round: the answer is re-checked between rounds, so few are measured past need."""


def will_refine(plan: QueryPlan, engine: QueryEngine) -> bool:
    """Whether the plan's semantic stage refines: the engine can measure and has budget, and the plan does not
    rank least similar first (ORDER BY similarity DESC), which refinement does not handle."""
    descending_similarity = plan.order_key == SIMILARITY and plan.descending
    return engine.measurer is not None and engine.refine_budget > 0 and not descending_similarity


def refine(plan: QueryPlan, engine: QueryEngine, m: Matches) -> tuple[Matches, int, int]:
    """Measure the candidates that could still change the answer; keep those certified within WITHIN.

    Returns the certified matches, how many pairs were measured and how many open ones were left
    unmeasured when the budget ran out.
    """
    within = plan.within
    upper, lower, provenance = m.upper.copy(), m.lower.copy(), m.provenance.copy()
    fixed = provenance != TRANSITIVE  # measured or identical: nothing left to learn
    measured = dict(m.measured)
    spent = 0
    ambiguous = np.empty(0, dtype=np.int64)
    by_key = plan.order_key != SIMILARITY and plan.limit  # the first certified ones settle it: go few at a time
    batch_size = min(REFINE_BATCH, plan.limit) if by_key else REFINE_BATCH
    while True:
        ambiguous = _ambiguous(plan, engine, m.positions, upper, lower, fixed, engine.refine_budget - spent)
        if len(ambiguous) == 0 or spent >= engine.refine_budget:
            break
        batch = ambiguous[: min(batch_size, engine.refine_budget - spent)]
        names = [engine.ids[int(m.positions[i])] for i in batch]
        bounds = list(engine.measurer(plan.reference_id, names))
        if len(bounds) != len(batch):
            raise ValueError(f"the pair measurer returned {len(bounds)} bounds for {len(batch)} candidates")
        for i, bound in zip(batch, bounds, strict=True):
            fixed[i] = True
            if bound is None:
                continue
            new_upper = float(engine.semantic.as_stored(np.array([bound.upper]), up=True)[0])
            new_lower = float(engine.semantic.as_stored(np.array([bound.lower]), up=False)[0])
            if new_upper <= upper[i]:
                upper[i], provenance[i] = new_upper, MEASURED
                measured[int(m.positions[i])] = bound.empirical
            lower[i] = min(max(lower[i], new_lower), upper[i])
        spent += len(batch)
    refined = Matches(m.positions, m.entries, upper, lower, provenance, measured)
    return refined.take(upper <= within), spent, len(ambiguous)


def _ambiguous(
    plan: QueryPlan,
    engine: QueryEngine,
    positions: np.ndarray,
    upper: np.ndarray,
    lower: np.ndarray,
    fixed: np.ndarray,
    budget_left: int,
) -> np.ndarray:
    """Indices of the unmeasured candidates whose measurement could change the answer, most promising first.

    Ordered by a resource key, they go in key order while the budget covers them all (the fewest measurements
    that settle the answer); past that, those with the tightest path bound go first — the likeliest to be
    certified, so that a budget too small to rule every cheaper candidate out still finds the answer.
    """
    within = plan.within
    rank = engine.name_rank[positions]
    open_ = ~fixed & (lower <= within)
    if not open_.any():
        return np.empty(0, dtype=np.int64)
    certain = np.flatnonzero(upper <= within)
    k = plan.limit
    if plan.order_key == SIMILARITY:
        # Anything whose lower bound reaches below the k-th best upper bound may rank among the hits.
        chosen = certain[np.lexsort((rank[certain], upper[certain]))]
        cut = upper[chosen[k - 1]] if k is not None and 0 < k <= len(chosen) else within
        if k == 0:
            return np.empty(0, dtype=np.int64)
        found = np.flatnonzero(open_ & (lower <= cut))
        # Most promising first: the tightest path bound (lower bounds are often 0 and do not rank).
        return found[np.lexsort((rank[found], lower[found], upper[found]))]
    if plan.order_key.startswith("utility:"):
        found = np.flatnonzero(open_ & (upper > within))
        return found[np.lexsort((rank[found], lower[found]))]
    values = engine.resource.column(plan.order_key, plan.order_device)[positions].astype(np.float64)
    keys = -values if plan.descending else values
    # Certain members keep their place; an uncertain one matters only if it would rank ahead of the k-th.
    found = np.flatnonzero(open_ & (upper > within))
    if k is not None and len(certain) >= k:
        if k == 0:
            return np.empty(0, dtype=np.int64)
        chosen = certain[np.lexsort((rank[certain], upper[certain], keys[certain]))]
        found = found[keys[found] <= keys[chosen[k - 1]]]
    if len(found) > budget_left:
        return found[np.lexsort((rank[found], keys[found], upper[found]))]
    return found[np.lexsort((rank[found], lower[found], keys[found]))]
