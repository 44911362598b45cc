"""Cushions of a network on its validation inputs: what the architecture term of the bound needs.

Paper §4.1 refines the empirical difference with the compression-based generalization bound of
Arora et al. 2018 (*Stronger generalization bounds for deep nets via a compression approach*,
Thm 4.1, definitions 4–6), whose size is set by four measured properties of the network f on data:

- **layer cushion** μ_i of linear layer i: min_x ‖A_i φ(x_{i−1})‖ / (‖A_i‖_F · ‖φ(x_{i−1})‖) — how
  much less than its worst case a layer stretches the activations it actually sees;
- **interlayer cushion** μ_{i→} = min_{j≥i} min_x ‖J_{i,j}(x) x_i‖ / (‖J_{i,j}(x)‖_F · ‖x_i‖), J_{i,j} the
  Jacobian of the map from layer i's output x_i to layer j's output x_j (J_{i,i} = I gives
  μ_{i,i} = 1/√h_i, h_i the width of x_i, so μ_{i→} ≤ 1/√h_i as in the paper);
- **activation contraction** c = max_{i,x} ‖x_i‖ / ‖φ(x_i)‖, φ(x_i) the input of the next linear layer;
- **depth** d (the number of linear layers) and the **largest output norm** max_x ‖f(x)‖.

Everything is measured with ONNX Runtime on any ONNX model, so it needs no framework:

- Linear layers are `Gemm`, `MatMul` and `Conv` nodes with a constant weight. A convolution counts
  as its kernel reshaped to the 2-D matrix K (C_out × C_in/groups·k) applied to the unfolded input
  columns X (im2col), as the paper does: μ_i = ‖K X‖_F / (‖K‖_F · ‖X‖_F), with ‖X‖_F² (every input
  value counted once per window that reads it) computed as a convolution of φ(x)² with a ones kernel.
  For a grouped conv the operator is block-diagonal, which keeps μ_i ≤ 1.
- A_i φ(x_{i−1}) is taken without the layer's bias (a bias-free copy of the node is added to the
  graph), as in the paper's bias-free networks; x_i, the tensor J acts on, is the linear node's output.
- ‖J‖_F is estimated by random projections, ‖J‖_F² = E_v ‖J v‖² for v = √h·q, q uniform on the unit
  sphere (k orthonormal directions per sample; k ≥ h gives the exact norm), with J v and J x_i
  by forward finite differences on the graph in which x_i is made an input (the rest of the graph,
  e.g. a residual branch from earlier layers, keeps its value for the sample). For piecewise-linear
  networks the differences are exact unless a step crosses a ReLU kink.

Quantized and half-precision graphs: a static QDQ graph is measured on its dequantized arithmetic (a weight that is
`DequantizeLinear` of constants is that dequantized matrix; activations between Q/DQ pairs are float). Graphs whose
linear layers run in integer (QOperator: `ConvInteger`, `QLinearConv`, `MatMulInteger`, …) or float16 arithmetic
have no float linear layer to probe: `cushions_not_applicable` says so and the stage records it, and the
architecture modes bound their pairs statistically with a note (`ModelCushions.fallback`).

Memory is bounded by `memory_bytes`, not by the model or the sample count: samples are streamed in batches sized
from one sample's probed tensors (`inference.rows_within_budget`), and a model one sample of which does not fit
fails with a message naming the stage and the setting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sommelier_core import defaults
from sommelier_core.errors import SommelierError
from sommelier_core.inference import ORT_ERRORS, model_session, node_attribute, rows_within_budget, with_outputs

LINEAR_OPS: tuple[str, ...] = ("Gemm", "MatMul", "Conv")
INTEGER_LINEAR_OPS: frozenset[str] = frozenset(
    {"ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "QGemm", "DynamicQuantizeMatMul"}
)
"""Linear operators that compute in integers (ONNX Runtime's QOperator format): no float weight to probe."""
STAGE = "model_cushions"
_TINY = 1e-12


class CushionError(SommelierError):
    """The cushions of a model cannot be measured (no linear layer, unsupported graph, bad data)."""


class CushionsNotApplicable(CushionError):
    """The graph computes its linear layers in integer or float16 arithmetic: it has no float layer to probe."""


def cushions_not_applicable(model: onnx.ModelProto) -> str | None:
    """Why the cushions do not apply to `model` (QOperator integer layers, float16 arithmetic), or None."""
    integer = sorted({node.op_type for node in model.graph.node if node.op_type in INTEGER_LINEAR_OPS})
    if integer:
        return f"its linear layers compute in integers ({', '.join(integer)}: QOperator int8), no float weight to probe"
    constants = [a.t for node in model.graph.node if node.op_type == "Constant" for a in node.attribute]
    stored = [*model.graph.initializer, *constants]
    half = [t.name for t in stored if t.data_type in (TensorProto.FLOAT16, TensorProto.BFLOAT16)]
    if half:
        return f"it computes in float16 ({len(half)} float16 weights); cushions are measured on float32 arithmetic"
    return None


@dataclass(frozen=True)
class LayerCushion:
    """One linear layer's measurements (paper §4.1; Arora et al. 2018 definitions 4–5)."""

    node: str
    """Name (or output tensor) of the ONNX node."""
    op_type: str
    """`Gemm`, `MatMul` or `Conv`."""
    width: int
    """h_i: the number of values in the layer's output per sample."""
    weight_frobenius: float
    """‖A_i‖_F (a conv kernel reshaped to 2-D; Gemm's alpha included)."""
    layer_cushion: float
    """μ_i = min_x ‖A_i φ(x_{i−1})‖ / (‖A_i‖_F ‖φ(x_{i−1})‖)."""
    interlayer_cushion: float
    """μ_{i→} = min over later layers j ≥ i and samples of ‖J x_i‖ / (‖J‖_F ‖x_i‖)."""


@dataclass(frozen=True)
class Cushions:
    """A model's cushions on its validation inputs: computed once per model, used for every pair it references."""

    model_id: str
    layers: tuple[LayerCushion, ...]
    activation_contraction: float
    """c = max over layers and samples of ‖x_i‖ / ‖φ(x_i)‖ (1 for a single layer)."""
    max_output_norm: float
    """max_x ‖f(x)‖ over the samples."""
    median_margin: float
    """Median over samples of the top-1 output margin f(x)[top] − max of the others (classifiers)."""
    mean_output_norm: float
    """Mean over samples of ‖f(x)‖ (the margin scale of vector outputs)."""
    samples: int
    """Samples the layer cushions, contraction and output norms were measured on."""
    jacobian_samples: int
    """Samples the interlayer cushions were measured on."""
    projections: int
    """Random projections per Jacobian Frobenius-norm estimate."""
    seconds: float
    """Wall time of the measurement."""
    dataset: str = ""
    """Name of the data the cushions were measured on (a built-in set or an `.npz` stem)."""

    @property
    def depth(self) -> int:
        """d: the number of linear layers."""
        return len(self.layers)

    def cushion_sum(self) -> float:
        """Σ_i 1 / (μ_i² μ_{i→}²); infinite when a cushion is zero (the bound is then vacuous)."""
        total = 0.0
        for layer in self.layers:
            product = layer.layer_cushion * layer.interlayer_cushion
            if product <= 0:
                return float("inf")
            total += 1.0 / product**2
        return total

    def complexity(self, margin: float) -> float:
        """c² d² max‖f‖² Σ 1/(μ_i² μ_{i→}²) / γ² — the numerator of Arora et al.'s Thm 4.1 term."""
        if margin <= 0:
            return float("inf")
        ratio = self.max_output_norm / margin
        return (self.activation_contraction * self.depth * ratio) ** 2 * self.cushion_sum()


@dataclass(frozen=True)
class ModelCushions:
    """The stored output of the cushions stage: a model's cushions, or why they could not be measured.

    A model without a measurable linear layer is still indexed; in the `arora`/`custom` bound modes
    its pairs as reference get a vacuous bound (an infinite architecture term), never a wrong one.
    """

    model_id: str
    dataset: str
    cushions: Cushions | None
    error: str | None = None
    fallback: bool = False
    """True when the cushions do not apply to the graph (integer or float16 arithmetic, `cushions_not_applicable`)
    or were not needed by the bound mode: the architecture modes then bound its pairs with the statistical term
    and say so, rather than reporting a vacuous bound."""


@dataclass(frozen=True)
class _Layer:
    node: onnx.NodeProto
    weight: np.ndarray
    weight_frobenius: float
    activation: str
    output: str


def compute_cushions(
    model: onnx.ModelProto | Path | str,
    x: np.ndarray,
    *,
    model_id: str = "",
    dataset: str = "",
    jacobian_samples: int = defaults.CUSHION_JACOBIAN_SAMPLES,
    projections: int = defaults.CUSHION_PROJECTIONS,
    step: float = 1e-3,
    seed: int = 0,
    batch_size: int = 4096,
    memory_bytes: int = defaults.STAGE_MEMORY_BYTES,
) -> Cushions:
    """Measure a model's cushions, contraction, depth and output norms on inputs `x` (batch first).

    The layer cushions, contraction and output norms use every sample of `x`; the interlayer
    cushions use the first `jacobian_samples` of them with `projections` random directions each
    (cost ∝ depth × jacobian_samples × (projections + 2) forward passes). `step` is the finite
    difference step relative to ‖x_i‖. Samples are streamed in batches of at most `batch_size` whose probed
    tensors take at most `memory_bytes`; a graph in integer or float16 arithmetic raises `CushionsNotApplicable`.
    """
    started = time.perf_counter()
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    model_id = model_id or proto.graph.name
    reason = cushions_not_applicable(proto)
    if reason is not None:
        raise CushionsNotApplicable(f"{model_id}: {reason}")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 2 or len(x) == 0:
        raise CushionError(f"{model_id}: expected a non-empty batch of inputs, got shape {x.shape}")
    if jacobian_samples < 1 or projections < 1:
        raise ValueError(f"jacobian_samples and projections must be ≥ 1, got {jacobian_samples}, {projections}")
    layers = _linear_layers(proto)
    if not layers:
        raise CushionError(f"{model_id}: no linear layer (Gemm/MatMul/Conv with a constant weight) to measure")
    inputs = _input_names(proto)
    if len(inputs) != 1:
        raise CushionError(f"{model_id}: cushions need a single-input model; it takes {len(inputs)} inputs")
    input_name = inputs[0]
    output_name = proto.graph.output[0].name
    try:
        return _measure(
            proto,
            layers,
            input_name,
            output_name,
            x,
            model_id,
            dataset,
            jacobian_samples,
            projections,
            step,
            seed,
            batch_size,
            memory_bytes,
            started,
        )
    except ORT_ERRORS as exc:  # they become a CushionError that names the model
        raise CushionError(f"{model_id}: ONNX Runtime could not run the probe graph: {exc}") from exc


def _measure(
    proto: onnx.ModelProto,
    layers: list[_Layer],
    input_name: str,
    output_name: str,
    x: np.ndarray,
    model_id: str,
    dataset: str,
    jacobian_samples: int,
    projections: int,
    step: float,
    seed: int,
    batch_size: int,
    memory_bytes: int,
    started: float,
) -> Cushions:
    label = model_id
    norms = _activation_norms(proto, layers, input_name, output_name, x, batch_size, memory_bytes, label)
    layer_cushions = [
        _min_ratio(norms[f"product{i}"], layer.weight_frobenius * norms[f"unfolded{i}"])
        for i, layer in enumerate(layers)
    ]
    contraction = 1.0
    for i in range(len(layers) - 1):
        contraction = max(contraction, _max_ratio(norms[f"output{i}"], norms[f"activation{i + 1}"]))
    outputs = norms["f"]
    out_norms = np.linalg.norm(outputs.reshape(len(outputs), -1), axis=1)
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        top2 = np.sort(outputs, axis=1)[:, -2:]
        margin = float(np.median(top2[:, 1] - top2[:, 0]))
    else:
        margin = float(np.mean(out_norms))

    subset = x[: max(1, min(jacobian_samples, len(x)))]
    rng = np.random.default_rng(seed)
    widths = [int(np.prod(norms[f"shape{i}"])) for i in range(len(layers))]
    interlayer = [
        _interlayer_cushion(
            proto, layers, i, input_name, subset, projections, step, rng, sum(widths[i + 1 :]), memory_bytes, label
        )
        for i in range(len(layers))
    ]
    measured = tuple(
        LayerCushion(
            node=layer.node.name or layer.output,
            op_type=layer.node.op_type,
            width=widths[i],
            weight_frobenius=layer.weight_frobenius,
            layer_cushion=layer_cushions[i],
            interlayer_cushion=float(min(interlayer[i], 1.0 / np.sqrt(widths[i]))),
        )
        for i, layer in enumerate(layers)
    )
    return Cushions(
        model_id=model_id,
        layers=measured,
        activation_contraction=float(contraction),
        max_output_norm=float(np.max(out_norms)),
        median_margin=margin,
        mean_output_norm=float(np.mean(out_norms)),
        samples=len(x),
        jacobian_samples=len(subset),
        projections=projections,
        seconds=time.perf_counter() - started,
        dataset=dataset,
    )


def _min_ratio(numerator: np.ndarray, denominator: np.ndarray) -> float:
    """min over samples of numerator/denominator, skipping samples whose denominator vanishes."""
    keep = denominator > _TINY
    return float(np.min(numerator[keep] / denominator[keep])) if keep.any() else 1.0


def _max_ratio(numerator: np.ndarray, denominator: np.ndarray) -> float:
    """max over samples of numerator/denominator; infinite if a nonzero numerator meets a zero denominator."""
    zero = denominator <= _TINY
    if np.any(zero & (numerator > _TINY)):
        return float("inf")
    keep = ~zero
    return float(np.max(numerator[keep] / denominator[keep])) if keep.any() else 1.0


def _input_names(model: onnx.ModelProto) -> list[str]:
    initializers = {t.name for t in model.graph.initializer}
    return [v.name for v in model.graph.input if v.name not in initializers]


def _constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializers, `Constant` node values and `DequantizeLinear` of constants (a QDQ graph's weights, dequantized)
    by tensor name."""
    found = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    found[node.output[0]] = numpy_helper.to_array(attribute.t)
        elif node.op_type == "DequantizeLinear" and all(name in found for name in node.input if name):
            found[node.output[0]] = _dequantized(node, found)
    return found


def _dequantized(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> np.ndarray:
    """(q − zero point) · scale of a `DequantizeLinear` node over constants, per tensor or per `axis`."""
    quantized = constants[node.input[0]].astype(np.float64)
    scale = constants[node.input[1]].astype(np.float64)
    zero = constants[node.input[2]].astype(np.float64) if len(node.input) > 2 and node.input[2] else np.zeros(1)
    if scale.ndim == 1 and scale.size > 1:
        axis = int(node_attribute(node, "axis", 1)) % quantized.ndim  # type: ignore[arg-type]
        shape = [1] * quantized.ndim
        shape[axis] = scale.size
        scale, zero = scale.reshape(shape), np.broadcast_to(zero, scale.shape).reshape(shape)
    return ((quantized - zero) * scale).astype(np.float32)


def _linear_layers(model: onnx.ModelProto) -> list[_Layer]:
    """Gemm/MatMul/Conv nodes with one constant weight, in graph (topological) order."""
    constants = _constants(model)
    layers = []
    for node in model.graph.node:
        if node.op_type not in LINEAR_OPS:
            continue
        if node.op_type == "MatMul":
            weight_inputs = [k for k in (0, 1) if node.input[k] in constants]
            if len(weight_inputs) != 1:
                continue  # activation × activation (attention) or constant × constant: not a layer
            weight_index = weight_inputs[0]
            activation = node.input[1 - weight_index]
            scale = 1.0
        elif node.op_type == "Gemm":
            weight_index = 1 if node.input[1] in constants else 0
            if node.input[weight_index] not in constants or node.input[1 - weight_index] in constants:
                continue
            activation = node.input[1 - weight_index]
            scale = abs(node_attribute(node, "alpha", 1.0))
        else:
            weight_index = 1
            if node.input[1] not in constants:
                continue
            activation = node.input[0]
            scale = 1.0
        weight = constants[node.input[weight_index]].astype(np.float64)
        frobenius = scale * float(np.linalg.norm(weight.ravel()))
        layers.append(_Layer(node, weight, frobenius, activation, node.output[0]))
    return layers


def _probe_nodes(layer: _Layer, i: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto], str, str]:
    """Nodes computing layer i's bias-free product A_i φ and the squared norm of its unfolded input."""
    node = layer.node
    product = f"__cushion_product{i}"
    if node.op_type == "MatMul":
        return [helper.make_node("MatMul", list(node.input), [product])], [], product, layer.activation
    if node.op_type == "Gemm":
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name != "beta"}
        return [helper.make_node("Gemm", list(node.input[:2]), [product], **attributes)], [], product, layer.activation
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    conv = helper.make_node("Conv", list(node.input[:2]), [product], **attributes)
    groups = int(attributes.get("group", 1))
    channels_in = layer.weight.shape[1] * groups
    ones_name = f"__cushion_ones{i}"
    ones = numpy_helper.from_array(np.ones((1, channels_in, *layer.weight.shape[2:]), dtype=np.float32), ones_name)
    window = {k: v for k, v in attributes.items() if k not in ("group", "kernel_shape")}
    squared, energy = f"__cushion_squared{i}", f"__cushion_energy{i}"
    nodes = [
        conv,
        helper.make_node("Mul", [layer.activation, layer.activation], [squared]),
        helper.make_node("Conv", [squared, ones_name], [energy], **window),
    ]
    return nodes, [ones], product, energy


def _activation_norms(
    model: onnx.ModelProto,
    layers: list[_Layer],
    input_name: str,
    output_name: str,
    x: np.ndarray,
    batch_size: int,
    memory_bytes: int,
    label: str,
) -> dict[str, np.ndarray]:
    """Per-sample norms of every layer's input, bias-free product, unfolded input and output, and f(x), streamed
    in batches whose probed tensors fit `memory_bytes` (sized from the first sample's)."""
    probe = with_outputs(model, [])
    wanted: dict[str, tuple[str, str]] = {}  # key -> (tensor, reduction)
    for i, layer in enumerate(layers):
        nodes, initializers, product, unfolded = _probe_nodes(layer, i)
        probe.graph.node.extend(nodes)
        probe.graph.initializer.extend(initializers)
        wanted[f"product{i}"] = (product, "norm")
        wanted[f"unfolded{i}"] = (unfolded, "sqrt_sum" if unfolded != layer.activation else "norm")
        wanted[f"activation{i}"] = (layer.activation, "norm")
        wanted[f"output{i}"] = (layer.output, "norm")
    tensors = sorted({t for t, _ in wanted.values()} | {output_name})
    probe = with_outputs(probe, tensors)
    session = model_session(probe)
    results: dict[str, list[np.ndarray]] = {k: [] for k in wanted}
    results["f"] = []
    shapes: dict[str, tuple[int, ...]] = {}
    start, rows = 0, 1  # the first sample alone measures what one sample's probed tensors take
    while start < len(x):
        values = dict(zip(tensors, session.run(tensors, {input_name: x[start : start + rows]}), strict=True))
        if start == 0:
            # the tensors themselves, their float64 copies in the reductions, and ONNX Runtime's arena besides
            per_row = 3 * sum(value.nbytes for value in values.values()) // max(1, len(values[output_name]))
            next_rows = rows_within_budget(per_row, memory_bytes, label, STAGE, cap=batch_size)
        for key, (tensor, reduction) in wanted.items():
            flat = values[tensor].reshape(len(values[tensor]), -1).astype(np.float64)
            results[key].append(np.sqrt(flat.sum(axis=1)) if reduction == "sqrt_sum" else np.linalg.norm(flat, axis=1))
        for i, layer in enumerate(layers):
            shapes[f"shape{i}"] = values[layer.output].shape[1:]
        results["f"].append(values[output_name].astype(np.float64))
        start, rows = start + rows, next_rows
    merged: dict[str, np.ndarray] = {k: np.concatenate(v) for k, v in results.items()}
    merged.update({k: np.array(v) for k, v in shapes.items()})
    return merged


def _interlayer_cushion(
    model: onnx.ModelProto,
    layers: list[_Layer],
    i: int,
    input_name: str,
    x: np.ndarray,
    projections: int,
    step: float,
    rng: np.random.Generator,
    later_width: int,
    memory_bytes: int,
    label: str,
) -> float:
    """min over j > i and samples of ‖J_{i,j} x_i‖ / (‖J_{i,j}‖_F ‖x_i‖), J by finite differences (1 if i is last).

    Samples are taken a few at a time: each needs k + 2 forward passes of the graph after layer i (its
    perturbed copies), so the chunk is sized to keep them and the later layers' outputs (`later_width` values
    per pass) within `memory_bytes`. The random directions are drawn sample by sample, so the chunking does not
    change them.
    """
    later = [layer.output for layer in layers[i + 1 :]]
    if not later:
        return 1.0
    source = layers[i].output
    base_session = model_session(with_outputs(model, [source]))  # x_i's values, from the unmodified graph
    # the graph with x_i as an input: its producer writes to a dead name, so J holds every other tensor fixed
    cut = with_outputs(model, later)
    for node in cut.graph.node:
        for k, name in enumerate(node.output):
            if name == source:
                node.output[k] = f"{source}__cushion_cut"
    cut.graph.input.append(helper.make_tensor_value_info(source, TensorProto.FLOAT, None))
    session = model_session(cut)

    best, start, rows = 1.0, 0, 1
    while start < len(x):
        chunk = x[start : start + rows]
        base = base_session.run([source], {input_name: chunk})[0].astype(np.float32)
        width = int(np.prod(base.shape[1:]))
        k = min(projections, width)
        if start == 0:
            passes = k + 2
            per_sample = passes * (chunk[0].nbytes + 8 * width + 16 * later_width) + 24 * width * k
            next_rows = rows_within_budget(per_sample, memory_bytes, label, STAGE)
        best = min(best, _chunk_interlayer(session, later, input_name, source, chunk, base, k, step, rng))
        start, rows = start + rows, next_rows
    return best


def _chunk_interlayer(
    session: object,
    later: list[str],
    input_name: str,
    source: str,
    x: np.ndarray,
    base: np.ndarray,
    k: int,
    step: float,
    rng: np.random.Generator,
) -> float:
    """The interlayer cushion's minimum over the samples `x` (x_i's values `base`), k random directions each."""
    m = len(x)
    flat = base.reshape(m, -1)
    width = flat.shape[1]
    directions = np.empty((m, k + 1, width), dtype=np.float32)
    directions[:, 0, :] = flat  # the first direction is x_i itself: J x_i
    directions[:, 1:, :] = np.sqrt(width) * _orthonormal_rows(rng, m, k, width)
    direction_norms = np.linalg.norm(directions, axis=2, keepdims=True)
    t = step * np.maximum(np.linalg.norm(flat, axis=1), 1e-6)[:, None, None] / np.maximum(direction_norms, _TINY)
    plus = (flat[:, None, :] + t * directions).reshape(-1, *base.shape[1:])
    del directions
    # forward differences from the unperturbed point (the first m rows): exact for piecewise-linear
    # maps unless a step crosses a kink, and about half the forward passes of central differences
    feed = {
        input_name: np.concatenate([x, np.repeat(x, k + 1, axis=0)]),
        source: np.concatenate([base, plus]).astype(np.float32),
    }
    best = 1.0
    x_norms = np.linalg.norm(flat, axis=1).astype(np.float64)
    for value in session.run(later, feed):  # type: ignore[attr-defined]
        stacked = value.reshape(len(value), -1).astype(np.float64)
        origin, moved = stacked[:m], stacked[m:].reshape(m, k + 1, -1)
        jv = (moved - origin[:, None, :]) / t.reshape(m, k + 1, 1)
        jv_norms = np.linalg.norm(jv, axis=2)
        j_x = jv_norms[:, 0]  # ‖J x_i‖ (direction x_i, not rescaled)
        j_frobenius = np.sqrt(np.mean(jv_norms[:, 1:] ** 2, axis=1))  # E_v ‖J v‖² = ‖J‖_F²
        best = min(best, _min_ratio(j_x, j_frobenius * x_norms))
    return best


def _orthonormal_rows(rng: np.random.Generator, m: int, k: int, width: int) -> np.ndarray:
    """For each of m samples, k random orthonormal directions in R^width (Haar, via QR of a Gaussian).

    Scaled by √width they satisfy E ‖J v‖² = ‖J‖_F² like Gaussian vectors, with less variance, and
    k = width directions give ‖J‖_F exactly (an orthonormal basis).
    """
    if k == width:
        return np.broadcast_to(np.eye(width, dtype=np.float32), (m, width, width)).copy()
    q, r = np.linalg.qr(rng.standard_normal((m, width, k)))
    q = q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]  # a uniform (Haar) draw
    return np.transpose(q, (0, 2, 1)).astype(np.float32)
