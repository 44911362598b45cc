"""Kernel-class latency predictors: key parsing, features, fitted laws, and their use for unseen operators."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from sommelier_core.profiling import OperatorLatencyTable, cached_calibration_profiles, calibration, estimate_latency
from sommelier_core.profiling.executed_nodes import ExecutedNode, ExecutionGraph
from sommelier_core.profiling.operators import SEQUENTIAL
from sommelier_core.profiling.predictor import OperatorPredictor, _broadcast_run, features, kernel_class, parse_key

DENSE = "com.microsoft.nchwc.Conv|in=1x{c}x{s}x{s},{k}x{c}x3x3,{k}|out=1x{k}x{s}x{s}|activation=Relu,group=1,kernel_shape=[3 3],pads=[1 1 1 1],strides=[1 1]"  # noqa: E501
DEPTHWISE = "com.microsoft.nchwc.Conv|in=1x{c}x{s}x{s},{c}x1x3x3,{c}|out=1x{c}x{s}x{s}|group={c},kernel_shape=[3 3],pads=[1 1 1 1],strides=[1 1]"  # noqa: E501


def _dense(c: int, k: int, s: int) -> tuple[str, float]:
    return DENSE.format(c=c, k=k, s=s), float(k * s * s * c * 9)


def _depthwise(c: int, s: int) -> tuple[str, float]:
    return DEPTHWISE.format(c=c, s=s), float(c * s * s * 9)


def _grid() -> list[tuple[str, float]]:
    return [_dense(c, k, s) for c in (16, 32, 64, 128) for k in (16, 64, 256) for s in (7, 14, 28, 56)]


def test_a_key_is_parsed_into_op_shapes_and_attributes_and_classed_by_kernel():
    key, macs = _dense(64, 128, 56)
    parsed = parse_key(key)
    assert parsed.op_type == "Conv" and parsed.inputs == ((1, 64, 56, 56), (128, 64, 3, 3), (128,))
    assert parsed.outputs == ((1, 128, 56, 56),) and parsed.attributes["strides"] == "[1 1]"
    assert kernel_class(parsed) == "conv-dense-nchwc"
    assert kernel_class(parse_key(_depthwise(32, 14)[0])) == "conv-depthwise-nchwc"
    assert kernel_class(parse_key("Gemm|in=1x2048,1000|out=1x1000|transB=0")) == "matmul"
    assert kernel_class(parse_key("Softmax|in=1x3x197x197|out=1x3x197x197|axis=-1")) == "op:Softmax"
    assert parse_key("conv-100") is None and parse_key("Op|in=axb|out=1|") is None
    name, vector, reference = features(parsed, macs)
    assert name == "conv-dense-nchwc" and reference == macs == 128 * 56 * 56 * 64 * 9
    assert vector[0] == pytest.approx(math.log(macs)) and vector[1] == pytest.approx(math.log(64))


def test_broadcast_run_is_the_stretch_over_which_the_small_operand_stays_constant():
    image = (1, 64, 56, 56)
    assert _broadcast_run((image, (1, 64, 1, 1)), image) == 56 * 56  # per channel
    assert _broadcast_run((image, ()), image) == 64 * 56 * 56  # a scalar
    assert _broadcast_run(((1, 56, 56, 64), (64,)), (1, 56, 56, 64)) == 1  # along the last axis
    assert _broadcast_run((image, image), image) == 64 * 56 * 56  # nothing broadcast


def test_a_known_law_is_recovered_for_shapes_never_seen():
    # dense convs run at 50 GMAC/s (50 000 MACs per µs): time = MACs / 50 000, whatever the shape
    grid = _grid()
    predictor = OperatorPredictor.fit([k for k, _ in grid], [w for _, w in grid], [w / 50_000 for _, w in grid])
    unseen = [_dense(48, 96, 20), _dense(512, 512, 7), _dense(8, 8, 112)]
    predicted = predictor.predict(unseen)
    # 48·96·20²·9 = 16 588 800 MACs → 331.776 µs; beyond the grid (512 channels) it scales with MACs
    assert predicted[0] == pytest.approx(331.776)
    assert predicted == pytest.approx([w / 50_000 for _, w in unseen])
    # a class without enough entries has no forest: None (the table falls back to its interpolation)
    assert predictor.predict([_depthwise(32, 14)]) == [None] and not predictor.covers(_depthwise(32, 14)[0])


def test_each_kernel_class_has_its_own_law():
    dense, depthwise = _grid(), [_depthwise(c, s) for c in (16, 32, 64, 128, 256) for s in (7, 14, 28, 56)]
    keys = [k for k, _ in dense + depthwise]
    works = [w for _, w in dense + depthwise]
    times = [w / 50_000 for _, w in dense] + [w / 2_000 for _, w in depthwise]  # depthwise: 25× less efficient
    predictor = OperatorPredictor.fit(keys, works, times)
    key, macs = _depthwise(96, 20)
    assert predictor.predict([(key, macs)]) == [pytest.approx(macs / 2_000)]


def test_swept_entries_learn_the_offset_to_in_model_speed():
    # the sweep ran every configuration 1.5× slower than the models did where both ran it
    grid = _grid()
    keys = [k for k, _ in grid] * 2
    works = [w for _, w in grid] * 2
    times = [w / 50_000 for _, w in grid] + [1.5 * w / 50_000 for _, w in grid]
    swept = [False] * len(grid) + [True] * len(grid)
    predictor = OperatorPredictor.fit(keys, works, times, swept)
    key, macs = _dense(48, 96, 20)
    assert predictor.predict([(key, macs)])[0] == pytest.approx(macs / 50_000, rel=0.05)


def _table(rows: list[tuple[str, float, float]]) -> OperatorLatencyTable:
    entries = pl.DataFrame(
        {
            "key": [k for k, _, _ in rows],
            "op": ["com.microsoft.nchwc.Conv"] * len(rows),
            "op_class": ["conv"] * len(rows),
            "work_kind": ["macs"] * len(rows),
            "work": [w for _, w, _ in rows],
            "elements": [0.0] * len(rows),
            "time_us": [t for _, _, t in rows],
            "count": [1] * len(rows),
            "models": ["calibration/x"] * len(rows),
        }
    )
    table = OperatorLatencyTable("dev", entries, SEQUENTIAL, "all", 1, 0.0, 0.0)
    return OperatorLatencyTable.from_frame(table.to_frame())


def test_an_unseen_operator_is_estimated_by_the_predictor_and_a_seen_one_exactly():
    grid = _grid()
    table = _table([(k, w, w / 50_000) for k, w in grid[1:]] + [(grid[0][0], grid[0][1], 7.0)])
    key, macs = _dense(48, 96, 20)
    unseen = ExecutedNode("u", "com.microsoft.nchwc.Conv", key, "conv", "macs", macs, (), ())
    seen = ExecutedNode("s", "com.microsoft.nchwc.Conv", grid[0][0], "conv", "macs", grid[0][1], (), ())
    estimate = estimate_latency(ExecutionGraph(1, "all", (unseen, seen)), table)
    assert (estimate.exact_nodes, estimate.interpolated_nodes) == (1, 1)
    assert estimate.serial_ms == pytest.approx((macs / 50_000 + 7.0) / 1000)  # the law + the table's own 7 µs
    # an imported table (written, read back) fits the same predictor
    again = OperatorLatencyTable.from_frame(table.to_frame(), "lab")
    assert estimate_latency(ExecutionGraph(1, "all", (unseen,)), again).serial_ms == pytest.approx(macs / 50_000 / 1000)


def test_calibration_profiles_are_profiled_once_per_device_and_then_read_from_the_cache(tmp_path, monkeypatch):
    from sommelier_core.profiling.calibration_sweep import calibration_models

    paths = calibration_models(tmp_path)
    few = [next(p for p in paths if p.stem.startswith(prefix)) for prefix in ("conv_dense", "gemm")]
    monkeypatch.setattr(calibration, "calibration_models", lambda out_dir: few)
    first, seconds = cached_calibration_profiles(tmp_path, runs=2, threads=1, rounds=2)
    again, cached_seconds = cached_calibration_profiles(tmp_path, runs=2, threads=1, rounds=2)
    assert [p.model_id for p in first] == [f"calibration/{p.stem}" for p in few] == [p.model_id for p in again]
    assert seconds > 0 and cached_seconds == 0.0
    assert [p.operators.node_us for p in again] == [p.operators.node_us for p in first]


def test_the_calibration_graphs_are_regenerated_for_profiling_and_not_kept_only_their_profiles_are(
    tmp_path, monkeypatch
):
    import shutil

    from sommelier_core.profiling.calibration_sweep import SWEEP_VERSION, calibration_models

    paths = calibration_models(tmp_path / "generated")
    few = [next(p for p in paths if p.stem.startswith(prefix)) for prefix in ("conv_dense", "gemm")]
    written: list[Path] = []

    def sweep_into(out_dir: Path) -> list[Path]:  # what the sweep does: write its graphs under out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        written.extend(Path(shutil.copy(p, out_dir / p.name)) for p in few)
        return written[-len(few) :]

    monkeypatch.setattr(calibration, "calibration_models", sweep_into)
    kept = tmp_path / "store" / "calibration"
    profiled, seconds = cached_calibration_profiles(kept, runs=2, threads=1, rounds=1)
    assert [p.model_id for p in profiled] == [f"calibration/{p.stem}" for p in few] and seconds > 0
    assert all(p.is_relative_to(kept) for p in written)  # generated inside the store's calibration folder …
    assert sorted(p.name for p in kept.rglob("*")) == [
        f"profiles-v{SWEEP_VERSION}-cpu-t1-r2x1.json"
    ]  # … only these kept
