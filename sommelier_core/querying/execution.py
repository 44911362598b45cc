"""Running a query plan (paper §5.4) as a pipeline of filters, counting what each stage kept.

    reference → semantic (the reference's candidate list, upper bound ≤ WITHIN)
              → resource (the WHERE tree, relative budgets resolved against the reference)
              → refine (optional: measure the pairs whose transitive bounds leave the answer open)
              → select (ORDER BY, LIMIT)

A semantic query touches only the reference's candidates up to its threshold (`reference_row`: a slice of
precomputed lists, or a search of the measured graph stopped at the threshold); a query without one uses
the resource columns' sorted copies. `sommelier_bench.oracles.brute_force` answers the same plan by scanning everything.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from sommelier_core.index.candidate_lists import PROVENANCE, TRANSITIVE
from sommelier_core.querying.engine import NO_RELATION, Hit, QueryEngine, resource_figures
from sommelier_core.querying.filters import candidates_under_exec_spec, positions_satisfying, satisfies
from sommelier_core.querying.language import SIMILARITY
from sommelier_core.querying.matches import Matches
from sommelier_core.querying.plan import QueryPlan, describe_resolved
from sommelier_core.querying.refinement import refine, will_refine
from sommelier_core.querying.utilities import registered_utility


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
        refining = will_refine(plan, engine)
        # Refining also keeps what a measurement could admit (transitive, lower bound ≤ WITHIN): search further.
        row = semantic.reference_row(plan.reference_pos, semantic.ceiling if refining else plan.within)
        if refining:
            open_ = (row.provenance == TRANSITIVE) & (row.lower <= plan.within) & (row.upper > plan.within)
            keep = np.flatnonzero((row.upper <= plan.within) | open_)
        else:
            keep = np.arange(int(np.count_nonzero(row.upper <= plan.within)))  # sorted ascending: a prefix
        positions = row.positions[keep]
        profiled = on_device[positions]
        excluded = _excluded_among(plan, engine, positions[profiled])
        profiled &= candidate[positions]
        keep = keep[profiled]
        matches = Matches(
            positions[profiled],
            None,
            row.upper[keep],
            row.lower[keep],
            row.provenance[keep],
        )
        detail = f"candidate list of {plan.reference_id}, upper bound ≤ {plan.within:.2%}"
        if refining:
            uncertain = int(np.count_nonzero(matches.upper > plan.within))
            detail += f" (+ {uncertain} uncertain: lower bound ≤ {plan.within:.2%})"
        stages.append(StageReport("semantic", detail, len(row), len(matches.positions) + len(excluded)))
        if plan.spec.resolution is not None:
            stages.append(_exec_spec_stage(plan, excluded, len(matches.positions)))
        if plan.predicate is not None:
            before = len(matches.positions)
            matches = matches.take(satisfies(plan.predicate, matches.positions, resource))
            stages.append(StageReport("resource", describe_resolved(plan.predicate), before, len(matches.positions)))
        if refining:
            before = len(matches.positions)
            matches, measured_pairs, undecided = refine(plan, engine, matches)
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
            positions = positions_satisfying(plan.predicate, resource)
        else:
            positions = np.arange(len(engine.ids))
        positions = positions[candidate[positions]]
        if plan.reference_pos is not None:
            positions = positions[positions != plan.reference_pos]
        detail = describe_resolved(plan.predicate) if plan.predicate is not None else "every model"
        stages.append(StageReport("resource", f"{detail} (sorted-column index)", universe, len(positions)))
        matches = Matches(np.sort(positions))
    hits = _select(plan, engine, matches)
    stages.append(StageReport("select", _order_text(plan), len(matches.positions), len(hits)))
    return QueryResult(plan, hits, stages, measured_pairs, excluded)


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


def _batch_text(plan: QueryPlan) -> str:
    text = f", batch {plan.spec.batch_size}" if plan.spec.batch_size is not None else ""
    return text + (f", resolution {plan.spec.resolution}" if plan.spec.resolution is not None else "")


def _order_text(plan: QueryPlan) -> str:
    key = plan.order_key.removeprefix("utility:")
    if plan.order_device:
        key += f"@{plan.order_device}"
    text = f"ORDER BY {key} {'DESC' if plan.descending else 'ASC'}"
    return text + (f" LIMIT {plan.limit}" if plan.limit is not None else "")


def _select(plan: QueryPlan, engine: QueryEngine, matches: Matches) -> list[Hit]:
    positions = matches.positions
    semantic_ran = matches.upper is not None
    upper = matches.upper if semantic_ran else np.ones(len(positions))
    rank = engine.name_rank[positions]
    if plan.order_key.startswith("utility:"):
        utility = registered_utility(plan.order_key.removeprefix("utility:"))
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


def _hit(plan: QueryPlan, engine: QueryEngine, matches: Matches, i: int) -> Hit:
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
