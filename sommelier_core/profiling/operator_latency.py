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

**Estimate** (`estimate_latency`): every executed node's time comes from the table — the mean of
that key's measured times when the key is there, otherwise from the **kernel-class predictor**
(`latency_predictor`: a forest per kernel class — dense / depthwise / grouped conv, matrix product,
pooling, layout reorder, each other op type — fitted on the table's entries, those of its models and of the
calibration sweep's small graphs (`calibration_sweep`), on features read from the key: MACs, channels,
spatial size, kernel, stride, fused activation, broadcasting, permutation, …). A key whose class has too
few entries for a forest (or that does not parse) is interpolated within its *op class* (op type + kernel
size, group kind, strides, fused activation) by **MACs** (element count for ops without MACs) in log–log
space between the nearest smaller and larger entries, or scaled from the nearest one beyond the range; a
class with no entry falls back to the op type, then to all ops of the same kind.
Node times are combined over the graph as the **critical path** (sum along sequences, max across
parallel branches), or as their **sum** when the device runs nodes one after another — ONNX Runtime's
default sequential executor does, so the table records the execution mode it was profiled under and
the estimate follows it. A fitted per-run and per-node overhead (session dispatch, input copies; what
the profiler's kernel times leave out) is added.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import polars as pl
from onnx.external_data_helper import load_external_data_for_model

from sommelier_core.errors import SommelierError
from sommelier_core.inference import providers_for
from sommelier_core.profiling.calibration_sweep import SWEEP_VERSION, calibration_models
from sommelier_core.profiling.predictor import OperatorPredictor
from sommelier_core.profiling.profile import (
    LatencyProfile,
    ProfiledShapes,
    UnknownDevice,
    available_devices,
    measure_latency,
    random_feeds,
    require_provider,
)

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
    "elements": pl.Float64(),
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

CALIBRATION_PREFIX = "calibration/"
"""Model id prefix of the calibration sweep's graphs in a table's `models` column."""

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
    elements: float = 0.0
    """Elements of every input and output (weights included): the memory-traffic term of the fallback model."""


@dataclass(frozen=True)
class ExecutionGraph:
    """The nodes ONNX Runtime runs for a model at one batch size, in execution order, with their edges."""

    batch_size: int
    optimization_level: str
    nodes: tuple[ExecutedNode, ...]


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


@dataclass(frozen=True)
class LatencyEstimate:
    """A latency predicted from a device's operator table (not measured)."""

    device: str
    batch_size: int
    latency_ms: float
    """The estimate: overhead + sum of node times (sequential devices) or + the critical path (parallel)."""
    serial_ms: float
    """Sum of the estimated node times (with the per-node overhead, without the per-run one)."""
    critical_path_ms: float
    """Longest path through the graph by estimated node times (the same node times as `serial_ms`)."""
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
        return (
            _with_elements(self.entries)
            .with_columns(
                pl.lit(self.device).alias("device"),
                pl.lit(self.execution_mode).alias("execution_mode"),
                pl.lit(self.optimization_level).alias("optimization_level"),
                pl.lit(self.threads, dtype=pl.Int64).alias("threads"),
                pl.lit(self.run_overhead_us).alias("run_overhead_us"),
                pl.lit(self.node_overhead_us).alias("node_overhead_us"),
            )
            .select(list(OPERATOR_TABLE_SCHEMA))
        )

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, device: str | None = None) -> OperatorLatencyTable:
        """A table from its stored frame; `device` renames it (an imported table names a new device)."""
        frame = _with_elements(frame)
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


def _with_elements(frame: pl.DataFrame) -> pl.DataFrame:
    """Tables written before the `elements` column existed: `work` stands in for it."""
    if "elements" not in frame.columns and "work" in frame.columns:
        return frame.with_columns(pl.col("work").alias("elements"))
    return frame


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
                elements=_elements(op_type, inputs, outputs, work),
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


