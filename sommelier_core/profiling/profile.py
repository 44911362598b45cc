"""Resource profile of an ONNX model: static costs from the graph, and measured latency per device.

The static profile (design §5, paper §5.3) is device-independent and comes from ONNX shape inference
after every symbolic dimension has been fixed (the batch dimension from `batch_size`, any other one
from `input_shapes`). It reports:

- **params** and **weight_bytes**: the constant tensors that the running computation reads, i.e.
  initializers, `Constant` node values, and tensors computed only from those (ONNX Runtime folds them
  when it loads the model, so e.g. a weight built by `ConstantOfShape` or transposed once counts once,
  in the form the compute op reads). Only floating-point and 8/4-bit integer (quantized) tensors are
  weights; int64/int32/bool constants are shapes, axes and indices. BatchNormalization's running mean
  and variance are stored weights and count; **bn_statistics** says how many of the params they are,
  since `torch`'s parameter count (and torchvision's published figures) leave them out as buffers:
  `params - bn_statistics` is that count (Caffe2 DenseNet-121: 8,146,152 − 167,296 = 7,978,856,
  torchvision's figure exactly).
- **macs**: multiply-accumulates of one forward pass at `batch_size`, by the rules that published
  figures use (torchvision's model metadata, fvcore, the original papers):

  ============================  ====================================================================
  op                            MACs
  ============================  ====================================================================
  Conv, ConvInteger,            output elements × (C_in / groups) × prod(kernel) — i.e.
  QLinearConv (1-D, 2-D, 3-D,   `numel(Y) × prod(W.shape[1:])`; the bias is not counted
  grouped, depthwise)
  ConvTranspose                 input elements × (C_out / groups) × prod(kernel) =
                                `numel(X) × prod(W.shape[1:])`
  Gemm                          M × K × N (`numel(Y) × K`); alpha, beta and C are not counted
  MatMul, MatMulInteger,        `numel(Y) × K` with K the contracted dim, batch dims broadcast
  QLinearMatMul
  Einsum (≥ 2 operands)         product of the sizes of every distinct index × (operands − 1);
                                a single-operand Einsum (transpose, trace, sum) is 0
  RNN, GRU, LSTM                seq_len × batch × (numel(W) + numel(R)): the input and recurrent
                                matrix products of every gate and direction; gate arithmetic and
                                biases are not counted
  ============================  ====================================================================

  Elementwise ops, activations, normalizations (BatchNormalization, LayerNormalization, LRN, …),
  pooling, Softmax, Resize, reductions, quantize/dequantize and data movement (Reshape, Concat,
  Gather, …) are **0 MACs by rule** — they are not multiply-accumulates, and published figures leave
  them out (see `ZERO_MAC_OPS`). Any other op that does compute (TopK, Loop, RoiAlign, custom-domain
  ops, …) has no rule: it is listed in `StaticProfile.uncosted_ops` and warned about
  (`UncostedOpsWarning`), never silently counted as zero. Nodes whose inputs are all constant are
  folded at load time and cost nothing. **flops** is `2 × macs` by convention.
- **peak_activation_bytes**: the most bytes held at once by live tensors while the nodes run in the
  graph's (topological) order: graph inputs and every node output count from when they are produced
  until their last reader (graph outputs until the end); constants do not count, and no in-place
  buffer reuse is assumed.

`measure_latency` runs the model with ONNX Runtime on one device with seeded random inputs and times
`session.run` after a warm-up.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, shape_inference

from sommelier_core.errors import SommelierError
from sommelier_core.inference import open_session


class UnprofilableModel(SommelierError, ValueError):
    """A model whose tensor shapes cannot be fixed or inferred, so its static cost cannot be computed."""


class UnknownDevice(SommelierError, ValueError):
    """A device that is not known or not available on this machine."""


class UncostedOpsWarning(UserWarning):
    """A model holds ops that do compute but have no MAC rule, so its MAC count is a lower bound."""


@dataclass(frozen=True)
class StaticProfile:
    """Device-independent cost of one forward pass, from the graph and its inferred shapes."""

    params: int
    """Elements of the weight tensors the computation reads (float and quantized constants)."""
    macs: int
    """Multiply-accumulates of one forward pass at `batch_size`, by the rules in this module's docstring."""
    flops: int
    """Floating-point operations, stated as `2 × macs`."""
    weight_bytes: int
    """Bytes of those weight tensors, at their stored dtypes."""
    peak_activation_bytes: int
    """Peak bytes of live non-constant tensors (graph inputs included) over the topological order."""
    batch_size: int
    """Batch size the MACs and activations are computed at."""
    macs_by_op_type: tuple[tuple[str, int], ...]
    """MACs per op type that has a MAC rule, largest first."""
    uncosted_ops: tuple[str, ...]
    """Op types (`domain.op` outside the default domain) that do compute but have no MAC rule."""
    bn_statistics: int = 0
    """Elements of `params` that are BatchNormalization running means and variances (buffers in torch)."""

    @property
    def memory_bytes(self) -> int:
        """Weights plus peak live activations: what a runtime holds at once at `batch_size`."""
        return self.weight_bytes + self.peak_activation_bytes


