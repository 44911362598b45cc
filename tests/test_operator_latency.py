"""Per-operator latency tables and latency estimates: profiling, keys, interpolation, critical path, import."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import onnx
import polars as pl
import pytest
from onnx import TensorProto, helper, numpy_helper

from sommelier_core.profiling import (
    OperatorLatencyTable,
    ProfiledModel,
    UnknownOperatorTable,
    UnprofilableModel,
    build_operator_table,
    estimate_latency,
    execution_graph,
    import_operator_table,
    imported_operator_tables,
    memory_profile,
    profile_device,
    profile_operators,
    static_profile,
)
from sommelier_core.profiling.estimate import critical_path_ms
from sommelier_core.profiling.executed_nodes import ExecutedNode, ExecutionGraph
from sommelier_core.profiling.operators import PARALLEL, SEQUENTIAL


def _conv_model(path: Path, channels: int = 8, size: int = 16) -> Path:
    """x (N, 3, S, S) → Conv 3x3 → Relu → residual branch (Conv 1x1) and Add → GlobalAveragePool; dynamic batch."""
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal((channels, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((channels, channels, 1, 1)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w2"], ["b"], name="conv2"),
        helper.make_node("Add", ["r", "b"], ["s"], name="add"),
        helper.make_node("GlobalAveragePool", ["s"], ["y"], name="pool"),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", channels, 1, 1])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def conv_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ops")
    return {
        "small": _conv_model(root / "small.onnx", 8, 16),
        "wide": _conv_model(root / "wide.onnx", 32, 16),
        "large": _conv_model(root / "large.onnx", 8, 64),
    }


def _node(name, op, key, work, inputs=(), outputs=(), op_class=None, kind="macs") -> ExecutedNode:
    return ExecutedNode(name, op, key, op_class or f"{op}|", kind, float(work), tuple(inputs), tuple(outputs))


def _table(rows: list[tuple[ExecutedNode, float]], mode: str = SEQUENTIAL, run_us=0.0, node_us=0.0):
    entries = pl.DataFrame(
        {
            "key": [n.key for n, _ in rows],
            "op": [n.op for n, _ in rows],
            "op_class": [n.op_class for n, _ in rows],
            "work_kind": [n.work_kind for n, _ in rows],
            "work": [n.work for n, _ in rows],
            "time_us": [t for _, t in rows],
            "count": [1] * len(rows),
            "models": ["m"] * len(rows),
        }
    )
    table = OperatorLatencyTable("dev", entries, mode, "all", 1, run_us, node_us)
    return OperatorLatencyTable.from_frame(table.to_frame())


def test_profiled_nodes_are_the_executed_ones_keyed_by_op_shapes_and_attributes(conv_paths):
    profile = profile_operators(conv_paths["small"], batch_size=2, runs=3, warmup=1, threads=1)
    nodes = profile.graph.nodes
    assert len(profile.node_us) == len(nodes) > 0
    assert all(us >= 0 for us in profile.node_us)
    assert profile.run_ms > 0 and profile.threads == 1 and profile.runs == 3
    convs = [n for n in nodes if n.op.endswith("Conv")]
    assert convs, [n.op for n in nodes]
    # shapes at batch 2 are in the key; the first conv's work = numel(Y) · C_in · 3 · 3 as executed
    # (the NCHWc layout pads output channels to its block size, so at least the 8 declared ones)
    first = next(n for n in convs if "2x3x16x16" in n.key)
    channels = int(first.key.split("|out=")[1].split("x")[1])
    assert channels >= 8 and first.work_kind == "macs" and first.work == 2 * channels * 16 * 16 * 3 * 9
    assert "kernel=[3 3]" in first.op_class and "group=dense" in first.op_class
    # ORT fuses Relu into the conv (FusedConv or NCHWc conv with activation): no Relu node runs
    assert not any(n.op == "Relu" for n in nodes)
    # edges come from the optimized graph: every node but the first reads a tensor some node produced
    produced = {t for n in nodes for t in n.outputs}
    assert all(any(t in produced for t in n.inputs) for n in nodes[1:])


def test_unnamed_nodes_keep_their_attributes_and_edges(tmp_path):
    # two unnamed pooling branches of x, summed: the profiler names them, the saved optimized graph does not
    nodes = [
        helper.make_node("MaxPool", ["x"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["x"], ["b"], kernel_shape=[5, 5], pads=[2, 2, 2, 2]),
        helper.make_node("Add", ["a", "b"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "unnamed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "unnamed.onnx"))
    executed = {n.op: n for n in profile_operators(tmp_path / "unnamed.onnx", runs=2, threads=1).graph.nodes}
    assert set(executed) == {"MaxPool", "AveragePool", "Add"}
    assert "kernel_shape=[3 3]" in executed["MaxPool"].key
    assert "kernel_shape=[5 5]" in executed["AveragePool"].key
    assert executed["Add"].inputs == ("a", "b")
    assert executed["MaxPool"].outputs == ("a",)
    assert onnx.load(str(tmp_path / "unnamed.onnx")).graph.node[0].name == ""  # the user's file is untouched


def test_estimate_of_a_model_in_the_table_uses_exact_keys_plus_the_fitted_overhead(conv_paths):
    profiled = [
        ProfiledModel(name, profile_operators(path, runs=3, warmup=1, threads=1)) for name, path in conv_paths.items()
    ]
    table = build_operator_table("cpu", profiled)
    assert table.run_overhead_us >= 0  # the per-node term may be negative (profiler cost inside tiny kernels)
    assert table.execution_mode == SEQUENTIAL
    for item in profiled:
        graph = item.operators.graph
        estimate = estimate_latency(graph, table)
        assert estimate.exact_nodes == len(graph.nodes) and estimate.interpolated_nodes == 0
        exact = dict(zip(table.entries["key"].to_list(), table.entries["time_us"].to_list(), strict=True))
        b = table.node_overhead_us
        node_us = [exact[n.key] + b if b >= 0 else max(exact[n.key] + b, 0.1 * exact[n.key]) for n in graph.nodes]
        assert estimate.serial_ms == pytest.approx(sum(node_us) / 1000)
        assert estimate.latency_ms == pytest.approx(estimate.serial_ms + table.run_overhead_us / 1000)
        assert estimate.critical_path_ms <= estimate.serial_ms + 1e-12


def test_unseen_shapes_are_interpolated_by_macs_in_log_log_space_and_scaled_beyond_the_range():
    small = _node("a", "Conv", "conv-100", 100, op_class="Conv|k3")
    large = _node("b", "Conv", "conv-10000", 10_000, op_class="Conv|k3")
    table = _table([(small, 10.0), (large, 1000.0)])
    between = _node("c", "Conv", "conv-1000", 1000, op_class="Conv|k3")
    beyond = _node("d", "Conv", "conv-100000", 100_000, op_class="Conv|k3")
    # log-log between (100, 10) and (10000, 1000): 1000 MACs → 100 µs
    assert estimate_latency(ExecutionGraph(1, "all", (between,)), table).serial_ms == pytest.approx(0.1)
    # beyond the range: the nearest point scaled by work^slope (fitted slope 1 here) → 10 000 µs
    estimate = estimate_latency(ExecutionGraph(1, "all", (beyond,)), table)
    assert estimate.serial_ms == pytest.approx(10.0) and estimate.interpolated_nodes == 1


def test_a_class_without_entries_falls_back_to_the_op_type_then_to_every_op_of_its_kind():
    known = _node("a", "Conv", "conv-a", 1000, op_class="Conv|k3")
    other_class = _node("b", "Conv", "conv-b", 2000, op_class="Conv|k5")
    elementwise = _node("e", "Add", "add-a", 500, op_class="Add|", kind="elements")
    unknown_op = _node("m", "Mystery", "mystery", 1000, op_class="Mystery|", kind="elements")
    table = _table([(known, 50.0), (elementwise, 5.0)])
    assert estimate_latency(ExecutionGraph(1, "all", (other_class,)), table).serial_ms == pytest.approx(0.1)
    assert estimate_latency(ExecutionGraph(1, "all", (unknown_op,)), table).serial_ms == pytest.approx(0.01)


def test_views_take_the_same_time_at_any_size():
    reshape = _node("r", "Reshape", "reshape-small", 100, op_class="Reshape|", kind="elements")
    table = _table([(reshape, 2.0)])
    huge = _node("h", "Reshape", "reshape-huge", 10**8, op_class="Reshape|", kind="elements")
    assert estimate_latency(ExecutionGraph(1, "all", (huge,)), table).serial_ms == pytest.approx(0.002)


def test_critical_path_sums_along_sequences_and_takes_the_max_across_branches():
    # x → a (1 ms) → {b (5 ms), c (2 ms) → d (2 ms)} → e (1 ms): critical 1 + 5 + 1 = 7, serial 11; + 0.5 ms per run
    nodes = (
        _node("a", "Op", "a", 1, ["x"], ["ya"]),
        _node("b", "Op", "b", 1, ["ya"], ["yb"]),
        _node("c", "Op", "c", 1, ["ya"], ["yc"]),
        _node("d", "Op", "d", 1, ["yc"], ["yd"]),
        _node("e", "Op", "e", 1, ["yb", "yd"], ["y"]),
    )
    graph = ExecutionGraph(1, "all", nodes)
    assert critical_path_ms(graph, [1, 5, 2, 2, 1]) == 7
    times = [(n, t * 1000.0) for n, t in zip(nodes, [1, 5, 2, 2, 1], strict=True)]
    parallel = estimate_latency(graph, _table(times, PARALLEL, run_us=500.0))
    sequential = estimate_latency(graph, _table(times, SEQUENTIAL, run_us=500.0))
    assert (parallel.latency_ms, sequential.latency_ms) == (pytest.approx(7.5), pytest.approx(11.5))
    assert parallel.critical_path_ms == sequential.critical_path_ms == pytest.approx(7)


def test_a_device_can_be_described_by_an_imported_table_alone(tmp_path, conv_paths):
    profiled = [ProfiledModel("small", profile_operators(conv_paths["small"], runs=2, warmup=1, threads=1))]
    exported = tmp_path / "cpu.parquet"
    build_operator_table("cpu", profiled).write(exported)
    devices = tmp_path / "devices"
    imported = import_operator_table(exported, "edge-cpu", devices)
    assert imported.device == "edge-cpu"
    assert [t.device for t in imported_operator_tables(devices)] == ["edge-cpu"]
    # estimating needs only the model's executed graph (one host pass), not the device
    graph = execution_graph(conv_paths["wide"])
    estimate = estimate_latency(graph, imported_operator_tables(devices)[0])
    assert estimate.device == "edge-cpu" and estimate.latency_ms > 0 and estimate.interpolated_nodes > 0
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(UnknownOperatorTable):
        import_operator_table(tmp_path / "junk.parquet", "junk", devices)
    with pytest.raises(ValueError, match="plain name"):
        import_operator_table(exported, "../escape", devices)
    # a file copied into the devices folder by hand that is not a table is left out, named, not fatal
    (devices / "broken.parquet").write_bytes(b"not parquet")
    with pytest.warns(UserWarning, match="device 'broken' left out"):
        assert [t.device for t in imported_operator_tables(devices)] == ["edge-cpu"]


def test_device_profile_measures_and_profiles_every_exec_spec_batch_size(conv_paths):
    profile = profile_device(conv_paths["small"], "m", batch_sizes=(1, 4), repeats=3, profile_runs=2, warmup=1)
    assert [lat.batch_size for lat in profile.latency] == [1, 4]
    assert [ops.graph.batch_size for ops in profile.operators] == [1, 4]
    assert all(0 < lat.median_ms <= lat.p90_ms for lat in profile.latency)
    assert profile.seconds > 0


def test_peak_memory_grows_with_batch_size_and_resolution(tmp_path):
    # x (N, 3, H, W) → Conv 3→4 3x3 pad 1 → y: x and y live together; 4-byte floats
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        "dyn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    points = memory_profile(model, batch_sizes=(1, 8), resolutions=(16, 32))
    by_setting = {(p.batch_size, p.resolution): p for p in points}
    for (batch, res), point in by_setting.items():
        assert point.peak_activation_bytes == batch * (3 + 4) * res * res * 4
        assert point.memory_bytes == point.weight_bytes + point.peak_activation_bytes == 108 * 4 + 28 * batch * res**2
        assert point.macs == batch * 4 * res * res * 27
    static = helper.make_model(
        helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])],
            "static",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    assert [p.memory_bytes for p in memory_profile(static, (1, 2))] == [2 * 192 * 4, 4 * 192 * 4]
    with pytest.raises(UnprofilableModel, match="no symbolic spatial dimension"):
        memory_profile(static, (1,), (32,))
    assert static_profile(static, 2).peak_activation_bytes == 4 * 192 * 4
    # a setting already profiled (the exec-spec's batch sizes) is taken as given, not profiled again
    at2 = static_profile(static, 2)
    (reused,) = memory_profile(static, (2,), known=[at2])
    assert (reused.memory_bytes, reused.macs) == (at2.memory_bytes, at2.macs)
    fake = dataclasses.replace(at2, peak_activation_bytes=1)
    assert [p.peak_activation_bytes for p in memory_profile(static, (1, 2), known=[fake])] == [2 * 192 * 4, 1]


def test_interpolation_is_monotone_in_work_within_a_class():
    nodes = [_node(str(w), "Conv", f"c{w}", w, op_class="Conv|k3") for w in (10, 100, 1000)]
    table = _table([(n, t) for n, t in zip(nodes, [1.0, 3.0, 40.0], strict=True)])
    works = [10, 30, 100, 300, 1000, 3000]
    times = [
        estimate_latency(
            ExecutionGraph(1, "all", (_node("q", "Conv", f"q{w}", w, op_class="Conv|k3"),)), table
        ).serial_ms
        for w in works
    ]
    assert times == sorted(times) and all(math.isfinite(t) for t in times)


def test_calibration_graphs_add_table_entries_but_not_overhead_evidence(tmp_path, conv_paths):
    from sommelier_core.profiling.calibration_sweep import calibration_models

    paths = calibration_models(tmp_path / "calibration")
    assert len(paths) > 1000 and all(p.exists() for p in paths)
    assert calibration_models(tmp_path / "calibration") == paths  # seeded: the same graphs, cached by name
    names = {p.stem.split("_")[0] for p in paths}
    assert {"conv", "gemm", "matmul", "attention", "softmax", "lrn", "transpose", "shape"} <= names
    sample = [next(p for p in paths if p.stem.startswith(prefix)) for prefix in ("conv_depthwise", "gemm", "softmax")]
    calibration = [ProfiledModel(p.stem, profile_operators(p, runs=2, warmup=1, threads=1)) for p in sample]
    models = [ProfiledModel(n, profile_operators(p, runs=2, warmup=1, threads=1)) for n, p in conv_paths.items()]
    plain = build_operator_table("cpu", models)
    swept = build_operator_table("cpu", models, calibration=calibration)
    assert swept.entries.height > plain.entries.height
    assert (swept.run_overhead_us, swept.node_overhead_us) == (plain.run_overhead_us, plain.node_overhead_us)


def test_cli_profile_estimates_from_a_table_without_profiling_the_operators(tmp_path, conv_paths, capsys):
    import json

    from sommelier_cli.main import main

    table_path = tmp_path / "lab.parquet"
    profiled = [ProfiledModel("small", profile_operators(conv_paths["small"], runs=2, warmup=1, threads=1))]
    build_operator_table("cpu", profiled).write(table_path)
    assert main(["profile", str(conv_paths["wide"]), "--estimate", str(table_path), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert "operators" not in payload
    expected = estimate_latency(execution_graph(conv_paths["wide"]), OperatorLatencyTable.read(table_path))
    assert payload["estimated_latency_ms"] == {"lab": pytest.approx(expected.latency_ms)}
