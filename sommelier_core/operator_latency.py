"""Per-operator latency tables per device, and latency estimates from them (paper §5.3, §5.5).

**What is timed, and how it is keyed.** ONNX Runtime does not execute the ONNX graph as written: at
load time it folds constants, fuses Conv+BatchNorm(+Add)(+Relu), Gemm+activation, LayerNorm, GELU, …
and, on x86 CPUs, rewrites convolutions and pooling into the blocked `com.microsoft.nchwc` layout.
Its profiler reports the nodes that actually run. A table keyed by the *written* ONNX ops would have
to guess how much of a fused node's time belongs to each original op, and the sum over written ops
would not add up to what the session takes. So the table is keyed by the **executed** nodes, profiled
at the same graph-optimization level (`all`, ORT's default) that measured latency uses:

    key = domain-qualified op type | input shapes | output shapes | attributes

e.g. `com.microsoft.nchwc.Conv|in=1x64x56x56,64x64x3x3,64|out=1x64x56x56|activation=Relu,…`. A model's
executed graph (nodes, edges, shapes) comes from one profiled ONNX Runtime pass on the host CPU
(`execution_graph`); this needs no access to the target device, so a device described by an imported
table alone can be estimated. For a non-CPU table the host's CPU fusions are an approximation of what
that device's provider executes (the interpolation below falls back to the base op type).

**Estimate** (`estimate_latency`): every executed node's time comes from the table — the median of
that key's measured times when the key is there, otherwise interpolated within its *op class* (op
type + kernel size, group kind, strides, fused activation) by **MACs** (element count for ops without
MACs) in log–log space between the nearest smaller and larger entries, or scaled from the nearest one
beyond the range; a class with no entry falls back to the op type, then to all ops of the same kind.
Node times are combined over the graph as the **critical path** (sum along sequences, max across
parallel branches), or as their **sum** when the device runs nodes one after another — ONNX Runtime's
default sequential executor does, so the table records the execution mode it was profiled under and
the estimate follows it. A fitted per-run and per-node overhead (session dispatch, input copies; what
the profiler's kernel times leave out) is added.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import polars as pl

from sommelier_core.errors import SommelierError
from sommelier_core.profile import LatencyProfile, UnknownDevice, _random_feeds, available_devices, measure_latency

OPTIMIZATION_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
"""Graph-optimization levels by name; measured latency and tables use `all` (ORT's default)."""

SEQUENTIAL = "sequential"
PARALLEL = "parallel"

OPERATOR_TABLE_SCHEMA: dict[str, pl.DataType] = {
    "device": pl.Utf8(),
    "key": pl.Utf8(),
    "op": pl.Utf8(),
    "op_class": pl.Utf8(),
    "work_kind": pl.Utf8(),
    "work": pl.Float64(),
    "time_us": pl.Float64(),
    "count": pl.Int64(),
    "models": pl.Utf8(),
    "execution_mode": pl.Utf8(),
    "optimization_level": pl.Utf8(),
    "threads": pl.Int64(),
    "run_overhead_us": pl.Float64(),
    "node_overhead_us": pl.Float64(),
}
"""One row per executed-node key; the device-wide constants are repeated on every row so one parquet file
is the whole table (importable on another machine)."""

_CONV_OPS = frozenset({"Conv", "FusedConv", "ConvInteger", "NhwcConv", "NhwcFusedConv"})
_VIEW_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
"""Ops ONNX Runtime runs without copying: their time does not grow with the tensor."""
_MATMUL_OPS = frozenset({"MatMul", "FusedMatMul", "MatMulInteger", "QLinearMatMul", "Gemm", "FusedGemm"})


class UnknownOperatorTable(SommelierError, ValueError):
    """A table file that is not an operator latency table, or a device with no table."""


@dataclass(frozen=True)
class ExecutedNode:
    """One node ONNX Runtime executes (after its graph optimizations), with what the table keys it by."""

    name: str
    op: str
    """Domain-qualified op type (`com.microsoft.nchwc.Conv`; plain `Gemm` in the default domain)."""
    key: str
    """op | input shapes | output shapes | attributes: the table's exact key."""
    op_class: str
    """op + shape-independent attributes (kernel, group kind, strides, activation): the interpolation class."""
    work_kind: str
    """`macs` for ops with a MAC rule, else `elements` (input + output elements)."""
    work: float
    """MACs, or elements moved, of one execution: what unseen shapes are interpolated by."""
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class ExecutionGraph:
    """The nodes ONNX Runtime runs for a model at one batch size, in execution order, with their edges."""

    batch_size: int
    optimization_level: str
    nodes: tuple[ExecutedNode, ...]


@dataclass(frozen=True)
class OperatorProfile:
    """Per-node kernel times of a model on a device from ONNX Runtime's profiler (median over runs)."""

    device: str
    graph: ExecutionGraph
    node_us: tuple[float, ...]
    """Median kernel time of each node of `graph.nodes`, in microseconds."""
    runs: int
    threads: int
    run_ms: float
    """Median `model_run` time the profiler recorded for the same runs (kernels + framework overhead)."""

    @property
    def kernel_ms(self) -> float:
        """Sum of the nodes' median kernel times, in milliseconds."""
        return float(sum(self.node_us)) / 1000.0


@dataclass(frozen=True)
class LatencyEstimate:
    """A latency predicted from a device's operator table (not measured)."""

    device: str
    batch_size: int
    latency_ms: float
    """The estimate: overhead + sum of node times (sequential devices) or + the critical path (parallel)."""
    serial_ms: float
    """Sum of the estimated node times (no overhead)."""
    critical_path_ms: float
    """Longest path through the graph by estimated node times (no overhead)."""
    exact_nodes: int
    """Nodes whose key is in the table."""
    interpolated_nodes: int
    """Nodes interpolated by MACs / elements within their op class or a coarser one."""


@dataclass(frozen=True)
class OperatorLatencyTable:
    """A device described by its per-operator latency table (`entries`, schema `OPERATOR_TABLE_SCHEMA`)."""

    device: str
    entries: pl.DataFrame
    execution_mode: str
    optimization_level: str
    threads: int
    run_overhead_us: float
    node_overhead_us: float

    @cached_property
    def lookup(self) -> _Lookup:
        """Exact and interpolated node times, indexed once per table."""
        return _Lookup(self)

    def to_frame(self) -> pl.DataFrame:
        """The table as one frame, device constants repeated per row (what is stored and imported)."""
        return self.entries.with_columns(
            pl.lit(self.device).alias("device"),
            pl.lit(self.execution_mode).alias("execution_mode"),
            pl.lit(self.optimization_level).alias("optimization_level"),
            pl.lit(self.threads, dtype=pl.Int64).alias("threads"),
            pl.lit(self.run_overhead_us).alias("run_overhead_us"),
            pl.lit(self.node_overhead_us).alias("node_overhead_us"),
        ).select(list(OPERATOR_TABLE_SCHEMA))

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, device: str | None = None) -> OperatorLatencyTable:
        """A table from its stored frame; `device` renames it (an imported table names a new device)."""
        missing = set(OPERATOR_TABLE_SCHEMA) - set(frame.columns)
        if missing or frame.height == 0:
            why = f"missing columns {', '.join(sorted(missing))}" if missing else "no rows"
            raise UnknownOperatorTable(f"not an operator latency table: {why}")
        first = frame.row(0, named=True)
        return cls(
            device=device or first["device"],
            entries=frame.select(list(OPERATOR_TABLE_SCHEMA)),
            execution_mode=first["execution_mode"],
            optimization_level=first["optimization_level"],
            threads=int(first["threads"]),
            run_overhead_us=float(first["run_overhead_us"]),
            node_overhead_us=float(first["node_overhead_us"]),
        )

    def write(self, path: Path) -> None:
        """Store the table as parquet (the form `read`/`sommelier device import` take)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        self.to_frame().write_parquet(tmp)
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path, device: str | None = None) -> OperatorLatencyTable:
        """A table from a parquet file written by `write`."""
        try:
            frame = pl.read_parquet(path)
        except Exception as error:  # polars raises several error types for non-parquet files
            raise UnknownOperatorTable(f"{path}: not a parquet operator latency table ({error})") from error
        return cls.from_frame(frame, device)


# -- profiling ---------------------------------------------------------------------------------


def profile_operators(
    onnx_path: Path,
    device: str = "cpu",
    batch_size: int = 1,
    runs: int = 10,
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
    if runs < 1:
        raise ValueError(f"runs must be ≥ 1, got {runs}")
    with tempfile.TemporaryDirectory(prefix="sommelier-ops-") as tmp:
        options = _session_options(Path(tmp), threads, optimization_level)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
        session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=providers)
        feeds = _random_feeds(session, batch_size, input_shapes or {}, np.random.default_rng(seed), str(onnx_path))
        for _ in range(warmup):
            session.run(None, feeds)
        for _ in range(runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
        optimized = onnx.load(str(Path(tmp) / "optimized.onnx"), load_external_data=False)
    node_events = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    per_run = len(node_events) // (warmup + runs) if warmup + runs else 0
    timed = node_events[warmup * per_run :] if per_run else node_events
    graph = _graph_from_events(timed[:per_run] if per_run else timed, optimized, batch_size, optimization_level)
    durations: dict[str, list[float]] = defaultdict(list)
    for event in timed:
        durations[event["name"].removesuffix("_kernel_time")].append(float(event["dur"]))
    node_us = tuple(float(np.median(durations[node.name])) if durations[node.name] else 0.0 for node in graph.nodes)
    run_events = [float(e["dur"]) for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    run_ms = float(np.median(run_events[warmup:] or run_events or [0.0])) / 1000.0
    return OperatorProfile(device, graph, node_us, runs, threads or _default_threads(), run_ms)


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
    import os

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
        args = event.get("args", {})
        proto = by_name.get(name)
        op_type = args.get("op_name", proto.op_type if proto is not None else "?")
        domain = proto.domain if proto is not None else ""
        op = f"{domain}.{op_type}" if domain not in ("", "ai.onnx") else op_type
        inputs = [_shape_of(item) for item in args.get("input_type_shape", [])]
        outputs = [_shape_of(item) for item in args.get("output_type_shape", [])]
        attributes = _attributes(proto) if proto is not None else {}
        work_kind, work = _work(op_type, inputs, outputs, attributes)
        nodes.append(
            ExecutedNode(
                name=name,
                op=op,
                key=f"{op}|in={_shapes_text(inputs)}|out={_shapes_text(outputs)}|{_attributes_text(attributes)}",
                op_class=_op_class(op, op_type, inputs, attributes),
                work_kind=work_kind,
                work=work,
                inputs=tuple(proto.input) if proto is not None else (),
                outputs=tuple(proto.output) if proto is not None else (),
            )
        )
    return ExecutionGraph(batch_size, optimization_level, tuple(nodes))


def _shape_of(item: dict) -> tuple[int, ...]:
    return tuple(int(d) for d in next(iter(item.values()), []))


def _shapes_text(shapes: list[tuple[int, ...]]) -> str:
    return ",".join("x".join(str(d) for d in shape) or "scalar" for shape in shapes)


def _attributes(node: onnx.NodeProto) -> dict[str, object]:
    values: dict[str, object] = {}
    for attribute in node.attribute:
        if attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS, onnx.AttributeProto.TENSOR):
            continue
        value = onnx.helper.get_attribute_value(attribute)
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        elif isinstance(value, list):
            value = tuple(v.decode(errors="replace") if isinstance(v, bytes) else v for v in value)
        values[attribute.name] = value
    return dict(sorted(values.items()))


def _attributes_text(attributes: Mapping[str, object]) -> str:
    return ",".join(f"{k}={_value_text(v)}" for k, v in attributes.items())


def _value_text(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + " ".join(_value_text(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _op_class(op: str, op_type: str, inputs: list[tuple[int, ...]], attributes: Mapping[str, object]) -> str:
    """Op type + the attributes that do not scale with tensor sizes: nodes whose time grows with MACs alike."""
    if op_type in _CONV_OPS and len(inputs) >= 2 and len(inputs[0]) >= 3:
        kernel = attributes.get("kernel_shape") or inputs[1][2:]
        group = int(attributes.get("group", 1))  # type: ignore[call-overload]
        channels = inputs[0][1]
        kind = "dense" if group == 1 else ("depthwise" if group == channels else "grouped")
        parts = [
            f"kernel={_value_text(tuple(kernel))}",
            f"group={kind}",
            f"strides={_value_text(tuple(attributes.get('strides', ())))}",  # type: ignore[arg-type]
            f"activation={attributes.get('activation', '')}",
            f"sum={len(inputs) > 3}",
        ]
        return f"{op}|" + ",".join(parts)
    if op_type in _MATMUL_OPS:
        return f"{op}|activation={attributes.get('activation', '')},bias={len(inputs) > 2}"
    shape_free = {k: v for k, v in attributes.items() if k not in ("pads", "axes", "perm", "shape", "split")}
    return f"{op}|{_attributes_text(shape_free)}"


def _work(
    op_type: str, inputs: list[tuple[int, ...]], outputs: list[tuple[int, ...]], attributes: Mapping[str, object]
) -> tuple[str, float]:
    """MACs of the executed node when it has a MAC rule (as in `profile.static_profile`), else elements moved."""
    out = math.prod(outputs[0]) if outputs else 0
    if op_type in _CONV_OPS and len(inputs) >= 2 and inputs[1]:
        return "macs", float(out * math.prod(inputs[1][1:]))
    if op_type == "QLinearConv" and len(inputs) >= 4:
        return "macs", float(out * math.prod(inputs[3][1:]))
    if op_type == "ConvTranspose" and len(inputs) >= 2:
        return "macs", float(math.prod(inputs[0]) * math.prod(inputs[1][1:]))
    if op_type in _MATMUL_OPS and inputs and inputs[0]:
        a = inputs[0]
        inner = a[0] if op_type in ("Gemm", "FusedGemm") and attributes.get("transA", 0) else a[-1]
        return "macs", float(out * inner)
    return "elements", float(sum(math.prod(s) for s in inputs) + sum(math.prod(s) for s in outputs))


# -- tables ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfiledModel:
    """One model's contribution to a table: its operator profile at one batch size."""

    model_id: str
    operators: OperatorProfile
    measured_ms: float | None = None
    """Latency measured without the profiler at the same batch size; the overhead fit prefers it."""