def _elements(op_type: str, inputs: list[tuple[int, ...]], outputs: list[tuple[int, ...]], work: float) -> float:
    """Elements a node reads and writes. The profiler leaves out weights ONNX Runtime has pre-packed (Gemm,
    MatMul), so a matrix product counts A, Y and the K × N weight from its shapes."""
    moved = float(sum(math.prod(x) for x in inputs) + sum(math.prod(x) for x in outputs))
    if op_type in _MATMUL_OPS and inputs and outputs and outputs[0]:
        rows = math.prod(outputs[0][:-1]) or 1
        weight = work / rows  # K × N
        listed = sum(math.prod(x) for x in inputs[1:])
        moved += max(weight - listed, 0.0)
    return moved


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
    onnx_fingerprint: str = ""
    """Fingerprint of the converted ONNX file measured (`Conversion.fingerprint`; empty in profiles from
    before it was recorded): a republished model whose file changed needs profiling again."""


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
    shapes: ProfiledShapes | None = None,
) -> DeviceProfile:
    """Measure latency (warm-up, median and p90 of `repeats`) and profile every operator, per batch size.

    `shapes` are the input shapes the exec-spec profiles the model at (`profile.profiled_shapes`: a model with
    symbolic spatial dims at its resolution), so latency, operator keys and the executed graph estimates walk
    are at the same shapes as its static profile; None: the model's own shapes.
    """
    started = time.perf_counter()
    latency, operators = [], []
    for batch_size in batch_sizes:
        input_shapes = shapes.at_batch(batch_size) if shapes is not None else None
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
    device: str,
    profiled: Sequence[ProfiledModel],
    execution_mode: str = SEQUENTIAL,
    calibration: Sequence[ProfiledModel] = (),
) -> OperatorLatencyTable:
    """A device's table from profiled models: mean time per executed-node key, and the fitted overheads.

    Overheads: measured latency (or, without one, the profiler's own run time) − the sum of kernel
    times = run overhead + node overhead × nodes, fitted by least squares on relative errors over the
    models; they cover session dispatch and input/output handling that kernel times leave out (and, with a
    negative node term, the profiler's own cost inside tiny kernels).
    """
    if not profiled:
        raise ValueError(f"no profiled models to build the {device} table from")
    times: dict[str, list[float]] = defaultdict(list)
    meta: dict[str, ExecutedNode] = {}
    models: dict[str, set[str]] = defaultdict(set)
    for item in [*profiled, *calibration]:  # calibration graphs add entries, not overhead evidence
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
            "elements": [meta[k].elements for k in keys],
            "time_us": [float(np.mean(times[k])) for k in keys],  # mean: sums over repeated blocks stay right
            "count": [len(times[k]) for k in keys],
            "models": [",".join(sorted(models[k])) for k in keys],
        }
    )
    measured = np.array(
        [(item.measured_ms if item.measured_ms is not None else item.operators.run_ms) * 1000.0 for item in profiled]
    )
    residual = measured - np.array([sum(item.operators.node_us) for item in profiled])
    n_nodes = np.array([len(item.operators.graph.nodes) for item in profiled], dtype=float)
    run_us, node_us = _fit_overhead(residual, n_nodes, measured)
    threads = profiled[0].operators.threads
    levels = {item.operators.graph.optimization_level for item in profiled}
    table = OperatorLatencyTable(device, entries, execution_mode, ",".join(sorted(levels)), threads, run_us, node_us)
    return OperatorLatencyTable.from_frame(table.to_frame())


def _fit_overhead(residual_us: np.ndarray, n_nodes: np.ndarray, measured_us: np.ndarray) -> tuple[float, float]:
    """(a ≥ 0, b) with residual ≈ a + b·nodes, fitted on *relative* errors (each model's row divided by its
    latency) so that one large model's noise does not set the overhead of every small one.

    b may be negative: the profiler reports whole microseconds and its own bookkeeping inside each node's
    span, so on sub-microsecond kernels the kernel sum exceeds the unprofiled run.
    """
    weights = 1.0 / np.maximum(measured_us, 1.0)
    if len(residual_us) >= 3 and np.ptp(n_nodes) > 0:
        design = np.column_stack([np.ones_like(n_nodes), n_nodes]) * weights[:, None]
        (a, b), *_ = np.linalg.lstsq(design, residual_us * weights, rcond=None)
        if a >= 0:
            return float(a), float(b)
        return 0.0, float(np.sum(residual_us * n_nodes * weights**2) / np.sum((n_nodes * weights) ** 2))
    return max(float(np.median(residual_us)), 0.0), 0.0


# -- estimates ---------------------------------------------------------------------------------


