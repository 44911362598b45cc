"""Upper (and lower) bounds on the true difference between two models (paper §4.1, design §3).

Modes (paper §5.5):

- `off`: the empirical difference itself.
- `statistical`: the difference measured on n samples is an estimate, so the bound adds the
  one-sided confidence margin at confidence 1 − δ. For disagreement rates that margin is exact
  (Clopper–Pearson on a binomial count); for relative l2 it is the one-sided Student-t margin on
  the mean per-sample distance. Every mode above `off` includes it.
- `arora`: the statistical bound plus the architecture term of paper §4.1 (Arora et al. 2018,
  Thm 4.1), measured on the *reference* model, because the measure is asymmetric (paper §4.3):

      term = C · sqrt(c² · d² · max‖f(x)‖² · Σ_i 1/(μ_i² μ_{i→}²) / (γ² · n))

  with the cushions of `sommelier_core.equivalence.cushions`, γ the margin (below) and C `ARORA_CONSTANT`.
  upper = statistical upper + term; lower = statistical lower − term (floored at 0).
- `custom`: the same bound with the difference *and* the cushions measured on a user-supplied
  dataset (`.npz` with `x` and optional `y`) instead of the index's validation set.

The margin γ: Arora's theorem compares the 0–1 loss with the γ-margin loss on the sample, and the
term is invariant to rescaling the outputs only if γ scales with them; so γ is measured on the
reference's outputs on the same data: the median top-1 margin f(x)[top] − max_{k≠top} f(x)[k] for
disagreement (half the samples are classified with at least that margin), and the mean ‖f(x)‖ for
relative l2 (whose difference is itself normalised by the mean ‖f(x)‖).

The constant C: the Õ(·) of the theorem hides constants and log factors that make its raw value
vacuous (> 1) for every network; C is the one factor Sommelier fits. It is calibrated by
`benchmarks/bound_safety.py` (`--calibrate`) on calibration pairs and shifted calibration data,
then validated on other pairs and other shifts (README, "How the bound is calibrated").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sommelier_core import defaults
from sommelier_core.equivalence.compare import Comparison, DifferenceKind
from sommelier_core.equivalence.cushions import Cushions, ModelCushions


@dataclass(frozen=True)
class BoundModeSpec:
    """One bound mode: what it adds to the empirical difference, and what computing it needs."""

    name: str
    summary: str
    """One line on what the mode adds (`sommelier compare --help` lists them)."""
    architecture_term: bool = False
    """Adds the reference's architecture term (paper §4.1), so needs the reference model's cushions."""
    custom_data: bool = False
    """Measures the difference and the cushions on a dataset the user supplies (`bound_data`, `--data`)."""


STATISTICAL = "statistical"
"""The mode of the statistical term alone, which every other bound builds on."""

BOUND_MODE_SPECS: dict[str, BoundModeSpec] = {
    spec.name: spec
    for spec in (
        BoundModeSpec("off", "empirical"),
        BoundModeSpec(STATISTICAL, "+ Clopper–Pearson margin"),
        BoundModeSpec("arora", "+ the reference's architecture term (paper §4.1)", architecture_term=True),
        BoundModeSpec("custom", "arora on the --data set", architecture_term=True, custom_data=True),
    )
}
"""Every bound mode, the only list of them: the index settings, the stages and the CLI read it."""

BoundMode = str
"""A key of `BOUND_MODE_SPECS`."""
BOUND_MODES: tuple[str, ...] = tuple(BOUND_MODE_SPECS)
ARCHITECTURE_MODES: tuple[str, ...] = tuple(m for m, spec in BOUND_MODE_SPECS.items() if spec.architecture_term)
"""Modes that add the architecture term, and so need the reference model's cushions."""
DEFAULT_BOUND_MODE: BoundMode = defaults.BOUND_MODE


def bound_mode_spec(mode: str) -> BoundModeSpec:
    """The spec of bound mode `mode`; ValueError listing the modes when there is none."""
    spec = BOUND_MODE_SPECS.get(mode)
    if spec is None:
        raise ValueError(f"bound mode {mode!r} is not one of {', '.join(BOUND_MODES)}")
    return spec


def on_validation_set(mode: str) -> str:
    """The mode with the same terms as `mode`, measured on the model's validation set (what a custom-data mode
    falls back to when its data does not fit the reference)."""
    spec = bound_mode_spec(mode)
    if not spec.custom_data:
        return mode
    return next(
        s.name for s in BOUND_MODE_SPECS.values() if s.architecture_term == spec.architecture_term and not s.custom_data
    )


ARORA_CONSTANT = 1.3e-5
"""C of the architecture term: `benchmarks/bound_safety.py --calibrate` measured 1.21e-5 on its calibration
cells (in distribution, n = 1 000: zoo-torch/cnn1d_w32 → _noise3 and zoo-torch/mlp1d_w64 → zoo-tf/keras_mlp1d_w64),
rounded up to two significant digits."""


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
    architecture_term: float = 0.0
    """What the reference's architecture term added to `upper` (capped so a rate stays ≤ 1; 0 in `off`
    and `statistical` modes). The uncapped term is `architecture_term(cushions, n, kind)`."""

    @property
    def statistical_term(self) -> float:
        """The confidence margin added to the empirical difference (before the architecture term)."""
        return self.upper - self.empirical - self.architecture_term


