"""The saved semantic store is versioned: a file of the earlier schema is refused with one clear error (the index
asset then rebuilds from the pair-bound records), and the current one round-trips its directed measurements."""

from __future__ import annotations

import io

import numpy as np
import pytest

from sommelier_core.equivalence.bound import PairBound
from sommelier_core.index.semantic import SEMANTIC_STORE_SCHEMA, SemanticStore
from sommelier_core.store import StoreFormatError


def _bound(ref: str, cand: str, lo: float, up: float, kind: str) -> PairBound:
    return PairBound(ref, cand, kind, (lo + up) / 2, lo, up, 500, "statistical", 0.05)


def test_a_store_saved_with_the_earlier_schema_is_refused_naming_both_versions(tmp_path):
    path = tmp_path / "semantic_store.npz"
    buffer = io.BytesIO()
    np.savez(buffer, schema=np.array(1), ceiling=np.array(np.inf), ids=np.array(["a"]))
    path.write_bytes(buffer.getvalue())
    with pytest.raises(StoreFormatError, match=f"schema 1; this Sommelier reads {SEMANTIC_STORE_SCHEMA}"):
        SemanticStore.load(path)


def test_directed_measurements_survive_save_and_load(tmp_path):
    fingerprints = {"a": "fa", "b": "fb", "c": "fc"}
    pairs = [
        _bound("a", "b", 0.50, 0.55, "relative_l2"),
        _bound("b", "a", 0.30, 0.36, "relative_l2"),
        _bound("b", "c", 0.01, 0.02, "relative_l2"),
    ]
    original = SemanticStore()
    original.sync(pairs, fingerprints, {m: "relative_l2" for m in fingerprints})
    path = tmp_path / "semantic_store.npz"
    original.save(path)
    loaded = SemanticStore.load(path)
    assert loaded.to_frame().equals(original.to_frame())
    assert SEMANTIC_STORE_SCHEMA == 2
    # Both directions kept apart: a→b and b→a have different bounds.
    by_pair = {(r.candidate_id, r.lower, r.upper) for r in loaded.candidates("a")}
    assert ("b", 0.50, 0.55) in by_pair
    assert [(r.lower, r.upper) for r in loaded.candidates("b") if r.candidate_id == "a"] == [(1 / 3, 0.36)]
