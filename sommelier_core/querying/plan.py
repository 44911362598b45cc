"""Query plans (paper §5.4): a `QuerySpec` compiled against the indexes, run as a pipeline of filters.

    reference → semantic (the reference's candidate list, upper bound ≤ WITHIN)
              → resource (the WHERE tree, relative budgets resolved against the reference)
              → refine (optional: measure the pairs whose transitive bounds leave the answer open)
              → select (ORDER BY, LIMIT)

The string language (`query_language.parse_query`) and the keyword API (`query.query`) both build
a `QuerySpec`; `compile_query` checks it against a `QueryEngine` (unknown models, devices, metrics,
batch sizes and tasks are errors here) and `execute` runs it, reporting how many models each stage
kept. A semantic query touches only the reference's candidate list; a query without one uses the
resource columns' sorted copies. `brute_force` answers the same plan by scanning everything.

**Refinement.** Five sampled peers per model leave most pairs with transitive bounds, loose enough
that the top answer is often not the one exhaustive comparison would give (paper Fig. 9a). An engine
given a `PairMeasurer` (the index's stored validation outputs, `pair_measure.StoredOutputsMeasurer`)
measures, at query time and within a budget, exactly the candidates that could still change the
answer: those whose lower bound admits them (≤ WITHIN) but whose upper bound does not, ranking ahead
of the last selected hit — or, ordered by similarity, any with a lower bound below the selected
hits' upper bounds. A lower bound above WITHIN rules a candidate out for good: every lower bound is
≤ the empirical difference on the shared validation set (one-hop rule over a metric), which is ≤
the direct measurement's upper bound. The plan reports how many pairs it measured.
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import polars as pl

from sommelier_core.equivalence.bound import PairBound
from sommelier_core.errors import UnknownMetric, UnknownModel
from sommelier_core.index.resource import ResourceStore
from sommelier_core.index.semantic import MEASURED, PROVENANCE, TRANSITIVE, CandidateLists, SemanticStore
from sommelier_core.querying.language import (
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
from sommelier_core.querying.tasks import TaskRegistry

NO_RELATION = "none"  # provenance of a resource-only hit: no semantic bound was asked for
DEFAULT_REFINE_BUDGET = 64
"""Most pairs one query measures from stored outputs (a few ms each on the built-in zoo)."""

PairMeasurer = Callable[[str, Sequence[str]], Sequence[PairBound | None]]
"""Measures (reference, candidate) pairs directly: one bound per candidate, None where it cannot."""


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
    latency_estimated: bool = False
    """True when the latency is estimated from the device's operator latency table, not measured."""


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


def registered_utility(name: str) -> Utility:
    """The utility a plan's `utility:NAME` order key refers to (for ranking hits built outside `execute`)."""
    return _UTILITIES[name.lower()]


