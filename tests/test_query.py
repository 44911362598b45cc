"""Query semantics on a hand-built index: threshold, relative budgets, ordering, clear errors."""

import polars as pl
import pytest

from sommelier_core.errors import UnknownMetric, UnknownModel
from sommelier_core.index.resource import RESOURCE_INDEX_SCHEMA
from sommelier_core.index.semantic import SEMANTIC_INDEX_SCHEMA
from sommelier_core.querying.api import Index, query


def _index() -> Index:
    resource = pl.DataFrame(
        [
            {
                "model_id": m,
                "fingerprint": m,
                "onnx_path": f"/s/{m}.onnx",
                "device": "cpu",
                "batch_size": 1,
                "params": p,
                "macs": f // 2,
                "flops": f,
                "weight_bytes": 4 * p,
                "peak_activation_bytes": 100,
                "memory_bytes": 4 * p + 100,
                "latency_ms": lat,
                "latency_p90_ms": lat,
                "threads": 2,
            }
            for m, p, f, lat in [
                ("R", 1000, 2000, 1.0),
                ("A", 500, 900, 0.5),
                ("B", 900, 1800, 0.9),
                ("C", 100, 100, 0.1),
            ]
        ],
        schema=RESOURCE_INDEX_SCHEMA,
    )
    semantic = pl.DataFrame(
        [
            {
                "reference_id": "R",
                "reference_fingerprint": "R",
                "candidate_id": c,
                "candidate_fingerprint": c,
                "kind": "disagreement",
                "empirical": None,
                "lower": lo,
                "upper": up,
                "equivalence": 1 - up,
                "provenance": "measured",
                "hops": 1,
                "n": 500,
            }
            for c, lo, up in [("B", 0.0, 0.01), ("A", 0.01, 0.03), ("C", 0.1, 0.2)]
        ],
        schema=SEMANTIC_INDEX_SCHEMA,
    )
    return Index(semantic, resource)


def test_threshold_keeps_candidates_whose_upper_bound_is_within():
    assert [h.model_id for h in query("R", within=0.05, index=_index())] == ["B", "A"]


def test_relative_flops_budget_is_a_fraction_of_the_reference():
    # reference flops 2000: 50 % keeps A (900) and drops B (1800)
    assert [h.model_id for h in query("R", within=0.05, flops=0.5, index=_index())] == ["A"]


def test_memory_budget_and_absolute_latency():
    # reference memory 4100 bytes; 80 % = 3280 keeps A (2100) only; latency < 0.6 ms keeps A too
    assert [h.model_id for h in query("R", within=0.3, memory=0.8, latency_ms=0.6, index=_index())] == ["A", "C"]


def test_order_by_flops_and_limit():
    hits = query("R", within=0.3, order_by="flops", limit=2, index=_index())
    assert [h.model_id for h in hits] == ["C", "A"]


def test_unknown_reference_suggests_close_ids():
    with pytest.raises(UnknownModel, match="did you mean"):
        query("RR", index=_index())


def test_unknown_device_and_ordering_are_clear_errors():
    with pytest.raises(UnknownMetric, match="device 'tpu' has no profiles"):
        query("R", device="tpu", index=_index())
    with pytest.raises(UnknownMetric, match="cannot order by 'beauty'"):
        query("R", order_by="beauty", index=_index())