@dataclass(frozen=True)
class LatencyProfile:
    """Measured wall-clock latency of `session.run` on one device."""

    device: str
    """`cpu` or `cuda`."""
    batch_size: int
    """Batch size of the random inputs."""
    median_ms: float
    """Median latency over the timed repeats, in milliseconds."""
    p90_ms: float
    """90th percentile latency over the timed repeats, in milliseconds."""
    repeats: int
    """Number of timed runs (after the warm-up)."""
    threads: int
    """Intra-op threads: the requested number, or the CPU count when ONNX Runtime chose."""


_DATA_MOVEMENT_OPS = frozenset(
    {
        "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split", "Slice",
        "Gather", "GatherElements", "GatherND", "Scatter", "ScatterElements", "ScatterND", "Expand", "Tile",
        "Pad", "DepthToSpace", "SpaceToDepth", "Shape", "Size", "Cast", "CastLike", "Constant",
        "ConstantOfShape", "Range", "EyeLike", "Dropout", "Compress", "NonZero", "OneHot", "Trilu",
        "ReverseSequence", "CenterCropPad", "Col2Im",
    }
)  # fmt: skip
_ELEMENTWISE_OPS = frozenset(
    {
        "Abs", "Acos", "Acosh", "Add", "And", "Asin", "Asinh", "Atan", "Atanh", "BitShift", "BitwiseAnd",
        "BitwiseNot", "BitwiseOr", "BitwiseXor", "Ceil", "Celu", "Clip", "Cos", "Cosh", "Div", "Elu",
        "Equal", "Erf", "Exp", "Floor", "Gelu", "Greater", "GreaterOrEqual", "HardSigmoid", "HardSwish",
        "IsInf", "IsNaN", "LeakyRelu", "Less", "LessOrEqual", "Log", "Max", "Mean", "Min", "Mish", "Mod",
        "Mul", "Neg", "Not", "Or", "Pow", "PRelu", "Reciprocal", "Relu", "Round", "Selu", "Shrink",
        "Sigmoid", "Sign", "Sin", "Sinh", "Softplus", "Softsign", "Sqrt", "Sub", "Sum", "Swish", "Tan",
        "Tanh", "ThresholdedRelu", "Where", "Xor", "QuantizeLinear", "DequantizeLinear",
        "DynamicQuantizeLinear",
    }
)  # fmt: skip
_NORMALIZATION_OPS = frozenset(
    {
        "BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization",
        "RMSNormalization", "LpNormalization", "MeanVarianceNormalization", "LRN",
    }
)  # fmt: skip
_POOLING_SOFTMAX_RESAMPLING_OPS = frozenset(
    {
        "AveragePool", "MaxPool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "GlobalLpPool",
        "MaxUnpool", "MaxRoiPool", "Softmax", "LogSoftmax", "Hardmax", "Resize", "Upsample",
    }
)  # fmt: skip
_REDUCTION_OPS = frozenset(
    {
        "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
        "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin", "CumSum",
    }
)  # fmt: skip

ZERO_MAC_OPS: frozenset[str] = (
    _DATA_MOVEMENT_OPS | _ELEMENTWISE_OPS | _NORMALIZATION_OPS | _POOLING_SOFTMAX_RESAMPLING_OPS | _REDUCTION_OPS
)
"""Default-domain ops counted as 0 MACs on purpose: not multiply-accumulates, left out of published figures."""

_DEFAULT_DOMAINS = ("", "ai.onnx")
_RANDOM_OPS = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}
)

_WEIGHT_DTYPES = frozenset(
    getattr(TensorProto, name)
    for name in (
        "FLOAT", "DOUBLE", "FLOAT16", "BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2",
        "FLOAT8E5M2FNUZ", "FLOAT8E8M0", "FLOAT4E2M1", "INT8", "UINT8", "INT4", "UINT4", "INT2", "UINT2",
    )
    if hasattr(TensorProto, name)
)  # fmt: skip
_SUB_BYTE_BITS = {
    getattr(TensorProto, name): bits
    for name, bits in (("INT4", 4), ("UINT4", 4), ("FLOAT4E2M1", 4), ("INT2", 2), ("UINT2", 2))
    if hasattr(TensorProto, name)
}
_ORT_INPUT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}
# Initializers above this many elements lose their payload in the copy given to shape inference: only
# shape-like tensors (shapes, axes, Resize scales: a handful of elements) are ever read by shape rules.
_MAX_ELEMENTS_READ_BY_SHAPE_INFERENCE = 1024

Shape = tuple[int, ...]


