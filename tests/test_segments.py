"""Segment equivalence (paper §4.2): sequences, candidate segments, the bound, noise effect, synthesis."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from sommelier_core.inference import probe_session
from sommelier_core.segments.analysis import analyse_pair, synthesize_pair
from sommelier_core.segments.error_bound import SegmentBounder
from sommelier_core.segments.lcs import SegmentPair, candidate_segments, common_runs
from sommelier_core.segments.noise_effect import NoiseInjector, estimate_effect, segment_macs
from sommelier_core.segments.sequences import model_sequences
from sommelier_core.segments.synthesis import synthesize
from tests.segment_graphs import (
    images,
    mlp,
    residual_net,
    residual_weights,
    two_branch_net,
    two_branch_weights,
)


def run(model: onnx.ModelProto, x: np.ndarray, tensor: str | None = None) -> np.ndarray:
    name = tensor or model.graph.output[0].name
    return probe_session(model, [name]).run([name], {"x": x})[0]


def op_types(sequence) -> list[str]:
    return [op.op_type for op in sequence.ops]


def _matched(n: onnx.ModelProto, m: onnx.ModelProto):
    """Both models' operator views and their candidate segments (units), N's side first."""
    view_n, seq_n = model_sequences(n)
    view_m, seq_m = model_sequences(m)
    return view_n, view_m, candidate_segments(view_n, seq_n, view_m, seq_m)


def _one_segment_over_every_match(n: onnx.ModelProto, m: onnx.ModelProto):
    """Both models' views and one segment joining every matched unit, so the bound spans them all."""
    view_n, view_m, units = _matched(n, m)
    joined = SegmentPair(
        "main",
        "main",
        tuple(op for s in units for op in s.reference_ops),
        tuple(op for s in units for op in s.candidate_ops),
    )
    return view_n, view_m, joined


# --- operator sequences ------------------------------------------------------------------------


def test_residual_block_collapses_into_one_token_and_expands_into_its_branch():
    _, sequences = model_sequences(residual_net(residual_weights(0)))
    main, branch = sequences
    assert op_types(main) == ["Conv", "BatchNormalization", "Relu", "Block", "Relu", "Flatten", "Gemm"]
    block = main.ops[3]
    assert block.merge == "add"
    assert [len(b.ops) for b in block.branches] == [0, 3]  # the skip, then conv → relu → conv
    assert block.key.startswith("Block[Add{}()]<skip || Conv")
    assert op_types(branch) == ["Conv", "Relu", "Conv"]
    assert block.flat_nodes() == ("b1", "relu1", "b2", "add")


def test_two_branch_block_has_one_sequence_per_branch():
    _, sequences = model_sequences(two_branch_net(two_branch_weights(0)))
    main = sequences[0]
    assert op_types(main) == ["Conv", "Relu", "Block", "Flatten", "Gemm"]
    assert main.ops[2].merge == "concat"
    assert sorted(op_types(s) for s in sequences[1:]) == [["Conv", "Relu"], ["Conv", "Relu"]]
    # the 1x1 and the 3x3 branch differ in their tokens (attributes and weight shapes)
    assert sequences[1].keys != sequences[2].keys


def test_token_is_op_type_attributes_and_weight_shapes():
    _, sequences = model_sequences(residual_net(residual_weights(0)))
    stem = sequences[0].ops[0]
    assert stem.key == "Conv{kernel_shape=[3,3],pads=[1,1,1,1]}(1:4x1x3x3;2:4)"
    _, wider = model_sequences(residual_net(residual_weights(0, channels=5)))
    assert wider[0].ops[0].key != stem.key


# --- candidate segments --------------------------------------------------------------------------


def test_common_runs_are_the_maximal_contiguous_matches():
    runs = common_runs(("a", "b", "c", "d"), ("x", "b", "c", "y", "a"))
    assert sorted(runs) == [(0, 4, 1), (1, 1, 2)]
    assert common_runs(("a",), ("b",)) == []


def test_identical_structures_match_everywhere_one_segment_per_weighted_op():
    view_n, seq_n = model_sequences(residual_net(residual_weights(0)))
    view_m, seq_m = model_sequences(residual_net(residual_weights(1)))
    segments = candidate_segments(view_n, seq_n, view_m, seq_m)
    assert [s.reference_nodes for s in segments] == [
        ("stem",),
        ("bn", "relu0"),
        ("b1", "relu1", "b2", "add", "relu2", "flatten"),
        ("head",),
    ]
    assert all(s.reference_nodes == s.candidate_nodes for s in segments)


