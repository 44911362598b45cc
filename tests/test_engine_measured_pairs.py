"""`load_engine` over a store's saved measured pairs (`semantic_store.npz`) answers as over the candidate table.

A store of 30 label-vector models in two compatible groups, each model measured against peers; the index
directory holds what the `semantic_index` and `resource_index` assets write (the table of every candidate up
to the ceiling, the saved store, the resource table). Queries read through the measured graph must give the
same hits, bounds and provenance as through the table; large tables switch to the graph by themselves.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from sommelier_core.equivalence.bound import PairBound
from sommelier_core.equivalence.peers import choose_peers
from sommelier_core.index.measured_graph import MeasuredGraph
from sommelier_core.index.resource import RESOURCE_INDEX_SCHEMA
from sommelier_core.index.semantic import SEMANTIC_STORE_FILE, SemanticStore
from sommelier_core.querying import api
from sommelier_core.querying.api import RESOURCE_INDEX_FILE, SEMANTIC_INDEX_FILE, IndexNotBuilt, load_engine, run_query
from sommelier_core.store import write_parquet_atomic

MODELS = [f"zoo/m{i:02d}" for i in range(30)]


def _index_dir(tmp_path):
    rng = np.random.default_rng(5)
    level = rng.uniform(0, 0.06, size=len(MODELS))
    store = SemanticStore()
    groups: dict[int, list[str]] = {}
    for i, model in enumerate(MODELS):
        pool = groups.setdefault(i % 2, [])
        pairs = []
        for peer in choose_peers(model, pool, k=3, pivots=1):
            d = level[i] + level[MODELS.index(peer)]
            pairs.append(
                PairBound(model, peer, "disagreement", d, max(d - 0.004, 0), d + 0.004, 5000, "statistical", 0.05)
            )
        store.insert(model, f"fp{i}", pairs)
        pool.append(model)
    directory = tmp_path / "index"
    store.save(directory / SEMANTIC_STORE_FILE)
    write_parquet_atomic(store.to_frame(), directory / SEMANTIC_INDEX_FILE)
    resource = pl.DataFrame(
        [
            {
                "model_id": m,
                "fingerprint": f"fp{i}",
                "onnx_path": f"/s/{i}.onnx",
                "device": "cpu",
                "batch_size": 1,
                "params": 1000 + i,
                "macs": 500 * (i % 7 + 1),
                "flops": 1000 * (i % 7 + 1),
                "weight_bytes": 4000,
                "peak_activation_bytes": 100,
                "memory_bytes": 4100,
                "latency_ms": 1.0 + i / 10,
                "latency_p90_ms": 1.0 + i / 10,
                "threads": 2,
            }
            for i, m in enumerate(reversed(MODELS))  # another order than the store's: positions are realigned
        ],
        schema=RESOURCE_INDEX_SCHEMA,
    )
    write_parquet_atomic(resource, directory / RESOURCE_INDEX_FILE)
    return directory


QUERIES = [
    "FIND MODELS LIKE '{m}' WITHIN 8%",
    "FIND 2 MODELS LIKE '{m}' WITHIN 10% ORDER BY flops",
    "FIND MODELS LIKE '{m}' WITHIN 12% WHERE latency@cpu < 3 ms ORDER BY similarity",
]


def test_the_measured_pairs_answer_every_query_as_the_candidate_table_does(tmp_path):
    directory = _index_dir(tmp_path)
    graph = load_engine(directory, refine=0, measured_pairs=True)
    table = load_engine(directory, refine=0, measured_pairs=False)
    assert isinstance(graph.semantic, MeasuredGraph) and not isinstance(table.semantic, MeasuredGraph)
    compared = 0
    for model in MODELS:
        for text in QUERIES:
            from_graph = run_query(text.format(m=model), engine=graph).hits
            from_table = run_query(text.format(m=model), engine=table).hits
            assert from_graph == from_table, (model, text)
            compared += len(from_graph)
    assert compared > 50  # the queries do find models


def test_a_large_table_switches_to_the_measured_pairs_and_a_small_one_does_not(tmp_path, monkeypatch):
    directory = _index_dir(tmp_path)
    assert not isinstance(load_engine(directory, refine=0).semantic, MeasuredGraph)
    monkeypatch.setattr(api, "MEASURED_PAIRS_ABOVE_ROWS", 10)
    assert isinstance(load_engine(directory, refine=0).semantic, MeasuredGraph)


def test_asking_for_measured_pairs_a_store_did_not_save_is_a_clear_error(tmp_path):
    directory = _index_dir(tmp_path)
    (directory / SEMANTIC_STORE_FILE).unlink()
    assert not isinstance(load_engine(directory, refine=0).semantic, MeasuredGraph)
    with pytest.raises(IndexNotBuilt, match="no saved measured pairs at .*semantic_store.npz"):
        load_engine(directory, refine=0, measured_pairs=True)