def available_devices() -> list[str]:
    """Devices `measure_latency` can run on here: `cpu` always, `cuda` when ORT's CUDA provider is present."""
    devices = ["cpu"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        devices.append("cuda")
    return devices


def static_profile(
    model: onnx.ModelProto, batch_size: int = 1, input_shapes: Mapping[str, Sequence[int]] | None = None
) -> StaticProfile:
    """Params, MACs, weight bytes and peak activation bytes of one forward pass at `batch_size`.

    A symbolic leading dimension of an input is set to `batch_size`; other symbolic dimensions must be
    given in `input_shapes` (input name → full shape, batch dimension included, taken as it is).
    Raises `UnprofilableModel` when a shape cannot be fixed or inferred, naming the input or tensor.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    graph = _inferred_graph(model, batch_size, input_shapes or {})
    label = f"model {graph.name or '<unnamed>'!r}"
    types = _tensor_types(graph)
    constants = _constant_tensors(graph)

    def shape_of(name: str, node: onnx.NodeProto | None = None) -> Shape:
        known = types.get(name)
        if known is None or known[1] is None:
            where = f" (output of {_describe(node)})" if node is not None else ""
            raise UnprofilableModel(
                f"{label}: shape of tensor {name!r}{where} is unknown after shape inference; "
                "fix its symbolic dimensions with input_shapes, or the op has no ONNX shape rule"
            )
        return known[1]

    def bytes_of(name: str, node: onnx.NodeProto | None = None) -> int:
        return _tensor_bytes(types[name][0] if name in types else 0, shape_of(name, node), name, label)

    weights = _weight_tensors(graph, constants, types)
    params = sum(math.prod(shape_of(name)) for name in weights)
    statistics = {
        name
        for node in graph.node
        if node.op_type == "BatchNormalization" and node.domain in _DEFAULT_DOMAINS
        for name in node.input[3:5]
    }
    bn_statistics = sum(math.prod(shape_of(name)) for name in weights if name in statistics)
    weight_bytes = sum(bytes_of(name) for name in weights)

    read = _read_tensors(graph)
    macs_by_op: dict[str, int] = {}
    uncosted: list[str] = []
    for node in graph.node:
        if all(out in constants for out in node.output if out):
            continue
        for out in node.output:
            if out in read:
                shape_of(out, node)
        rule = _MAC_RULES.get(node.op_type) if node.domain in _DEFAULT_DOMAINS else None
        if rule is not None:
            macs_by_op[node.op_type] = macs_by_op.get(node.op_type, 0) + rule(node, shape_of)
        elif node.domain not in _DEFAULT_DOMAINS or node.op_type not in ZERO_MAC_OPS:
            op_name = node.op_type if node.domain in _DEFAULT_DOMAINS else f"{node.domain}.{node.op_type}"
            if op_name not in uncosted:
                uncosted.append(op_name)
    if uncosted:
        warnings.warn(
            f"{label}: no MAC rule for op types {', '.join(uncosted)}; their MACs are not counted",
            UncostedOpsWarning,
            stacklevel=2,
        )

    macs = sum(macs_by_op.values())
    return StaticProfile(
        params=params,
        macs=macs,
        flops=2 * macs,
        weight_bytes=weight_bytes,
        peak_activation_bytes=_peak_activation_bytes(graph, constants, bytes_of),
        batch_size=batch_size,
        macs_by_op_type=tuple(sorted(macs_by_op.items(), key=lambda item: (-item[1], item[0]))),
        uncosted_ops=tuple(sorted(uncosted)),
        bn_statistics=bn_statistics,
    )


@dataclass(frozen=True)
class MemoryPoint:
    """Static cost under one execution setting (paper Fig. 12a): batch size and input resolution."""

    batch_size: int
    resolution: int | None
    """Size given to every symbolic spatial dimension of the inputs; None = the model's own shapes."""
    weight_bytes: int
    peak_activation_bytes: int
    macs: int

    @property
    def memory_bytes(self) -> int:
        """Weights plus peak live activations: what a runtime holds at once under this setting."""
        return self.weight_bytes + self.peak_activation_bytes


def memory_profile(
    model: onnx.ModelProto,
    batch_sizes: Sequence[int] = (1,),
    resolutions: Sequence[int | None] = (None,),
    known: Sequence[StaticProfile] = (),
    known_resolution: int | None = None,
) -> list[MemoryPoint]:
    """Memory and MACs for every batch size × resolution: how peak memory moves with the execution setting.

    A resolution fills every symbolic non-batch dimension of every input (H and W of an image model
    exported with dynamic spatial size); a model whose inputs have none only takes `None`, and asking
    for another resolution raises `UnprofilableModel`. `known` are static profiles of this model already
    computed at `known_resolution` (None: its own shapes; the exec-spec's batch sizes at the resolution it
    is profiled at, `profiled_shapes`): those settings are not profiled again.
    """
    at_known_resolution = {p.batch_size: p for p in known}
    points = []
    for resolution in resolutions:
        shapes = None if resolution is None else shapes_at_resolution(model, resolution)
        for batch_size in batch_sizes:
            shaped = None if shapes is None else {k: (batch_size, *v[1:]) for k, v in shapes.items()}
            profile = at_known_resolution.get(batch_size) if resolution == known_resolution else None
            if profile is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UncostedOpsWarning)
                    profile = static_profile(model, batch_size, shaped)
            points.append(
                MemoryPoint(batch_size, resolution, profile.weight_bytes, profile.peak_activation_bytes, profile.macs)
            )
    return points