def test_different_blocks_leave_only_the_common_stem_and_branch_layers():
    # a wider model shares nothing; a model whose block differs shares the stem (and the block's first conv)
    view_n, seq_n = model_sequences(residual_net(residual_weights(0)))
    view_w, seq_w = model_sequences(residual_net(residual_weights(0, channels=5)))
    assert candidate_segments(view_n, seq_n, view_w, seq_w) == []
    view_t, seq_t = model_sequences(two_branch_net(two_branch_weights(0, channels=4)))
    segments = candidate_segments(view_n, seq_n, view_t, seq_t)
    assert [s.reference_nodes for s in segments] == [("stem",), ("b1", "relu1")]
    assert [s.candidate_nodes for s in segments] == [("stem",), ("q", "relu_q")]


# --- the layer-wise bound -----------------------------------------------------------------------


def test_linear_bound_by_hand():
    # N: identity then identity; M: first layer diag(2, 1). With ΔX_0 = 0 the first layer's difference
    # (W′ − W)·x is evaluated exactly on each sample: ‖(1, 0)·x‖ = (1, 0, 3), the measured difference
    # (the paper's σ_max(W′ − W)·‖x‖ would give 1, 1, 5). Relu passes the bound.
    eye = np.eye(2)
    n, m = mlp(eye, eye), mlp(np.diag([2.0, 1.0]), eye)
    view_n, view_m, segments = _matched(n, m)
    assert [s.reference_nodes for s in segments] == [("fc1", "relu"), ("fc2",)]
    x = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]], dtype=np.float32)
    first, second = SegmentBounder(view_n, view_m, x).bounds(segments)
    # + the float32 allowance 1e-6·(σ_max(W′) + σ_max(W))·‖x‖ = 3e-6·‖x‖
    np.testing.assert_allclose(first.per_sample, [1.0 + 3e-6, 0.0 + 3e-6, 3.0 + 15e-6], rtol=1e-9)
    assert second.max_bound == 0.0  # identical weights: no allowance either
    swapped = run(synthesize(view_n, view_m, segments[:1]), x, "r") - run(n, x, "r")
    np.testing.assert_allclose(np.linalg.norm(swapped, axis=1), [1.0, 0.0, 3.0])


def test_second_linear_layer_adds_its_lipschitz_term_to_its_exact_weight_change_term():
    # One segment fc1 → relu → fc2 (row vectors: y = x·W). N: identity, identity; M: diag(2, 1), then
    # W2′ = [[1, 1], [0, 1]] (σ_max = golden ratio φ), so x·(W2′ − W2) = (0, x_1).
    # bound = φ·‖ΔX_1‖ + ‖X_1·(W2′ − W2)‖ with X_1 = relu(x) (N's activation), ‖ΔX_1‖ = (1, 0, 3):
    #   x = (1, 0): φ·1 + 1 = 2.618 (measured ‖(2, 2) − (1, 0)‖ = √5 = 2.236)
    #   x = (0, 1): 0 + 0 = 0       (measured 0: exact)
    #   x = (3, 4): φ·3 + 3 = 7.854 (measured ‖(6, 10) − (3, 4)‖ = √45 = 6.708)
    # (the paper's σ_max(W2′ − W2)·‖X_1‖ term gives 2.618, 1, 9.854)
    eye = np.eye(2)
    n, m = mlp(eye, eye), mlp(np.diag([2.0, 1.0]), np.array([[1.0, 1.0], [0.0, 1.0]]))
    view_n, view_m, joined = _one_segment_over_every_match(n, m)
    x = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]], dtype=np.float32)
    (bound,) = SegmentBounder(view_n, view_m, x).bounds([joined])
    phi = (1 + 5**0.5) / 2
    np.testing.assert_allclose(bound.per_sample, [phi + 1, 0.0, 3 * phi + 3], atol=1e-4)
    measured = np.linalg.norm(run(m, x) - run(n, x), axis=1)
    np.testing.assert_allclose(measured, [5**0.5, 0.0, 45**0.5], rtol=1e-6)
    assert np.all(measured <= bound.per_sample)


