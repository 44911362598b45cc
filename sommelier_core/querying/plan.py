"""Query plans (paper §5.4): a `QuerySpec` checked against a `QueryEngine` and resolved into a `QueryPlan`.

`compile_query` is where a query meets the indexes: unknown models, devices, metrics, batch sizes and
tasks are errors here; relative budgets (`memory <= 80%`) become absolute thresholds against the
reference's own figures; the ORDER BY key becomes a resource column or a registered utility; and the
query's resolution decides which models are no candidates, and why. `execute` runs the plan.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field

from sommelier_core.errors import UnknownMetric, UnknownModel
from sommelier_core.querying.engine import QueryEngine
from sommelier_core.querying.language import (
    METRIC_ALIASES,
    SIMILARITY,
    TIME_METRICS,
    AllOf,
    AnyOf,
    Predicate,
    QueryError,
    QuerySpec,
    check_within,
    format_number,
)
from sommelier_core.querying.tasks import TaskRegistry
from sommelier_core.querying.utilities import find_utility, registered_names


@dataclass(frozen=True)
class ResolvedCondition:
    """A condition with its threshold in base units (relative budgets multiplied out)."""

    metric: str
    device: str | None
    op: str
    threshold: float
    text: str


ResolvedPredicate = ResolvedCondition | AllOf | AnyOf


@dataclass(frozen=True)
class QueryPlan:
    """A query checked against an engine, ready to run."""

    spec: QuerySpec
    reference_id: str | None
    reference_pos: int | None
    device: str
    within: float | None
    predicate: ResolvedPredicate | None
    order_key: str  # "similarity", a resource column, or "utility:<name>"
    order_device: str | None
    descending: bool
    limit: int | None
    excluded: dict[int, str] = field(default_factory=dict)
    """Models (by position) that are no candidates under the exec-spec, and why: they cannot run at the
    query's resolution, or the query reads a latency measured at another resolution."""


