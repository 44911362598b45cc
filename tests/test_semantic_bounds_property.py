"""Directed bounds in the semantic index: each direction of a pair bounded on its own, lower ≤ upper always.

Property tests (hypothesis) draw random repositories of both kinds of measure — disagreement rates of label
vectors (symmetric) and relative l2 of output vectors (normalised by the reference, asymmetric) — measure
random pairs in random directions with bounds around the true difference, and check that the index equals
the dense brute-force oracle of the same rules, that every bound contains the true difference, and that no
lower bound exceeds its upper bound. The hand-checked cases pin the rules of `bound_rules`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sommelier_bench.oracles import build_semantic_index
from sommelier_core.equivalence.bound import PairBound
from sommelier_core.index import bound_rules
from sommelier_core.index.semantic import SemanticStore

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _bound(ref: str, cand: str, lo: float, up: float, kind: str = "relative_l2") -> PairBound:
    return PairBound(ref, cand, kind, (lo + up) / 2, lo, up, 1000, "statistical", 0.05)


def _records(frame) -> dict:
    return {(r["reference_id"], r["candidate_id"]): (r["lower"], r["upper"], r["provenance"]) for r in frame.to_dicts()}


def _truth(kind: str, seed: int, n_models: int) -> dict[tuple[str, str], float]:
    """True differences d(a→b) of random models: label vectors (disagreement) or output vectors (relative l2)."""
    rng = np.random.default_rng(seed)
    models = [f"m{i:02d}" for i in range(n_models)]
    if kind == "disagreement":
        base = rng.integers(0, 10, size=400)
        labels = [np.where(rng.random(400) < rng.uniform(0, 0.3), rng.integers(0, 10, size=400), base) for _ in models]
        return {
            (a, b): float(np.mean(labels[i] != labels[j])) for i, a in enumerate(models) for j, b in enumerate(models)
        }
    base = rng.normal(size=(50, 8))
    # Outputs of different scales (×0.5 … ×2) and noise: the two directions of a pair differ.
    outputs = [base * rng.uniform(0.5, 2.0) + rng.normal(scale=rng.uniform(0, 0.5), size=base.shape) for _ in models]
    scale = [float(np.mean(np.linalg.norm(o, axis=1))) for o in outputs]
    return {
        (a, b): float(np.mean(np.linalg.norm(outputs[i] - outputs[j], axis=1))) / scale[i]
        for i, a in enumerate(models)
        for j, b in enumerate(models)
    }


def _measured(kind: str, truth: dict, models: list[str], seed: int, margin: float) -> list[PairBound]:
    """Random pairs, each measured in a random direction (some both), bounds [d − margin, d + margin]."""
    rng = np.random.default_rng(seed + 1)
    pairs = []
    for i, a in enumerate(models):
        for b in models[:i]:
            if rng.random() < 0.35:
                for ref, cand in [(a, b), (b, a)][: rng.integers(1, 3)] if rng.random() < 0.5 else [(b, a)]:
                    d = truth[(ref, cand)]
                    pairs.append(PairBound(ref, cand, kind, d, max(d - margin, 0.0), d + margin, 1000, "t", 0.05))
    return pairs


@PROPERTY
@given(
    kind=st.sampled_from(["disagreement", "relative_l2"]),
    seed=st.integers(0, 10_000),
    n_models=st.integers(2, 10),
    margin=st.sampled_from([0.0, 0.01, 0.05]),
)
def test_the_index_equals_the_brute_force_oracle_and_every_bound_holds(kind, seed, n_models, margin):
    truth = _truth(kind, seed, n_models)
    models = sorted({a for a, _ in truth})
    pairs = _measured(kind, truth, models, seed, margin)
    store = SemanticStore.from_pairs(pairs, {m: m for m in models}, kinds={m: kind for m in models})
    got, expected = _records(store.to_frame()), _records(build_semantic_index(pairs, {m: m for m in models}))
    assert got.keys() == expected.keys()
    for key, (lo, up, provenance) in got.items():
        assert lo == pytest.approx(expected[key][0], abs=1e-12), key
        assert up == pytest.approx(expected[key][1], abs=1e-12), key
        assert provenance == expected[key][2], key
        assert lo <= up, key
        assert lo - 1e-12 <= truth[key] <= up + 1e-12, (key, truth[key], lo, up)


@PROPERTY
@given(
    kind=st.sampled_from(["disagreement", "relative_l2"]),
    seed=st.integers(0, 10_000),
    n_models=st.integers(2, 9),
    noise=st.floats(0.0, 0.3),
)
def test_lower_never_exceeds_upper_even_when_measurements_contradict(kind, seed, n_models, noise):
    """Bounds drawn at random (a failed confidence bound can contradict the others): still lower ≤ upper."""
    rng = np.random.default_rng(seed)
    models = [f"m{i}" for i in range(n_models)]
    pairs = []
    for i, a in enumerate(models):
        for b in models[:i]:
            if rng.random() < 0.5:
                lo = float(rng.uniform(0, 0.6))
                ref, cand = (a, b) if rng.random() < 0.5 else (b, a)
                pairs.append(_bound(ref, cand, lo, lo + float(rng.uniform(0, noise)), kind))
    store = SemanticStore.from_pairs(pairs, {m: m for m in models})
    for lo, up, _ in _records(store.to_frame()).values():
        assert 0.0 <= lo <= up
    graph = store.freeze()
    for a in range(len(models)):
        row = graph.search(a, math.inf)
        assert np.all(row.lower <= row.upper) and np.all(row.lower >= 0)


def test_each_direction_of_a_relative_l2_pair_keeps_its_own_bounds():
    # d(a→b) ∈ [0.50, 0.55] and d(b→a) ∈ [0.30, 0.36] (b's outputs are smaller than a's).
    store = SemanticStore.from_pairs(
        [_bound("a", "b", 0.50, 0.55), _bound("b", "a", 0.30, 0.36)], {"a": "fa", "b": "fb"}
    )
    records = _records(store.to_frame())
    # a→b: lower max(0.50, 0.30/1.30) = 0.50; upper min(0.55, 0.36/0.64) = 0.55
    assert records[("a", "b")][:2] == pytest.approx((0.50, 0.55))
    # b→a: lower max(0.30, 0.50/1.50) = 0.3333; upper min(0.36, 0.55/0.45) = 0.36
    assert records[("b", "a")][:2] == pytest.approx((1 / 3, 0.36))


def test_a_relative_l2_measurement_bounds_the_other_direction_rescaled():
    # Only b→a measured, [0.2, 0.25]: d(a→b) ∈ [0.2/1.2, 0.25/0.75] = [0.1667, 0.3333], not [0.2, 0.25].
    store = SemanticStore.from_pairs([_bound("b", "a", 0.2, 0.25)], {"a": "fa", "b": "fb"})
    records = _records(store.to_frame())
    assert records[("a", "b")][:2] == pytest.approx((0.2 / 1.2, 0.25 / 0.75))
    assert records[("b", "a")][:2] == pytest.approx((0.2, 0.25))


def test_a_relative_l2_path_composes_with_the_reference_scale():
    # d(a→b) ≤ 0.1 and d(b→c) ≤ 0.2: d(a→c) ≤ 0.1 + 0.2·(1 + 0.1) = 0.32 (a plain sum, 0.3, could fail).
    store = SemanticStore.from_pairs(
        [_bound("a", "b", 0.05, 0.1), _bound("b", "c", 0.15, 0.2)], {"a": "fa", "b": "fb", "c": "fc"}
    )
    lo, up, provenance = _records(store.to_frame())[("a", "c")]
    assert provenance == "transitive" and up == pytest.approx(0.32)
    # lower: max(lo(b→c)·(1 − up(a→b)) − up(a→b), lo(a→b) − up(b→c)·(1 + up(a→b)), 0) = 0.15·0.9 − 0.1 = 0.035
    assert lo == pytest.approx(0.035)


def test_the_issue_case_a_lower_bound_above_the_upper_cannot_happen():
    # A relative-l2 regression pair: r→x small one way (0.79 % upper), the reverse far ([52.63 %, 60 %]): the
    # merged symmetric edge answered "≤ 0.79 % (≥ 52.63 %)". Directed, each side stays an interval.
    store = SemanticStore.from_pairs(
        [_bound("r", "x", 0.0, 0.0079), _bound("x", "r", 0.5263, 0.60)], {"r": "fr", "x": "fx"}
    )
    for lo, up, _ in _records(store.to_frame()).values():
        assert lo <= up


def test_bound_rules_by_hand():
    assert bound_rules.compose(0.1, 0.2, asymmetric=False) == pytest.approx(0.3)
    assert bound_rules.compose(0.1, 0.2, asymmetric=True) == pytest.approx(0.32)
    assert bound_rules.reverse_upper(0.5, asymmetric=True) == pytest.approx(1.0)
    assert bound_rules.reverse_upper(1.0, asymmetric=True) == math.inf
    assert bound_rules.reverse_lower(0.5, asymmetric=True) == pytest.approx(1 / 3)
    assert bound_rules.hop_lower(0.3, 0.35, 0.05, 0.1, asymmetric=False) == pytest.approx(0.2)
    assert bound_rules.hop_lower(0.3, 0.35, 0.05, 0.1, asymmetric=True) == pytest.approx(0.3 - 0.1 * 1.35)
    assert bound_rules.hop_lower(0.3, math.inf, 0.0, 0.0, asymmetric=True) == 0.0  # inf·0: no bound, not NaN
    assert bound_rules.directed_bounds((0.4, 0.5), (0.0, 0.1), asymmetric=False) == (0.1, 0.1)  # contradiction
