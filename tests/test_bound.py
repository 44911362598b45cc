"""The bounds: Clopper–Pearson for disagreement, Student-t for relative l2, and the architecture term."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from scipy import stats

from sommelier_core.equivalence.bound import ARORA_CONSTANT, architecture_term, bound_comparison, clopper_pearson
from sommelier_core.equivalence.compare import Comparison
from sommelier_core.equivalence.cushions import Cushions, LayerCushion


def test_clopper_pearson_with_no_disagreement_is_the_rule_of_three_bound():
    # k = 0: upper = 1 − δ^(1/n); for n = 1000, δ = 0.05: 1 − 0.05^(0.001) = 0.0029912
    lower, upper = clopper_pearson(0, 1000, 0.05)
    assert lower == 0.0
    assert upper == pytest.approx(1 - 0.05 ** (1 / 1000), rel=1e-9)


def test_clopper_pearson_brackets_the_observed_rate():
    lower, upper = clopper_pearson(50, 1000, 0.05)
    assert lower < 0.05 < upper
    # the defining property: at p = upper, seeing ≤ 50 of 1000 has probability exactly δ
    assert stats.binom.cdf(50, 1000, upper) == pytest.approx(0.05, rel=1e-6)
    assert stats.binom.sf(49, 1000, lower) == pytest.approx(0.05, rel=1e-6)


def test_statistical_bound_adds_a_margin_that_shrinks_with_n():
    small = bound_comparison(Comparison("a", "b", "disagreement", 0.05, 100))
    large = bound_comparison(Comparison("a", "b", "disagreement", 0.05, 10_000))
    assert small.upper > large.upper > 0.05
    assert small.statistical_term > large.statistical_term > 0


def test_bound_off_is_the_empirical_difference():
    b = bound_comparison(Comparison("a", "b", "disagreement", 0.03, 500), mode="off")
    assert (b.lower, b.upper) == (0.03, 0.03)


def test_relative_l2_margin_is_t_quantile_times_spread_over_root_n():
    b = bound_comparison(Comparison("a", "b", "relative_l2", 0.10, 101, relative_spread=0.05), delta=0.05)
    # t(0.95, 100 dof) = 1.66023; margin = 1.66023 * 0.05 / sqrt(101) = 0.0082599
    assert b.upper == pytest.approx(0.10 + 1.66023 * 0.05 / 101**0.5, rel=1e-4)


def test_unknown_bound_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="bound mode 'arora-ish' is not one of off, statistical"):
        bound_comparison(Comparison("a", "b", "disagreement", 0.0, 10), mode="arora-ish")


# ---- the architecture term (paper §4.1): arora and custom modes


def _cushions(model_id="ref", layer=0.2, interlayer=0.05, depth=3, contraction=2.0, max_norm=10.0, margin=2.0):
    layers = tuple(LayerCushion(f"l{i}", "Gemm", 16, 1.0, layer, interlayer) for i in range(depth))
    return Cushions(model_id, layers, contraction, max_norm, margin, 5.0, 1000, 32, 8, 0.1, "mnist1d")


def test_arora_adds_c_times_the_root_of_the_reference_complexity_over_n():
    cushions = _cushions()
    comparison = Comparison("ref", "cand", "disagreement", 0.05, 1000)
    b = bound_comparison(comparison, mode="arora", cushions=cushions, constant=1e-4)
    # c² d² (max‖f‖/γ)² Σ 1/(μ² μ→²) = 4 · 9 · 25 · 3/(0.2² · 0.05²) = 2.7e7; term = 1e-4 · sqrt(2.7e7 / 1000)
    term = 1e-4 * (4 * 9 * 25 * 3 / (0.2**2 * 0.05**2) / 1000) ** 0.5
    statistical = bound_comparison(comparison, mode="statistical")
    assert b.architecture_term == pytest.approx(term)
    assert b.upper == pytest.approx(statistical.upper + term)
    assert b.lower == pytest.approx(max(statistical.lower - term, 0.0))
    assert b.statistical_term == pytest.approx(statistical.statistical_term)
    assert architecture_term(cushions, 4000, "disagreement", 1e-4) == pytest.approx(term / 2)  # ∝ 1/√n


def test_arora_term_uses_the_margin_for_disagreement_and_the_mean_output_norm_for_relative_l2():
    cushions = _cushions(margin=2.0)  # mean output norm is 5.0
    ratio = architecture_term(cushions, 100, "disagreement") / architecture_term(cushions, 100, "relative_l2")
    assert ratio == pytest.approx(5.0 / 2.0)


def test_arora_needs_the_reference_cushions_not_the_candidate_ones():
    comparison = Comparison("ref", "cand", "disagreement", 0.05, 1000)
    with pytest.raises(ValueError, match="needs the cushions of the reference model ref"):
        bound_comparison(comparison, mode="arora")
    with pytest.raises(ValueError, match="needs the reference's cushions, got those of cand"):
        bound_comparison(comparison, mode="arora", cushions=_cushions("cand"))


def _comparison():
    return Comparison("ref", "cand", "disagreement", 0.05, 1000)


def test_a_zero_cushion_makes_the_bound_vacuous_not_wrong():
    b = bound_comparison(
        Comparison("ref", "cand", "disagreement", 0.05, 1000), mode="arora", cushions=_cushions(layer=0.0)
    )
    assert b.upper == 1.0 and b.lower == 0.0
    statistical = bound_comparison(_comparison())
    assert b.architecture_term == pytest.approx(1.0 - statistical.upper)  # what it added, capped at a rate of 1
    assert b.statistical_term == pytest.approx(statistical.statistical_term)


def test_default_constant_keeps_the_term_small_at_n_1000_on_a_zoo_like_network():
    # complexity ≈ 2.4e9 measured for zoo-torch/cnn1d_w32 on MNIST-1D: the term must read in points, not units
    assert ARORA_CONSTANT * (2.4e9 / 1000) ** 0.5 < 0.05


def _mlp_onnx(path, seed: int):
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=(40, 16)), rng.normal(size=(16, 10))]
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w0"], ["h"]),
            helper.make_node("Relu", ["h"], ["a"]),
            helper.make_node("MatMul", ["a", "w1"], ["y"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 40])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        initializer=[numpy_helper.from_array(w.astype(np.float32), f"w{i}") for i, w in enumerate(weights)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return str(path)


def test_cli_compare_with_arora_and_custom_bounds(tmp_path, capsys):
    from sommelier_cli.main import main

    ref, cand = _mlp_onnx(tmp_path / "ref.onnx", 0), _mlp_onnx(tmp_path / "cand.onnx", 1)
    data = tmp_path / "mine.npz"
    np.savez(data, x=np.random.default_rng(2).normal(size=(200, 40)).astype(np.float32))
    assert main(["compare", ref, cand, "--data", str(data), "--bound", "statistical", "--json"]) == 0
    statistical = json.loads(capsys.readouterr().out)
    assert main(["compare", ref, cand, "--data", str(data), "--bound", "custom", "--json"]) == 0
    custom = json.loads(capsys.readouterr().out)
    assert custom["bound_mode"] == "custom" and custom["dataset"] == "mine" and custom["n"] == 200
    assert custom["architecture_term"] > 0
    assert custom["bound"] == pytest.approx(min(statistical["bound"] + custom["architecture_term"], 1.0))
    assert main(["compare", ref, cand, "--bound", "custom"]) == 2
    assert "--bound custom needs --data" in capsys.readouterr().err


def test_pair_bounds_take_the_reference_cushions_own_or_a_peer_s_and_are_vacuous_without_them(tmp_path):
    from sommelier_core.equivalence.cushions import ModelCushions
    from sommelier_core.equivalence.pair_measure import BoundSettings, bound_stored_pair
    from sommelier_core.store import ModelStore

    store = ModelStore(tmp_path)
    own = ModelCushions("a", "mnist1d", _cushions("a", layer=0.2))
    store.save_record("model_cushions", "b", ModelCushions("b", "mnist1d", _cushions("b", layer=0.1)))
    store.save_record("model_cushions", "c", ModelCushions("c", "mnist1d", None, "no linear layer"))
    settings = BoundSettings(mode="arora")
    notes: list[str] = []

    def bound(reference, candidate):
        comparison = Comparison(reference, candidate, "disagreement", 0.05, 1000)
        result, note = bound_stored_pair(comparison, settings, store, own if reference == "a" else None)
        notes.extend([note] if note else [])
        return result

    forward, backward = bound("a", "b"), bound("b", "a")
    assert forward.architecture_term == pytest.approx(architecture_term(own.cushions, 1000, "disagreement"))
    assert backward.architecture_term == pytest.approx(2 * forward.architecture_term)  # μ_i halved: term doubled
    vacuous = bound("c", "a")
    assert vacuous.upper == 1.0 and vacuous.mode == "arora"
    assert notes == ["c has no cushions (no linear layer); its bounds are vacuous"]