def test_constant_scale_and_batch_norm_terms_are_exact_on_the_activations():
    # x → MatMul(I) → Mul(c) → Div(d) → BatchNormalization (on (N, 2) as 2 channels), N vs M:
    #   c: (1, 1) → (2, 1), so x·(c′ − c) = (x_0, 0); d: (1, 1) → (1, 0.5), so 1/d′ − 1/d = (0, 1);
    #   BN: identity (s = 1, t = 0, ε folded into var) → s′ = (1, 3), t′ = (0, 1).
    # Each op's bound = max|scale′|·‖ΔX‖ + ‖(scale′ − scale)·X (+ Δt)‖ on N's own activations; for x = (3, 4):
    #   Mul: 0 + ‖(3, 0)‖ = 3;  Div: max|1/d′| = 2 → 2·3 + ‖(0, 4)‖ = 10;
    #   BN: max|s′| = 3 → 3·10 + ‖(0, 2·4 + 1)‖ = 39 (the measured difference is ‖(6, 25) − (3, 4)‖ = 21.2)
    # (the previous rule's max|Δ|·‖X‖ terms: 5 for Mul and for Div, 2·5 + 1 = 11 for BN, on N's X = (3, 4) each).
    from onnx import TensorProto, helper, numpy_helper

    def net(c, d, scale, bias) -> onnx.ModelProto:
        epsilon = 1e-5
        constants = {
            "w": np.eye(2),
            "c": np.array(c),
            "d": np.array(d),
            "scale": np.array(scale),
            "bias": np.array(bias),
            "mean": np.zeros(2),
            "var": np.full(2, 1 - epsilon),
        }
        nodes = [
            helper.make_node("MatMul", ["x", "w"], ["h"], name="fc"),
            helper.make_node("Mul", ["h", "c"], ["m"], name="mul"),
            helper.make_node("Div", ["m", "d"], ["q"], name="div"),
            helper.make_node(
                "BatchNormalization", ["q", "scale", "bias", "mean", "var"], ["y"], name="bn", epsilon=epsilon
            ),
        ]
        graph = helper.make_graph(
            nodes,
            "scales",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
            initializer=[numpy_helper.from_array(v.astype(np.float32), k) for k, v in constants.items()],
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    n = net([1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [0.0, 0.0])
    m = net([2.0, 1.0], [1.0, 0.5], [1.0, 3.0], [0.0, 1.0])
    view_n, seq_n = model_sequences(n)
    view_m, seq_m = model_sequences(m)
    # the segment starts after the (identical) MatMul: one bound per prefix Mul, Mul → Div, Mul → Div → BN
    ops_n = [op for op in seq_n[0].ops if op.node != "fc"]
    ops_m = [op for op in seq_m[0].ops if op.node != "fc"]
    x = np.array([[3.0, 4.0]], dtype=np.float32)
    bounds = {}
    for k, name in enumerate(("mul", "div", "bn")):
        prefix = SegmentPair("main", "main", tuple(ops_n[: k + 1]), tuple(ops_m[: k + 1]))
        (bound,) = SegmentBounder(view_n, view_m, x).bounds([prefix])
        bounds[name] = bound.per_sample[0]
    assert bounds == pytest.approx({"mul": 3.0, "div": 10.0, "bn": 39.0}, rel=1e-4)
    measured = np.linalg.norm(run(m, x) - run(n, x))
    assert measured == pytest.approx(np.hypot(3.0, 21.0), rel=1e-5) and measured <= bounds["bn"]


def _activation_net(op: str, w: float, **attributes: float) -> onnx.ModelProto:
    """y = op(x·w) for a scalar x: one linear op, then the activation under test."""
    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node("MatMul", ["x", "w"], ["h"], name="fc"),
            onnx.helper.make_node(op, ["h"], ["y"], name="act", **attributes),
        ],
        op.lower(),
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 1])],
        initializer=[onnx.numpy_helper.from_array(np.array([[w]], dtype=np.float32), "w")],
    )
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])


