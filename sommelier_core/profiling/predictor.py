"""Per-kernel-class latency predictors for executed operators no table entry matches (nn-Meter's idea).

A table key holds everything that sets a kernel's time — the executed op, its input and output shapes and
its attributes (`executed_nodes`' key: `op | in=… | out=… | attributes`). From it this module derives
features per **kernel class** (dense, depthwise and grouped convolutions, matrix products, pooling, the
NCHWc layout reorders, and each remaining op type on its own) and fits, per class, a random forest on the
table's entries — those of profiled models and of the calibration sweep's one-op graphs.

The forest predicts the logarithm of the kernel's **efficiency**, time per unit of work (µs per MAC for
convolutions and matrix products, per element for the rest), from log-scaled features (MACs, channels,
spatial size, kernel, stride, fused activation / residual sum, …); the time is that efficiency × the node's
work. So the channel and spatial shape set the efficiency (a 3×3 conv on 16 channels runs far below the
peak of one on 256), and sizes beyond the sampled range scale in proportion instead of saturating.

The predictor is fitted from a table's rows alone, so an imported table (`sommelier device import`) gets
the same predictor as one built here.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_ENTRIES = 8
"""Entries a kernel class needs before a forest is fitted for it (fewer: `node_times`' interpolation)."""

_CONVS = frozenset({"Conv", "FusedConv", "NhwcConv", "NhwcFusedConv"})
_MATMULS = frozenset({"MatMul", "FusedMatMul", "Gemm", "FusedGemm"})
_POOLS = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool"})
_REORDERS = frozenset({"ReorderInput", "ReorderOutput"})
_ACTIVATIONS = {"": 0.0, "Relu": 1.0, "Clip": 2.0, "LeakyRelu": 3.0, "Sigmoid": 4.0, "Tanh": 5.0, "HardSigmoid": 6.0}
"""Fused activations, each its own code: MLAS applies Relu inside the NCHWc kernel and the others in a second
pass over the output, so a Clip (ReLU6) conv is slower than a Relu one of the same shape."""


@dataclass(frozen=True)
class ParsedKey:
    """A table key split into its parts."""

    op: str
    """Domain-qualified op type, as keyed."""
    inputs: tuple[tuple[int, ...], ...]
    outputs: tuple[tuple[int, ...], ...]
    attributes: dict[str, str]

    @property
    def op_type(self) -> str:
        """The op type without its domain (`Conv` for `com.microsoft.nchwc.Conv`)."""
        return self.op.rsplit(".", 1)[-1]


def parse_key(key: str) -> ParsedKey | None:
    """`op|in=1x64x56x56,64x64x3x3|out=1x64x56x56|group=1,kernel_shape=[3 3]` → its parts; None if not such a key."""
    parts = key.split("|")
    if len(parts) != 4 or not parts[1].startswith("in=") or not parts[2].startswith("out="):
        return None
    try:
        inputs = _shapes(parts[1][3:])
        outputs = _shapes(parts[2][4:])
    except ValueError:
        return None
    attributes = {}
    for item in _split_attributes(parts[3]):
        name, _, value = item.partition("=")
        attributes[name] = value
    return ParsedKey(parts[0], inputs, outputs, attributes)


def _shapes(text: str) -> tuple[tuple[int, ...], ...]:
    if not text:
        return ()
    return tuple(() if s == "scalar" else tuple(int(d) for d in s.split("x")) for s in text.split(","))


def _split_attributes(text: str) -> list[str]:
    """Attributes are `name=value` joined by commas; list values are `[a b]` (no commas inside)."""
    return [item for item in text.split(",") if item]


def _ints(value: str | None) -> tuple[int, ...]:
    if not value:
        return ()
    try:
        return tuple(int(v) for v in value.strip("[]").split())
    except ValueError:
        return ()


def _log(value: float) -> float:
    return math.log(max(value, 1.0))


def kernel_class(parsed: ParsedKey) -> str:
    """The predictor a key belongs to: `conv-dense`, `conv-depthwise`, `conv-grouped`, `matmul`, `pool`,
    `reorder`, or `op:<type>` for every other op type."""
    op_type = parsed.op_type
    if op_type in _CONVS and len(parsed.inputs) >= 2 and len(parsed.inputs[0]) >= 3 and parsed.inputs[1]:
        group = int(parsed.attributes.get("group", "1") or 1)
        layout = "-nchwc" if parsed.op.startswith("com.microsoft.nchwc.") else ""
        if group == 1:
            return f"conv-dense{layout}"
        return f"conv-depthwise{layout}" if group == parsed.inputs[0][1] else f"conv-grouped{layout}"
    if op_type in _MATMULS and parsed.inputs and parsed.outputs and parsed.outputs[0]:
        return "matmul"
    if op_type in _POOLS and parsed.inputs and len(parsed.inputs[0]) >= 3:
        return "pool"
    if op_type in _REORDERS and parsed.inputs:
        return "reorder"
    return f"op:{op_type}"


def features(parsed: ParsedKey, work: float) -> tuple[str, np.ndarray, float]:
    """(kernel class, feature vector, reference work): the efficiency forest predicts log(time / reference)."""
    cls = kernel_class(parsed)
    attributes = parsed.attributes
    ins, outs = parsed.inputs, parsed.outputs
    in_elements = float(sum(math.prod(s) for s in ins))
    out_elements = float(sum(math.prod(s) for s in outs))
    first_in = float(math.prod(ins[0])) if ins else 0.0
    nchwc = float(parsed.op.startswith("com.microsoft.nchwc."))
    if cls.startswith("conv-"):
        x, w, y = ins[0], ins[1], outs[0] if outs else ins[0]
        spatial_in = float(math.prod(x[2:]))
        spatial_out = float(math.prod(y[2:])) if len(y) > 2 else 1.0
        kernel = float(math.prod(w[2:]))
        strides = _ints(attributes.get("strides"))
        stride = float(max(strides)) if strides else 1.0
        activation = _ACTIVATIONS.get(attributes.get("activation", ""), 7.0)
        group = float(int(attributes.get("group", "1") or 1))
        # per group, a conv is a matrix product: (Cout/g) × (Cin/g · k²) by (Cin/g · k²) × (Hout · Wout)
        vector = [
            _log(work), _log(x[1]), _log(w[0]), _log(w[1]), _log(spatial_in), _log(spatial_out), _log(kernel),
            stride, _log(group), nchwc, activation, float(len(ins) > 3), float(x[1] % 8 == 0), float(w[0] % 8 == 0),
            _log(x[0]), _log(w[0] / group), _log(w[1] * kernel),
        ]  # fmt: skip
        return cls, np.array(vector), max(work, 1.0)
    if cls == "matmul":
        a, y = ins[0], outs[0]
        rows = float(math.prod(y[:-1])) or 1.0
        n = float(y[-1])
        k = work / max(rows * n, 1.0)
        batch = float(math.prod(y[:-2])) if len(y) > 2 else 1.0
        activation = _ACTIVATIONS.get(attributes.get("activation", ""), 7.0)
        both_activations = float(len(ins) >= 2 and len(ins[1]) > 2)  # A·B of two activations (attention)
        vector = [
            _log(work), _log(rows), _log(k), _log(n), _log(batch), float(attributes.get("transB", "0") == "1"),
            float(len(ins) > 2), activation, both_activations, _log(in_elements + out_elements), _log(len(a)),
        ]  # fmt: skip
        return cls, np.array(vector), max(work, 1.0)
    if cls == "pool":
        x, y = ins[0], outs[0] if outs else ins[0]
        kernel = float(math.prod(_ints(attributes.get("kernel_shape")))) or float(math.prod(x[2:]))
        strides = _ints(attributes.get("strides"))
        vector = [
            _log(first_in), _log(math.prod(y)), _log(x[1]), _log(math.prod(x[2:])), _log(kernel),
            float(max(strides)) if strides else 1.0, nchwc, float(parsed.op_type.startswith("Global")),
            float(parsed.op_type == "MaxPool"),
        ]  # fmt: skip
        return cls, np.array(vector), max(first_in, 1.0)
    if cls == "reorder":
        x, y = ins[0], outs[0] if outs else ins[0]
        last = attributes.get("channels_last", "0") == "1"
        channels = float(x[-1] if last else x[1]) if len(x) > 1 else 1.0
        vector = [
            _log(first_in), _log(math.prod(y)), _log(channels), _log(first_in / max(channels, 1.0)), float(last),
            float(parsed.op_type == "ReorderInput"), float(math.prod(y) != first_in),
        ]  # fmt: skip
        return cls, np.array(vector), max(first_in + float(math.prod(y)), 1.0)
    # every other op type: sizes, broadcasting, and the layout of what it reduces or permutes
    biggest = max((math.prod(s) for s in ins), default=0)
    smallest = min((math.prod(s) for s in ins), default=0)
    y = outs[0] if outs else (ins[0] if ins else ())
    axis = attributes.get("axis")
    inner = 1.0
    if axis is not None and y:
        try:
            position = int(axis) % len(y)
            inner = float(math.prod(y[position:]))
        except ValueError:
            inner = 1.0
    axis_size = axis_stride = 1.0
    if axis is not None and y:
        try:
            position = int(axis) % len(y)
            axis_size, axis_stride = float(y[position]), float(math.prod(y[position + 1 :]))
        except ValueError:
            pass
    perm = _ints(attributes.get("perm"))
    run = read_stride = 1.0
    if perm and ins and ins[0] and len(perm) == len(ins[0]):
        x = ins[0]
        # the contiguous run a transpose copies (trailing input dims that stay trailing, in order), and how far
        # apart in the input consecutive output elements lie
        i = len(perm) - 1
        while i >= 0 and perm[i] == i:
            run *= x[i]
            i -= 1
        read_stride = float(math.prod(x[perm[-1] + 1 :]))
    vector = [
        _log(in_elements + out_elements), _log(out_elements), _log(biggest), _log(smallest), float(len(ins)),
        float(biggest != smallest), _log(y[-1] if y else 1), _log(inner), _log(run), float(len(y)),
        _log(_broadcast_run(ins, y)), _log(axis_size), _log(axis_stride), _log(read_stride),
    ]  # fmt: skip
    return cls, np.array(vector), max(in_elements + out_elements, 1.0)


def _broadcast_run(inputs: tuple[tuple[int, ...], ...], output: tuple[int, ...]) -> float:
    """Output elements over which the smallest input stays constant, innermost first: H·W for a per-channel
    (1, C, 1, 1) operand of an NCHW tensor, all of them for a scalar, 1 for a last-axis (…, C) operand — the
    length of the runs a broadcasting kernel streams at full speed. The output size when nothing broadcasts."""
    if len(inputs) < 2 or not output:
        return float(math.prod(output)) if output else 1.0
    small = min(inputs, key=lambda s: math.prod(s))
    if math.prod(small) == math.prod(output):
        return float(math.prod(output))
    padded = (1,) * (len(output) - len(small)) + tuple(small)
    run = 1.0
    for dim_small, dim_out in zip(reversed(padded), reversed(output), strict=False):
        if dim_small != 1:
            break
        run *= dim_out
    return run


@dataclass
class _ClassModel:
    forest: object
    """A fitted `sklearn.ensemble.RandomForestRegressor` on log efficiency."""
    entries: int


class OperatorPredictor:
    """Efficiency forests per kernel class, fitted on a table's entries (see the module docstring)."""

    def __init__(self, models: dict[str, _ClassModel]) -> None:
        self.models = models

    @classmethod
    def fit(
        cls,
        keys: Sequence[str],
        works: Sequence[float],
        times_us: Sequence[float],
        swept: Sequence[bool] | None = None,
        min_entries: int = MIN_ENTRIES,
    ) -> OperatorPredictor:
        """One forest per kernel class with at least `min_entries` positive-time entries whose key parses.

        `swept` marks entries only the calibration sweep produced: one more feature, set to 0 when predicting,
        so that where a sweep graph and a model ran alike kernels at different speeds (a kernel alone vs inside a
        model: caches, the load at the time) the forest can learn the offset and predict the in-model speed.
        """
        from sklearn.ensemble import RandomForestRegressor

        rows: dict[str, list[tuple[np.ndarray, float]]] = defaultdict(list)
        flags = swept if swept is not None else [False] * len(keys)
        for key, work, us, flag in zip(keys, works, times_us, flags, strict=True):
            parsed = parse_key(key)
            if parsed is None or not us or us <= 0:
                continue
            name, vector, reference = features(parsed, work)
            rows[name].append((np.append(vector, float(flag)), math.log(us / reference)))
        models = {}
        for name, items in rows.items():
            if len(items) < min_entries:
                continue
            x = np.vstack([v for v, _ in items])
            y = np.array([t for _, t in items])
            forest = RandomForestRegressor(n_estimators=60, min_samples_leaf=1, max_features=0.7, random_state=0)
            forest.fit(x, y)
            models[name] = _ClassModel(forest, len(items))
        return cls(models)

    def covers(self, key: str) -> bool:
        """Whether a key parses and its kernel class has a fitted forest."""
        parsed = parse_key(key)
        return parsed is not None and kernel_class(parsed) in self.models

    def predict(self, items: Sequence[tuple[str, float]]) -> list[float | None]:
        """Predicted µs for each (key, work); None where the key's class has no forest."""
        grouped: dict[str, list[tuple[int, np.ndarray, float]]] = defaultdict(list)
        for i, (key, work) in enumerate(items):
            parsed = parse_key(key)
            if parsed is None:
                continue
            name, vector, reference = features(parsed, work)
            if name in self.models:
                grouped[name].append((i, np.append(vector, 0.0), reference))
        result: list[float | None] = [None] * len(items)
        for name, rows in grouped.items():
            predicted = self.models[name].forest.predict(np.vstack([v for _, v, _ in rows]))  # type: ignore[attr-defined]
            for (i, _, reference), log_efficiency in zip(rows, predicted, strict=True):
                result[i] = float(math.exp(log_efficiency) * reference)
        return result