def clopper_pearson(k: int, n: int, delta: float) -> tuple[float, float]:
    """One-sided Clopper–Pearson bounds (each at confidence 1 − δ) on a binomial rate from k of n."""
    if n <= 0:
        return 0.0, 1.0
    from scipy import stats  # imported here: scipy.stats costs ≈ 0.4 s, and queries never need it

    lower = 0.0 if k == 0 else float(stats.beta.ppf(delta, k, n - k + 1))
    upper = 1.0 if k == n else float(stats.beta.ppf(1 - delta, k + 1, n - k))
    return lower, upper


def architecture_term(cushions: Cushions, n: int, kind: DifferenceKind, constant: float = ARORA_CONSTANT) -> float:
    """C · sqrt(c² d² max‖f‖² Σ 1/(μ_i² μ_{i→}²) / (γ² n)) for the reference's cushions (paper §4.1).

    γ is the reference's median top-1 margin for disagreement, its mean output norm for relative l2.
    Infinite when a cushion or the margin is zero (the bound is then vacuous, not wrong).
    """
    if n <= 0:
        return float("inf")
    margin = cushions.median_margin if kind == "disagreement" else cushions.mean_output_norm
    complexity = cushions.complexity(margin)
    return constant * math.sqrt(complexity / n) if math.isfinite(complexity) else float("inf")


def bound_comparison(
    comparison: Comparison,
    mode: BoundMode = DEFAULT_BOUND_MODE,
    delta: float = defaults.DELTA,
    cushions: Cushions | None = None,
    constant: float = ARORA_CONSTANT,
) -> PairBound:
    """Bound the true difference behind one measured comparison.

    `arora` and `custom` need `cushions`, the reference model's, measured on the same data as the
    comparison; `constant` is C.
    """
    architecture = bound_mode_spec(mode).architecture_term
    if not 0 < delta < 1:
        raise ValueError(f"delta must lie in (0, 1), got {delta}")
    c = comparison
    if architecture:
        if cushions is None:
            raise ValueError(f"bound mode {mode!r} needs the cushions of the reference model {c.reference_id}")
        if cushions.model_id and cushions.model_id != c.reference_id:
            raise ValueError(
                f"the architecture term of {c.reference_id} → {c.candidate_id} needs the reference's cushions, "
                f"got those of {cushions.model_id} (the measure is asymmetric, paper §4.3)"
            )
    if mode == "off":
        lower = upper = c.difference
    elif c.kind == "disagreement":
        lower, upper = clopper_pearson(round(c.difference * c.n), c.n, delta)
    else:
        from scipy import stats

        margin = float(stats.t.ppf(1 - delta, max(c.n - 1, 1))) * c.relative_spread / max(c.n, 1) ** 0.5
        lower, upper = max(c.difference - margin, 0.0), c.difference + margin
    added = 0.0
    if architecture:
        term = architecture_term(cushions, c.n, c.kind, constant)
        ceiling = 1.0 if c.kind == "disagreement" else math.inf  # a rate cannot exceed 1
        bounded = min(upper + term, ceiling)
        added, lower, upper = bounded - upper, max(lower - term, 0.0), bounded
    return PairBound(c.reference_id, c.candidate_id, c.kind, c.difference, lower, upper, c.n, mode, delta, added)


@dataclass(frozen=True)
class PairBounds:
    """The bounds of one model's measured pairs."""

    model_id: str
    bounds: tuple[PairBound, ...]


def bound_with_reference_cushions(
    comparison: Comparison, mode: BoundMode, delta: float, constant: float, reference: ModelCushions | None
) -> tuple[PairBound, str | None]:
    """The bound of one measured pair in any mode, given the reference's cushions record (paper §4.3).

    In `arora`/`custom` a reference without cushions gets a vacuous bound (1 for a rate) — never a
    wrong one — and the returned note says why; a reference to whose graph the cushions do not apply (integer or
    float16 arithmetic, `ModelCushions.fallback`) is bounded by the statistical term, and the note says that
    instead. Other modes ignore `reference`.
    """
    if mode not in ARCHITECTURE_MODES:
        return bound_comparison(comparison, mode=mode, delta=delta), None
    if reference is not None and reference.cushions is None and reference.fallback:
        fallback = bound_comparison(comparison, mode=STATISTICAL, delta=delta)
        return fallback, (
            f"{comparison.reference_id}: cushions {reference.error}; bounded by the statistical term only (no "
            "architecture term)"
        )
    if reference is None or reference.cushions is None:
        why = reference.error if reference is not None else "not measured"
        upper = 1.0 if comparison.kind == "disagreement" else math.inf
        statistical = bound_comparison(comparison, mode=STATISTICAL, delta=delta)
        vacuous = PairBound(
            comparison.reference_id,
            comparison.candidate_id,
            comparison.kind,
            comparison.difference,
            0.0,
            upper,
            comparison.n,
            mode,
            delta,
            upper - statistical.upper,
        )
        return vacuous, f"{comparison.reference_id} has no cushions ({why}); its bounds are vacuous"
    bound = bound_comparison(comparison, mode=mode, delta=delta, cushions=reference.cushions, constant=constant)
    return bound, None
