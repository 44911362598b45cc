"""Synthesized candidates bounded through their base with the index's directed rules (relative l2 asymmetric).

A synthesized S = N+M carries an upper bound u on d(N→S), measured with its base N as the reference. For a
reference R, d(R→S) is bounded through R's bounds on d(R→N). For relative l2 (normalised by the reference's
scale) the symmetric sum up(R→N) + u is not an upper bound: d(R→S) ≤ d(R→N) + d(N→S)·S(N)/S(R), and S(N)/S(R)
≤ 1 + d(R→N). Collinear outputs reach it: R = (1, 0), N = (1.05, 0), S = (1.155, 0) give d(R→N) = 5 %,
d(N→S) = 10 % and d(R→S) = 15.5 % > 5 % + 10 %.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sommelier_core.equivalence.bound import PairBound
from sommelier_core.index.resource import STATIC_METRICS, ResourceStore
from sommelier_core.index.semantic import SemanticStore
from sommelier_core.querying.engine import QueryEngine
from sommelier_core.querying.execution import execute
from sommelier_core.querying.language import parse_query
from sommelier_core.querying.plan import compile_query
from sommelier_core.querying.synthesized import through_base, with_synthesized
from sommelier_core.segments.candidates import SYNTHESIZED_COLUMNS


def _relative_l2(a: np.ndarray, b: np.ndarray) -> float:
    """d(a→b): mean ‖f_a − f_b‖ over samples, over mean ‖f_a‖."""
    return float(np.mean(np.linalg.norm(a - b, axis=1)) / np.mean(np.linalg.norm(a, axis=1)))


def _engine(kind: str, d_rn: float) -> QueryEngine:
    store = SemanticStore()
    store.insert("N", "N", [], kind)
    store.insert("R", "R", [PairBound("R", "N", kind, d_rn, d_rn, d_rn, 1000, "statistical", 0.05)], kind)
    column = np.array([100, 50], dtype=np.int64)
    resource = ResourceStore(store.ids, ["", ""], {m: column for m in STATIC_METRICS}, {"cpu": column * 1.0})
    return QueryEngine.from_store(store, resource)


def _table(u: float) -> pl.DataFrame:
    row = {
        "synthesized_id": "N+M",
        "base_id": "N",
        "donor_id": "M",
        "estimated_difference": u,
        "estimated_upper": u,
        "measured_difference": u,
        "upper": u,
        "segments": 1,
        "swapped_nodes": "[]",
        "n": 256,
        "epsilon": 0.2,
        "provenance": "synthesized",
    }
    return pl.DataFrame([row], schema=SYNTHESIZED_COLUMNS)


def _synthesized_hit(kind: str):
    engine = _engine(kind, 0.05)
    result = execute(compile_query(parse_query("FIND MODELS LIKE 'R' WITHIN 20%"), engine), engine)
    merged = with_synthesized(result, engine, _table(0.10))
    return next(h for h in merged.hits if h.model_id == "N+M")


def test_relative_l2_bounds_a_synthesized_candidate_by_the_directed_rule_not_a_symmetric_sum():
    r, n, s = (np.array([[x, 0.0]]) for x in (1.0, 1.05, 1.155))
    truth = _relative_l2(r, s)
    assert _relative_l2(r, n) == pytest.approx(0.05) and _relative_l2(n, s) == pytest.approx(0.10)
    assert truth == pytest.approx(0.155) and truth > 0.05 + 0.10  # the symmetric sum would be unsound
    hit = _synthesized_hit("relative_l2")
    assert hit.upper_bound == pytest.approx(0.05 + 0.10 * 1.05) and hit.upper_bound >= truth - 1e-9
    assert hit.lower_bound == 0.0


def test_a_disagreement_rate_keeps_the_triangle_sum():
    hit = _synthesized_hit("disagreement")
    assert hit.upper_bound == pytest.approx(0.15) and hit.lower_bound == 0.0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    scales=st.tuples(*[st.floats(0.2, 5.0)] * 3),
    noise=st.tuples(*[st.floats(0.0, 1.0)] * 3),
    slack=st.tuples(*[st.floats(0.0, 0.2)] * 3),
)
def test_through_base_contains_the_true_difference_and_lower_never_exceeds_upper(seed, scales, noise, slack):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(20, 6))
    r, n, s = (base * k + rng.normal(scale=e, size=base.shape) for k, e in zip(scales, noise, strict=True))
    d_rn, d_ns, d_rs = _relative_l2(r, n), _relative_l2(n, s), _relative_l2(r, s)
    lower_rn, upper_rn = max(d_rn - slack[0], 0.0), d_rn + slack[1]
    lower, upper = through_base(lower_rn, upper_rn, d_ns + slack[2], asymmetric=True)
    assert lower <= upper
    assert lower <= d_rs * (1 + 1e-9) + 1e-12 and d_rs <= upper * (1 + 1e-9) + 1e-12


@settings(max_examples=100, deadline=None)
@given(
    lower_rn=st.floats(0.0, 2.0),
    width=st.floats(0.0, 2.0),
    upper_ns=st.floats(0.0, 2.0),
    asymmetric=st.booleans(),
)
def test_through_base_never_crosses_even_for_contradictory_inputs(lower_rn, width, upper_ns, asymmetric):
    lower, upper = through_base(lower_rn, lower_rn + width, upper_ns, asymmetric)
    assert 0.0 <= lower <= upper