def shapes_at_resolution(model: onnx.ModelProto, resolution: int) -> dict[str, tuple[int, ...]]:
    """Input shapes (batch 1) with every symbolic non-batch dimension set to `resolution`.

    What `memory_profile` and `sommelier profile --resolution` run a dynamic-resolution model at; the
    caller replaces the leading 1 by its batch size. Raises `UnprofilableModel` when no input has a
    symbolic spatial dimension (the model runs at its own resolution only).
    """
    initializers = {init.name for init in model.graph.initializer}
    shapes: dict[str, tuple[int, ...]] = {}
    found = False
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        dims = vi.type.tensor_type.shape.dim
        shape = [1]
        for dim in list(dims)[1:]:
            if dim.HasField("dim_value"):
                shape.append(dim.dim_value)
            else:
                shape.append(resolution)
                found = True
        shapes[vi.name] = tuple(shape)
    if not found:
        raise UnprofilableModel(
            f"model {model.graph.name or '<unnamed>'!r}: its inputs have no symbolic spatial dimension; "
            f"it runs at its own resolution only, not {resolution}"
        )
    return shapes


def has_dynamic_resolution(model: onnx.ModelProto) -> bool:
    """Whether an input has a symbolic non-batch dimension: the model runs at any resolution `memory_profile`
    and `shapes_at_resolution` give it (an image model exported with dynamic H and W)."""
    initializers = {init.name for init in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        if any(not dim.HasField("dim_value") for dim in list(vi.type.tensor_type.shape.dim)[1:]):
            return True
    return False


@dataclass(frozen=True)
class ProfiledShapes:
    """The input shapes a model is profiled at — static costs, memory, latency and operator profiles alike."""

    shapes: Mapping[str, tuple[int, ...]] | None
    """Input name → shape, batch dim as declared (1 where symbolic), for a model with symbolic spatial dims;
    None for a model with concrete ones, profiled at its own shapes."""
    resolution: int | None
    """The square spatial size of those shapes (`native_resolution`): what a query's `RESOLUTION` matches.
    None when the input has no square spatial size."""
    dynamic: bool
    """Whether the model has symbolic spatial dims (`has_dynamic_resolution`): it runs at other resolutions too."""
    symbolic_batch: frozenset[str] = frozenset()
    """Inputs whose batch dim is symbolic: `at_batch` sets it; a declared one is kept."""
    label: str = ""
    """How errors name the model (its id)."""

    def at_batch(self, batch_size: int) -> dict[str, tuple[int, ...]] | None:
        """The `input_shapes` for `static_profile`, `measure_latency` and `profile_operators` at a batch size
        (None: the model's own shapes, its symbolic batch dim set by those functions)."""
        if self.shapes is None:
            return None
        fixed = {name: shape[0] for name, shape in self.shapes.items() if name not in self.symbolic_batch}
        if any(batch != batch_size for batch in fixed.values()):
            raise UnprofilableModel(
                f"{self.label}: inputs {fixed} have a fixed batch size; cannot profile them at batch_size={batch_size}"
            )
        return {
            name: (batch_size, *shape[1:]) if name in self.symbolic_batch else tuple(shape)
            for name, shape in self.shapes.items()
        }


def profiled_shapes(
    model: onnx.ModelProto,
    resolution: int = 0,
    validation_shape: Callable[[], Sequence[int]] | None = None,
    model_id: str = "",
) -> ProfiledShapes:
    """The input shapes the exec-spec profiles a model at: the one place the pipeline decides them.

    A model whose inputs have concrete non-batch dims is profiled at them (`resolution` does not apply: it
    runs at its own only). One exported with symbolic spatial dims (dynamic H, W) is profiled at `resolution`
    (H = W, or L of a 1-D signal; `shapes_at_resolution`) when it is positive, else at the shape of the
    validation inputs it is compared on — `validation_shape()` (batch dim excluded; called only then, since
    choosing the validation set can fail for models that never need it) — so its profile describes the
    model as it was evaluated. Raises `UnprofilableModel` naming the model (`model_id`, else the graph's name)
    when neither gives the shapes.
    """
    label = model_id or f"model {model.graph.name or '<unnamed>'!r}"
    if not has_dynamic_resolution(model):
        return ProfiledShapes(None, native_resolution(model), False, label=label)
    initializers = {init.name for init in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in initializers]
    symbolic_batch = frozenset(
        vi.name
        for vi in inputs
        if vi.type.tensor_type.shape.dim and not vi.type.tensor_type.shape.dim[0].HasField("dim_value")
    )
    declared_batch = {
        vi.name: vi.type.tensor_type.shape.dim[0].dim_value
        for vi in inputs
        if vi.type.tensor_type.shape.dim and vi.name not in symbolic_batch
    }
    if resolution > 0:
        shapes = {
            name: (declared_batch.get(name, 1), *shape[1:])
            for name, shape in shapes_at_resolution(model, resolution).items()
        }
    else:
        if validation_shape is None or len(inputs) != 1:
            raise UnprofilableModel(
                f"{label}: its inputs {[vi.name for vi in inputs]} have symbolic spatial dimensions and no "
                "validation input shape fixes them; set the exec-spec's resolution"
            )
        (vi,) = inputs
        sample = tuple(int(d) for d in validation_shape())
        dims = list(vi.type.tensor_type.shape.dim)[1:]
        fits = len(dims) == len(sample) and all(
            not d.HasField("dim_value") or d.dim_value == s for d, s in zip(dims, sample, strict=True)
        )
        if not fits:
            declared = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
            raise UnprofilableModel(
                f"{label}: input {vi.name!r} declares {declared} (batch excluded); validation inputs are {list(sample)}"
            )
        shapes = {vi.name: (declared_batch.get(vi.name, 1), *sample)}
    return ProfiledShapes(shapes, native_resolution(model, shapes), True, symbolic_batch, label)


def native_resolution(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None = None) -> int | None:
    """The square spatial size the model's inputs have (or are given in `input_shapes`): a query's `RESOLUTION`.

    H = W of a rank-4 input (NCHW, or NHWC when the last two dims differ), D = H = W of a rank-5 one and
    the length L of a rank-3 (N, C, L) signal. None when no input has a square spatial size (a feature
    vector, a non-square image) or the inputs disagree, or a dimension is still symbolic: such a model
    runs at no `RESOLUTION` a query can name.
    """
    initializers = {init.name for init in model.graph.initializer}
    sizes = set()
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        if input_shapes is not None and vi.name in input_shapes:
            dims: list[int | None] = [int(d) for d in input_shapes[vi.name]]
        else:
            dims = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        size = _spatial_size(dims)
        if size is not None:
            sizes.add(size)
    return sizes.pop() if len(sizes) == 1 else None


def _spatial_size(dims: Sequence[int | None]) -> int | None:
    if any(d is None for d in dims[1:]):
        return None
    if len(dims) == 3:
        return dims[2]
    if len(dims) == 4:
        if dims[2] == dims[3]:
            return dims[2]
        return dims[1] if dims[1] == dims[2] else None  # NHWC
    if len(dims) == 5 and dims[2] == dims[3] == dims[4]:
        return dims[2]
    return None


def require_provider(session: ort.InferenceSession, device: str, label: str) -> None:
    """Raise `UnknownDevice` when a session for `device` fell back to another provider (a CUDA provider that
    failed to load runs on the CPU): its times would be recorded under the wrong device."""
    if device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise UnknownDevice(f"{label}: the CUDA execution provider failed to load; ran on {session.get_providers()}")


def measure_latency(
    onnx_path: Path,
    device: str = "cpu",
    batch_size: int = 1,
    warmup: int = 5,
    repeats: int = 30,
    threads: int | None = None,
    seed: int = 0,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> LatencyProfile:
    """Median and p90 latency of `session.run` on seeded random inputs at `batch_size`, after `warmup` runs.

    Inputs get the graph's dtypes and shapes, with a symbolic batch dimension set to `batch_size` and other
    symbolic dimensions taken from `input_shapes`. Raises `UnknownDevice` (a `ValueError`) when the device
    is not available here, naming the ones that are.
    """
    devices = available_devices()
    if device not in devices:
        raise UnknownDevice(f"device {device!r} is not available here; available devices: {', '.join(devices)}")
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"need batch_size ≥ 1, repeats ≥ 1, warmup ≥ 0; got {batch_size}, {repeats}, {warmup}")
    session = open_session(onnx_path, device=device, threads=threads)
    require_provider(session, device, str(onnx_path))
    feeds = random_feeds(session, batch_size, input_shapes or {}, np.random.default_rng(seed), str(onnx_path))
    for _ in range(warmup):
        session.run(None, feeds)
    times_ms = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        times_ms[i] = (time.perf_counter() - start) * 1000.0
    return LatencyProfile(
        device=device,
        batch_size=batch_size,
        median_ms=float(np.median(times_ms)),
        p90_ms=float(np.percentile(times_ms, 90)),
        repeats=repeats,
        threads=threads if threads is not None else (os.cpu_count() or 1),
    )


def _resolve_shapes(
    declared: Mapping[str, Sequence[int | None] | None],
    batch_size: int,
    input_shapes: Mapping[str, Sequence[int]],
    label: str,
) -> dict[str, Shape]:
    """Concrete shapes of the graph inputs (declared dims, None where symbolic).

    `input_shapes` entries are taken as they are; otherwise static dims are kept and a symbolic leading dim is
    `batch_size`. A batch size other than 1 that no input can take is an error rather than a wrong record.
    """
    unknown = set(input_shapes) - set(declared)
    if unknown:
        raise UnprofilableModel(f"{label}: input_shapes names {sorted(unknown)}, which are not graph inputs")
    shapes: dict[str, Shape] = {}
    batch_filled = bool(input_shapes)
    for name, dims in declared.items():
        if name in input_shapes:
            shapes[name] = tuple(int(d) for d in input_shapes[name])
            if dims is not None and len(dims) != len(shapes[name]):
                raise UnprofilableModel(
                    f"{label}: input {name!r} has rank {len(dims)}, input_shapes gives {list(shapes[name])}"
                )
            continue
        if dims is None:
            raise UnprofilableModel(f"{label}: input {name!r} declares no shape; give it in input_shapes")
        for axis, dim in enumerate(dims[1:], start=1):
            if dim is None:
                raise UnprofilableModel(
                    f"{label}: input {name!r} has a symbolic dimension at axis {axis}; give its shape in input_shapes"
                )
        if dims and dims[0] is None:
            batch_filled = True
            shapes[name] = (batch_size, *dims[1:])
        else:
            shapes[name] = tuple(dims)
    if batch_size != 1 and not batch_filled:
        raise UnprofilableModel(
            f"{label}: no input has a symbolic batch dimension, cannot use batch_size={batch_size}; "
            "export the model with a dynamic batch dimension or give the shapes in input_shapes"
        )
    return shapes


def _inferred_graph(
    model: onnx.ModelProto, batch_size: int, input_shapes: Mapping[str, Sequence[int]]
) -> onnx.GraphProto:
    """The model's graph with input shapes fixed and every tensor's type and shape inferred."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    graph = fixed.graph
    label = f"model {graph.name or '<unnamed>'!r}"
    for init in graph.initializer:
        if math.prod(init.dims) > _MAX_ELEMENTS_READ_BY_SHAPE_INFERENCE:
            for field in ("raw_data", "float_data", "double_data", "int32_data", "int64_data", "external_data"):
                init.ClearField(field)
            init.data_location = TensorProto.DEFAULT
    initializer_names = {init.name for init in graph.initializer}
    inputs = [vi for vi in graph.input if vi.name not in initializer_names]
    declared = {
        vi.name: [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        if vi.type.tensor_type.HasField("shape")
        else None
        for vi in inputs
    }
    shapes = _resolve_shapes(declared, batch_size, input_shapes, label)
    for vi in inputs:
        tensor_type = vi.type.tensor_type
        tensor_type.shape.Clear()
        for dim in shapes[vi.name]:
            tensor_type.shape.dim.add().dim_value = dim
    # Stale symbolic shapes from the exporter would otherwise be merged with the inferred ones.
    del graph.value_info[:]
    for out in graph.output:
        out.type.tensor_type.ClearField("shape")
    try:
        inferred = shape_inference.infer_shapes(fixed, check_type=True, strict_mode=True, data_prop=True).graph
    except (shape_inference.InferenceError, onnx.checker.ValidationError) as error:
        raise UnprofilableModel(f"{label}: shape inference failed: {error}") from error
    return _complete_shapes_by_execution(model, inferred, shapes, label)


def _complete_shapes_by_execution(
    model: onnx.ModelProto, inferred: onnx.GraphProto, shapes: Mapping[str, Sequence[int]], label: str
) -> onnx.GraphProto:
    """Fill the shapes that static inference left unknown by running the model once at the fixed input shapes.

    ONNX's data propagation stops at ops such as `Mod` in exporter-generated shape arithmetic (PyTorch
    emits it for negative-index `unsqueeze`/slicing), leaving later shapes unknown although the model's
    shapes are fully determined by its input shapes. One ONNX Runtime pass on zero inputs exposing
    those tensors gives their exact shapes; nothing is guessed.
    """
    types = _tensor_types(inferred)
    initializers = {init.name for init in inferred.initializer}
    missing = [
        out
        for node in inferred.node
        for out in node.output
        if out and out not in initializers and (out not in types or types[out][1] is None)
    ]
    typed = [name for name in missing if name in types and types[name][0] != TensorProto.UNDEFINED]
    if not typed:
        return inferred
    runnable = onnx.ModelProto()
    runnable.CopyFrom(model)
    known_outputs = {out.name for out in runnable.graph.output}
    for name in typed:
        if name not in known_outputs:
            runnable.graph.output.append(onnx.helper.make_tensor_value_info(name, types[name][0], None))
    feeds = {}
    for vi in runnable.graph.input:
        if vi.name in shapes:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
            feeds[vi.name] = np.zeros(shapes[vi.name], dtype=dtype)
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(
            runnable.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
        )
        values = session.run(typed, feeds)
    except Exception:  # onnxruntime raises its own untyped errors
        return inferred  # the first unknown tensor is then reported by name, with its node
    by_name = {vi.name: vi for vi in [*inferred.value_info, *inferred.output]}
    for name, value in zip(typed, values, strict=True):
        info = onnx.helper.make_tensor_value_info(name, types[name][0], list(value.shape))
        if name in by_name:
            by_name[name].CopyFrom(info)
        else:
            inferred.value_info.append(info)
    return inferred


def _tensor_types(graph: onnx.GraphProto) -> dict[str, tuple[int, Shape | None]]:
    """Element type and static shape (None where unknown or symbolic) of every named tensor of the graph."""
    types: dict[str, tuple[int, Shape | None]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = vi.type.tensor_type
        shape: Shape | None = None
        if tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in tensor_type.shape.dim):
            shape = tuple(d.dim_value for d in tensor_type.shape.dim)
        types[vi.name] = (tensor_type.elem_type, shape)
    for init in graph.initializer:
        types[init.name] = (init.data_type, tuple(init.dims))
    return types


def _constant_tensors(graph: onnx.GraphProto) -> set[str]:
    """Tensors known before any input arrives: initializers, `Constant` values, and deterministic functions of them."""
    constants = {init.name for init in graph.initializer}
    for node in graph.node:
        inputs = [name for name in node.input if name]
        foldable = (
            node.domain in _DEFAULT_DOMAINS
            and node.op_type not in _RANDOM_OPS
            and not any(attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for attr in node.attribute)
            and (node.op_type == "Constant" or (inputs and all(name in constants for name in inputs)))
        )
        if foldable:
            constants.update(name for name in node.output if name)
    return constants


def _subgraph_reads(node: onnx.NodeProto) -> set[str]:
    """Names read by nodes inside the node's subgraphs (If/Loop/Scan bodies), recursively."""
    reads: set[str] = set()
    for attr in node.attribute:
        for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
            for inner in sub.node:
                reads.update(name for name in inner.input if name)
                reads |= _subgraph_reads(inner)
    return reads


