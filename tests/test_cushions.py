"""Cushions measured through ONNX Runtime against values computed by hand and by autograd (float64 torch).

The networks are small, bias-free ReLU networks built directly as ONNX graphs (no export), so the
reference values follow the definitions of Arora et al. 2018 literally.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from sommelier_core.equivalence.cushions import CushionError, compute_cushions

RNG = np.random.default_rng(7)


def _model(nodes, weights: dict[str, np.ndarray], input_shape: list) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(w.astype(np.float32), name) for name, w in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def mlp():
    """x (N,6) → MatMul W1 (6×8) → ReLU → Gemm W2ᵀ (transB, alpha 0.5) → ReLU → MatMul W3 (7×3)."""
    weights = {"w1": RNG.normal(size=(6, 8)), "w2": RNG.normal(size=(7, 8)), "w3": RNG.normal(size=(7, 3))}
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["x1"]),
        helper.make_node("Relu", ["x1"], ["a1"]),
        helper.make_node("Gemm", ["a1", "w2"], ["x2"], transB=1, alpha=0.5),
        helper.make_node("Relu", ["x2"], ["a2"]),
        helper.make_node("MatMul", ["a2", "w3"], ["y"]),
    ]
    x = RNG.normal(size=(40, 6)).astype(np.float32)
    return _model(nodes, weights, [6]), weights, x


def _mlp_torch(weights):
    w1, w2, w3 = (torch.tensor(weights[k], dtype=torch.float64) for k in ("w1", "w2", "w3"))
    layers = [lambda a: a @ w1, lambda a: 0.5 * torch.relu(a) @ w2.T, lambda a: torch.relu(a) @ w3]
    return layers, [w1, 0.5 * w2.T, w3]


def test_mlp_layer_cushions_contraction_and_output_norms_match_the_definitions(mlp):
    model, weights, x = mlp
    layers, matrices = _mlp_torch(weights)
    cushions = compute_cushions(model, x, jacobian_samples=5, projections=4)
    assert cushions.depth == 3
    xs = [torch.tensor(x, dtype=torch.float64)]
    for layer in layers:
        xs.append(layer(xs[-1]))
    inputs = [xs[0], torch.relu(xs[1]), torch.relu(xs[2])]
    for i, measured in enumerate(cushions.layers):
        # A_i φ(x_{i−1}) with A_i the effective matrix (Gemm's alpha included)
        ratio = (inputs[i] @ matrices[i]).norm(dim=1) / (matrices[i].norm() * inputs[i].norm(dim=1))
        assert measured.layer_cushion == pytest.approx(float(ratio.min()), rel=1e-4)
        assert measured.weight_frobenius == pytest.approx(float(matrices[i].norm()), rel=1e-5)
    contraction = max(float((xs[i].norm(dim=1) / torch.relu(xs[i]).norm(dim=1)).max()) for i in (1, 2))
    assert cushions.activation_contraction == pytest.approx(contraction, rel=1e-4)
    assert cushions.max_output_norm == pytest.approx(float(xs[3].norm(dim=1).max()), rel=1e-5)
    top2 = torch.sort(xs[3], dim=1).values[:, -2:]
    assert cushions.median_margin == pytest.approx(
        float(np.median((top2[:, 1] - top2[:, 0]).numpy())), rel=1e-3, abs=1e-4
    )


def test_mlp_interlayer_cushions_match_autograd_jacobians(mlp):
    model, weights, x = mlp
    layers, _ = _mlp_torch(weights)
    cushions = compute_cushions(model, x, jacobian_samples=len(x), projections=400, seed=1)
    expected = []
    for i in (1, 2, 3):
        widths = [8, 7, 3]
        best = 1 / np.sqrt(widths[i - 1])  # J_{i,i} = I
        for sample in torch.tensor(x, dtype=torch.float64):
            xi = sample
            for layer in layers[:i]:
                xi = layer(xi)
            for j in range(i + 1, 4):

                def tail(v, i=i, j=j):
                    for layer in layers[i:j]:
                        v = layer(v)
                    return v

                jac = torch.autograd.functional.jacobian(tail, xi)
                best = min(best, float((jac @ xi).norm() / (jac.norm() * xi.norm())))
        expected.append(best)
    measured = [layer.interlayer_cushion for layer in cushions.layers]
    assert measured == pytest.approx(expected, rel=0.05)
    assert measured[-1] == pytest.approx(1 / np.sqrt(3))  # last layer: only J = I


def test_conv_layer_cushion_uses_the_kernel_as_a_2d_matrix_over_unfolded_inputs():
    """Conv (2→4 channels, k=3, pad 1) → ReLU → grouped strided Conv (groups 2) → ReLU → Flatten → Gemm."""
    weights = {
        "k1": RNG.normal(size=(4, 2, 3)),
        "k2": RNG.normal(size=(4, 2, 3)),
        "w3": RNG.normal(size=(5, 4 * 6)),
    }
    nodes = [
        helper.make_node("Conv", ["x", "k1"], ["x1"], pads=[1, 1]),
        helper.make_node("Relu", ["x1"], ["a1"]),
        helper.make_node("Conv", ["a1", "k2"], ["x2"], pads=[1, 1], strides=[2], group=2),
        helper.make_node("Relu", ["x2"], ["a2"]),
        helper.make_node("Flatten", ["a2"], ["f"]),
        helper.make_node("Gemm", ["f", "w3"], ["y"], transB=1),
    ]
    model = _model(nodes, weights, [2, 12])
    x = RNG.normal(size=(30, 2, 12)).astype(np.float32)
    cushions = compute_cushions(model, x, jacobian_samples=30, projections=300, seed=2)

    k1, k2, w3 = (torch.tensor(weights[k], dtype=torch.float64) for k in ("k1", "k2", "w3"))
    t = torch.tensor(x, dtype=torch.float64)
    x1 = torch.nn.functional.conv1d(t, k1, padding=1)
    a1 = torch.relu(x1)
    x2 = torch.nn.functional.conv1d(a1, k2, padding=1, stride=2, groups=2)

    def unfold(a, k, stride):  # (N, C·k, positions) im2col columns
        return torch.nn.functional.unfold(a.unsqueeze(2), (1, k), padding=(0, 1), stride=(1, stride))

    cols1 = unfold(t, 3, 1)
    mu1 = (x1.flatten(1).norm(dim=1) / (k1.norm() * cols1.flatten(1).norm(dim=1))).min()
    cols2 = unfold(a1, 3, 2)
    mu2 = (x2.flatten(1).norm(dim=1) / (k2.norm() * cols2.flatten(1).norm(dim=1))).min()
    measured = cushions.layers
    assert [layer.op_type for layer in measured] == ["Conv", "Conv", "Gemm"]
    assert measured[0].layer_cushion == pytest.approx(float(mu1), rel=1e-4)
    assert measured[1].layer_cushion == pytest.approx(float(mu2), rel=1e-4)
    assert all(0 < layer.layer_cushion <= 1 for layer in measured)

    def tail(v):
        v2 = torch.nn.functional.conv1d(torch.relu(v), k2, padding=1, stride=2, groups=2)
        return torch.relu(v2).flatten() @ w3.T

    best = 1 / np.sqrt(4 * 12)
    for sample in x1:
        for fn in (lambda v: torch.nn.functional.conv1d(torch.relu(v), k2, padding=1, stride=2, groups=2), tail):
            jac = torch.autograd.functional.jacobian(fn, sample).reshape(-1, sample.numel())
            best = min(best, float((jac @ sample.flatten()).norm() / (jac.norm() * sample.norm())))
    assert measured[0].interlayer_cushion == pytest.approx(best, rel=0.05)


def test_a_model_without_linear_layers_is_a_clear_error():
    model = _model([helper.make_node("Relu", ["x"], ["y"])], {}, [4])
    with pytest.raises(CushionError, match="no linear layer"):
        compute_cushions(model, np.ones((3, 4), dtype=np.float32), model_id="lab/relu")


def test_complexity_is_the_arora_numerator(mlp):
    model, _, x = mlp
    c = compute_cushions(model, x, jacobian_samples=5, projections=4)
    total = sum(1 / (layer.layer_cushion * layer.interlayer_cushion) ** 2 for layer in c.layers)
    expected = (c.activation_contraction * 3 * c.max_output_norm / 0.5) ** 2 * total
    assert c.cushion_sum() == pytest.approx(total)
    assert c.complexity(0.5) == pytest.approx(expected)
    assert c.complexity(0.0) == float("inf")


def test_interlayer_cushion_through_a_residual_block_holds_the_skip_branch_fixed():
    """x1 = x W1; s = relu(relu(x1) W2) + relu(x1); y = s W3 — J_{2,3} sees only the branch, J_{1,3} both paths."""
    weights = {"w1": RNG.normal(size=(5, 6)), "w2": RNG.normal(size=(6, 6)), "w3": RNG.normal(size=(6, 4))}
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["x1"]),
        helper.make_node("Relu", ["x1"], ["a1"]),
        helper.make_node("MatMul", ["a1", "w2"], ["x2"]),
        helper.make_node("Relu", ["x2"], ["a2"]),
        helper.make_node("Add", ["a2", "a1"], ["s"]),
        helper.make_node("MatMul", ["s", "w3"], ["y"]),
    ]
    x = RNG.normal(size=(25, 5)).astype(np.float32)
    cushions = compute_cushions(_model(nodes, weights, [5]), x, jacobian_samples=25, projections=6)
    w1, w2, w3 = (torch.tensor(weights[k], dtype=torch.float64) for k in ("w1", "w2", "w3"))

    def from_x1(v):  # x1 → (x2, y): the skip carries relu(x1) to y
        a1 = torch.relu(v)
        x2 = a1 @ w2
        return x2, (torch.relu(x2) + a1) @ w3

    expected = [1 / np.sqrt(6), 1 / np.sqrt(6)]
    for sample in torch.tensor(x, dtype=torch.float64):
        x1 = sample @ w1
        a1 = torch.relu(x1)
        x2 = a1 @ w2
        for k in (0, 1):
            jac = torch.autograd.functional.jacobian(lambda v, k=k: from_x1(v)[k], x1)
            expected[0] = min(expected[0], float((jac @ x1).norm() / (jac.norm() * x1.norm())))
        jac = torch.autograd.functional.jacobian(lambda v, a1=a1: (torch.relu(v) + a1) @ w3, x2)
        expected[1] = min(expected[1], float((jac @ x2).norm() / (jac.norm() * x2.norm())))
    measured = [layer.interlayer_cushion for layer in cushions.layers[:2]]
    assert measured == pytest.approx(expected, rel=0.03)


def test_random_projections_estimate_the_jacobian_norm_when_fewer_than_the_width():
    """With k < h random orthonormal directions the estimate is unbiased; on 40 samples it lands within ~15 %."""
    weights = {"w1": RNG.normal(size=(10, 64)), "w2": RNG.normal(size=(64, 32))}
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["x1"]),
        helper.make_node("Relu", ["x1"], ["a1"]),
        helper.make_node("MatMul", ["a1", "w2"], ["y"]),
    ]
    model = _model(nodes, weights, [10])
    x = RNG.normal(size=(40, 10)).astype(np.float32)
    exact = compute_cushions(model, x, jacobian_samples=40, projections=64).layers[0]
    estimated = compute_cushions(model, x, jacobian_samples=40, projections=16, seed=3).layers[0]
    # μ_{1→} = min(1/√64, μ_{1,2}); compare the measured μ_{1,2} part, which lies below 1/8 here
    assert exact.interlayer_cushion < 1 / 8
    assert estimated.interlayer_cushion == pytest.approx(exact.interlayer_cushion, rel=0.15)


def test_inputs_the_model_cannot_take_are_a_cushion_error_naming_the_model(mlp):
    model, _, _ = mlp
    with pytest.raises(CushionError, match="lab/mlp: ONNX Runtime could not run"):
        compute_cushions(model, np.ones((3, 5), dtype=np.float32), model_id="lab/mlp")
