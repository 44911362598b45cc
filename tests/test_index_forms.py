"""The two forms a query engine reads — the measured graph searched per query and candidate lists read from the
asset's table — give the same candidates and bounds up to any threshold."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sommelier_bench.query_scale import hub_repository
from sommelier_core.index.candidate_lists import CandidateLists


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 1000), within=st.sampled_from([0.02, 0.05, 0.1]))
def test_a_search_stopped_at_the_threshold_equals_the_lists_cut_there(seed, within):
    repo, _ = hub_repository(120, largest_group=60, seed=seed, ceiling=0.1)
    store = repo.semantic
    graph = store.freeze(compact=False)
    lists = CandidateLists.from_frame(store.to_frame(), store.ids)
    for reference in range(len(store.ids)):
        searched = graph.reference_row(reference, within)
        listed = lists.reference_row(reference, within)
        keep = listed.upper <= within
        assert searched.positions.tolist() == listed.positions[keep].tolist()
        np.testing.assert_allclose(searched.upper, listed.upper[keep], atol=1e-12)
        np.testing.assert_allclose(searched.lower, listed.lower[keep], atol=1e-12)
        assert searched.provenance.tolist() == listed.provenance[keep].tolist()


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
