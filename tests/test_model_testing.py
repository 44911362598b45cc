"""Model testing with equivalent variants: the scores by hand, the choice of variants, and a store end to end."""

from __future__ import annotations

import numpy as np
import pytest

from sommelier_core.errors import UnknownModel
from sommelier_core.model_testing import DisagreementTester, pick_variants
from sommelier_core.model_testing.variants import disagreement_scores, softmax
from sommelier_core.querying import Hit, ResourceFigures


def _hit(model_id: str, upper: float, provenance: str = "measured") -> Hit:
    figures = ResourceFigures("cpu", 1, 1, 2, 4, 4, 8, 0.1)
    return Hit(model_id, f"/x/{model_id}.onnx", upper / 2, upper, None, provenance, figures)


def test_scores_count_disagreeing_votes_and_average_the_distance_between_distributions():
    # probabilities (rows sum to 1) are taken as they are; three inputs, a model and two variants
    model = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    first = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # agrees, differs, agrees
    second = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])  # agrees, differs, differs
    scores = disagreement_scores(model, [first, second])
    assert scores.disagreement.tolist() == [0.0, 1.0, 0.5]
    # total variation: input 0 → (0.5 + 0) / 2; input 1 → (1 + 1) / 2; input 2 → (0 + 1) / 2
    assert np.allclose(scores.divergence, [0.25, 1.0, 0.5])
    # the vote first, the divergence breaking ties below one vote (divergence / (N + 1))
    assert np.allclose(scores.score, [0.25 / 3, 1 + 1 / 3, 0.5 + 0.5 / 3])


def test_outputs_that_are_logits_go_through_a_softmax():
    assert np.allclose(softmax(np.array([[0.0, 0.0]])), [[0.5, 0.5]])
    assert np.allclose(softmax(np.array([[np.log(3.0), 0.0]])), [[0.75, 0.25]])


def test_variants_are_spread_over_the_equivalent_range_and_never_identical_copies():
    hits = [_hit("same", 0.0, "identical")] + [_hit(f"m{i}", 0.01 * (i + 1)) for i in range(6)]
    # six usable hits, ranks 0..5; three spread picks at ranks 0, 2 (2.5 rounds to even) and 5
    assert [h.model_id for h in pick_variants(hits, 3)] == ["m0", "m2", "m5"]
    assert [h.model_id for h in pick_variants(hits, 3, spread=False)] == ["m0", "m1", "m2"]
    assert [h.model_id for h in pick_variants(hits, 10)] == [f"m{i}" for i in range(6)]
    with pytest.raises(ValueError, match="at least 1"):
        pick_variants(hits, 0)


def test_a_tester_needs_variants():
    with pytest.raises(UnknownModel, match="no equivalent variant of zoo/x"):
        DisagreementTester("zoo/x", "/x/x.onnx", [])


def test_on_an_indexed_store_variants_come_from_the_query_and_flag_noise_over_clean_digits(indexed_store):
    import sommelier_core
    from sommelier_core.zoo import load_dataset

    index_dir = indexed_store.root / "index"
    tester = DisagreementTester.from_query("zoo-torch/cnn_w16", n=3, within=0.2, index_dir=index_dir)
    equivalent = {h.model_id for h in sommelier_core.query(ref="zoo-torch/cnn_w16", within=0.2, index_dir=index_dir)}
    assert 1 <= len(tester.variant_ids) <= 3 and set(tester.variant_ids) <= equivalent
    clean = load_dataset("digits", "val").x[:200]
    noisy = np.random.default_rng(0).uniform(0, 1, size=clean.shape).astype(np.float32)  # no digit at all
    clean_scores, noisy_scores = tester.score(clean), tester.score(noisy)
    assert clean_scores.shape == (200,)
    assert noisy_scores.mean() > clean_scores.mean()
    with pytest.raises(UnknownModel, match="no model is within"):
        DisagreementTester.from_query("zoo-torch/mlp1d_w32", n=3, within=0.01, index_dir=index_dir)
