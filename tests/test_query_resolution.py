"""Queries at an input RESOLUTION: memory, MACs and FLOPs of the reference and the candidates are taken at
the query's (batch, resolution); fixed-resolution models run only at their own; latency is never read at a
resolution it was not measured at.

The index is built by the real code path from small ONNX models made here: ONNX shape inference
(`static_profile`, `memory_profile`) → `build_resource_index` → parquet → `load_index` → `query`.
Only the latencies and the semantic bounds are written by hand (they are not what is under test).

Models (3-channel images; convs 3×3, padding 1, no bias; float32; peak activations computed as the graph's
live tensors, batch N):

- R   dynamic H = W, conv 3→8, global average pool.   weights 8·27·4 = 864 B;  peak (3 + 8)·4·r²·N = 44 r² N B
- X   dynamic, conv 3→4, pool, MatMul 4×256.           weights 4·27·4 + 4·256·4 = 4 528 B;  peak 28 r² N B
- F16 fixed 16×16, conv 3→2, pool.                      profile at 16 only
- F32 fixed 32×32, conv 3→2, pool.                      profile at 32 only
- V   fixed (N, 64) feature vector, MatMul 64×4.         no spatial size: runs at no RESOLUTION

Dynamic models are profiled (static profile, latency) at resolution 16 and their memory at 16 and 32.
`memory <= 80%` of R: at 16, R = 864 + 44·256 = 12 128 B → 9 702.4 B, X = 4 528 + 28·256 = 11 696 B fails;
at 32, R = 864 + 44·1 024 = 45 920 B → 36 736 B, X = 4 528 + 28·1 024 = 33 200 B passes.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import polars as pl
import pytest
from onnx import TensorProto, helper, numpy_helper

from sommelier_core.index.resource import InputResolution, ModelProfile, build_resource_index
from sommelier_core.index.semantic import SEMANTIC_INDEX_SCHEMA
from sommelier_core.profiling import (
    LatencyProfile,
    has_dynamic_resolution,
    memory_profile,
    native_resolution,
    shapes_at_resolution,
    static_profile,
)
from sommelier_core.querying.api import Index, load_index, query, run_query
from sommelier_core.querying.language import QueryError

DYNAMIC_AT = 16  # the resolution dynamic models' static profile and latency are taken at
MEMORY_RESOLUTIONS = (16, 32)
BATCH_SIZES = (1, 8)
LATENCY_MS = {"R": 1.0, "X": 0.6, "F16": 0.3, "F32": 0.4, "V": 0.2}


def _image_model(name: str, out_channels: int, spatial: tuple, head: int = 0) -> onnx.ModelProto:
    """conv 3→out_channels (3×3, pad 1, no bias) → global average pool → flatten [→ MatMul out×head]."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(size=(out_channels, 3, 3, 3)).astype(np.float32), "w")]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c"], ["p"]),
        helper.make_node("Flatten", ["p"], ["y" if not head else "f"]),
    ]
    out = out_channels
    if head:
        weights.append(numpy_helper.from_array(rng.normal(size=(out_channels, head)).astype(np.float32), "h"))
        nodes.append(helper.make_node("MatMul", ["f", "h"], ["y"]))
        out = head
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, *spatial])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", out])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _vector_model() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((64, 4), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "V",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _models() -> dict[str, onnx.ModelProto]:
    return {
        "R": _image_model("R", 8, ("H", "W")),
        "X": _image_model("X", 4, ("H", "W"), head=256),
        "F16": _image_model("F16", 2, (16, 16)),
        "F32": _image_model("F32", 2, (32, 32)),
        "V": _vector_model(),
    }


def _profile(model_id: str, model: onnx.ModelProto, recorded: bool = True) -> ModelProfile:
    """What the `model_profile` asset records, with dynamic models taken at `DYNAMIC_AT`."""
    dynamic = has_dynamic_resolution(model)
    if dynamic:
        at = {k: v for k, v in shapes_at_resolution(model, DYNAMIC_AT).items()}
        by_batch = tuple(static_profile(model, b, {k: (b, *v[1:]) for k, v in at.items()}) for b in BATCH_SIZES)
        memory = tuple(memory_profile(model, BATCH_SIZES, MEMORY_RESOLUTIONS))
        resolution = InputResolution(DYNAMIC_AT, True)
    else:
        by_batch = tuple(static_profile(model, b) for b in BATCH_SIZES)
        memory = tuple(memory_profile(model, BATCH_SIZES, known=by_batch))
        resolution = InputResolution(native_resolution(model), False)
    ms = LATENCY_MS[model_id]
    latency = tuple(LatencyProfile("cpu", b, ms * b, ms * b, 5, 1) for b in BATCH_SIZES)
    return ModelProfile(
        model_id,
        model_id,
        f"/store/{model_id}.onnx",
        by_batch[0],
        latency,
        by_batch,
        memory,
        resolution if recorded else None,
    )