class QueryEngine:
    """The two indexes aligned by model position: packed candidate lists and resource columns.

    With a `measurer`, semantic queries refine uncertain candidates by measuring them, at most
    `refine_budget` pairs per query (0 answers from the index alone).
    """

    def __init__(
        self,
        semantic: CandidateLists,
        resource: ResourceStore,
        measurer: PairMeasurer | None = None,
        refine_budget: int = DEFAULT_REFINE_BUDGET,
    ) -> None:
        if semantic.ids != resource.model_ids:
            raise ValueError("semantic and resource indexes must list the same models in the same order")
        if refine_budget < 0:
            raise ValueError(f"refine budget must be ≥ 0, got {refine_budget}")
        self.semantic = semantic
        self.resource = resource
        self.measurer = measurer
        self.refine_budget = refine_budget
        self.ids = resource.model_ids
        self.pos = {m: i for i, m in enumerate(self.ids)}
        rank = np.empty(len(self.ids), dtype=np.int64)
        rank[np.argsort(np.array(self.ids, dtype=object), kind="stable")] = np.arange(len(self.ids))
        self.name_rank = rank

    @classmethod
    def from_frames(
        cls,
        semantic: pl.DataFrame,
        resource: pl.DataFrame,
        measurer: PairMeasurer | None = None,
        refine_budget: int = DEFAULT_REFINE_BUDGET,
    ) -> QueryEngine:
        """From the materialized asset tables (models without a resource row are left out)."""
        store = ResourceStore.from_frame(resource)
        return cls(CandidateLists.from_frame(semantic, store.model_ids), store, measurer, refine_budget)

    def at_batch(self, batch_size: int) -> QueryEngine:
        """This engine with its resource columns at another profiled batch size (the query's exec-spec)."""
        return self._with_resource(self.resource.at_batch(batch_size))

    def at_resolution(self, resolution: int) -> QueryEngine:
        """This engine with memory, MACs and FLOPs at input resolution `resolution` (the query's exec-spec);
        models that cannot run there are marked, not dropped (`ResourceStore.at_resolution`)."""
        return self._with_resource(self.resource.at_resolution(resolution))

    def _with_resource(self, resource: ResourceStore) -> QueryEngine:
        if resource is self.resource:
            return self
        engine = copy.copy(self)
        engine.resource = resource
        return engine

    @classmethod
    def from_store(
        cls,
        semantic: SemanticStore,
        resource: ResourceStore,
        measurer: PairMeasurer | None = None,
        refine_budget: int = DEFAULT_REFINE_BUDGET,
    ) -> QueryEngine:
        """From an incrementally built semantic store and resource columns in the same model order."""
        return cls(semantic.freeze(), resource, measurer, refine_budget)

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
    excluded: dict[int, str] = field(default_factory=dict)
    """Models (by position) that are no candidates under the exec-spec, and why: they cannot run at the
    query's resolution, or the query reads a latency measured at another resolution."""


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
    measured_pairs: int = 0  # pairs the refine stage measured
    excluded: dict[str, str] = field(default_factory=dict)
    """Models the query would have considered (the reference's candidates, or every model without a
    reference) that the exec-spec left out, and why (`fixed input resolution 224`, …)."""

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
    excluded = _check_resolution(spec, engine, reference, ref_pos) if spec.resolution is not None else {}
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
        row = engine.semantic.row(ref_pos)
        reachable = {ref_pos, *engine.semantic.candidates[row.start : row.stop].tolist()}
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


def satisfies(predicate: ResolvedPredicate, positions: np.ndarray, resource: ResourceStore) -> np.ndarray:
    """Which of the models at `positions` satisfy a compiled resource predicate (one bool per position).

    Public for answers built beside the plan's own stages (synthesized candidates take their base's figures).
    """
    return _mask(predicate, positions, resource)


def resource_figures(resource: ResourceStore, position: int, device: str) -> ResourceFigures:
    """The resource figures of the model at `position` on `device`, as a hit reports them."""
    static = {m: int(resource.static[m][position]) for m in resource.static}
    return ResourceFigures(
        device=device,
        params=static["params"],
        macs=static["macs"],
        flops=static["flops"],
        weight_bytes=static["weight_bytes"],
        peak_activation_bytes=static["peak_activation_bytes"],
        memory_bytes=static["memory_bytes"],
        latency_ms=float(resource.latency_ms[device][position]),
        latency_estimated=resource.is_estimated(device, position),
    )


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

    def take(self, keep: np.ndarray) -> _Matches:
        """The matches selected by a boolean mask or an index array."""

        def pick(values: np.ndarray | None) -> np.ndarray | None:
            return values[keep] if values is not None else None

        return _Matches(
            self.positions[keep],
            pick(self.entries),
            pick(self.upper),
            pick(self.lower),
            pick(self.provenance),
            self.measured,
        )


def _refining(plan: QueryPlan, engine: QueryEngine) -> bool:
    descending_similarity = plan.order_key == SIMILARITY and plan.descending
    return engine.measurer is not None and engine.refine_budget > 0 and not descending_similarity


