"""Peer choice with group pivots: every model of a compatible group is compared with the group's first models.

`choose_peers` returns the group's pivots (the first models of the pool, which lists the group earliest
first) and random peers for the rest of its `k`. The pivots give every pair of a group a shared measured
neighbour, which is what lets path bounds rank a group of a thousand models by their difference from a
reference (docs/index.md, "Query quality").
"""

from __future__ import annotations

import pytest

from sommelier_bench.query_quality import run_quality_benchmark
from sommelier_core.equivalence.peers import choose_peers, group_pivots, sample_peers


def test_the_pivots_are_the_first_models_of_the_group_and_come_first():
    pool = [f"m{i}" for i in range(10)]
    peers = choose_peers("m7", pool, k=5, pivots=2)
    assert peers[:2] == ("m0", "m1") and len(peers) == 5 and len(set(peers)) == 5 and "m7" not in peers
    assert group_pivots(pool, 2) == ("m0", "m1")


def test_every_later_model_gets_the_same_pivots_however_large_the_group_grows():
    group = [f"m{i:03d}" for i in range(200)]
    for joined in (3, 50, 199):
        pool = group[:joined]  # the models there when group[joined] arrives
        assert choose_peers(group[joined], pool, k=5, pivots=2)[:2] == ("m000", "m001")


def test_a_pivot_is_compared_with_the_other_pivots_not_with_itself():
    pool = ["a", "b", "c", "d"]
    assert choose_peers("b", pool, k=2, pivots=3) == ("a", "c")
    assert choose_peers("a", ["a"], k=5, pivots=2) == ()


def test_the_random_peers_depend_on_the_pool_contents_not_its_order_after_the_pivots():
    pool = [f"m{i}" for i in range(30)]
    shuffled = pool[:2] + list(reversed(pool[2:]))
    assert choose_peers("x", pool, k=5, pivots=2, seed=4) == choose_peers("x", shuffled, k=5, pivots=2, seed=4)


def test_without_pivots_the_choice_is_sample_peers():
    pool = [f"m{i}" for i in range(30)]
    assert choose_peers("m3", pool, k=5, pivots=0, seed=1) == sample_peers("m3", pool, k=5, seed=1)


def test_more_pivots_than_peers_keeps_k_and_a_negative_count_is_refused():
    assert choose_peers("x", ["a", "b", "c"], k=1, pivots=3) == ("a",)
    with pytest.raises(ValueError, match="pivot count must be ≥ 0, got -1"):
        group_pivots(["a"], -1)


def test_every_pair_of_a_group_inserted_one_by_one_shares_a_pivot_or_is_measured():
    group = [f"m{i:02d}" for i in range(40)]
    measured: dict[str, set[str]] = {m: set() for m in group}
    for i, model in enumerate(group):
        for peer in choose_peers(model, group[:i], k=4, pivots=2):
            measured[model].add(peer)
            measured[peer].add(model)
    for a in group:
        for b in group:
            if a < b:
                assert b in measured[a] or measured[a] & measured[b] & {"m00", "m01"}, (a, b)


def test_pivots_let_refinement_find_the_closest_models_of_a_large_group_of_independent_noise():
    # One group of 150 label-vector models, each its own relabelling noise (d(a, b) ≈ f_a + f_b); a budget
    # of 16 pairs per query. Random peers leave the best candidates unranked; two pivots rank them.
    common = dict(repositories=1, models=150, group_size=150, inputs=2000, graded=False, refine_budget=16)
    with_pivots = run_quality_benchmark(pivots=2, references=25, **common)["refined"]
    random_only = run_quality_benchmark(pivots=0, references=25, **common)["refined"]
    assert with_pivots["top_answer_is_ideal"] >= 0.98
    assert with_pivots["top_answer_is_ideal"] > random_only["top_answer_is_ideal"]
    assert with_pivots["answers_beyond_threshold_empirically"] == 0
