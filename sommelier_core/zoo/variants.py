"""Derived models: weight-noise and magnitude-pruned copies of a parent, calibrated to a disagreement.

Real repositories hold near-copies of a model (re-trained, quantised, pruned). The zoo makes them
with a known, measured distance from their parent so that equivalence bounds can be checked
against ground truth: a seeded search picks the noise scale (or prune fraction) whose top-1
disagreement with the parent on the validation split is closest to a target.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sommelier_core.zoo.training import disagreement, top1


@dataclass(frozen=True)
class CalibratedVariant:
    """A derived model, the knob value that made it, and its measured disagreement from the parent."""

    model: nn.Module
    knob: float
    disagreement: float


def _weight_tensors(model: nn.Module) -> list[torch.Tensor]:
    """The conv and linear weight matrices (rank ≥ 2); biases and batch-norm affines are left alone."""
    return [p for name, p in model.named_parameters() if name.endswith("weight") and p.dim() >= 2]


def add_weight_noise(parent: nn.Module, scale: float, seed: int) -> nn.Module:
    """A copy of `parent` whose weight matrices get Gaussian noise of `scale` × their own std.

    Noise is relative to each tensor's spread so one scale perturbs wide and narrow layers alike;
    the draw depends only on `seed`, so the same seed and a larger scale move further the same way.
    """
    child = copy.deepcopy(parent).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for weight in _weight_tensors(child):
            noise = torch.randn(weight.shape, generator=generator, dtype=weight.dtype)
            weight.add_(noise * (scale * float(weight.std())))
    return child


def magnitude_prune(parent: nn.Module, fraction: float) -> nn.Module:
    """A copy of `parent` with the `fraction` smallest-magnitude entries of each weight matrix set to zero."""
    child = copy.deepcopy(parent).eval()
    with torch.no_grad():
        for weight in _weight_tensors(child):
            count = int(round(fraction * weight.numel()))
            if count == 0:
                continue
            order = torch.argsort(weight.abs().flatten(), stable=True)
            weight.view(-1)[order[:count]] = 0.0
    return child


def calibrate(
    make_variant: Callable[[float], nn.Module],
    parent_top1: np.ndarray,
    x: np.ndarray,
    target: float,
    low: float,
    high: float,
    steps: int = 14,
) -> CalibratedVariant:
    """Bisect the knob in [low, high] toward `target` disagreement and keep the closest variant seen.

    Disagreement grows with the knob only on average, so bisection steers and the best measured
    point (not the last) is returned, together with its measured value.
    """

    def measure(knob: float) -> CalibratedVariant:
        model = make_variant(knob)
        return CalibratedVariant(model=model, knob=knob, disagreement=disagreement(top1(model, x), parent_top1))

    best = measure(high)
    for _ in range(steps):
        candidate = measure((low + high) / 2)
        if abs(candidate.disagreement - target) < abs(best.disagreement - target):
            best = candidate
        if candidate.disagreement < target:
            low = candidate.knob
        else:
            high = candidate.knob
    return best