# Where each activation is steeper than 1, a change of 0.1·|x| in h = x·w changes its output by more than
# 0.1·|x|: HardSwish (slope (2h + 3)/6, ≈ 1.33 at h = 2.5), Elu with alpha 3 (3·e^h ≈ 2.7 at h = −0.1),
# Selu (γ·α·e^h ≈ 1.59 at h = −0.1), LeakyRelu with alpha 2 (2 for h < 0).
@pytest.mark.parametrize(
    "op,attributes,x,w",
    [
        ("HardSwish", {}, 1.0, 2.5),
        ("Elu", {"alpha": 3.0}, -0.1, 1.0),
        ("Selu", {}, -0.1, 1.0),
        ("LeakyRelu", {"alpha": 2.0}, -0.1, 1.0),
    ],
)
def test_bound_holds_through_activations_whose_slope_exceeds_one(op, attributes, x, w):
    n, m = _activation_net(op, w, **attributes), _activation_net(op, w + 0.1, **attributes)
    view_n, view_m, (segment,) = _matched(n, m)
    assert segment.reference_nodes == ("fc", "act")
    xs = np.array([[x], [-x], [x / 2]], dtype=np.float32)
    (bound,) = SegmentBounder(view_n, view_m, xs).bounds([segment])
    measured = np.abs(run(m, xs) - run(n, xs))[:, 0]
    assert measured[0] > 0.1 * abs(x) * 1.2  # steeper than 1 here
    assert np.all(measured <= bound.per_sample * (1 + 1e-5) + 1e-6)


def test_hard_sigmoid_shrinks_the_bound_by_its_alpha():
    # HardSigmoid = clip(0.2·h + 0.5, 0, 1): a change of 0.1·|x| in h moves it by at most 0.02·|x|
    n, m = _activation_net("HardSigmoid", 1.0), _activation_net("HardSigmoid", 1.1)
    view_n, view_m, (segment,) = _matched(n, m)
    xs = np.array([[1.0], [-2.0]], dtype=np.float32)
    (bound,) = SegmentBounder(view_n, view_m, xs).bounds([segment])
    np.testing.assert_allclose(bound.per_sample, [0.02, 0.04], rtol=1e-4)
    assert np.all(np.abs(run(m, xs) - run(n, xs))[:, 0] <= bound.per_sample * (1 + 1e-5))


@pytest.mark.parametrize("build,weights", [(residual_net, residual_weights), (two_branch_net, two_branch_weights)])
@pytest.mark.parametrize("scale", [0.05, 0.5])
def test_bound_holds_against_the_measured_difference_of_every_segment(build, weights, scale):
    base = weights(0)
    rng = np.random.default_rng(7)
    twin = {k: v + scale * rng.normal(0, 1, v.shape) * np.std(v) for k, v in base.items()}
    twin["bn_var"] = np.abs(twin["bn_var"]) + 0.1 if "bn_var" in twin else None
    twin = {k: v for k, v in twin.items() if v is not None}
    n, m = build(base), build(twin)
    view_n, view_m, segments = _matched(n, m)
    x = images(200)
    bounds = SegmentBounder(view_n, view_m, x).bounds(segments)
    for segment, bound in zip(segments, bounds, strict=True):
        tensor = segment.reference_output
        measured = run(synthesize(view_n, view_m, [segment]), x, tensor) - run(n, x, tensor)
        measured = np.linalg.norm(measured.reshape(len(x), -1), axis=1)
        assert bound.finite
        assert np.all(measured <= bound.per_sample * (1 + 1e-5) + 1e-6), segment.reference_nodes
        assert np.any(measured > 0)


def test_whole_model_bound_through_a_residual_block_and_concat_holds():
    # one segment spanning everything: stem → BN → block (add) → head, and stem → concat block → head
    for build, weights in [(residual_net, residual_weights), (two_branch_net, two_branch_weights)]:
        base, twin = weights(0), weights(3)
        n, m = build(base), build(twin)
        view_n, view_m, joined = _one_segment_over_every_match(n, m)
        x = images(100)
        (bound,) = SegmentBounder(view_n, view_m, x).bounds([joined])
        measured = np.linalg.norm(run(m, x) - run(n, x), axis=1)
        assert np.all(measured <= bound.per_sample * (1 + 1e-5))


# --- whole-model effect by noise injection -------------------------------------------------------