@dataclass(frozen=True)
class DeviceProfile:
    """A model on one device: measured latency and operator profile per batch size of the exec-spec.

    The record of the `device_profile` asset (one partition per model × device).
    """

    model_id: str
    device: str
    latency: tuple[LatencyProfile, ...]
    """Measured `session.run` latency (median, p90, repeats, threads), one per batch size."""
    operators: tuple[OperatorProfile, ...]
    """Per-node kernel times and the executed graph, one per batch size (same order as `latency`)."""
    seconds: float
    """Wall time this profile took (measuring and profiling)."""


def profile_device(
    onnx_path: Path,
    model_id: str,
    device: str = "cpu",
    batch_sizes: Sequence[int] = (1,),
    repeats: int = 30,
    profile_runs: int = 10,
    warmup: int = 5,
    threads: int | None = None,
    seed: int = 0,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> DeviceProfile:
    """Measure latency (warm-up, median and p90 of `repeats`) and profile every operator, per batch size."""
    started = time.perf_counter()
    latency, operators = [], []
    for batch_size in batch_sizes:
        latency.append(
            measure_latency(
                onnx_path, device, batch_size, warmup, repeats, threads=threads, seed=seed, input_shapes=input_shapes
            )
        )
        operators.append(
            profile_operators(
                onnx_path, device, batch_size, profile_runs, warmup, threads, seed=seed, input_shapes=input_shapes
            )
        )
    return DeviceProfile(model_id, device, tuple(latency), tuple(operators), time.perf_counter() - started)


def build_operator_table(
    device: str, profiled: Sequence[ProfiledModel], execution_mode: str = SEQUENTIAL
) -> OperatorLatencyTable:
    """A device's table from profiled models: median time per executed-node key, and the fitted overheads.

    Overheads: measured latency (or, without one, the profiler's own run time) − the sum of kernel
    times = run overhead + node overhead × nodes, fitted by least squares over the models (both
    clamped at ≥ 0); they cover session dispatch and input/output handling that kernel times leave out.
    """
    if not profiled:
        raise ValueError(f"no profiled models to build the {device} table from")
    times: dict[str, list[float]] = defaultdict(list)
    meta: dict[str, ExecutedNode] = {}
    models: dict[str, set[str]] = defaultdict(set)
    for item in profiled:
        for node, us in zip(item.operators.graph.nodes, item.operators.node_us, strict=True):
            times[node.key].append(us)
            meta.setdefault(node.key, node)
            models[node.key].add(item.model_id)
    keys = sorted(times)
    entries = pl.DataFrame(
        {
            "device": [device] * len(keys),
            "key": keys,
            "op": [meta[k].op for k in keys],
            "op_class": [meta[k].op_class for k in keys],
            "work_kind": [meta[k].work_kind for k in keys],
            "work": [meta[k].work for k in keys],
            "time_us": [float(np.median(times[k])) for k in keys],
            "count": [len(times[k]) for k in keys],
            "models": [",".join(sorted(models[k])) for k in keys],
        }
    )
    residual = np.array(
        [
            (item.measured_ms if item.measured_ms is not None else item.operators.run_ms) * 1000.0
            - sum(item.operators.node_us)
            for item in profiled
        ]
    )
    n_nodes = np.array([len(item.operators.graph.nodes) for item in profiled], dtype=float)
    run_us, node_us = _fit_overhead(residual, n_nodes)
    threads = profiled[0].operators.threads
    levels = {item.operators.graph.optimization_level for item in profiled}
    table = OperatorLatencyTable(device, entries, execution_mode, ",".join(sorted(levels)), threads, run_us, node_us)
    return OperatorLatencyTable.from_frame(table.to_frame())


def _fit_overhead(residual_us: np.ndarray, n_nodes: np.ndarray) -> tuple[float, float]:
    """Non-negative (a, b) with residual ≈ a + b·nodes, robust to one noisy model (median-based when few)."""
    if len(residual_us) < 3 or np.ptp(n_nodes) == 0:
        return max(float(np.median(residual_us)), 0.0), 0.0
    b, a = np.polyfit(n_nodes, residual_us, 1)
    if b < 0:
        return max(float(np.median(residual_us)), 0.0), 0.0
    if a < 0:
        return 0.0, max(float(np.median(residual_us / n_nodes)), 0.0)
    return float(a), float(b)


# -- estimates ---------------------------------------------------------------------------------


class _Lookup:
    """Exact and interpolated node times from one table."""

    def __init__(self, table: OperatorLatencyTable) -> None:
        entries = table.entries
        self.exact = dict(zip(entries["key"].to_list(), entries["time_us"].to_list(), strict=True))
        self.levels: list[dict[str, tuple[np.ndarray, np.ndarray]]] = []
        for column in ("op_class", "op", "work_kind"):
            grouped: dict[str, list[tuple[float, float]]] = defaultdict(list)
            for group, kind, work, us in zip(
                entries[column].to_list(),
                entries["work_kind"].to_list(),
                entries["work"].to_list(),
                entries["time_us"].to_list(),
                strict=True,
            ):
                if work > 0 and us > 0:
                    grouped[f"{group}#{kind}"].append((work, us))
            level = {}
            for group, points in grouped.items():
                by_work: dict[float, list[float]] = defaultdict(list)
                for work, us in points:
                    by_work[work].append(us)
                works = np.array(sorted(by_work))
                level[group] = (works, np.array([float(np.median(by_work[w])) for w in works]))
            self.levels.append(level)

    def time_us(self, node: ExecutedNode) -> tuple[float, bool]:
        """The node's time and whether it was an exact hit."""
        if node.key in self.exact:
            return self.exact[node.key], True
        for group, level in zip((node.op_class, node.op, node.work_kind), self.levels, strict=True):
            found = level.get(f"{group}#{node.work_kind}")
            if found is not None:
                view = node.op.rsplit(".", 1)[-1] in _VIEW_OPS and group != node.work_kind
                return _interpolate(found[0], found[1], node.work, view), False
        return 0.0, False


def _interpolate(works: np.ndarray, times: np.ndarray, work: float, view: bool = False) -> float:
    """Time at `work` from (work, time) points: log–log linear between neighbours, scaled beyond the range.

    Beyond the range the nearest point is scaled by work^slope, the slope fitted over the points (clipped
    to [0, 1]); with one point the time is proportional to work, except for views (Reshape, …), which
    copy nothing and take the same time at any size.
    """
    if view:
        return float(np.median(times))
    if work <= 0:
        return float(times[0])
    if len(works) == 1:
        return float(times[0] * work / works[0])
    log_w, log_t = np.log(works), np.log(times)
    x = math.log(work)
    if log_w[0] <= x <= log_w[-1]:
        return float(math.exp(np.interp(x, log_w, log_t)))
    slope = float(np.clip(np.polyfit(log_w, log_t, 1)[0], 0.0, 1.0))
    edge = 0 if x < log_w[0] else -1
    return float(times[edge] * math.exp(slope * (x - log_w[edge])))


def estimate_latency(graph: ExecutionGraph, table: OperatorLatencyTable) -> LatencyEstimate:
    """A model's latency on the table's device, from its executed graph (see the module docstring)."""
    lookup = table.lookup
    node_ms = []
    exact = 0
    for node in graph.nodes:
        us, hit = lookup.time_us(node)
        exact += hit
        node_ms.append(us / 1000.0)
    serial = float(sum(node_ms))
    critical = critical_path_ms(graph, node_ms)
    body = critical if table.execution_mode == PARALLEL else serial
    overhead = (table.run_overhead_us + table.node_overhead_us * len(graph.nodes)) / 1000.0
    return LatencyEstimate(
        device=table.device,
        batch_size=graph.batch_size,
        latency_ms=body + overhead,
        serial_ms=serial,
        critical_path_ms=critical,
        exact_nodes=exact,
        interpolated_nodes=len(graph.nodes) - exact,
    )


def critical_path_ms(graph: ExecutionGraph, node_ms: Sequence[float]) -> float:
    """Longest path through the executed graph with `node_ms` as node weights (sum along, max across branches).

    Nodes are in execution order, which is topological; a node starts when the last of its inputs'
    producers is done.
    """
    finish: dict[str, float] = {}
    longest = 0.0
    for node, ms in zip(graph.nodes, node_ms, strict=True):
        start = max((finish.get(name, 0.0) for name in node.inputs if name), default=0.0)
        done = start + ms
        for name in node.outputs:
            if name:
                finish[name] = done
        longest = max(longest, done)
    return longest


def import_operator_table(source: Path, device: str, devices_dir: Path) -> OperatorLatencyTable:
    """Describe a device by a table measured elsewhere: validated, renamed to `device`, kept in `devices_dir`.

    Queries on that device then use estimates from the table (marked as such in their hits).
    """
    if not device or "/" in device or device.startswith("."):
        raise ValueError(f"device name {device!r}: give a plain name such as 'edge-cpu'")
    table = OperatorLatencyTable.read(Path(source), device)
    table.write(devices_dir / f"{device}.parquet")
    return table


def imported_operator_tables(devices_dir: Path) -> list[OperatorLatencyTable]:
    """Every table kept by `import_operator_table`, by device name."""
    if not devices_dir.is_dir():
        return []
    return [OperatorLatencyTable.read(path, path.stem) for path in sorted(devices_dir.glob("*.parquet"))]