class _Lookup:
    """Exact, predicted and interpolated node times from one table.

    A key not in the table whose kernel class has a fitted predictor (`times_us`) takes its prediction;
    otherwise, in order of resort (`time_us`):
    1. its op class, when the node's work lies within the class's range: log–log interpolation between the
       nearest smaller and larger entries;
    2. a cost model fitted over its op type (else over every op of its work kind): time = t0 + a·MACs +
       b·elements (non-negative, least squares on relative error), so a matrix product with one row (memory-
       bound) and one with many (compute-bound) are told apart; multiplied by the ratio measured/model of
       the class entry nearest in work (clipped to [¼, 4]) when the node's class has entries. Views (Reshape, …)
       take the median of their entries.
    """

    def __init__(self, table: OperatorLatencyTable) -> None:
        entries = _with_elements(table.entries)
        self.exact = dict(zip(entries["key"].to_list(), entries["time_us"].to_list(), strict=True))
        rows = list(
            zip(
                entries["op_class"].to_list(),
                entries["op"].to_list(),
                entries["work_kind"].to_list(),
                entries["work"].to_list(),
                entries["elements"].to_list(),
                entries["time_us"].to_list(),
                strict=True,
            )
        )
        grouped: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
        for op_class, op, kind, work, elements, us in rows:
            if us > 0:
                for group in (f"class:{op_class}#{kind}", f"op:{op}#{kind}", f"kind:{kind}"):
                    grouped[group].append((work, elements, us))
        self.points = {g: np.array(sorted(p)) for g, p in grouped.items()}
        self.models: dict[str, np.ndarray | None] = {}
        self.keys = entries["key"].to_list()
        self.works = entries["work"].to_list()
        self.swept = [all(m.startswith(CALIBRATION_PREFIX) for m in ms.split(",")) for ms in entries["models"]]
        self.predicted: dict[str, float | None] = {}

    @cached_property
    def predictor(self) -> OperatorPredictor:
        """Efficiency forests per kernel class, fitted on this table's entries (`latency_predictor`)."""
        return OperatorPredictor.fit(self.keys, self.works, [self.exact[k] for k in self.keys], self.swept)

    def times_us(self, nodes: Sequence[ExecutedNode]) -> list[tuple[float, bool]]:
        """Each node's time and whether it was an exact hit: the table's entry when the key is there, else the
        kernel-class predictor when its class has one (one batch per class), else `time_us`'s interpolation."""
        unseen = {n.key: n.work for n in nodes if n.key not in self.exact and n.key not in self.predicted}
        unseen = {k: w for k, w in unseen.items() if _op_type(k) not in _VIEW_OPS}
        if unseen:
            items = list(unseen.items())
            self.predicted.update(zip(unseen, self.predictor.predict(items), strict=True))
        result = []
        for node in nodes:
            if node.key in self.exact:
                result.append((self.exact[node.key], True))
            elif self.predicted.get(node.key) is not None:
                result.append((float(self.predicted[node.key]), False))  # type: ignore[arg-type]
            else:
                result.append(self.time_us(node))
        return result

    @staticmethod
    def _alike(points: np.ndarray | None, node: ExecutedNode) -> np.ndarray | None:
        """For MAC ops, the entries within 4× of the node's arithmetic intensity (MACs per element moved):
        a one-row matrix product is memory-bound, a many-row one compute-bound, at the same MACs."""
        if points is None or node.work_kind != "macs" or node.elements <= 0:
            return points
        intensity = node.work / node.elements
        theirs = points[:, 0] / np.maximum(points[:, 1], 1.0)
        near = points[(theirs <= 4 * intensity) & (theirs >= intensity / 4)]
        return near if len(near) else None

    def _model(self, group: str) -> np.ndarray | None:
        """(t0, a, b) of time = t0 + a·work + b·elements over a group, or None with too few distinct points."""
        if group not in self.models:
            points = self.points.get(group)
            model = None
            if points is not None and len(points) >= 3 and points[:, 0].max() >= 4 * max(points[:, 0].min(), 1.0):
                from scipy.optimize import nnls

                design = np.column_stack([np.ones(len(points)), points[:, 0], points[:, 1]]) / points[:, 2:3]
                model, _ = nnls(design, np.ones(len(points)))
            self.models[group] = model
        return self.models[group]

    def time_us(self, node: ExecutedNode) -> tuple[float, bool]:
        """The node's time and whether it was an exact hit."""
        if node.key in self.exact:
            return self.exact[node.key], True
        kind = node.work_kind
        op_type = node.op.rsplit(".", 1)[-1]
        in_class = self._alike(self.points.get(f"class:{node.op_class}#{kind}"), node)
        in_op = self._alike(self.points.get(f"op:{node.op}#{kind}"), node)
        if op_type in _VIEW_OPS and (in_class is not None or in_op is not None):
            return float(np.median((in_class if in_class is not None else in_op)[:, 2])), False
        if in_class is not None and in_class[0, 0] <= node.work <= in_class[-1, 0] and node.work > 0:
            return _interpolate(in_class[:, 0], in_class[:, 2], node.work), False
        for group in (f"op:{node.op}#{kind}", f"kind:{kind}"):
            if group.startswith("op:") and in_op is None:
                continue  # the op's entries are all of another arithmetic intensity: the kind-wide model
            model = self._model(group)
            if model is None:
                continue
            predicted = _predict(model, node.work, node.elements)
            near = in_class  # the op model is fitted on the op's own entries: only a class adds local information
            if near is not None and predicted > 0:
                i = int(np.argmin(np.abs(np.log(np.maximum(near[:, 0], 1.0)) - math.log(max(node.work, 1.0)))))
                reference = _predict(model, near[i, 0], near[i, 1])
                if reference > 0:
                    predicted *= float(np.clip(near[i, 2] / reference, 0.25, 4.0))
            return predicted, False
        for points in (in_class, in_op, self.points.get(f"kind:{kind}")):
            if points is not None:
                return _interpolate(points[:, 0], points[:, 2], node.work), False
        return 0.0, False  # an empty table of this work kind: `estimate_latency` reports the node as unestimated


