"""Hand-built ONNX graphs for the segment tests: a residual block, a two-branch block, shared weights."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _model(nodes, initializers, input_shape, output_shape, name) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *output_shape])],
        initializer=[numpy_helper.from_array(v.astype(np.float32), k) for k, v in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def conv(name: str, x: str, w: str, b: str | None, out: str, pad: int = 1) -> onnx.NodeProto:
    inputs = [x, w] + ([b] if b else [])
    return helper.make_node("Conv", inputs, [out], name=name, kernel_shape=[3, 3] if pad else [1, 1], pads=[pad] * 4)


def residual_weights(seed: int, channels: int = 4) -> dict[str, np.ndarray]:
    """Weights of `residual_net`; a different seed gives a structurally identical twin."""
    rng = np.random.default_rng(seed)
    c = channels
    return {
        "stem_w": rng.normal(0, 0.5, (c, 1, 3, 3)),
        "stem_b": rng.normal(0, 0.1, c),
        "bn_scale": rng.uniform(0.5, 1.5, c),
        "bn_bias": rng.normal(0, 0.1, c),
        "bn_mean": rng.normal(0, 0.1, c),
        "bn_var": rng.uniform(0.5, 1.5, c),
        "b1_w": rng.normal(0, 0.3, (c, c, 3, 3)),
        "b1_b": rng.normal(0, 0.1, c),
        "b2_w": rng.normal(0, 0.3, (c, c, 3, 3)),
        "b2_b": rng.normal(0, 0.1, c),
        "head_w": rng.normal(0, 0.3, (3, c * 4 * 4)),
        "head_b": rng.normal(0, 0.1, 3),
    }


def residual_net(weights: dict[str, np.ndarray], name: str = "residual") -> onnx.ModelProto:
    """x (N,1,4,4) → Conv → BatchNorm → Relu → [Conv → Relu → Conv] + skip → Add → Relu → Flatten → Gemm (3)."""
    nodes = [
        conv("stem", "x", "stem_w", "stem_b", "s"),
        helper.make_node("BatchNormalization", ["s", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["n"], name="bn"),
        helper.make_node("Relu", ["n"], ["r"], name="relu0"),
        conv("b1", "r", "b1_w", "b1_b", "c1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        conv("b2", "r1", "b2_w", "b2_b", "c2"),
        helper.make_node("Add", ["r", "c2"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["r2"], name="relu2"),
        helper.make_node("Flatten", ["r2"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "head_w", "head_b"], ["y"], name="head", transB=1),
    ]
    return _model(nodes, weights, (1, 4, 4), (3,), name)


def two_branch_weights(seed: int, channels: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = channels
    return {
        "stem_w": rng.normal(0, 0.5, (c, 1, 3, 3)),
        "stem_b": rng.normal(0, 0.1, c),
        "p_w": rng.normal(0, 0.5, (2, c, 1, 1)),
        "p_b": rng.normal(0, 0.1, 2),
        "q_w": rng.normal(0, 0.3, (c, c, 3, 3)),
        "q_b": rng.normal(0, 0.1, c),
        "head_w": rng.normal(0, 0.3, (2, (2 + c) * 4 * 4)),
        "head_b": rng.normal(0, 0.1, 2),
    }


def two_branch_net(weights: dict[str, np.ndarray], name: str = "two_branch") -> onnx.ModelProto:
    """x (N,1,4,4) → Conv → Relu → {Conv1x1 → Relu ; Conv3x3 → Relu} → Concat → MaxPool(1) → Flatten → Gemm (2)."""
    nodes = [
        conv("stem", "x", "stem_w", "stem_b", "s"),
        helper.make_node("Relu", ["s"], ["r"], name="relu0"),
        conv("p", "r", "p_w", "p_b", "pc", pad=0),
        helper.make_node("Relu", ["pc"], ["pr"], name="relu_p"),
        conv("q", "r", "q_w", "q_b", "qc"),
        helper.make_node("Relu", ["qc"], ["qr"], name="relu_q"),
        helper.make_node("Concat", ["pr", "qr"], ["cat"], name="concat", axis=1),
        helper.make_node("Flatten", ["cat"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "head_w", "head_b"], ["y"], name="head", transB=1),
    ]
    return _model(nodes, weights, (1, 4, 4), (2,), name)


def mlp(w1: np.ndarray, w2: np.ndarray, name: str = "mlp") -> onnx.ModelProto:
    """x (N,2) → MatMul(w1) → Relu → MatMul(w2): bias-free, for bounds checkable by hand."""
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2"),
    ]
    return _model(nodes, {"w1": w1, "w2": w2}, (w1.shape[0],), (w2.shape[1],), name)


def images(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, 1, 4, 4)).astype(np.float32)
