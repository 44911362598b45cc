"""The calibration sweep: small ONNX graphs sampled over the configuration space of vision and language models.

nn-Meter's observation is that a model's latency is the sum of its *kernels'*, and that kernels can be
sampled and timed without the models. Here each graph is one operator, or the few ORT fuses into one
executed kernel (Conv + residual Add + activation, Sigmoid·x, Transpose + MatMul + scale), with its
configuration drawn at random (seeded) from wide ranges: channels log-uniform in 3…1024 (a multiple of 8
with probability 0.7, as most architectures use), spatial sizes 2…112, kernels 1/3/5/7, strides 1/2, groups
(dense, depthwise, 2…8), fused activation, matrix products with 1…1024 rows, elementwise / normalization /
pooling / layout ops over 10²…10⁶·⁵ elements with and without broadcasting, and the shape-computing chains
exporters emit. No architecture's graph is copied: configurations are drawn, not taken from models, so an
evaluated architecture is not in the sweep.

Profiled like any model (`calibration.calibration_profiles`) the graphs give the executed kernels —
after ORT's fusions and NCHWc layout rewrites, keyed the way the table keys them — that the kernel-class
predictors (`predictor`) are fitted on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SWEEP_VERSION = 7
"""Bumped when the sampled configurations change (graphs are cached by name under a versioned folder)."""
CALIBRATION_PREFIX = "calibration/"
"""Model id prefix of the calibration sweep's graphs in a table's `models` column."""
MAX_MACS = 1e9
"""Largest MACs of a sampled convolution or matrix product: keeps the sweep within about a minute."""
CONV_SAMPLES = 800
MATMUL_SAMPLES = 150
ELEMENTWISE_SAMPLES = 600
_ELEMENTWISE_WEIGHT = {"softmax": 3.0, "transpose": 3.0, "add": 2.0, "mul": 2.0}

_KERNEL_ODDS = {"dense": [0.4, 0.4, 0.1, 0.1], "depthwise": [0.0, 0.6, 0.25, 0.15], "grouped": [0.5, 0.4, 0.05, 0.05]}
"""Odds of kernel 1, 3, 5, 7 per conv kind (a 1×1 depthwise conv is what ORT makes of a lone BatchNormalization,
sampled as such)."""
_ACTIVATIONS = (("", 0.3), ("Relu", 0.4), ("Clip", 0.15), ("Sigmoid", 0.15))


class _Writer:
    """Saves graphs into a folder once (cached by name) and remembers their paths."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.paths: list[Path] = []
        out_dir.mkdir(parents=True, exist_ok=True)

    def save(self, name: str, nodes: list, inputs: list, initializers: list) -> None:
        path = self.out_dir / f"{name}.onnx"
        self.paths.append(path)
        if path.exists():
            return
        for i, node in enumerate(nodes):  # ORT's profiler and optimized graph match nodes by name
            node.name = node.name or f"{node.op_type.lower()}_{i}"
        output = helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)
        graph = helper.make_graph(nodes, name, inputs, [output], initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        tmp = path.with_name(f".{path.name}.tmp")
        onnx.save(model, str(tmp))
        tmp.replace(path)


def calibration_models(out_dir: Path, seed: int = 0) -> list[Path]:
    """Every sweep graph, written once under `out_dir/v<SWEEP_VERSION>` (cached by name); their paths."""
    rng = np.random.default_rng(seed)
    writer = _Writer(out_dir / f"v{SWEEP_VERSION}")
    _conv_samples(writer, rng)
    _matmul_samples(writer, rng)
    _elementwise_samples(writer, rng)
    _shape_chains(writer)
    return writer.paths


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> int:
    return int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))


def _channels(rng: np.random.Generator, low: int = 3, high: int = 1024) -> int:
    c = _log_uniform(rng, low, high)
    return max(8, 8 * round(c / 8)) if rng.random() < 0.7 else c


def _scaled(rng: np.random.Generator, channels: int, spread: float) -> int:
    """Channels × a factor log-uniform in [1/spread, spread], rounded like `_channels`."""
    c = max(3, min(2048, round(channels * math.exp(rng.uniform(-math.log(spread), math.log(spread))))))
    return max(8, 8 * round(c / 8)) if rng.random() < 0.7 else c


