"""The two forms a query engine reads — the measured graph searched per query and candidate lists read from the
asset's table — give the same candidates and bounds up to any threshold."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sommelier_bench.query_scale import hub_repository
from sommelier_core.equivalence.bound import PairBound
from sommelier_core.index import measured_graph
from sommelier_core.index.candidate_lists import CandidateLists
from sommelier_core.index.semantic import SemanticStore


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), within=st.sampled_from([0.02, 0.05, 0.1]))
def test_a_search_stopped_at_the_threshold_equals_the_lists_cut_there(seed, within):
    repo, _ = hub_repository(120, largest_group=60, seed=seed, ceiling=0.1)
    store = repo.semantic
    graph = store.freeze(compact=False)
    lists = CandidateLists.from_frame(store.to_frame(), store.ids)
    for reference in range(len(store.ids)):
        searched = graph.reference_row(reference, within)  # a precomputed row (small component) is read whole
        listed = lists.reference_row(reference, within)
        cut, keep = searched.upper <= within, listed.upper <= within
        assert searched.positions[cut].tolist() == listed.positions[keep].tolist()
        np.testing.assert_allclose(searched.upper[cut], listed.upper[keep], atol=1e-12)
        np.testing.assert_allclose(searched.lower[cut], listed.lower[keep], atol=1e-12)
        assert searched.provenance[cut].tolist() == listed.provenance[keep].tolist()
    assert graph.precomputed.any() and not graph.precomputed.all()  # both forms of row were compared


def test_the_compact_graph_rounds_bounds_outward_so_its_hits_are_a_subset_with_looser_bounds():
    repo, _ = hub_repository(300, largest_group=150, seed=3, ceiling=0.1)
    exact, compact = repo.semantic.freeze(compact=False), repo.semantic.freeze()
    assert compact.nbytes < exact.nbytes
    for reference in range(0, 300, 7):
        wide, packed = exact.search(reference, 0.1), compact.search(reference, 0.1)
        exact_upper = dict(zip(wide.positions.tolist(), wide.upper.tolist(), strict=True))
        exact_lower = dict(zip(wide.positions.tolist(), wide.lower.tolist(), strict=True))
        for z, up, lo in zip(packed.positions.tolist(), packed.upper.tolist(), packed.lower.tolist(), strict=True):
            assert z in exact_upper  # a packed path bound is ≥ the exact one, so it is within 10 % there too
            assert exact_upper[z] <= up <= exact_upper[z] + 1e-4
            assert lo <= exact_lower[z] + 1e-12


def test_wide_pivot_rows_searched_in_numpy_give_the_bounds_of_the_entry_by_entry_search(monkeypatch):
    # A group of 300: every model is measured against the group's two pivots, whose rows are wide.
    repo, _ = hub_repository(400, largest_group=300, seed=5, ceiling=0.1)
    graph = repo.semantic.freeze(precompute=0)
    pivots = np.flatnonzero(np.diff(graph.offsets) > measured_graph.WIDE_ROW)
    assert len(pivots) >= 2
    asked = [(r, within) for r in [*pivots.tolist(), *range(0, 400, 9)] for within in (0.05, 0.1)]
    wide = [graph.search(r, within) for r, within in asked]
    monkeypatch.setattr(measured_graph, "WIDE_ROW", 10**9)  # now every row entry by entry
    for (r, within), row in zip(asked, wide, strict=True):
        narrow = graph.search(r, within)
        assert row.positions.tolist() == narrow.positions.tolist(), (r, within)
        assert row.upper.tolist() == narrow.upper.tolist() and row.lower.tolist() == narrow.lower.tolist()
        assert row.provenance.tolist() == narrow.provenance.tolist()
    assert sum(len(row) for row in wide) > 50  # the searches do reach models


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), kind=st.sampled_from(["disagreement", "relative_l2"]), compact=st.booleans())
def test_precomputed_rows_equal_the_search_bit_for_bit(seed, kind, compact):
    # Components of 1–12 models, random pairs measured in random directions (some twice, some twins), bounds
    # around random differences: the rows `pack` stores in numpy must be the rows the search gives.
    rng = np.random.default_rng(seed)
    store = SemanticStore(ceiling=0.3 if compact else math.inf)
    model = 0
    while model < 60:
        size = int(rng.integers(1, 13))
        members = [f"m{model + i:03d}" for i in range(size)]
        for i, m in enumerate(members):
            pairs = []
            for peer in rng.choice(members[:i], size=min(i, 3), replace=False) if i else []:
                ref, cand = (m, str(peer)) if rng.random() < 0.5 else (str(peer), m)
                d = float(rng.uniform(0, 0.2))
                lo, up = max(d - rng.uniform(0, 0.03), 0.0), d + rng.uniform(0, 0.03)
                pairs.append(PairBound(ref, cand, kind, d, lo, up, 100, "t", 0.05))
            twin = i > 0 and rng.random() < 0.1
            store.insert(m, members[i - 1] if twin else m, pairs, kind)
        model += size
    searched = store.freeze(compact=compact, precompute=0)
    stored = store.freeze(compact=compact)
    assert stored.precomputed.all()
    for a in range(len(store.ids)):
        expected, got = searched.search(a, stored.ceiling), stored.search(a, stored.ceiling)
        assert got.positions.tolist() == expected.positions.tolist()
        assert got.upper.tolist() == expected.upper.tolist() and got.lower.tolist() == expected.lower.tolist()
        assert got.provenance.tolist() == expected.provenance.tolist()
