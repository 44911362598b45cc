"""How measured bounds give bounds on other pairs, per difference kind, with direction kept.

A bound is on d(a→b), the difference of candidate b from reference a. Two kinds of difference:

- `disagreement` (classifiers): the share of inputs on which two models' top-1 labels differ. It is a
  metric: symmetric, and d(a→c) ≤ d(a→b) + d(b→c).
- `relative_l2` (vectors): d(a→b) = M(a, b) / S(a), where M(a, b) = mean ‖f_a − f_b‖ is a metric and
  S(a) = mean ‖f_a‖ is the reference's scale. It is asymmetric. Since |S(a) − S(b)| ≤ M(a, b),
  S(b)/S(a) lies in [1 − d(a→b), 1 + d(a→b)], which gives:
  - path:    d(a→c) ≤ d(a→b) + d(b→c)·S(b)/S(a) ≤ u + w·(1 + u)    (u, w upper bounds of the two hops);
  - reverse: d(b→a)/(1 + d(b→a)) ≤ d(a→b) ≤ d(b→a)/(1 − d(b→a))  (a measurement of the other direction);
  - one hop: d(a→c) ≥ lo(a→b) − up(b→c)·(1 + up(a→b)) and d(a→c) ≥ lo(b→c)·(1 − up(a→b)) − up(a→b).

The disagreement rules are the same with S(b)/S(a) = 1. Every rule is monotone in the right direction
(an upper bound grows with the upper bounds it composes, a lower bound falls as they loosen), so a
shortest-path search that composes hops with `compose` finds the tightest path bound, and rounding
inputs outward never makes an output unsound. Before this module the index merged both directions of a
relative-l2 pair into one symmetric edge, which could leave a lower bound above the upper one.
"""

from __future__ import annotations

import math

DISAGREEMENT = "disagreement"
RELATIVE_L2 = "relative_l2"
ASYMMETRIC_KINDS = frozenset({RELATIVE_L2})
"""Difference kinds normalised by the reference (d(a→b) ≠ d(b→a) in general)."""


def is_asymmetric(kind: str) -> bool:
    """Whether `kind` is normalised by the reference (so each direction of a pair has its own bounds)."""
    return kind in ASYMMETRIC_KINDS


def compose(u: float, w: float, asymmetric: bool) -> float:
    """Upper bound on d(a→c) from d(a→b) ≤ u and d(b→c) ≤ w."""
    return u + w * (1.0 + u) if asymmetric else u + w


def reverse_upper(w: float, asymmetric: bool) -> float:
    """Upper bound on d(a→b) from d(b→a) ≤ w."""
    if not asymmetric:
        return w
    return w / (1.0 - w) if w < 1.0 else math.inf


def reverse_lower(lo: float, asymmetric: bool) -> float:
    """Lower bound on d(a→b) from d(b→a) ≥ lo."""
    return lo / (1.0 + lo) if asymmetric else lo


def hop_lower(lo_ab: float, up_ab: float, lo_bc: float, up_bc: float, asymmetric: bool) -> float:
    """Lower bound on d(a→c) through a model b with bounds on d(a→b) and d(b→c) (never below 0)."""
    if asymmetric:
        first = lo_ab - up_bc * (1.0 + up_ab)
        second = lo_bc * max(1.0 - up_ab, 0.0) - up_ab
    else:
        first, second = lo_ab - up_bc, lo_bc - up_ab
    best = 0.0
    if first > best:  # a NaN (inf·0 from a vacuous bound) compares False and is skipped
        best = first
    if second > best:
        best = second
    return best


def directed_bounds(
    forward: tuple[float, float] | None, backward: tuple[float, float] | None, asymmetric: bool
) -> tuple[float, float]:
    """(lower, upper) on d(a→b) from a measurement of a→b and/or one of b→a, each (lower, upper).

    The tighter of the two on each side; lower ≤ upper always (measurements whose intervals do not meet
    — a confidence bound that failed — give the upper bound on both sides, never a crossed pair).
    """
    lower, upper = 0.0, math.inf
    if forward is not None:
        lower, upper = max(lower, forward[0]), min(upper, forward[1])
    if backward is not None:
        lower = max(lower, reverse_lower(backward[0], asymmetric))
        upper = min(upper, reverse_upper(backward[1], asymmetric))
    return min(lower, upper), upper