def _reads(node: onnx.NodeProto) -> set[str]:
    """Every tensor a node reads: its inputs and what its subgraphs read from the enclosing scope."""
    return {name for name in node.input if name} | _subgraph_reads(node)


def _read_tensors(graph: onnx.GraphProto) -> set[str]:
    """Tensors some node reads or the graph returns; other outputs (e.g. Dropout's mask) are dead on arrival."""
    read = {out.name for out in graph.output}
    for node in graph.node:
        read |= _reads(node)
    return read


def _weight_tensors(
    graph: onnx.GraphProto, constants: set[str], types: Mapping[str, tuple[int, Shape | None]]
) -> list[str]:
    """Constant tensors of a weight dtype that a non-constant node reads, each once."""
    weights: dict[str, None] = {}
    for node in graph.node:
        if all(out in constants for out in node.output if out):
            continue
        for name in sorted(_reads(node)):
            if name in constants and name in types and types[name][0] in _WEIGHT_DTYPES:
                weights[name] = None
    return list(weights)


def _peak_activation_bytes(graph: onnx.GraphProto, constants: set[str], bytes_of: Callable[..., int]) -> int:
    """Peak bytes of live non-constant tensors while the nodes run in graph order (no in-place reuse).

    Outputs that nothing reads are not counted: they are optional outputs ONNX Runtime frees at once.
    """
    nodes = [node for node in graph.node if not all(out in constants for out in node.output if out)]
    end = len(nodes)
    last_read: dict[str, int] = {}
    for index, node in enumerate(nodes):
        for name in _reads(node):
            last_read[name] = index
    for out in graph.output:
        last_read[out.name] = end

    live: dict[str, int] = {}
    for vi in graph.input:
        if vi.name not in constants:
            live[vi.name] = bytes_of(vi.name)
    current = sum(live.values())
    peak = current
    for index, node in enumerate(nodes):
        for out in node.output:
            if out in last_read and out not in live:
                live[out] = bytes_of(out, node)
                current += live[out]
        peak = max(peak, current)
        for name in [name for name in live if last_read.get(name, -1) <= index]:
            current -= live.pop(name)
    return peak


