"""Synthesized candidates in query answers: bounded through their base, filtered and ranked like real models.

Hand-built index: R measured against N (1 %), N against A (3 %); margins ±0.2 %. Synthesized table:
R+A (base R, estimated upper 2 %), N+A (base N, 1.5 %), A+N (base A, 1 %). Through R's list:
R+A ∈ [0, 2 %], N+A ≤ 1.2 + 1.5 = 2.7 %, A+N ≤ up(R, A) + 1 % (A is transitive at ≈ 4.4 %).
FLOPs: R 100, N 50, A 10.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from sommelier_core.equivalence.bound import PairBound
from sommelier_core.index.resource import STATIC_METRICS, ResourceStore
from sommelier_core.index.semantic import SemanticStore
from sommelier_core.querying.engine import QueryEngine
from sommelier_core.querying.execution import execute
from sommelier_core.querying.language import OrderBy, QuerySpec, parse_query
from sommelier_core.querying.plan import compile_query
from sommelier_core.querying.synthesized import with_synthesized
from sommelier_core.segments.candidates import SYNTHESIZED_COLUMNS

N_SAMPLES = 1000
MARGIN = 0.002


def _bound(a: str, b: str, d: float) -> PairBound:
    return PairBound(a, b, "disagreement", d, d - MARGIN, d + MARGIN, N_SAMPLES, "statistical", 0.05)


def _engine() -> QueryEngine:
    store = SemanticStore()
    store.insert("N", "N", [])
    store.insert("A", "A", [_bound("N", "A", 0.03)])
    store.insert("R", "R", [_bound("R", "N", 0.01)])
    flops = {"R": 100, "N": 50, "A": 10}
    column = np.array([flops[m] for m in store.ids], dtype=np.int64)
    resource = ResourceStore(
        store.ids, ["" for _ in store.ids], {m: column for m in STATIC_METRICS}, {"cpu": column * 1.0}
    )
    return QueryEngine.from_store(store, resource)


def _table() -> pl.DataFrame:
    rows = [("R+A", "R", "A", 0.02), ("N+A", "N", "A", 0.015), ("A+N", "A", "N", 0.01)]
    return pl.DataFrame(
        [
            {
                "synthesized_id": i,
                "base_id": b,
                "donor_id": d,
                "estimated_difference": u / 2,
                "estimated_upper": u,
                "measured_difference": u / 2,
                "upper": u,
                "segments": 1,
                "swapped_nodes": "[]",
                "n": 256,
                "epsilon": 0.05,
                "provenance": "synthesized",
            }
            for i, b, d, u in rows
        ],
        schema=SYNTHESIZED_COLUMNS,
    )


def _ask(text: str):
    engine = _engine()
    spec = parse_query(text)
    return with_synthesized(execute(compile_query(spec, engine), engine), engine, _table())


def test_synthesized_candidates_are_bounded_through_their_base_and_ranked_with_real_models():
    hits = _ask("FIND MODELS LIKE 'R' WITHIN 3% ORDER BY similarity").hits
    assert [h.model_id for h in hits] == ["N", "R+A", "N+A"]
    assert [h.provenance for h in hits][1:] == ["synthesized", "synthesized"]
    assert hits[1].lower_bound == 0 and hits[1].upper_bound == pytest.approx(0.02)
    assert hits[2].upper_bound == pytest.approx(0.012 + 0.015, abs=1e-6)
    assert hits[2].onnx_path == "" and hits[2].profile.flops == 50  # N's figures until materialized


def test_a_wider_threshold_admits_candidates_bounded_through_a_transitive_entry():
    ids = [h.model_id for h in _ask("FIND MODELS LIKE 'R' WITHIN 6%").hits]
    assert ids[:3] == ["N", "R+A", "N+A"] and set(ids[3:]) == {"A", "A+N"}


def test_resource_predicates_and_orderings_apply_through_the_base_model():
    cheap = _ask("FIND MODELS LIKE 'R' WITHIN 3% WHERE flops <= 60%").hits
    assert [h.model_id for h in cheap] == ["N", "N+A"]  # R+A has R's FLOPs (100 %)
    by_flops = _ask("FIND 2 MODELS LIKE 'R' WITHIN 3% ORDER BY flops").hits
    assert [h.model_id for h in by_flops] == ["N", "N+A"]  # same FLOPs: the tighter bound first


def test_without_the_table_or_a_reference_nothing_changes():
    engine = _engine()
    spec = QuerySpec(reference="R", within=0.03, limit=None, where=None, order=OrderBy("similarity"))
    plain = execute(compile_query(spec, engine), engine)
    missing = with_synthesized(plain, engine, None)
    assert missing.hits == plain.hits and "no synthesized-candidates table" in missing.explain()
    resource_only = _ask("FIND MODELS WHERE flops <= 60")
    assert all(h.provenance != "synthesized" for h in resource_only.hits)


def test_a_base_model_whose_id_holds_the_separator_is_ranked_by_its_own_figures():
    store = SemanticStore()
    store.insert("n+v2", "n+v2", [])
    store.insert("A", "A", [_bound("n+v2", "A", 0.03)])
    column = np.array([{"n+v2": 50, "A": 10}[m] for m in store.ids], dtype=np.int64)
    resource = ResourceStore(
        store.ids, ["" for _ in store.ids], {m: column for m in STATIC_METRICS}, {"cpu": column * 1.0}
    )
    engine = QueryEngine.from_store(store, resource)
    table = _table().head(1).with_columns(pl.lit("n+v2+A").alias("synthesized_id"), pl.lit("n+v2").alias("base_id"))
    plan = compile_query(parse_query("FIND MODELS LIKE 'n+v2' WITHIN 5% ORDER BY flops"), engine)
    hits = with_synthesized(execute(plan, engine), engine, table).hits
    assert [(h.model_id, h.profile.flops) for h in hits] == [("A", 10), ("n+v2+A", 50)]
