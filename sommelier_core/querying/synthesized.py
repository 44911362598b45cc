"""Synthesized candidates in query answers: model N with segments of M, as hits of provenance `synthesized`.

A synthesized candidate N+M is kept in its own table (`synthesized_index.parquet`), not in the
candidate lists: its segments were chosen by the noise-injection estimate (paper §4.2), and the model
was then measured against its base N on the validation set, giving the statistical upper bound u
(column `upper`) on its difference from N. For a reference R its bounds are
- R = N: [0, u];
- otherwise, through R's bounds on N, by the index's hop rules (`index.bound_rules`, directed):
  upper = compose(up(R→N), u), lower = hop_lower(lo(R→N), up(R→N), 0, u) — for a disagreement rate (a
  metric) up(R→N) + u and max(lo(R→N) − u, 0); for relative l2, normalised by the reference,
  up(R→N) + u·(1 + up(R→N)) and max(lo(R→N) − u·(1 + up(R→N)), 0), since u bounds d(N→S), which is
  normalised by N's scale, not R's. Lower ≤ upper always.
It has N's structure, so it takes N's resource figures (params, MACs, memory; latency measured on N)
and passes a resource predicate exactly when N does. Its `onnx_path` is empty until it is materialized
with `sommelier synthesize N+M --out F.onnx`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import polars as pl

from sommelier_core.index import bound_rules
from sommelier_core.querying.engine import Hit, QueryEngine, resource_figures
from sommelier_core.querying.execution import QueryResult, StageReport
from sommelier_core.querying.filters import candidates_under_exec_spec, satisfies
from sommelier_core.querying.utilities import registered_utility
from sommelier_core.stages import SYNTHESIZED_INDEX, table_file
from sommelier_core.store import read_parquet_checked

SYNTHESIZED_INDEX_FILE = table_file(SYNTHESIZED_INDEX.name)
SYNTHESIZED = "synthesized"


def load_synthesized(index_dir: Path) -> pl.DataFrame | None:
    """The synthesized-candidates table of a store's index, or None when it was not built."""
    path = Path(index_dir) / SYNTHESIZED_INDEX_FILE
    return read_parquet_checked(path) if path.exists() else None


def through_base(
    lower_to_base: float, upper_to_base: float, upper_from_base: float, asymmetric: bool
) -> tuple[float, float]:
    """(lower, upper) on d(R→S) for a synthesized S from bounds on d(R→N) and d(N→S) ≤ `upper_from_base`."""
    upper = bound_rules.compose(upper_to_base, upper_from_base, asymmetric)
    lower = bound_rules.hop_lower(lower_to_base, upper_to_base, 0.0, upper_from_base, asymmetric)
    return min(lower, upper), upper


def synthesized_hits(result: QueryResult, engine: QueryEngine, table: pl.DataFrame) -> list[Hit]:
    """The synthesized candidates that satisfy the result's plan (threshold, resource predicate, device)."""
    plan = result.plan
    if plan.within is None or plan.reference_pos is None or table.is_empty():
        return []
    semantic, resource = engine.semantic, engine.resource
    row = semantic.reference_row(plan.reference_pos, semantic.ceiling)
    to_base = {int(p): (float(lo), float(up)) for p, lo, up in zip(row.positions, row.lower, row.upper, strict=True)}
    on_device = candidates_under_exec_spec(plan, resource)
    hits = []
    for record in table.iter_rows(named=True):
        base = engine.pos.get(record["base_id"])
        if base is None or not on_device[base]:
            continue
        if base == plan.reference_pos:
            lower, upper = 0.0, float(record["upper"])
        elif base in to_base:
            lower, upper = through_base(*to_base[base], float(record["upper"]), semantic.is_asymmetric(base))
        else:
            continue
        if upper > plan.within:
            continue
        if plan.predicate is not None and not bool(satisfies(plan.predicate, np.array([base]), resource)[0]):
            continue
        hits.append(
            Hit(
                model_id=record["synthesized_id"],
                onnx_path="",
                lower_bound=lower,
                upper_bound=upper,
                empirical=None,
                provenance=SYNTHESIZED,
                profile=resource_figures(resource, base, plan.device),
            )
        )
    return hits


def with_synthesized(result: QueryResult, engine: QueryEngine, table: pl.DataFrame | None) -> QueryResult:
    """The result with its synthesized candidates merged in, ranked by the plan's order and cut at its limit."""
    if table is None:
        missing = StageReport(
            "synthesized", "no synthesized-candidates table in this index (run `sommelier index`)", 0, 0
        )
        return dataclasses.replace(result, stages=[*result.stages, missing])
    extra = synthesized_hits(result, engine, table)
    plan = result.plan
    stage = StageReport(
        "synthesized",
        "models N with segments of M (paper §4.2), bounded through N",
        len(table),
        len(extra),
    )
    if not extra:
        return dataclasses.replace(result, stages=[*result.stages, stage])
    merged = [*result.hits, *extra]
    base_of = dict(zip(table["synthesized_id"], table["base_id"], strict=True))

    def base_position(hit: Hit) -> int:
        # from the table, not by splitting the id: a model id may itself contain the separator
        return engine.pos[base_of[hit.model_id] if hit.provenance == SYNTHESIZED else hit.model_id]

    if plan.order_key.startswith("utility:"):
        utility = registered_utility(plan.order_key.removeprefix("utility:"))
        sign = -1.0 if plan.descending else 1.0
        merged.sort(key=lambda h: (sign * utility.function(h), h.upper_bound, h.model_id))
    elif plan.order_key == "similarity":
        sign = -1.0 if plan.descending else 1.0
        merged.sort(key=lambda h: (sign * h.upper_bound, h.model_id))
    else:
        column = engine.resource.column(plan.order_key, plan.order_device)
        sign = -1.0 if plan.descending else 1.0
        merged.sort(key=lambda h: (sign * float(column[base_position(h)]), h.upper_bound, h.model_id))
    if plan.limit is not None:
        merged = merged[: plan.limit]
    return dataclasses.replace(result, hits=merged, stages=[*result.stages, stage])