def _tensor_bytes(elem_type: int, shape: Shape, name: str, label: str) -> int:
    """Bytes of a dense tensor, sub-byte types packed."""
    if elem_type in _SUB_BYTE_BITS:
        bits = _SUB_BYTE_BITS[elem_type]
    else:
        try:
            bits = helper.tensor_dtype_to_np_dtype(elem_type).itemsize * 8
        except (KeyError, ValueError, TypeError) as error:
            raise UnprofilableModel(f"{label}: tensor {name!r} has no known element type ({elem_type})") from error
    return math.ceil(math.prod(shape) * bits / 8)


def _describe(node: onnx.NodeProto) -> str:
    """How error messages name a node."""
    return f"{node.op_type} node {node.name!r}" if node.name else f"unnamed {node.op_type} node"


def random_feeds(
    session: ort.InferenceSession,
    batch_size: int,
    input_shapes: Mapping[str, Sequence[int]],
    rng: np.random.Generator,
    label: str,
) -> dict[str, np.ndarray]:
    """Seeded random inputs for an open session: standard normal for floats, 0/1 for integers and booleans
    (valid as indices).

    Shapes are resolved as in `measure_latency` (symbolic batch → `batch_size`, other symbolic dims from
    `input_shapes`); `label` names the model in errors. Shared by `measure_latency` and
    `operator_latency.profile_operators` so a measured and a profiled run see the same inputs.
    """
    declared = {arg.name: [dim if isinstance(dim, int) else None for dim in arg.shape] for arg in session.get_inputs()}
    shapes = _resolve_shapes(declared, batch_size, input_shapes, label)
    feeds = {}
    for arg in session.get_inputs():
        shape = shapes[arg.name]
        dtype = _ORT_INPUT_DTYPES.get(arg.type)
        if dtype is None:
            raise UnprofilableModel(f"{label}: cannot generate random values for input {arg.name!r} of type {arg.type}")
        if np.issubdtype(dtype, np.floating):
            feeds[arg.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[arg.name] = rng.integers(0, 2, size=shape).astype(dtype)
    return feeds


ShapeOf = Callable[[str], Shape]


def _conv_macs(weight_index: int) -> Callable[[onnx.NodeProto, ShapeOf], int]:
    """Conv family: output elements × (C_in / groups) × prod(kernel) = numel(Y) × prod(W.shape[1:])."""

    def rule(node: onnx.NodeProto, shape_of: ShapeOf) -> int:
        return math.prod(shape_of(node.output[0])) * math.prod(shape_of(node.input[weight_index])[1:])

    return rule


def _conv_transpose_macs(node: onnx.NodeProto, shape_of: ShapeOf) -> int:
    """Every input element is multiplied into (C_out / groups) × prod(kernel) outputs."""
    return math.prod(shape_of(node.input[0])) * math.prod(shape_of(node.input[1])[1:])


def _gemm_macs(node: onnx.NodeProto, shape_of: ShapeOf) -> int:
    """M × K × N: each of the M × N outputs accumulates K products."""
    a = shape_of(node.input[0])
    trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
    return math.prod(shape_of(node.output[0])) * (a[0] if trans_a else a[-1])


def _matmul_macs(node: onnx.NodeProto, shape_of: ShapeOf) -> int:
    """numel(Y) × K: each output accumulates K products, over the broadcast batch dims."""
    return math.prod(shape_of(node.output[0])) * shape_of(node.input[0])[-1]


def _einsum_macs(node: onnx.NodeProto, shape_of: ShapeOf) -> int:
    """Product of every distinct index size (one multiply per point of the joint index space) per extra operand."""
    operands = [name for name in node.input if name]
    if len(operands) < 2:
        return 0
    equation = next(attr.s.decode() for attr in node.attribute if attr.name == "equation").replace(" ", "")
    terms = equation.split("->")[0].split(",")
    sizes: dict[str, int] = {}
    ellipsis: list[int] = []
    for term, name in zip(terms, operands, strict=True):
        shape = shape_of(name)
        letters = term.replace("...", "")
        n_ellipsis = len(shape) - len(letters)
        head = term.split("...")[0] if "..." in term else term
        for position, letter in enumerate(head):
            sizes[letter] = max(sizes.get(letter, 1), shape[position])
        if "..." in term:
            tail = term.split("...")[1]
            for position, letter in enumerate(tail):
                sizes[letter] = max(sizes.get(letter, 1), shape[len(head) + n_ellipsis + position])
            dims = list(shape[len(head) : len(head) + n_ellipsis])
            ellipsis = _broadcast(ellipsis, dims)
    return math.prod(sizes.values()) * math.prod(ellipsis) * (len(operands) - 1)


def _broadcast(a: Sequence[int], b: Sequence[int]) -> list[int]:
    """Numpy broadcast of two shapes."""
    width = max(len(a), len(b))
    a, b = [1] * (width - len(a)) + list(a), [1] * (width - len(b)) + list(b)
    return [max(x, y) for x, y in zip(a, b, strict=True)]


def _recurrent_macs(node: onnx.NodeProto, shape_of: ShapeOf) -> int:
    """seq_len × batch × (numel(W) + numel(R)): input and recurrent products of all gates and directions."""
    x = shape_of(node.input[0])
    layout = next((attr.i for attr in node.attribute if attr.name == "layout"), 0)
    seq_len, batch = (x[1], x[0]) if layout else (x[0], x[1])
    return seq_len * batch * (math.prod(shape_of(node.input[1])) + math.prod(shape_of(node.input[2])))


_MAC_RULES: dict[str, Callable[[onnx.NodeProto, ShapeOf], int]] = {
    "Conv": _conv_macs(1),
    "ConvInteger": _conv_macs(1),
    "QLinearConv": _conv_macs(3),
    "ConvTranspose": _conv_transpose_macs,
    "Gemm": _gemm_macs,
    "MatMul": _matmul_macs,
    "MatMulInteger": _matmul_macs,
    "QLinearMatMul": _matmul_macs,
    "Einsum": _einsum_macs,
    "RNN": _recurrent_macs,
    "GRU": _recurrent_macs,
    "LSTM": _recurrent_macs,
}

COSTED_OPS: frozenset[str] = frozenset(_MAC_RULES)
"""Default-domain ops that have a MAC rule (see this module's docstring)."""
