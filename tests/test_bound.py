"""The statistical bound: Clopper–Pearson for disagreement, Student-t for relative l2."""

import pytest
from scipy import stats

from sommelier_core.bound import bound_comparison, clopper_pearson
from sommelier_core.equivalence import Comparison


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