def _semantic() -> pl.DataFrame:
    """R's candidate list: every other model within 1 % (the bounds are not what is tested here)."""
    rows = []
    for ref in _models():
        for i, cand in enumerate(c for c in _models() if c != ref):
            rows.append(
                {
                    "reference_id": ref,
                    "reference_fingerprint": ref,
                    "candidate_id": cand,
                    "candidate_fingerprint": cand,
                    "kind": "disagreement",
                    "empirical": None,
                    "lower": 0.0,
                    "upper": 0.002 * (i + 1),
                    "equivalence": 1 - 0.002 * (i + 1),
                    "provenance": "measured",
                    "hops": 1,
                    "n": 500,
                }
            )
    return pl.DataFrame(rows, schema=SEMANTIC_INDEX_SCHEMA)


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> Index:
    """The index as a store holds it: both tables written to parquet and read back by `load_index`."""
    directory = tmp_path_factory.mktemp("index")
    resource = build_resource_index([_profile(m, model) for m, model in _models().items()])
    resource.write_parquet(directory / "resource_index.parquet")
    _semantic().write_parquet(directory / "semantic_index.parquet")
    return load_index(directory)


def _ids(hits) -> list[str]:
    return sorted(h.model_id for h in hits)


def test_native_resolution_is_the_square_spatial_size_of_the_input():
    models = _models()
    assert [native_resolution(models[m]) for m in ("F16", "F32", "V")] == [16, 32, None]
    assert native_resolution(models["R"]) is None and has_dynamic_resolution(models["R"])
    assert not has_dynamic_resolution(models["F16"])
    nhwc = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 224, 224, 3])
    signal = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 40])
    for vi, expected in ((nhwc, 224), (signal, 40)):
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [vi], [vi])
        assert native_resolution(helper.make_model(graph)) == expected


def test_the_index_records_each_models_resolution_and_memory_at_the_other_resolutions(index):
    rows = {r["model_id"]: r for r in index.resource.filter(pl.col("batch_size") == 1).to_dicts()}
    assert {m: (r["resolution"], r["dynamic_resolution"]) for m, r in rows.items()} == {
        "R": (16, True),
        "X": (16, True),
        "F16": (16, False),
        "F32": (32, False),
        "V": (None, False),
    }
    # R at its own 16: 864 + 44·256; its point at 32: 864 + 44·1 024 (MACs 8·27·1 024 = 221 184)
    assert rows["R"]["memory_bytes"] == 864 + 44 * 256
    assert rows["R"]["memory_by_resolution"] == [
        {"resolution": 32, "weight_bytes": 864, "peak_activation_bytes": 44 * 1024, "macs": 8 * 27 * 1024}
    ]
    assert rows["F16"]["memory_by_resolution"] == []


def test_memory_budget_is_evaluated_at_the_query_resolution(index):
    at_16 = run_query("FIND MODELS LIKE 'R' WITHIN 5% RESOLUTION 16 WHERE memory <= 80%", index=index, refine=0)
    # X needs 11 696 B > 9 702.4 B; F16 runs at 16 and is small; F32 and V cannot run at 16
    assert _ids(at_16.hits) == ["F16"]
    at_32 = run_query("find models like 'R' within 5% resolution 32 where memory <= 80%", index=index, refine=0)
    assert _ids(at_32.hits) == ["F32", "X"]  # X: 33 200 B ≤ 36 736 B
    x = next(h for h in at_32.hits if h.model_id == "X")
    macs = 4 * 27 * 1024 + 4 * 256  # conv at 32×32 + the MatMul head
    assert (x.profile.memory_bytes, x.profile.macs, x.profile.flops) == (33_200, macs, 2 * macs)
    assert "memory_bytes <= 80% (= 36,736)" in at_32.explain()


def test_batch_and_resolution_together_take_the_memory_point_at_both(index):
    result = run_query("FIND MODELS LIKE 'R' ON cpu BATCH 8 RESOLUTION 32 WHERE memory <= 80%", index=index, refine=0)
    x = next(h for h in result.hits if h.model_id == "X")
    assert x.profile.memory_bytes == 4528 + 28 * 1024 * 8
    assert x.profile.peak_activation_bytes == 28 * 1024 * 8
    assert "resolution 32" in result.explain() and "batch 8" in result.explain()