def _residual_pair(seed_twin: int = 1, scale: float = 0.3):
    base = residual_weights(0)
    rng = np.random.default_rng(seed_twin)
    twin = dict(base)
    for k in ("stem_w", "b1_w", "b2_w", "head_w"):
        twin[k] = base[k] + scale * np.std(base[k]) * rng.normal(0, 1, base[k].shape)
    return residual_net(base, "n"), residual_net(twin, "m")


def test_drop_loop_removes_cheapest_segments_first_until_within_epsilon():
    n, m = _residual_pair()
    view_n, view_m, segments = _matched(n, m)
    x = images(300)
    bounder = SegmentBounder(view_n, view_m, x)
    bounds = bounder.bounds(segments)
    macs = [segment_macs(view_n, bounder.probe, s) for s in segments]
    # by hand: stem 16 positions × 4 ch × 9 = 576; bn 0; block two 4→4 3x3 convs = 2 × 16·4·36 = 4608; head 3·64 = 192
    assert macs == [576, 0, 4608, 192]
    assert bounds[1].max_bound == 0.0  # BN weights unchanged
    injector = NoiseInjector(view_n, x, bounder.probe.shapes)
    outputs = run(n, x)
    everything = estimate_effect(injector, outputs, segments, bounds, macs, "classification", epsilon=1.0)
    assert everything.kept == (0, 1, 2, 3) and len(everything.trace) == 1
    nothing = estimate_effect(injector, outputs, segments, bounds, macs, "classification", epsilon=-1.0)
    # dropped in increasing MACs among the segments that change anything: head (192), stem (576), block (4608)
    assert [step[0] for step in nothing.trace] == [(0, 1, 2, 3), (0, 1, 2), (1, 2), (1,)]
    assert nothing.estimated_difference == 0.0


def test_noise_of_zero_norm_changes_nothing_and_larger_noise_changes_more():
    n, _ = _residual_pair()
    view_n, _ = model_sequences(n)
    x = images(300)
    injector = NoiseInjector(view_n, x, {"a": (4, 4, 4)})
    outputs = run(n, x)
    np.testing.assert_allclose(injector.run({"a": np.zeros(len(x))}, seed=0), outputs, rtol=1e-5, atol=1e-6)
    from sommelier_core.segments.noise_effect import qor_difference

    small = qor_difference(outputs, injector.run({"a": np.full(len(x), 0.1)}, seed=0), "classification")
    large = qor_difference(outputs, injector.run({"a": np.full(len(x), 10.0)}, seed=0), "classification")
    assert small < large


# --- synthesis -------------------------------------------------------------------------------------


def test_swapping_every_segment_reproduces_the_candidate_and_one_segment_only_that_segment():
    n, m = _residual_pair()
    view_n, view_m, segments = _matched(n, m)
    x = images(50)
    all_swapped = synthesize(view_n, view_m, segments, name="n<-m")
    onnx.checker.check_model(all_swapped)
    np.testing.assert_allclose(run(all_swapped, x), run(m, x), rtol=1e-5, atol=1e-5)
    head_only = synthesize(view_n, view_m, segments[-1:])
    # N's features, M's head: equal to M's head applied to N's features
    features = run(n, x, "f")
    w, b = (onnx.numpy_helper.to_array(t) for t in m.graph.initializer if t.name in ("head_w", "head_b"))
    np.testing.assert_allclose(run(head_only, x), features @ w.T + b, rtol=1e-4, atol=1e-4)
    assert len(head_only.graph.initializer) == len(n.graph.initializer)  # replaced weights are not kept twice


def test_a_weight_shared_outside_the_segment_keeps_its_value_there():
    # fc1 and fc2 read the same initializer; swapping fc1's leaves fc2 on N's value
    eye = np.eye(2, dtype=np.float32)
    shared = mlp(eye, eye)
    shared.graph.node[2].input[1] = "w1"
    del shared.graph.initializer[1]
    donor = mlp(2 * eye, 3 * eye)
    view_n, seq_n = model_sequences(shared)
    view_m, seq_m = model_sequences(donor)
    segments = candidate_segments(view_n, seq_n, view_m, seq_m)
    first = synthesize(view_n, view_m, segments[:1])
    x = np.array([[1.0, 2.0]], dtype=np.float32)
    np.testing.assert_allclose(run(first, x), [[2.0, 4.0]])  # relu(2x) then identity