def _pick(rng: np.random.Generator, options: tuple[tuple[str, float], ...]) -> str:
    return options[int(rng.choice(len(options), p=[p for _, p in options]))][0]


def _weight(rng: np.random.Generator, name: str, *shape: int):
    return numpy_helper.from_array((0.1 * rng.standard_normal(shape)).astype(np.float32), name)


def _input(name: str, shape: list[int]):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _activation(kind: str, source: str, out: str) -> list:
    if kind == "Clip":
        return [helper.make_node("Clip", [source, "lo", "hi"], [out])]
    return [helper.make_node(kind, [source], [out])] if kind else []


def _conv_samples(writer: _Writer, rng: np.random.Generator) -> None:
    """Convolutions: dense / depthwise / grouped, kernel 1–7, stride 1–2, fused activation and residual sum."""
    made = 0
    while made < CONV_SAMPLES:
        kind = _pick(rng, (("dense", 0.5), ("depthwise", 0.3), ("grouped", 0.2)))
        cin = _channels(rng)
        size = _log_uniform(rng, 2, 112)
        kernel = int(rng.choice([1, 3, 5, 7], p=_KERNEL_ODDS[kind]))
        if kernel > size:
            continue
        stride = 2 if rng.random() < 0.25 else 1
        if kind == "dense":  # mostly Cout within 8× of Cin, as in architectures; sometimes anything
            group, cout = 1, _scaled(rng, cin, 8.0) if rng.random() < 0.7 else _channels(rng)
        elif kind == "depthwise":
            group, cout = cin, cin
        else:
            group = int(rng.choice([2, 3, 4, 8]))
            cin = max(group, group * round(cin / group))
            cout = group * max(1, round(_scaled(rng, cin, 4.0) / group))
        out_size = (size + 2 * (kernel // 2) - kernel) // stride + 1
        macs = cout * out_size * out_size * (cin // group) * kernel * kernel
        if macs > MAX_MACS:
            continue
        activation = _pick(rng, _ACTIVATIONS)
        residual = rng.random() < 0.25
        pad = kernel // 2
        attrs = {"pads": [pad] * 4, "strides": [stride] * 2, "group": group, "kernel_shape": [kernel] * 2}
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], **attrs)]
        inputs = [_input("x", [1, cin, size, size])]
        source = "c"
        if residual:
            inputs.append(_input("r", [1, cout, out_size, out_size]))
            nodes.append(helper.make_node("Add", ["c", "r"], ["s"]))
            source = "s"
        nodes += _activation(activation, source, "y")
        if nodes[-1].output[0] != "y":
            nodes.append(helper.make_node("Identity", [source], ["y"]))
        initializers = [_weight(rng, "w", cout, cin // group, kernel, kernel), _weight(rng, "b", cout)]
        if activation == "Clip":
            initializers += [numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
                             numpy_helper.from_array(np.array(6.0, np.float32), "hi")]  # fmt: skip
        name = f"conv_{kind}_{cin}_{cout}_{size}_k{kernel}s{stride}g{group}_{activation or 'none'}"
        writer.save(name + ("_res" if residual else ""), nodes, inputs, initializers)
        made += 1


def _matmul_samples(writer: _Writer, rng: np.random.Generator) -> None:
    """Gemm (± transB, ± Relu), MatMul by a weight, and products of two activations (attention, with the
    transpose and scale ORT folds into FusedMatMul)."""
    made = 0
    while made < MATMUL_SAMPLES:
        kind = _pick(rng, (("gemm", 0.35), ("matmul", 0.35), ("attention", 0.3)))
        rows = 1 if rng.random() < 0.2 else _log_uniform(rng, 1, 1024)  # one row: a batch-1 classifier head
        k, n = _channels(rng, 8, 4096), _channels(rng, 8, 4096)
        if kind == "attention":
            heads = _log_uniform(rng, 1, 16)
            k = _log_uniform(rng, 16, 128)
            n = rows if rng.random() < 0.5 else k
            macs = heads * rows * k * n
        else:
            heads, macs = 1, rows * k * n
        if macs > MAX_MACS:
            continue
        if kind == "gemm":
            trans_b = int(rng.random() < 0.5)
            w = _weight(rng, "w", *((n, k) if trans_b else (k, n)))
            nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g"], transB=trans_b)]
            nodes += _activation("Relu" if rng.random() < 0.3 else "", "g", "y") or [
                helper.make_node("Identity", ["g"], ["y"])
            ]
            writer.save(f"gemm_{rows}_{k}_{n}_t{trans_b}_{nodes[-1].op_type}", nodes, [_input("x", [rows, k])],
                        [w, _weight(rng, "b", n)])  # fmt: skip
        elif kind == "matmul":
            nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
            shape = [1, rows, k] if rng.random() < 0.6 else [rows, k]
            name = f"matmul_{'x'.join(map(str, shape))}_{n}"
            writer.save(name, nodes, [_input("x", shape)], [_weight(rng, "w", k, n)])
        elif n == rows:  # scores = q · kᵀ · scale
            nodes = [
                helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
                helper.make_node("MatMul", ["q", "kt"], ["s"]),
                helper.make_node("Mul", ["s", "scale"], ["y"]),
            ]
            scale = numpy_helper.from_array(np.array(0.125, np.float32), "scale")
            writer.save(f"attention_qk_{heads}_{rows}_{k}", nodes,
                        [_input("q", [heads, rows, k]), _input("k", [heads, rows, k])], [scale])  # fmt: skip
        elif rng.random() < 0.5:  # context = probabilities · v
            nodes = [helper.make_node("MatMul", ["p", "v"], ["y"])]
            writer.save(f"attention_pv_{heads}_{rows}_{k}", nodes,
                        [_input("p", [heads, rows, rows]), _input("v", [heads, rows, k])], [])  # fmt: skip
        else:  # the same with v stored transposed (folded into FusedMatMul's transB)
            nodes = [
                helper.make_node("Transpose", ["v"], ["vt"], perm=[0, 2, 1]),
                helper.make_node("MatMul", ["p", "vt"], ["y"]),
            ]
            writer.save(f"attention_pvt_{heads}_{rows}_{k}", nodes,
                        [_input("p", [heads, rows, rows]), _input("v", [heads, k, rows])], [])  # fmt: skip
        made += 1


def _elementwise_samples(writer: _Writer, rng: np.random.Generator) -> None:
    """Elementwise (± broadcast), activations, normalization, reductions, softmax, pooling, layout and
    concatenation ops over image-like (1, C, H, W) and token-like (1, T, D) tensors."""
    builders: dict[str, Callable[[list[int], np.random.Generator], tuple[list, list, list] | None]] = {
        "add": lambda s, r: _binary("Add", s, r),
        "mul": lambda s, r: _binary("Mul", s, r),
        "sub": lambda s, r: _binary("Sub", s, r),
        "div": lambda s, r: _binary("Div", s, r),
        "relu": lambda s, r: _unary("Relu", s),
        "sigmoid": lambda s, r: _unary("Sigmoid", s),
        "erf": lambda s, r: _unary("Erf", s),
        "tanh": lambda s, r: _unary("Tanh", s),
        "swish": lambda s, r: ([helper.make_node("Sigmoid", ["x"], ["g"]), helper.make_node("Mul", ["x", "g"], ["y"])],
                               [_input("x", s)], []),  # fmt: skip
        "softmax": lambda s, r: ([helper.make_node("Softmax", ["x"], ["y"], axis=int(r.choice([-1, -1, 1, 2])))],
                                 [_input("x", s)], []),  # fmt: skip
        "layernorm": _layer_norm,
        "reducemean": lambda s, r: ([helper.make_node("ReduceMean", ["x"], ["y"], axes=[int(r.choice([1, -1]))])],
                                    [_input("x", s)], []),  # fmt: skip
        "transpose": _transpose,
        "batchnorm": _batch_norm,
        "maxpool": lambda s, r: _pool("MaxPool", s, r),
        "avgpool": lambda s, r: _pool("AveragePool", s, r),
        "gap": lambda s, r: ([helper.make_node("GlobalAveragePool", ["x"], ["y"])], [_input("x", s)], [])
        if len(s) == 4 else None,
        "concat": _concat,
        "split": _split,
        "pad": lambda s, r: _pad(s),
        "lrn": lambda s, r: ([helper.make_node("LRN", ["x"], ["y"], size=5, alpha=1e-4, beta=0.75, bias=1.0)],
                             [_input("x", s)], []) if len(s) == 4 else None,
    }  # fmt: skip
    names = sorted(builders)
    # ops whose time depends most on layout (which axis, which permutation, what broadcasts) get more samples
    odds = np.array([_ELEMENTWISE_WEIGHT.get(name, 1.0) for name in names])
    made = 0
    while made < ELEMENTWISE_SAMPLES:
        op = names[made % len(names)] if made < 2 * len(names) else str(rng.choice(names, p=odds / odds.sum()))
        form = rng.random()
        if form < 0.35:  # an image: (1, C, H, W)
            shape = [1, _channels(rng, 3, 1024), _log_uniform(rng, 1, 112), 0]
            shape[3] = shape[2]
        elif form < 0.55:  # a channels-last image (TensorFlow's layout): (1, H, W, C), C down to 3 (RGB input)
            size = _log_uniform(rng, 1, 224)
            shape = [1, size, size, 3 if rng.random() < 0.15 else _channels(rng, 3, 1024)]
        elif form < 0.85:  # tokens: (1, T, D)
            shape = [1, _log_uniform(rng, 1, 3136), _channels(rng, 8, 1536)]
        else:  # attention scores: (1, heads, T, T)
            shape = [1, _log_uniform(rng, 1, 16), _log_uniform(rng, 4, 1024), 0]
            shape[3] = shape[2]
        if math.prod(shape) > 3_000_000 or math.prod(shape) < 64:
            continue
        built = builders[op](shape, rng)
        if built is None:
            continue
        nodes, inputs, initializers = built
        writer.save(f"{op}_{'x'.join(map(str, shape))}_{made}", nodes, inputs, initializers)
        made += 1


def _unary(op: str, shape: list[int]) -> tuple[list, list, list]:
    return [helper.make_node(op, ["x"], ["y"])], [_input("x", shape)], []


def _binary(op: str, shape: list[int], rng: np.random.Generator) -> tuple[list, list, list]:
    """x op other, where other is the same shape, per channel, per position, or a scalar constant."""
    form = _pick(rng, (("same", 0.4), ("channel", 0.2), ("scalar", 0.15), ("position", 0.1), ("last", 0.15)))
    if form == "same":
        return [helper.make_node(op, ["x", "z"], ["y"])], [_input("x", shape), _input("z", shape)], []
    if form == "scalar":
        other = np.array(1.5, np.float32)
    elif form == "last":
        other = np.full([shape[-1]], 1.5, np.float32)
    elif form == "channel":
        other = np.full([1, shape[1]] + [1] * (len(shape) - 2), 1.5, np.float32)
    else:
        other = np.full([1, 1, *shape[2:]], 1.5, np.float32)
    return ([helper.make_node(op, ["x", "c"], ["y"])], [_input("x", shape)],
            [numpy_helper.from_array(other, "c")])  # fmt: skip


def _layer_norm(shape: list[int], rng: np.random.Generator) -> tuple[list, list, list]:
    d = shape[-1]
    scale = numpy_helper.from_array(np.ones(d, np.float32), "g")
    bias = numpy_helper.from_array(np.zeros(d, np.float32), "b")
    node = helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1, epsilon=1e-6)
    return [node], [_input("x", shape)], [scale, bias]


def _transpose(shape: list[int], rng: np.random.Generator) -> tuple[list, list, list] | None:
    """A random permutation of the tensor, of a channel-shuffle view of it (5-D: groups of 2–4 channels), or of
    a heads view of a token tensor (5-D: tokens × 1…3 × heads × head size)."""
    form = _pick(rng, (("plain", 0.6), ("split", 0.4)))
    if form == "split":
        groups = int(rng.choice([2, 3, 4]))
        if shape[-1 if len(shape) == 3 else 1] % groups:
            return None
        if len(shape) == 3:
            shape = [1, shape[1], 1, groups, shape[2] // groups]
        elif rng.random() < 0.5:
            shape = [1, groups, shape[1] // groups, shape[2], shape[3]]
        else:  # the same view of a channels-last image
            shape = [1, shape[2], shape[3], groups, shape[1] // groups]
    perm = [0] + [int(i) + 1 for i in rng.permutation(len(shape) - 1)]
    if perm == sorted(perm):
        return None
    return [helper.make_node("Transpose", ["x"], ["y"], perm=perm)], [_input("x", shape)], []


def _batch_norm(shape: list[int], rng: np.random.Generator) -> tuple[list, list, list] | None:
    """BatchNormalization not preceded by a conv (pre-activation blocks), ± Relu: ORT runs it as its own kernel."""
    if len(shape) != 4:
        return None
    c = shape[1]
    params = [numpy_helper.from_array((1 + 0.1 * rng.standard_normal(c)).astype(np.float32), n) for n in "sbmv"]
    params[3] = numpy_helper.from_array(np.abs(numpy_helper.to_array(params[3])), "v")
    nodes = [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["n"])]
    nodes += _activation("Relu", "n", "y") if rng.random() < 0.5 else [helper.make_node("Identity", ["n"], ["y"])]
    return nodes, [_input("x", shape)], params


def _pool(op: str, shape: list[int], rng: np.random.Generator) -> tuple[list, list, list] | None:
    if len(shape) != 4 or shape[2] < 3:
        return None
    kernel, stride = [(3, 2), (3, 1), (2, 2)][int(rng.integers(3))]
    node = helper.make_node(op, ["x"], ["y"], kernel_shape=[kernel] * 2, strides=[stride] * 2, pads=[kernel // 2] * 4
                            if stride == 1 else [0] * 4)  # fmt: skip
    return [node], [_input("x", shape)], []


def _concat(shape: list[int], rng: np.random.Generator) -> tuple[list, list, list]:
    parts = int(rng.integers(2, 5))
    inputs = [_input(f"x{i}", shape) for i in range(parts)]
    return [helper.make_node("Concat", [f"x{i}" for i in range(parts)], ["y"], axis=1)], inputs, []


def _split(shape: list[int], rng: np.random.Generator) -> tuple[list, list, list] | None:
    """Halves along the second or the last axis (channels of either layout)."""
    axis = int(rng.choice([1, -1]))
    if shape[axis] % 2:
        return None
    return [helper.make_node("Split", ["x"], ["y", "z"], axis=axis)], [_input("x", shape)], []


def _pad(shape: list[int]) -> tuple[list, list, list] | None:
    if len(shape) != 4:
        return None
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "p")
    return [helper.make_node("Pad", ["x", "p"], ["y"], mode="constant")], [_input("x", shape)], [pads]


def _shape_chains(writer: _Writer) -> None:
    """The shape-computing chains exporters emit around a dynamic flatten (Shape → Gather → Unsqueeze →
    Concat → Reshape, a Slice and a Cast): tiny kernels whose time is mostly fixed cost."""
    for c, s in ((8, 4), (32, 8), (64, 16), (256, 7)):
        axis0 = numpy_helper.from_array(np.array(0, np.int64), "i0")
        minus = numpy_helper.from_array(np.array([-1], np.int64), "m1")
        zero = numpy_helper.from_array(np.array([0], np.int64), "z")
        one = numpy_helper.from_array(np.array([1], np.int64), "o")
        nodes = [
            helper.make_node("Shape", ["x"], ["shape"]),
            helper.make_node("Gather", ["shape", "i0"], ["n"], axis=0),
            helper.make_node("Unsqueeze", ["n", "z"], ["n1"]),
            helper.make_node("Slice", ["shape", "z", "o"], ["first"]),
            helper.make_node("Cast", ["first"], ["first_f"], to=TensorProto.FLOAT),
            helper.make_node("Cast", ["first_f"], ["first_i"], to=TensorProto.INT64),
            helper.make_node("Concat", ["n1", "minus"], ["target"], axis=0),
            helper.make_node("Concat", ["first_i", "minus"], ["target2"], axis=0),
            helper.make_node("Reshape", ["x", "target"], ["flat"]),
            helper.make_node("Reshape", ["flat", "target2"], ["y"]),
        ]
        nodes[6].input[1] = "m1"
        nodes[7].input[1] = "m1"
        writer.save(f"shape_chain_{c}_{s}", nodes, [_input("x", ["N", c, s, s])], [axis0, minus, zero, one])
