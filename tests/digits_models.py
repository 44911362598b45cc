"""Tiny ONNX classifiers for the built-in 8×8 digits validation set, written by tests that index folders of them."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def dynamic_digits_classifier(path, seed: int = 0) -> None:
    """(N, 1, H, W) → (N, 10): conv 1→4 (3×3, pad 1) → global average pool → flatten → Gemm 4→10."""
    rng = np.random.default_rng(seed)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("GlobalAveragePool", ["c"], ["p"]),
            helper.make_node("Flatten", ["p"], ["f"]),
            helper.make_node("Gemm", ["f", "g", "b"], ["y"]),
        ],
        "digits_dynamic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        initializer=[
            numpy_helper.from_array(rng.normal(size=(4, 1, 3, 3)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.normal(size=(4, 10)).astype(np.float32), "g"),
            numpy_helper.from_array(np.zeros(10, dtype=np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def fixed_digits_classifier(path, seed: int = 0) -> None:
    """(N, 1, 8, 8) → (N, 10): a linear model on the flattened image."""
    rng = np.random.default_rng(seed)
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["y"])],
        "digits_linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        initializer=[
            numpy_helper.from_array(rng.normal(size=(64, 10)).astype(np.float32), "w"),
            numpy_helper.from_array(np.array([-1, 64], dtype=np.int64), "shape"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