def test_analyse_pair_keeps_segments_within_epsilon_and_the_synthesized_model_runs():
    n, m = _residual_pair(scale=0.2)
    x = images(400)
    analysis = analyse_pair("n", n, "m", m, x, "classification", epsilon=0.2)
    assert [s.ops for s in analysis.segments] == [
        ("Conv",),
        ("BatchNormalization", "Relu"),
        ("Block", "Relu", "Flatten"),
        ("Gemm",),
    ]
    assert analysis.estimated_difference <= 0.2
    assert analysis.estimated_upper >= analysis.estimated_difference
    kept = analysis.kept
    assert kept and all(np.isfinite(s.output_bound) for s in kept)
    model = synthesize_pair(analysis, n, m, name="n<-m")
    outputs = run(model, x)
    assert outputs.shape == (400, 3)
    # stem and BN kept, block and head dropped: a model different from both N and M
    assert analysis.synthesizable
    assert not np.allclose(outputs, run(m, x), atol=1e-6)
    # being real, the synthesized model is measured too: its disagreement from N on all inputs
    measured = float(np.mean(outputs.argmax(1) != run(n, x).argmax(1)))
    assert analysis.measured_difference == pytest.approx(measured)
    assert analysis.measured_upper >= measured


def test_a_synthesized_model_measured_beyond_epsilon_loses_its_cheapest_segments(monkeypatch):
    # The noise estimate is forced to keep stem, BN and block (effect 0: noise can be milder than a real
    # swap). M's stem is far from N's, its block close: the synthesized model measures beyond ε, so the
    # measurement drops the cheapest changing segment (the stem, 576 MACs) and measures again: BN and
    # block stay, within ε. With the block far too, nothing that changes N is left.
    import sommelier_core.segments.analysis as analysis_module
    from sommelier_core.segments.noise_effect import NoiseEffect

    def keep_all_but_head(injector, outputs, segments, bounds, macs, task, epsilon, **options):
        kept = tuple(range(len(segments) - 1))
        return NoiseEffect(kept, 0.0, ((kept, 0.0),), tuple(0.0 for _ in segments))

    monkeypatch.setattr(analysis_module, "estimate_effect", keep_all_but_head)
    monkeypatch.setattr(analysis_module, "noise_difference", lambda *args, **options: 0.0)
    base = residual_weights(0)
    x = images(400)
    n = residual_net(base, "n")
    for block_scale, block_kept in ((0.03, True), (3.0, False)):
        rng = np.random.default_rng(1)
        twin = dict(base)
        for key, scale in (("stem_w", 3.0), ("b1_w", block_scale), ("b2_w", block_scale), ("head_w", 0.3)):
            twin[key] = base[key] + scale * np.std(base[key]) * rng.normal(0, 1, base[key].shape)
        m = residual_net(twin, "m")
        view_n, seq_n = model_sequences(n)
        view_m, seq_m = model_sequences(m)
        as_estimated = run(synthesize(view_n, view_m, candidate_segments(view_n, seq_n, view_m, seq_m)[:3]), x)
        assert np.mean(as_estimated.argmax(1) != run(n, x).argmax(1)) > 0.05  # what the estimate alone keeps
        analysis = analyse_pair("n", n, "m", m, x, "classification", epsilon=0.05)
        assert [s.kept for s in analysis.segments] == [False, True, block_kept, False]
        assert analysis.segments[0].macs == 576  # the cheapest changing segment went first
        assert analysis.synthesizable == block_kept
        if block_kept:
            measured = np.mean(run(synthesize_pair(analysis, n, m), x).argmax(1) != run(n, x).argmax(1))
            assert analysis.measured_difference == pytest.approx(measured) and measured <= 0.05
        else:
            assert analysis.measured_difference is None


