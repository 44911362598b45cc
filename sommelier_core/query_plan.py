"""Query plans (paper §5.4): a `QuerySpec` compiled against the indexes, run as a pipeline of filters.

    reference → semantic (the reference's candidate list, upper bound ≤ WITHIN)
              → resource (the WHERE tree, relative budgets resolved against the reference)
              → select (ORDER BY, LIMIT)

The string language (`query_language.parse_query`) and the keyword API (`query.query`) both build
a `QuerySpec`; `compile_query` checks it against a `QueryEngine` (unknown models, devices, metrics,
batch sizes and tasks are errors here) and `execute` runs it, reporting how many models each stage
kept. A semantic query touches only the reference's candidate list; a query without one uses the
resource columns' sorted copies. `brute_force` answers the same plan by scanning everything.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl

from sommelier_core.errors import UnknownMetric, UnknownModel
from sommelier_core.query_language import (
    METRIC_ALIASES,
    SIMILARITY,
    TIME_METRICS,
    AllOf,
    AnyOf,
    Predicate,
    QueryError,
    QuerySpec,
    format_number,
)
from sommelier_core.resource_index import ResourceStore
from sommelier_core.semantic_store import PROVENANCE, CandidateLists, SemanticStore
from sommelier_core.tasks import TaskRegistry

NO_RELATION = "none"  # provenance of a resource-only hit: no semantic bound was asked for


@dataclass(frozen=True)
class ResourceFigures:
    """A hit's resource profile on the query's device."""

    device: str
    params: int
    macs: int
    flops: int
    weight_bytes: int
    peak_activation_bytes: int
    memory_bytes: int
    latency_ms: float


@dataclass(frozen=True)
class Hit:
    """One answer: a model equivalent to the reference within the threshold and within budget.

    A query without a semantic predicate returns the trivial bounds [0, 1] with provenance `none`.
    """

    model_id: str
    onnx_path: str
    lower_bound: float
    upper_bound: float
    empirical: float | None
    provenance: str
    profile: ResourceFigures

    def to_json(self) -> dict:
        """The stable JSON form used by `sommelier query --json`."""
        return asdict(self)


@dataclass(frozen=True)
class Utility:
    """A user-registered ranking function over hits (`ORDER BY <name>`)."""

    name: str
    function: Callable[[Hit], float]
    higher_is_better: bool = True


_UTILITIES: dict[str, Utility] = {}


def register_utility(name: str, function: Callable[[Hit], float], higher_is_better: bool = True) -> None:
    """Make `ORDER BY name` rank hits by `function(hit)` (best first: highest unless told otherwise)."""
    key = name.lower()
    if key == SIMILARITY or key in METRIC_ALIASES:
        raise ValueError(f"{name!r} is a built-in ordering; choose another utility name")
    _UTILITIES[key] = Utility(name, function, higher_is_better)


def unregister_utility(name: str) -> None:
    """Forget a registered utility."""
    _UTILITIES.pop(name.lower(), None)


class QueryEngine:
    """The two indexes aligned by model position: packed candidate lists and resource columns."""

    def __init__(self, semantic: CandidateLists, resource: ResourceStore) -> None:
        if semantic.ids != resource.model_ids:
            raise ValueError("semantic and resource indexes must list the same models in the same order")
        self.semantic = semantic
        self.resource = resource
        self.ids = resource.model_ids
        self.pos = {m: i for i, m in enumerate(self.ids)}
        rank = np.empty(len(self.ids), dtype=np.int64)
        rank[np.argsort(np.array(self.ids, dtype=object), kind="stable")] = np.arange(len(self.ids))
        self.name_rank = rank

    @classmethod
    def from_frames(cls, semantic: pl.DataFrame, resource: pl.DataFrame) -> QueryEngine:
        """From the materialized asset tables (models without a resource row are left out)."""
        store = ResourceStore.from_frame(resource)
        return cls(CandidateLists.from_frame(semantic, store.model_ids), store)

    @classmethod
    def from_store(cls, semantic: SemanticStore, resource: ResourceStore) -> QueryEngine:
        """From an incrementally built semantic store and resource columns in the same model order."""
        return cls(semantic.freeze(), resource)

    @property
    def nbytes(self) -> dict[str, int]:
        """Bytes of each index as a query reads it."""
        return {"semantic": self.semantic.nbytes, "resource": self.resource.nbytes}


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


@dataclass(frozen=True)
class StageReport:
    """What one stage did: its description, how many models came in and how many it kept."""

    name: str
    detail: str
    considered: int
    kept: int


@dataclass(frozen=True)
class QueryResult:
    """Hits plus the per-stage counts `--explain` shows."""

    plan: QueryPlan
    hits: list[Hit]
    stages: list[StageReport] = field(default_factory=list)

    def explain(self) -> str:
        """The plan, one line per stage, with how many models each stage kept."""
        lines = ["plan:"]
        for i, stage in enumerate(self.stages, 1):
            lines.append(f"  {i}. {stage.name:<9} {stage.detail}  [{stage.considered} → {stage.kept}]")
        return "\n".join(lines)

    def explain_json(self) -> list[dict]:
        """The stages as JSON objects."""
        return [asdict(s) for s in self.stages]


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
    within = spec.within if reference is not None else None
    if within is not None:
        if not 0 <= within <= 1:
            raise ValueError(f"within must be a fraction in [0, 1], got {within}")
        if within > engine.semantic.ceiling:
            raise QueryError(
                f"WITHIN {within:.2%} is above the index's candidate-list ceiling "
                f"{engine.semantic.ceiling:.2%}; candidates beyond it are not kept"
            )
    predicate = _resolve(spec.where, spec, engine, ref_pos) if spec.where is not None else None
    order_key, order_device, descending = _resolve_order(spec, engine)
    if spec.limit is not None and spec.limit < 0:
        raise ValueError(f"limit must be ≥ 0, got {spec.limit}")
    return QueryPlan(
        spec, reference, ref_pos, spec.device, within, predicate, order_key, order_device, descending, spec.limit
    )


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
    utility = _UTILITIES.get(lowered)
    if utility is not None:
        descending = utility.higher_is_better if spec.order.descending is None else spec.order.descending
        return f"utility:{lowered}", None, descending
    names = ["similarity", "flops", "macs", "params", "memory", "latency", "weights", "activations"]
    registered = sorted(_UTILITIES)
    extra = f", or a registered utility ({', '.join(registered)})" if registered else ", or a registered utility"
    raise UnknownMetric(f"cannot order by {key!r}; expected one of {', '.join(names)}{extra}")


# -- running a plan ---------------------------------------------------------------------------


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


def _mask(predicate: ResolvedPredicate, positions: np.ndarray, resource: ResourceStore) -> np.ndarray:
    """Which of `positions` satisfy the predicate (a scan over the gathered values)."""
    if isinstance(predicate, ResolvedCondition):
        return _compare(
            resource.column(predicate.metric, predicate.device)[positions], predicate.op, predicate.threshold
        )
    masks = [_mask(t, positions, resource) for t in predicate.terms]
    if isinstance(predicate, AllOf):
        return np.logical_and.reduce(masks) if masks else np.ones(len(positions), dtype=bool)
    return np.logical_or.reduce(masks) if masks else np.zeros(len(positions), dtype=bool)


def _positions(predicate: ResolvedPredicate, resource: ResourceStore) -> np.ndarray:
    """Every model satisfying the predicate, via the sorted columns (no full scan when selective)."""
    if isinstance(predicate, ResolvedCondition):
        return resource.range_positions(predicate.metric, predicate.device, predicate.op, predicate.threshold)
    if isinstance(predicate, AnyOf):
        parts = [_positions(t, resource) for t in predicate.terms]
        return np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int32)
    # AND: start from the most selective indexable term, check the others on its survivors only.
    ranges = [(t, _positions(t, resource)) for t in predicate.terms if isinstance(t, ResolvedCondition)]
    if not ranges:
        first, rest = predicate.terms[0], predicate.terms[1:]
        positions = _positions(first, resource)
    else:
        first, positions = min(ranges, key=lambda tp: len(tp[1]))
        rest = tuple(t for t in predicate.terms if t is not first)
    for term in rest:
        if len(positions) == 0:
            break
        positions = positions[_mask(term, positions, resource)]
    return positions


@dataclass
class _Matches:
    """Surviving models, with their candidate-list entries when the semantic stage ran."""

    positions: np.ndarray
    entries: np.ndarray | None  # index into the packed candidate lists, aligned with positions


def execute(plan: QueryPlan, engine: QueryEngine) -> QueryResult:
    """Run a compiled plan: semantic → resource → select, counting what each stage kept."""
    semantic, resource = engine.semantic, engine.resource
    on_device = resource.latency_ms[plan.device]
    stages: list[StageReport] = []
    if plan.reference_pos is not None:
        detail = f"{plan.reference_id} on {plan.device}{_batch_text(plan)}"
        stages.append(StageReport("reference", detail, len(engine.ids), 1))
    if plan.within is not None:
        row = semantic.row(plan.reference_pos)
        upper = semantic.upper_at(row)
        kept = int(np.count_nonzero(upper <= plan.within))  # sorted ascending: a prefix
        entries = np.arange(row.start, row.start + kept)
        positions = semantic.candidates[entries]
        profiled = ~np.isnan(on_device[positions])
        matches = _Matches(positions[profiled], entries[profiled])
        stages.append(
            StageReport(
                "semantic",
                f"candidate list of {plan.reference_id}, upper bound ≤ {plan.within:.2%}",
                row.stop - row.start,
                len(matches.positions),
            )
        )
        if plan.predicate is not None:
            before = len(matches.positions)
            keep = _mask(plan.predicate, matches.positions, resource)
            matches = _Matches(matches.positions[keep], matches.entries[keep])
            stages.append(StageReport("resource", describe_resolved(plan.predicate), before, len(matches.positions)))
    else:
        universe = int(np.count_nonzero(~np.isnan(on_device)))
        if plan.predicate is not None:
            positions = _positions(plan.predicate, resource)
        else:
            positions = np.arange(len(engine.ids))
        positions = positions[~np.isnan(on_device[positions])]
        if plan.reference_pos is not None:
            positions = positions[positions != plan.reference_pos]
        detail = describe_resolved(plan.predicate) if plan.predicate is not None else "every model"
        stages.append(StageReport("resource", f"{detail} (sorted-column index)", universe, len(positions)))
        matches = _Matches(np.sort(positions), None)
    hits = _select(plan, engine, matches)
    stages.append(StageReport("select", _order_text(plan), len(matches.positions), len(hits)))
    return QueryResult(plan, hits, stages)


def _batch_text(plan: QueryPlan) -> str:
    return f", batch {plan.spec.batch_size}" if plan.spec.batch_size is not None else ""


def _order_text(plan: QueryPlan) -> str:
    key = plan.order_key.removeprefix("utility:")
    if plan.order_device:
        key += f"@{plan.order_device}"
    text = f"ORDER BY {key} {'DESC' if plan.descending else 'ASC'}"
    return text + (f" LIMIT {plan.limit}" if plan.limit is not None else "")


def describe_resolved(predicate: ResolvedPredicate) -> str:
    """A resolved predicate as text (relative budgets shown with their absolute value)."""
    if isinstance(predicate, ResolvedCondition):
        return predicate.text
    joiner = " AND " if isinstance(predicate, AllOf) else " OR "
    return joiner.join(
        describe_resolved(t) if isinstance(t, ResolvedCondition) else f"({describe_resolved(t)})"
        for t in predicate.terms
    )


def _select(plan: QueryPlan, engine: QueryEngine, matches: _Matches) -> list[Hit]:
    positions, entries = matches.positions, matches.entries
    semantic = engine.semantic
    upper = semantic.upper_at(entries) if entries is not None else np.ones(len(positions))
    rank = engine.name_rank[positions]
    if plan.order_key.startswith("utility:"):
        utility = _UTILITIES[plan.order_key.removeprefix("utility:")]
        hits = [_hit(plan, engine, p, e) for p, e in _pairs(positions, entries)]
        scored = sorted(
            zip(hits, upper, rank, strict=True),
            key=lambda t: (-utility.function(t[0]) if plan.descending else utility.function(t[0]), t[1], t[2]),
        )
        chosen = [h for h, _, _ in scored]
        return chosen[: plan.limit] if plan.limit is not None else chosen
    if plan.order_key == SIMILARITY:
        keys = upper if not plan.descending else -upper
        order = np.lexsort((rank, keys)) if entries is None or plan.descending else np.arange(len(positions))
    else:
        values = engine.resource.column(plan.order_key, plan.order_device)[positions].astype(np.float64)
        keys = -values if plan.descending else values
        candidates = np.arange(len(positions))
        if plan.limit is not None and len(positions) > 8 * max(plan.limit, 1) and plan.limit > 0:
            kth = np.partition(keys, plan.limit - 1)[plan.limit - 1]
            if not math.isnan(kth):
                candidates = np.flatnonzero(keys <= kth)  # ties at the cut stay in
        order = candidates[np.lexsort((rank[candidates], upper[candidates], keys[candidates]))]
    if plan.limit is not None:
        order = order[: plan.limit]
    return [_hit(plan, engine, int(positions[i]), int(entries[i]) if entries is not None else None) for i in order]


def _pairs(positions: np.ndarray, entries: np.ndarray | None):
    for i, p in enumerate(positions):
        yield int(p), (int(entries[i]) if entries is not None else None)


def _hit(plan: QueryPlan, engine: QueryEngine, position: int, entry: int | None) -> Hit:
    resource = engine.resource
    static = {m: int(resource.static[m][position]) for m in resource.static}
    figures = ResourceFigures(
        device=plan.device,
        params=static["params"],
        macs=static["macs"],
        flops=static["flops"],
        weight_bytes=static["weight_bytes"],
        peak_activation_bytes=static["peak_activation_bytes"],
        memory_bytes=static["memory_bytes"],
        latency_ms=float(resource.latency_ms[plan.device][position]),
    )
    if entry is None:
        lower, upper, provenance, empirical = 0.0, 1.0, NO_RELATION, None
    else:
        semantic = engine.semantic
        lower, upper = float(semantic.lower_at(entry)), float(semantic.upper_at(entry))
        provenance = PROVENANCE[int(semantic.provenance[entry])]
        empirical = semantic.empirical.get((plan.reference_pos, position))
    return Hit(
        model_id=engine.ids[position],
        onnx_path=resource.onnx_paths[position],
        lower_bound=lower,
        upper_bound=upper,
        empirical=empirical,
        provenance=provenance,
        profile=figures,
    )


def brute_force(plan: QueryPlan, engine: QueryEngine) -> list[str]:
    """The ids a plan must return, by scanning every model and every candidate record (for checks).

    No sorted columns, no early cut: every model is tested against every predicate, and the
    semantic predicate against the whole packed candidate table, not the reference's row.
    """
    resource, semantic = engine.resource, engine.semantic
    n = len(engine.ids)
    every = np.arange(n)
    ok = ~np.isnan(resource.latency_ms[plan.device])
    if plan.predicate is not None:
        ok &= _mask(plan.predicate, every, resource)
    upper = np.ones(n)
    if plan.within is not None:
        owners = np.repeat(np.arange(n), np.diff(semantic.offsets))
        every_upper = semantic.upper_at(slice(None))
        mine = (owners == plan.reference_pos) & (every_upper <= plan.within)
        in_list = np.zeros(n, dtype=bool)
        in_list[semantic.candidates[mine]] = True
        upper[semantic.candidates[mine]] = every_upper[mine]
        ok &= in_list
    elif plan.reference_pos is not None:
        ok[plan.reference_pos] = False
    found = np.flatnonzero(ok)
    if plan.order_key == SIMILARITY:
        keys = -upper[found] if plan.descending else upper[found]
    elif plan.order_key.startswith("utility:"):
        raise ValueError("brute_force does not rank by utilities")
    else:
        values = resource.column(plan.order_key, plan.order_device)[found].astype(np.float64)
        keys = -values if plan.descending else values
    order = np.lexsort((engine.name_rank[found], upper[found], keys))
    chosen = found[order]
    if plan.limit is not None:
        chosen = chosen[: plan.limit]
    return [engine.ids[i] for i in chosen]
