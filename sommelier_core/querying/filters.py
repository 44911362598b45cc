"""Resource predicates over the resource columns: which models satisfy a compiled predicate, and which
models a plan may consider at all under its exec-spec."""

from __future__ import annotations

import numpy as np

from sommelier_core.index.resource import ResourceStore
from sommelier_core.querying.language import AllOf, AnyOf
from sommelier_core.querying.plan import QueryPlan, ResolvedCondition, ResolvedPredicate


def _compare(values: np.ndarray, op: str, threshold: float) -> np.ndarray:
    if op == "<":
        return values < threshold
    if op == "<=":
        return values <= threshold
    if op == ">":
        return values > threshold
    if op == ">=":
        return values >= threshold
    return values == threshold


def satisfies(predicate: ResolvedPredicate, positions: np.ndarray, resource: ResourceStore) -> np.ndarray:
    """Which of the models at `positions` satisfy a compiled resource predicate (one bool per position): a
    scan over the gathered values. Synthesized candidates use it too (they take their base's figures)."""
    if isinstance(predicate, ResolvedCondition):
        return _compare(
            resource.column(predicate.metric, predicate.device)[positions], predicate.op, predicate.threshold
        )
    masks = [satisfies(t, positions, resource) for t in predicate.terms]
    if isinstance(predicate, AllOf):
        return np.logical_and.reduce(masks) if masks else np.ones(len(positions), dtype=bool)
    return np.logical_or.reduce(masks) if masks else np.zeros(len(positions), dtype=bool)


def positions_satisfying(predicate: ResolvedPredicate, resource: ResourceStore) -> np.ndarray:
    """Every model satisfying the predicate, via the sorted columns (no full scan when selective)."""
    if isinstance(predicate, ResolvedCondition):
        return resource.range_positions(predicate.metric, predicate.device, predicate.op, predicate.threshold)
    if isinstance(predicate, AnyOf):
        parts = [positions_satisfying(t, resource) for t in predicate.terms]
        return np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int32)
    # AND: start from the most selective indexable term, check the others on its survivors only.
    ranges = [(t, positions_satisfying(t, resource)) for t in predicate.terms if isinstance(t, ResolvedCondition)]
    if not ranges:
        first, rest = predicate.terms[0], predicate.terms[1:]
        positions = positions_satisfying(first, resource)
    else:
        first, positions = min(ranges, key=lambda tp: len(tp[1]))
        rest = tuple(t for t in predicate.terms if t is not first)
    for term in rest:
        if len(positions) == 0:
            break
        positions = positions[satisfies(term, positions, resource)]
    return positions


def candidates_under_exec_spec(plan: QueryPlan, resource: ResourceStore) -> np.ndarray:
    """Which models may be candidates of a plan: profiled on its device, able to run at its resolution
    and, when it reads latency at a resolution, measured there (one bool per model)."""
    ok = resource.available(plan.device).copy()
    if plan.excluded:
        ok[list(plan.excluded)] = False
    return ok