def test_a_harmless_segment_dropped_for_being_cheap_is_offered_back():
    # effects by perturbed set (hand-chosen): cheap a alone 1 %, b alone 50 %, c alone 2 %, {a, c} 3 %.
    # Cheapest first drops a (→ {b, c} 55 %), then b (→ {c} 2 % ≤ ε); a is then offered back: {a, c} 3 %.
    from types import SimpleNamespace

    effects = {
        frozenset("abc"): 0.60,
        frozenset("bc"): 0.55,
        frozenset("c"): 0.02,
        frozenset("a"): 0.01,
        frozenset("b"): 0.50,
        frozenset("ac"): 0.03,
    }
    n = 100
    reference = np.zeros((n, 2))
    reference[:, 0] = 1.0

    class Injector:
        view = SimpleNamespace(order={"a": 0, "b": 1, "c": 2})

        def run(self, norms, seed):
            outputs = reference.copy()
            flipped = round(effects[frozenset(norms)] * n)
            outputs[:flipped] = [0.0, 1.0]
            return outputs

    segments = [SimpleNamespace(reference_output=t, reference_nodes=(t,)) for t in "abc"]
    bounds = [SimpleNamespace(max_bound=1.0, finite=True, per_sample=np.ones(n)) for _ in "abc"]
    effect = estimate_effect(Injector(), reference, segments, bounds, [1, 2, 3], "classification", epsilon=0.05)
    assert [step[0] for step in effect.trace] == [(0, 1, 2), (1, 2), (2,), (0, 2)]
    assert effect.kept == (0, 2) and effect.estimated_difference == pytest.approx(0.03)
    assert effect.per_segment == pytest.approx((0.01, 0.50, 0.02))


def _unrunnable(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its output passed through an op of a domain ONNX Runtime has no kernels for."""
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    head = broken.graph.node[-1]
    head.output[0] = "y_raw"
    broken.graph.node.append(onnx.helper.make_node("Mystery", ["y_raw"], ["y"], name="mystery", domain="test.none"))
    broken.opset_import.append(onnx.helper.make_opsetid("test.none", 1))
    return broken


def test_a_pair_that_cannot_be_analysed_is_recorded_and_the_other_pairs_still_are(tmp_path):
    from sommelier_core.segments.candidates import match_peers
    from sommelier_core.store import ModelStore

    n, m = _residual_pair()
    broken = _unrunnable(residual_net(residual_weights(2), "broken"))
    x = images(200)
    store = ModelStore(tmp_path)
    for model_id, model in (("n", n), ("m", m), ("broken", broken)):
        path = store.onnx_path(model_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(path))
        store.save_outputs(model_id, run(n, x) if model_id == "broken" else run(model, x))
    record = match_peers("n", ["m", "broken"], store, x, "classification", samples=None)
    assert record.pairs_examined == 4
    assert [(a.reference_id, a.candidate_id) for a in record.analyses] == [("n", "m"), ("m", "n"), ("n", "broken")]
    assert len(record.failures) == 1 and record.failures[0].startswith("broken ← n: segment analysis failed")


def test_a_segment_that_does_not_fit_is_refused_naming_the_synthesized_model():
    from dataclasses import dataclass

    from sommelier_core.segments.sequences import graph_view
    from sommelier_core.segments.synthesis import SynthesisError

    @dataclass(frozen=True)
    class Stems:
        reference_nodes: tuple[str, ...] = ("stem",)
        candidate_nodes: tuple[str, ...] = ("stem",)

    narrow = residual_net(residual_weights(0, channels=2), "narrow")
    wide = residual_net(residual_weights(0), "wide")
    expected = r"^wide\+narrow: stem weight stem_w \(2, 1, 3, 3\) float32 does not fit stem_w \(4, 1, 3, 3\) float32"
    with pytest.raises(SynthesisError, match=expected):
        synthesize(graph_view(wide), graph_view(narrow), [Stems()], name="wide+narrow")


def test_a_synthesized_id_is_found_when_the_base_id_holds_the_separator(tmp_path):
    from sommelier_core.segments.candidates import find_analysis, match_peers
    from sommelier_core.store import ModelStore

    n, m = _residual_pair(scale=0.2)
    x = images(400)
    store = ModelStore(tmp_path)
    for model_id, model in (("n+v2", n), ("m", m)):
        path = store.onnx_path(model_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(path))
        store.save_outputs(model_id, run(model, x))
    record = match_peers("n+v2", ["m"], store, x, "classification", epsilon=0.2, samples=None)
    store.save_record("segment_matches", "n+v2", record)
    analysis = find_analysis(store, "n+v2+m")
    assert (analysis.reference_id, analysis.candidate_id) == ("n+v2", "m") and analysis.synthesizable
