"""Per-node kernel times of a model on a device, from ONNX Runtime's profiler (paper §5.3, §5.5).

**What is timed.** ONNX Runtime does not execute the ONNX graph as written: at load time it folds
constants, fuses Conv+BatchNorm(+Add)(+Relu), Gemm+activation, LayerNorm, GELU, … and, on x86 CPUs,
rewrites convolutions and pooling into the blocked `com.microsoft.nchwc` layout. Its profiler reports the
nodes that actually run. A table keyed by the *written* ONNX ops would have to guess how much of a fused
node's time belongs to each original op, and the sum over written ops would not add up to what the
session takes. So nodes are profiled as executed (`executed_nodes`), at the same graph-optimization level
(`all`, ORT's default) that measured latency uses.

A model's executed graph (nodes, edges, shapes) comes from one profiled ONNX Runtime pass on the host CPU
(`execution_graph`); this needs no access to the target device, so a device described by an imported
table alone can be estimated. For a non-CPU table the host's CPU fusions are an approximation of what
that device's provider executes (`node_times` falls back to the base op type).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx.external_data_helper import load_external_data_for_model

from sommelier_core import defaults
from sommelier_core.inference import providers_for
from sommelier_core.profiling.executed_nodes import ExecutionGraph, executed_node
from sommelier_core.profiling.feeds import random_feeds
from sommelier_core.profiling.latency import UnknownDevice, available_devices, require_provider

OPTIMIZATION_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
"""Graph-optimization levels by name; measured latency and tables use `all` (ORT's default)."""


SEQUENTIAL = "sequential"
PARALLEL = "parallel"
"""Execution modes: nodes one after another (ONNX Runtime's default executor) or parallel branches at once;
a table records the mode it was profiled under and its estimates follow it."""


@dataclass(frozen=True)
class OperatorProfile:
    """Per-node kernel times of a model on a device from ONNX Runtime's profiler (`_typical_us` over runs)."""

    device: str
    graph: ExecutionGraph
    node_us: tuple[float, ...]
    """Typical kernel time of each node of `graph.nodes` (`_typical_us` over the runs), in microseconds."""
    runs: int
    threads: int
    run_ms: float
    """Median `model_run` time the profiler recorded for the same runs (kernels + framework overhead)."""

    @property
    def kernel_ms(self) -> float:
        """Sum of the nodes' typical kernel times, in milliseconds."""
        return float(sum(self.node_us)) / 1000.0


def profile_operators(
    onnx_path: Path,
    device: str = "cpu",
    batch_size: int = 1,
    runs: int = defaults.PROFILE_RUNS,
    warmup: int = 3,
    threads: int | None = None,
    seed: int = 0,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    optimization_level: str = "all",
) -> OperatorProfile:
    """Kernel time of every executed node over `runs` profiled runs (after `warmup`), with the executed graph.

    The session is configured as `measure_latency`'s (same provider, threads and optimization level),
    with ONNX Runtime's profiler on; the optimized graph it runs is saved (weights left out) to read
    the nodes' attributes and edges.
    """
    if device not in available_devices():
        raise UnknownDevice(f"device {device!r} is not available here; available: {', '.join(available_devices())}")
    if runs < 1 or warmup < 0:
        raise ValueError(f"{onnx_path}: need runs ≥ 1 and warmup ≥ 0 to profile operators, got {runs}, {warmup}")
    with tempfile.TemporaryDirectory(prefix="sommelier-ops-") as tmp:
        options = _session_options(Path(tmp), threads, optimization_level)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        source = _with_node_names(Path(onnx_path), Path(tmp))
        session = ort.InferenceSession(str(source), sess_options=options, providers=providers_for(device))
        require_provider(session, device, str(onnx_path))
        feeds = random_feeds(session, batch_size, input_shapes or {}, np.random.default_rng(seed), str(onnx_path))
        for _ in range(warmup):
            session.run(None, feeds)
        for _ in range(runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
        optimized = onnx.load(str(Path(tmp) / "optimized.onnx"), load_external_data=False)
    node_events = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    per_run = len(node_events) // (warmup + runs)  # ≥ 1 run, so never a division by zero
    timed = node_events[warmup * per_run :] if per_run else node_events
    graph = _graph_from_events(timed[:per_run] if per_run else timed, optimized, batch_size, optimization_level)
    durations: dict[str, list[float]] = defaultdict(list)
    for event in timed:
        durations[event["name"].removesuffix("_kernel_time")].append(float(event["dur"]))
    node_us = tuple(_typical_us(durations[node.name]) for node in graph.nodes)
    run_events = [float(e["dur"]) for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    run_ms = float(np.median(run_events[warmup:] or run_events or [0.0])) / 1000.0
    return OperatorProfile(device, graph, node_us, runs, threads or _default_threads(), run_ms)


def _with_node_names(onnx_path: Path, tmp: Path) -> Path:
    """The model itself when every node has a name; otherwise a copy in `tmp` whose unnamed nodes are named.

    ONNX Runtime's profiler invents names (`Add_2`) for unnamed nodes but the optimized graph it saves keeps
    them unnamed, so their events could not be matched to a node: the keys would lose the attributes and
    the estimate the edges (every branch would be summed as one sequence).
    """
    model = onnx.load(str(onnx_path), load_external_data=False)
    if all(node.name for node in model.graph.node):
        return onnx_path
    load_external_data_for_model(model, str(onnx_path.parent))
    taken = {node.name for node in model.graph.node}
    for index, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{index}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
    named = tmp / "named.onnx"
    onnx.save(model, str(named))
    return named


def _typical_us(durations: list[float]) -> float:
    """Mean of the durations up to their 80th percentile: the profiler counts whole microseconds, so a mean
    resolves sub-microsecond kernels that a median rounds to 0 or 1; the slowest 20 % (preemption) are dropped."""
    if not durations:
        return 0.0
    values = np.asarray(durations, dtype=float)
    kept = values[values <= np.percentile(values, 80)]
    return float(kept.mean() if len(kept) else values.mean())


def execution_graph(
    onnx_path: Path,
    batch_size: int = 1,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    optimization_level: str = "all",
) -> ExecutionGraph:
    """The nodes ONNX Runtime executes for a model on the host CPU, with shapes: what an estimate walks.

    One profiled run on seeded random inputs; no timing is used, so any device's table applies.
    """
    return profile_operators(
        onnx_path, "cpu", batch_size, runs=1, warmup=0, input_shapes=input_shapes, optimization_level=optimization_level
    ).graph


def _default_threads() -> int:
    """What `LatencyProfile.threads` records when ONNX Runtime chose the thread count: the CPU count."""
    return os.cpu_count() or 1


def _session_options(tmp: Path, threads: int | None, optimization_level: str) -> ort.SessionOptions:
    if optimization_level not in OPTIMIZATION_LEVELS:
        raise ValueError(f"optimization level {optimization_level!r}: expected one of {', '.join(OPTIMIZATION_LEVELS)}")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = OPTIMIZATION_LEVELS[optimization_level]
    if threads is not None:
        options.intra_op_num_threads = threads
    options.optimized_model_filepath = str(tmp / "optimized.onnx")
    # Weights go to a side file that is never read back: only attributes and edges are needed.
    options.add_session_config_entry("session.optimized_model_external_initializers_file_name", "weights.bin")
    options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1")
    return options


def _graph_from_events(
    events: list[dict], optimized: onnx.ModelProto, batch_size: int, optimization_level: str
) -> ExecutionGraph:
    by_name = {node.name: node for node in optimized.graph.node if node.name}
    nodes = []
    seen: set[str] = set()
    for event in events:
        name = event["name"].removesuffix("_kernel_time")
        if name in seen:
            continue
        seen.add(name)
        nodes.append(executed_node(name, event.get("args", {}), by_name.get(name)))
    return ExecutionGraph(batch_size, optimization_level, tuple(nodes))