def execute(plan: QueryPlan, engine: QueryEngine) -> QueryResult:
    """Run a compiled plan: semantic → resource → (refine) → select, counting what each stage kept."""
    semantic, resource = engine.semantic, engine.resource
    on_device = resource.profiled[plan.device]
    candidate = candidates_under_exec_spec(plan, resource)
    excluded: dict[str, str] = {}
    stages: list[StageReport] = []
    measured_pairs = 0
    if plan.reference_pos is not None:
        detail = f"{plan.reference_id} on {plan.device}{_batch_text(plan)}"
        stages.append(StageReport("reference", detail, len(engine.ids), 1))
    if plan.within is not None:
        row = semantic.row(plan.reference_pos)
        upper = semantic.upper_at(row)
        refining = _refining(plan, engine)
        if refining:  # also keep what a measurement could admit: transitive, lower bound ≤ WITHIN
            lower = semantic.lower_at(row)
            open_ = (semantic.provenance[row] == TRANSITIVE) & (lower <= plan.within) & (upper > plan.within)
            offsets = np.flatnonzero((upper <= plan.within) | open_)
        else:
            offsets = np.arange(int(np.count_nonzero(upper <= plan.within)))  # sorted ascending: a prefix
        entries = row.start + offsets
        positions = semantic.candidates[entries]
        profiled = on_device[positions]
        excluded = _excluded_among(plan, engine, positions[profiled])
        profiled &= candidate[positions]
        entries = entries[profiled]
        matches = _Matches(
            positions[profiled],
            entries,
            semantic.upper_at(entries),
            semantic.lower_at(entries),
            semantic.provenance[entries].astype(np.int64),
        )
        detail = f"candidate list of {plan.reference_id}, upper bound ≤ {plan.within:.2%}"
        if refining:
            uncertain = int(np.count_nonzero(matches.upper > plan.within))
            detail += f" (+ {uncertain} uncertain: lower bound ≤ {plan.within:.2%})"
        stages.append(StageReport("semantic", detail, row.stop - row.start, len(matches.positions) + len(excluded)))
        if plan.spec.resolution is not None:
            stages.append(_exec_spec_stage(plan, excluded, len(matches.positions)))
        if plan.predicate is not None:
            before = len(matches.positions)
            matches = matches.take(_mask(plan.predicate, matches.positions, resource))
            stages.append(StageReport("resource", describe_resolved(plan.predicate), before, len(matches.positions)))
        if refining:
            before = len(matches.positions)
            matches, measured_pairs, undecided = _refine(plan, engine, matches)
            detail = (
                f"measured {measured_pairs} uncertain pairs from stored outputs (budget {engine.refine_budget})"
                + (f", {undecided} left unmeasured" if undecided else "")
            )
            stages.append(StageReport("refine", detail, before, len(matches.positions)))
    else:
        universe = int(np.count_nonzero(on_device))
        excluded = _excluded_among(plan, engine, np.flatnonzero(on_device))
        if plan.spec.resolution is not None:
            stages.append(_exec_spec_stage(plan, excluded, universe - len(excluded)))
            universe -= len(excluded)
        if plan.predicate is not None:
            positions = _positions(plan.predicate, resource)
        else:
            positions = np.arange(len(engine.ids))
        positions = positions[candidate[positions]]
        if plan.reference_pos is not None:
            positions = positions[positions != plan.reference_pos]
        detail = describe_resolved(plan.predicate) if plan.predicate is not None else "every model"
        stages.append(StageReport("resource", f"{detail} (sorted-column index)", universe, len(positions)))
        matches = _Matches(np.sort(positions))
    hits = _select(plan, engine, matches)
    stages.append(StageReport("select", _order_text(plan), len(matches.positions), len(hits)))
    return QueryResult(plan, hits, stages, measured_pairs, excluded)


def candidates_under_exec_spec(plan: QueryPlan, resource: ResourceStore) -> np.ndarray:
    """Which models may be candidates of a plan: profiled on its device, able to run at its resolution
    and, when it reads latency at a resolution, measured there (one bool per model)."""
    ok = resource.available(plan.device).copy()
    if plan.excluded:
        ok[list(plan.excluded)] = False
    return ok