def test_fixed_resolution_candidates_are_left_out_with_the_reason(index):
    result = run_query("FIND MODELS LIKE 'R' RESOLUTION 32", index=index, refine=0)
    assert _ids(result.hits) == ["F32", "X"]
    assert result.excluded == {
        "F16": "fixed input resolution 16",
        "V": "its input has no square spatial size",
    }
    assert "exec-spec runs at resolution 32; left out F16 (fixed input resolution 16)" in result.explain()
    assert "[4 → 2]" in result.explain()


def test_a_fixed_resolution_reference_keeps_its_profile_at_its_own_resolution(index):
    plain = query("F16", within=0.05, memory=1.0, index=index, refine=0)
    at_own = query("F16", within=0.05, memory=1.0, resolution=16, index=index, refine=0)
    assert [h.model_id for h in at_own] == [h.model_id for h in plain if h.model_id not in ("F32", "V")]


def test_keyword_api_and_language_give_the_same_answer(index):
    text = run_query("FIND MODELS LIKE 'R' WITHIN 5% RESOLUTION 32 WHERE memory <= 80%", index=index, refine=0)
    keywords = query("R", within=0.05, memory=0.8, resolution=32, index=index, refine=0)
    assert [h.model_id for h in keywords] == [h.model_id for h in text.hits]
    with pytest.raises(ValueError, match="resolution must be a positive size"):
        query("R", resolution=0, index=index)


def test_a_reference_that_cannot_run_at_the_resolution_is_an_error_naming_it(index):
    with pytest.raises(QueryError, match="model 'F16' cannot run at resolution 32: fixed input resolution 16"):
        run_query("FIND MODELS LIKE 'F16' RESOLUTION 32", index=index)
    with pytest.raises(QueryError, match="'V' cannot run at resolution 32: its input has no square spatial size"):
        run_query("FIND MODELS LIKE 'V' RESOLUTION 32", index=index)


def test_a_resolution_the_index_never_profiled_is_an_error_saying_what_it_holds(index):
    with pytest.raises(QueryError) as error:
        run_query("FIND MODELS LIKE 'R' RESOLUTION 64", index=index)
    message = str(error.value)
    assert "resolution 64, batch 1" in message
    assert "R (profiled resolutions at batch 1: 16, 32)" in message and "X (" in message
    assert "set memory_resolutions to include 64" in message


def test_latency_is_not_read_at_a_resolution_it_was_not_measured_at(index):
    # X's latency (0.6 ms) was measured at 16: at 32 it is unknown, so `latency < 5 ms` leaves X out, saying why;
    # F32's was measured at its own 32 and counts.
    result = run_query("FIND MODELS LIKE 'R' RESOLUTION 32 WHERE latency < 5 ms", index=index, refine=0)
    assert _ids(result.hits) == ["F32"]
    assert result.excluded["X"] == "latency measured at resolution 16 only, not 32"
    # without a latency condition X stays a candidate, its latency reported unknown (NaN), not the one at 16
    plain = run_query("FIND MODELS LIKE 'R' RESOLUTION 32", index=index, refine=0)
    assert math.isnan(next(h for h in plain.hits if h.model_id == "X").profile.latency_ms)
    ordered = run_query("FIND MODELS LIKE 'R' RESOLUTION 32 ORDER BY latency", index=index, refine=0)
    assert _ids(ordered.hits) == ["F32"]
    with pytest.raises(QueryError, match="relative to the reference 'R', whose latency measured at resolution 16"):
        run_query("FIND MODELS LIKE 'R' RESOLUTION 32 WHERE latency <= 80%", index=index)


def test_resource_only_queries_at_a_resolution_keep_the_models_that_run_there(index):
    result = run_query("FIND MODELS RESOLUTION 16 WHERE memory < 12 KB", index=index, refine=0)
    # at 16: R 12 128 B (fails), X 11 696 B, F16 runs; F32 and V cannot run at 16
    assert _ids(result.hits) == ["F16", "X"]
    assert set(result.excluded) == {"F32", "V"}


def test_an_index_from_before_resolutions_answers_plain_queries_and_refuses_resolutions(tmp_path):
    old = [_profile(m, model, recorded=False) for m, model in _models().items()]
    legacy = build_resource_index(old).drop(["resolution", "dynamic_resolution", "memory_by_resolution"])
    index = Index(_semantic(), legacy)
    assert _ids(query("R", within=0.05, index=index, refine=0)) == ["F16", "F32", "V", "X"]
    with pytest.raises(QueryError, match="'R' cannot run at resolution 16: its profile records no input resolution"):
        run_query("FIND MODELS LIKE 'R' RESOLUTION 16", index=index, refine=0)
    # a table written with the columns, from profiles recorded before: the same answer
    recorded_none = Index(_semantic(), build_resource_index(old))
    with pytest.raises(QueryError, match="re-index"):
        run_query("FIND MODELS LIKE 'R' RESOLUTION 16", index=recorded_none, refine=0)
