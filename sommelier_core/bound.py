"""Upper (and lower) bounds on the true difference between two models (paper §4.1, design §3).

Every mode above `off` includes the statistical term: the difference measured on n samples is an
estimate, so the bound adds the one-sided confidence margin at confidence 1 − δ. For disagreement
rates that margin is exact (Clopper–Pearson on a binomial count); for relative l2 it is the
one-sided Student-t margin on the mean per-sample distance. The architecture-dependent term of the
paper (Arora et al. 2018) is a later mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from scipy import stats

from sommelier_core.equivalence import Comparison

BoundMode = Literal["off", "statistical"]
BOUND_MODES: tuple[str, ...] = ("off", "statistical")


@dataclass(frozen=True)
class PairBound:
    """A measured pair with its confidence interval on the true difference.

    `upper` is what equivalence thresholds are tested against (equivalence level = 1 − upper);
    `lower` feeds transitive lower bounds in the semantic index.
    """

    reference_id: str
    candidate_id: str
    kind: str
    empirical: float
    lower: float
    upper: float
    n: int
    mode: str
    delta: float

    @property
    def statistical_term(self) -> float:
        """The margin added to the empirical difference."""
        return self.upper - self.empirical


def clopper_pearson(k: int, n: int, delta: float) -> tuple[float, float]:
    """One-sided Clopper–Pearson bounds (each at confidence 1 − δ) on a binomial rate from k of n."""
    if n <= 0:
        return 0.0, 1.0
    lower = 0.0 if k == 0 else float(stats.beta.ppf(delta, k, n - k + 1))
    upper = 1.0 if k == n else float(stats.beta.ppf(1 - delta, k + 1, n - k))
    return lower, upper


def bound_comparison(comparison: Comparison, mode: BoundMode = "statistical", delta: float = 0.05) -> PairBound:
    """Bound the true difference behind one measured comparison."""
    if mode not in BOUND_MODES:
        raise ValueError(f"bound mode {mode!r} is not one of {', '.join(BOUND_MODES)}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must lie in (0, 1), got {delta}")
    c = comparison
    if mode == "off":
        lower = upper = c.difference
    elif c.kind == "disagreement":
        lower, upper = clopper_pearson(round(c.difference * c.n), c.n, delta)
    else:
        margin = float(stats.t.ppf(1 - delta, max(c.n - 1, 1))) * c.relative_spread / max(c.n, 1) ** 0.5
        lower, upper = max(c.difference - margin, 0.0), c.difference + margin
    return PairBound(c.reference_id, c.candidate_id, c.kind, c.difference, lower, upper, c.n, mode, delta)


@dataclass(frozen=True)
class PairBounds:
    """The bounds of one model's measured pairs."""

    model_id: str
    bounds: tuple[PairBound, ...]