def _unknown_model(ref: str, engine: QueryEngine) -> UnknownModel:
    close = difflib.get_close_matches(ref, engine.ids, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; the index holds {len(engine.ids)} models"
    return UnknownModel(f"reference model {ref!r} is not in the index{hint}")


def _check_device(device: str, engine: QueryEngine) -> None:
    if device not in engine.resource.latency_ms:
        devices = ", ".join(engine.resource.devices) or "none"
        raise UnknownMetric(f"device {device!r} has no profiles in the index; profiled devices: {devices}")


def compile_query(spec: QuerySpec, engine: QueryEngine, tasks: TaskRegistry | None = None) -> QueryPlan:
    """Check a spec against the indexes and resolve everything a run needs."""
    reference = spec.reference
    if spec.task is not None:
        if reference is not None:
            raise QueryError("give either a reference model (LIKE) or a task (FOR TASK), not both")
        reference = (tasks or TaskRegistry()).resolve(spec.task)
    ref_pos = None
    if reference is not None:
        ref_pos = engine.pos.get(reference)
        if ref_pos is None:
            raise _unknown_model(reference, engine)
    _check_device(spec.device, engine)
    if spec.batch_size is not None and spec.batch_size not in engine.resource.batch_sizes.get(spec.device, set()):
        sizes = ", ".join(str(b) for b in sorted(engine.resource.batch_sizes.get(spec.device, set())))
        raise UnknownMetric(f"no profiles at batch size {spec.batch_size} on {spec.device}; profiled: {sizes}")
    excluded = _check_resolution(spec, engine, reference, ref_pos) if spec.resolution is not None else {}
    within = spec.within if reference is not None else None
    if within is not None:
        if check_within(within) > engine.semantic.ceiling:
            raise QueryError(
                f"WITHIN {within:.2%} is above the index's candidate-list ceiling "
                f"{engine.semantic.ceiling:.2%}; candidates beyond it are not kept"
            )
    predicate = _resolve(spec.where, spec, engine, ref_pos) if spec.where is not None else None
    order_key, order_device, descending = _resolve_order(spec, engine)
    if spec.limit is not None and spec.limit < 0:
        raise ValueError(f"limit must be ≥ 0, got {spec.limit}")
    if spec.resolution is not None and (order_key == "latency_ms" or _reads_latency(spec.where)):
        # Latency was measured at each model's own resolution: at another one it is unknown, never guessed.
        excluded |= {i: why for i, why in engine.resource.latency_unknown.items() if i != ref_pos}
    return QueryPlan(
        spec,
        reference,
        ref_pos,
        spec.device,
        within,
        predicate,
        order_key,
        order_device,
        descending,
        spec.limit,
        excluded,
    )


def _check_resolution(
    spec: QuerySpec, engine: QueryEngine, reference: str | None, ref_pos: int | None
) -> dict[int, str]:
    """The models the query's resolution leaves out; errors when the reference cannot run at it, or when
    the index lacks the memory of a model the query could return that could run at it."""
    resource, resolution = engine.resource, spec.resolution
    if resource.resolution != resolution:
        raise ValueError(
            f"the engine's columns are at resolution {resource.resolution}, the query asks for {resolution}; "
            "pass engine.at_resolution(...) (run_query does)"
        )
    if ref_pos is not None and ref_pos in resource.excluded:
        raise QueryError(
            f"reference model {reference!r} cannot run at resolution {resolution}: {resource.excluded[ref_pos]}"
        )
    if ref_pos is not None and spec.within is not None:
        row = engine.semantic.reference_row(ref_pos, engine.semantic.ceiling)  # what refinement could admit
        reachable = {ref_pos, *row.positions.tolist()}
    else:
        reachable = set(range(len(engine.ids)))
    missing = sorted((engine.ids[i], why) for i, why in resource.unprofiled.items() if i in reachable)
    if missing:
        shown = "; ".join(f"{m} ({why})" for m, why in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise QueryError(
            f"the index holds no memory profile at resolution {resolution}, batch {resource.batch_size} of "
            f"{shown}{more}; set memory_resolutions to include {resolution} and re-index"
        )
    return dict(resource.excluded)


def _reads_latency(predicate: Predicate | None) -> bool:
    if predicate is None:
        return False
    if isinstance(predicate, AllOf | AnyOf):
        return any(_reads_latency(t) for t in predicate.terms)
    return predicate.metric in TIME_METRICS


def _resolve(predicate: Predicate, spec: QuerySpec, engine: QueryEngine, ref_pos: int | None) -> ResolvedPredicate:
    if isinstance(predicate, AllOf | AnyOf):
        terms = tuple(_resolve(t, spec, engine, ref_pos) for t in predicate.terms)
        return AllOf(terms) if isinstance(predicate, AllOf) else AnyOf(terms)
    device = (predicate.device or spec.device) if predicate.metric in TIME_METRICS else None
    if device is not None:
        _check_device(device, engine)
    if predicate.metric not in engine.resource.static and predicate.metric not in TIME_METRICS:
        raise UnknownMetric(f"the resource index holds no metric {predicate.metric!r}")
    if predicate.op not in ("<", "<=", ">", ">=", "="):
        raise QueryError(f"unknown comparison {predicate.op!r} in {predicate.describe()}")
    threshold = predicate.value
    if predicate.relative:
        if ref_pos is None:
            raise QueryError(
                f"{predicate.describe()} is relative to a reference model; add LIKE 'model id' or FOR TASK name"
            )
        base = float(engine.resource.column(predicate.metric, device)[ref_pos])
        if ref_pos in engine.resource.latency_unknown and predicate.metric in TIME_METRICS:
            raise QueryError(
                f"{predicate.describe()} is relative to the reference {engine.ids[ref_pos]!r}, whose "
                f"{engine.resource.latency_unknown[ref_pos]}; drop the latency condition or query at that resolution"
            )
        if math.isnan(base):
            raise UnknownMetric(f"the reference has no {predicate.metric} profile on {device}")
        threshold = predicate.value * base
    text = predicate.describe()
    if predicate.relative:
        text += f" (= {format_number(threshold)})"
    return ResolvedCondition(predicate.metric, device, predicate.op, threshold, text)


def _resolve_order(spec: QuerySpec, engine: QueryEngine) -> tuple[str, str | None, bool]:
    key = spec.order.key
    lowered = key.lower()
    if lowered == SIMILARITY:
        return SIMILARITY, None, bool(spec.order.descending)
    if lowered in METRIC_ALIASES:
        column = METRIC_ALIASES[lowered]
        device = (spec.order.device or spec.device) if column in TIME_METRICS else None
        if device is not None:
            _check_device(device, engine)
        return column, device, bool(spec.order.descending)
    utility = find_utility(lowered)
    if utility is not None:
        descending = utility.higher_is_better if spec.order.descending is None else spec.order.descending
        return f"utility:{lowered}", None, descending
    names = ["similarity", "flops", "macs", "params", "memory", "latency", "weights", "activations"]
    registered = registered_names()
    extra = f", or a registered utility ({', '.join(registered)})" if registered else ", or a registered utility"
    raise UnknownMetric(f"cannot order by {key!r}; expected one of {', '.join(names)}{extra}")


def describe_resolved(predicate: ResolvedPredicate) -> str:
    """A resolved predicate as text (relative budgets shown with their absolute value)."""
    if isinstance(predicate, ResolvedCondition):
        return predicate.text
    joiner = " AND " if isinstance(predicate, AllOf) else " OR "
    return joiner.join(
        describe_resolved(t) if isinstance(t, ResolvedCondition) else f"({describe_resolved(t)})"
        for t in predicate.terms
    )
