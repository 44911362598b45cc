"""Whole-model comparison on stored outputs: numbers checkable by hand."""

import numpy as np
import pytest

from sommelier_core.equivalence.compare import check_compatible, compare_outputs, disagreement_rate
from sommelier_core.errors import IncompatibleModels
from sommelier_core.models import Signature, TensorSpec


def _sig(inp: tuple, out: tuple) -> Signature:
    return Signature((TensorSpec("x", "float32", inp),), (TensorSpec("y", "float32", out),))


def test_disagreement_counts_inputs_whose_top1_differs():
    ref = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=np.float32)
    cand = np.array([[1, 0], [1, 0], [1, 0], [0.2, 0.9]], dtype=np.float32)
    assert disagreement_rate(ref, cand) == pytest.approx(0.25)


def test_relative_l2_is_mean_distance_over_mean_reference_norm():
    ref = np.array([[3.0, 4.0], [0.0, 5.0]])  # norms 5 and 5
    cand = np.array([[3.0, 4.0], [0.0, 3.0]])  # distances 0 and 2
    c = compare_outputs("a", ref, "b", cand, "regression")
    assert c.kind == "relative_l2"
    assert c.difference == pytest.approx(1.0 / 5.0)  # mean distance 1 / mean norm 5
    assert c.relative_spread == pytest.approx(np.std([0, 2], ddof=1) / 5)


def test_classification_comparison_records_sample_count():
    ref = np.eye(10)[np.arange(50) % 10]
    cand = ref.copy()
    cand[:5] = np.roll(cand[:5], 1, axis=1)
    c = compare_outputs("zoo/a", ref, "zoo/b", cand, "classification")
    assert (c.difference, c.n) == (pytest.approx(0.1), 50)


def test_signatures_that_differ_only_in_batch_and_names_are_compatible():
    a = _sig(("N", 1, 8, 8), ("N", 10))
    b = Signature((TensorSpec("input", "float32", (7, 1, 8, 8)),), (TensorSpec("logits", "float32", ("b", 10)),))
    check_compatible("zoo/a", a, "zoo/b", b)


def test_incompatible_outputs_name_both_models_and_shapes():
    with pytest.raises(IncompatibleModels, match=r"zoo/cnn outputs float32\[\?,10\]; zoo/mlp outputs float32\[\?,2\]"):
        check_compatible("zoo/cnn", _sig(("N", 64), ("N", 10)), "zoo/mlp", _sig(("N", 64), ("N", 2)))


def test_incompatible_inputs_are_refused():
    with pytest.raises(IncompatibleModels, match="takes"):
        check_compatible("a", _sig(("N", 40), ("N", 10)), "b", _sig(("N", 64), ("N", 10)))


def test_different_label_vocabularies_are_refused():
    labels_a = tuple("0123456789")
    labels_b = tuple("abcdefghij")
    with pytest.raises(IncompatibleModels, match="different output labels"):
        check_compatible("a", _sig(("N", 64), ("N", 10)), "b", _sig(("N", 64), ("N", 10)), labels_a, labels_b)


def test_outputs_of_different_shapes_cannot_be_compared():
    with pytest.raises(IncompatibleModels):
        compare_outputs("a", np.zeros((4, 10)), "b", np.zeros((4, 2)), "classification")