def _excluded_among(plan: QueryPlan, engine: QueryEngine, positions: np.ndarray) -> dict[str, str]:
    """The plan's excluded models among `positions` (candidates profiled on the device), by id."""
    if not plan.excluded:  # the common case: no resolution asked, or every model runs at it
        return {}
    among = np.zeros(len(engine.ids), dtype=bool)
    among[positions] = True
    if plan.reference_pos is not None:
        among[plan.reference_pos] = False
    return {engine.ids[i]: plan.excluded[i] for i in sorted(plan.excluded) if among[i]}


def _exec_spec_stage(plan: QueryPlan, excluded: dict[str, str], kept: int) -> StageReport:
    """The stage line naming the models the query's resolution left out, and why."""
    detail = f"runs at resolution {plan.spec.resolution}"
    if excluded:
        shown = ", ".join(f"{m} ({why})" for m, why in list(excluded.items())[:5])
        more = f" and {len(excluded) - 5} more" if len(excluded) > 5 else ""
        detail += f"; left out {shown}{more}"
    return StageReport("exec-spec", detail, kept + len(excluded), kept)


_REFINE_BATCH = 8


def _refine(plan: QueryPlan, engine: QueryEngine, m: _Matches) -> tuple[_Matches, int, int]:
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
    batch_size = min(_REFINE_BATCH, plan.limit) if by_key else _REFINE_BATCH
    while True:
        ambiguous = _ambiguous(plan, engine, m.positions, upper, lower, fixed)
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
    refined = _Matches(m.positions, m.entries, upper, lower, provenance, measured)
    return refined.take(upper <= within), spent, len(ambiguous)


def _ambiguous(
    plan: QueryPlan,
    engine: QueryEngine,
    positions: np.ndarray,
    upper: np.ndarray,
    lower: np.ndarray,
    fixed: np.ndarray,
) -> np.ndarray:
    """Indices of the unmeasured candidates whose measurement could change the answer, most promising first."""
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
        return found[np.lexsort((rank[found], lower[found]))]
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
    return found[np.lexsort((rank[found], lower[found], keys[found]))]


def _batch_text(plan: QueryPlan) -> str:
    text = f", batch {plan.spec.batch_size}" if plan.spec.batch_size is not None else ""
    return text + (f", resolution {plan.spec.resolution}" if plan.spec.resolution is not None else "")


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
    positions = matches.positions
    semantic_ran = matches.upper is not None
    upper = matches.upper if semantic_ran else np.ones(len(positions))
    rank = engine.name_rank[positions]
    if plan.order_key.startswith("utility:"):
        utility = _UTILITIES[plan.order_key.removeprefix("utility:")]
        hits = [_hit(plan, engine, matches, i) for i in range(len(positions))]
        scored = sorted(
            zip(hits, upper, rank, strict=True),
            key=lambda t: (-utility.function(t[0]) if plan.descending else utility.function(t[0]), t[1], t[2]),
        )
        chosen = [h for h, _, _ in scored]
        return chosen[: plan.limit] if plan.limit is not None else chosen
    if plan.order_key == SIMILARITY:
        keys = upper if not plan.descending else -upper
        in_list_order = semantic_ran and not matches.measured and not plan.descending  # rows are sorted
        order = np.arange(len(positions)) if in_list_order else np.lexsort((rank, keys))
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
    return [_hit(plan, engine, matches, int(i)) for i in order]


def _hit(plan: QueryPlan, engine: QueryEngine, matches: _Matches, i: int) -> Hit:
    resource = engine.resource
    position = int(matches.positions[i])
    figures = resource_figures(resource, position, plan.device)
    if matches.upper is None:
        lower, upper, provenance, empirical = 0.0, 1.0, NO_RELATION, None
    else:
        lower, upper = float(matches.lower[i]), float(matches.upper[i])
        provenance = PROVENANCE[int(matches.provenance[i])]
        empirical = matches.measured.get(position)
        if empirical is None:
            empirical = engine.semantic.empirical.get((plan.reference_pos, position))
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
    ok = candidates_under_exec_spec(plan, resource)
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
