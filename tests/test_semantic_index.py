"""Transitive bounds in the semantic index, checked by hand and against brute force."""

import itertools

import numpy as np
import pytest

from sommelier_bench.oracles import build_semantic_index
from sommelier_core.equivalence.bound import PairBound
from sommelier_core.equivalence.peers import sample_peers


def _pair(a: str, b: str, lo: float, up: float) -> PairBound:
    return PairBound(a, b, "disagreement", (lo + up) / 2, lo, up, 1000, "statistical", 0.05)


def _row(frame, ref, cand):
    rows = frame.filter((frame["reference_id"] == ref) & (frame["candidate_id"] == cand)).to_dicts()
    return rows[0] if rows else None


def test_chain_gives_sum_as_upper_and_difference_as_lower():
    # A–B in [0.01, 0.02], B–C in [0.05, 0.06]: A–C ≤ 0.02 + 0.06 = 0.08 and ≥ 0.05 − 0.02 = 0.03
    frame = build_semantic_index(
        [_pair("A", "B", 0.01, 0.02), _pair("B", "C", 0.05, 0.06)], {"A": "fa", "B": "fb", "C": "fc"}
    )
    ac = _row(frame, "A", "C")
    assert ac["provenance"] == "transitive" and ac["hops"] == 2
    assert ac["upper"] == pytest.approx(0.08) and ac["lower"] == pytest.approx(0.03)
    ab = _row(frame, "B", "A")
    assert ab["provenance"] == "measured" and ab["upper"] == pytest.approx(0.02)


def test_candidate_lists_are_ordered_by_equivalence():
    frame = build_semantic_index(
        [_pair("A", "B", 0.05, 0.06), _pair("A", "C", 0.0, 0.01)], {"A": "1", "B": "2", "C": "3"}
    )
    assert frame.filter(frame["reference_id"] == "A")["candidate_id"].to_list() == ["C", "B"]


def test_same_fingerprint_means_identical_models():
    frame = build_semantic_index([], {"hub/a": "same", "mirror/a": "same"})
    row = _row(frame, "hub/a", "mirror/a")
    assert (row["provenance"], row["upper"]) == ("identical", 0.0)


def test_unconnected_models_get_no_record():
    frame = build_semantic_index([_pair("A", "B", 0.0, 0.01)], {"A": "1", "B": "2", "C": "3"})
    assert _row(frame, "A", "C") is None


def test_bounds_equal_brute_force_and_contain_the_true_distance():
    # Models as random label vectors: disagreement (Hamming fraction) is a true metric.
    rng = np.random.default_rng(0)
    base = rng.integers(0, 10, size=400)
    labels = {}
    for i in range(25):
        flips = rng.random(400) < rng.uniform(0, 0.15)
        labels[f"m{i:02d}"] = np.where(flips, rng.integers(0, 10, size=400), base)
    models = sorted(labels)
    true = {(a, b): float(np.mean(labels[a] != labels[b])) for a in models for b in models}
    pairs = [_pair(m, p, true[m, p], true[m, p]) for m in models for p in sample_peers(m, models, k=3)]
    frame = build_semantic_index(pairs, {m: m for m in models})

    n = len(models)
    w = np.full((n, n), np.inf)
    np.fill_diagonal(w, 0)
    for p in pairs:
        i, j = models.index(p.reference_id), models.index(p.candidate_id)
        w[i, j] = w[j, i] = min(w[i, j], p.upper)
    for k in range(n):  # Floyd–Warshall
        w = np.minimum(w, w[:, [k]] + w[[k], :])
    measured = {(p.reference_id, p.candidate_id): p.upper for p in pairs}
    measured |= {(b, a): u for (a, b), u in measured.items()}
    for a, b in itertools.permutations(models, 2):
        row = _row(frame, a, b)
        i, j = models.index(a), models.index(b)
        assert row["upper"] == pytest.approx(w[i, j])
        hop = [
            max(measured[a, y] - measured[y, b], measured[y, b] - measured[a, y], 0.0)
            for y in models
            if (a, y) in measured and (y, b) in measured
        ]
        assert row["lower"] == pytest.approx(max(hop + [0.0]) if (a, b) not in measured else true[a, b])
        assert row["lower"] - 1e-12 <= true[a, b] <= row["upper"] + 1e-12