def _op_type(key: str) -> str:
    return key.split("|", 1)[0].rsplit(".", 1)[-1]


def _predict(model: np.ndarray, work: float, elements: float) -> float:
    return float(model[0] + model[1] * work + model[2] * elements)


def _interpolate(works: np.ndarray, times: np.ndarray, work: float) -> float:
    """Time at `work` from (work, time) points: log–log linear between neighbours, proportional beyond."""
    order = np.argsort(works)
    works, times = np.maximum(works[order], 1.0), times[order]
    if work <= 0:
        return float(times[0])
    x = math.log(work)
    log_w = np.log(works)
    if log_w[0] <= x <= log_w[-1]:
        return float(math.exp(np.interp(x, log_w, np.log(times))))
    edge = 0 if x < log_w[0] else -1
    return float(times[edge] * work / works[edge])


def estimate_latency(graph: ExecutionGraph, table: OperatorLatencyTable) -> LatencyEstimate:
    """A model's latency on the table's device, from its executed graph (see the module docstring)."""
    lookup = table.lookup
    node_ms = []
    exact = 0
    per_node = table.node_overhead_us
    for us, hit in lookup.times_us(graph.nodes):
        exact += hit
        # A negative per-node term is the profiler's own cost counted inside each span: it is taken off each
        # node's time, never below a tenth of it (a shape op recorded at 0–1 µs cannot give back more).
        node_ms.append((max(us + per_node, 0.1 * us) if per_node < 0 else us + per_node) / 1000.0)
    serial = float(sum(node_ms))
    critical = critical_path_ms(graph, node_ms)
    body = critical if table.execution_mode == PARALLEL else serial
    overhead = table.run_overhead_us / 1000.0
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
    """Every table kept by `import_operator_table`, by device name.

    A file there that is not a table (copied in by hand, truncated) is left out with a `UserWarning` naming
    it, so one bad file does not stop the resource index of every model and device.
    """
    if not devices_dir.is_dir():
        return []
    tables = []
    for path in sorted(devices_dir.glob("*.parquet")):
        try:
            tables.append(OperatorLatencyTable.read(path, path.stem))
        except UnknownOperatorTable as error:
            warnings.warn(f"device {path.stem!r} left out: {error}", stacklevel=2)
    return tables


# -- calibration sweep ---------------------------------------------------------------------------


def calibration_profiles(
    out_dir: Path, device: str = "cpu", runs: int = 10, threads: int | None = None, rounds: int = 2
) -> list[ProfiledModel]:
    """Every calibration graph (`calibration_sweep`) profiled on a device, ready to join a table.

    The whole sweep is profiled `rounds` times, one round after the other, and each graph keeps its round with
    the lower kernel sum: a burst of load from another process during one graph's few milliseconds would
    otherwise set that configuration's time (models are measured the same way: the quietest round is kept).
    """
    if rounds < 1:
        raise ValueError(f"need rounds ≥ 1 to profile the calibration sweep, got {rounds}")
    paths = calibration_models(out_dir)
    best: list[OperatorProfile | None] = [None] * len(paths)
    for _ in range(rounds):
        for i, path in enumerate(paths):
            operators = profile_operators(path, device, runs=runs, warmup=3, threads=threads)
            if best[i] is None or operators.kernel_ms < best[i].kernel_ms:  # type: ignore[union-attr]
                best[i] = operators
    return [ProfiledModel(f"{CALIBRATION_PREFIX}{p.stem}", ops) for p, ops in zip(paths, best, strict=True) if ops]


def cached_calibration_profiles(
    out_dir: Path, device: str = "cpu", runs: int = 10, threads: int | None = None, rounds: int = 2
) -> tuple[list[ProfiledModel], float]:
    """`calibration_profiles`, kept in `out_dir` per device, thread count and sweep version so that rebuilding a
    device's table does not profile the sweep again; (profiles, seconds spent profiling now — 0 from the cache)."""
    cache = out_dir / f"profiles-v{SWEEP_VERSION}-{device}-t{threads or 0}-r{runs}x{rounds}.pkl"
    if cache.exists():
        try:
            return pickle.loads(cache.read_bytes()), 0.0
        except (pickle.UnpicklingError, EOFError, AttributeError):
            cache.unlink()  # written by an older version of these classes: profile again
    started = time.perf_counter()
    profiled = calibration_profiles(out_dir, device, runs, threads, rounds)
    seconds = time.perf_counter() - started
    tmp = cache.with_name(f".{cache.name}.tmp")
    tmp.write_bytes(pickle.dumps(profiled))
    tmp.replace(cache)
    return profiled, seconds
