"""Which models the zoo holds: a list of specs, parents before children.

The zoo grows the way public repositories do (paper §7): a few base architectures at several
widths; transfer-learned variants of a pretrained base; and near-copies (weight noise, magnitude
pruning) of some models, each calibrated toward a graded disagreement from its parent.

Transfer direction: the upstream model is pretrained on `mnist8` (5 000 MNIST images at 8x8, the
larger related task) and fine-tuned on `digits` with its first 0, 1, 2, … stages frozen and a
re-initialised head — so every 8x8 model in the zoo, transferred or not, targets `digits` and
is validated on the same split, the setting in which Sommelier compares models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sommelier_core.zoo.manifest import Transformation

NOISE_TARGETS = (0.01, 0.02, 0.04, 0.06, 0.08, 0.10)
PRUNE_TARGETS = (0.01, 0.02, 0.04, 0.06, 0.08, 0.10)


@dataclass(frozen=True)
class ModelSpec:
    """How to make one zoo model.

    `family` names the root of the model's lineage (a base is its own family); `target_disagreement`
    is set for noise and prune variants only.
    """

    name: str
    framework: Literal["torch", "tensorflow"]
    architecture: str
    width: int
    dataset: str
    family: str
    transformation: Transformation = "base"
    parent: str | None = None
    frozen_layers: int | None = None
    target_disagreement: float | None = None


def _torch_base(architecture: str, width: int, dataset: str = "digits", suffix: str = "") -> ModelSpec:
    name = f"{architecture}_w{width}{suffix}"
    return ModelSpec(name, "torch", architecture, width, dataset, family=name)


def _keras_base(architecture: str, width: int, dataset: str = "digits") -> ModelSpec:
    name = f"{architecture}_w{width}"
    return ModelSpec(name, "tensorflow", architecture, width, dataset, family=name)


def _transfers(upstream: ModelSpec, frozen: tuple[int, ...]) -> list[ModelSpec]:
    """`upstream` (pretrained on mnist8) fine-tuned on digits with each number of frozen stages."""
    return [
        ModelSpec(
            f"{upstream.name}_freeze{k}",
            "torch",
            upstream.architecture,
            upstream.width,
            "digits",
            family=upstream.family,
            transformation="transfer",
            parent=upstream.name,
            frozen_layers=k,
        )
        for k in frozen
    ]


def _derived(parent: ModelSpec, kind: Transformation, targets: tuple[float, ...]) -> list[ModelSpec]:
    """Noise or prune variants of `parent`, one per target disagreement, numbered from 1."""
    return [
        ModelSpec(
            f"{parent.name}_{kind}{index}",
            parent.framework,
            parent.architecture,
            parent.width,
            parent.dataset,
            family=parent.family,
            transformation=kind,
            parent=parent.name,
            target_disagreement=target,
        )
        for index, target in enumerate(targets, start=1)
    ]


def default_catalogue() -> list[ModelSpec]:
    """The full zoo (about 60 models): four 8x8 architectures at three widths, two MNIST-1D
    networks, two transfer families, graded noise and prune variants, and four Keras models."""
    widths = {"mlp": (32, 64, 128), "cnn": (8, 16, 32), "rescnn": (8, 16, 32), "dwcnn": (8, 16, 32)}
    bases = [_torch_base(arch, width) for arch, arch_widths in widths.items() for width in arch_widths]
    by_name = {spec.name: spec for spec in bases}
    cnn_upstream = _torch_base("cnn", 32, dataset="mnist8", suffix="_mnist8")
    res_upstream = _torch_base("rescnn", 16, dataset="mnist8", suffix="_mnist8")
    signals = [_torch_base("mlp1d", 64, dataset="mnist1d"), _torch_base("cnn1d", 32, dataset="mnist1d")]
    return [
        *bases,
        *_derived(by_name["cnn_w32"], "noise", NOISE_TARGETS),
        *_derived(by_name["mlp_w64"], "noise", NOISE_TARGETS),
        *_derived(by_name["rescnn_w16"], "noise", NOISE_TARGETS),
        *_derived(by_name["cnn_w32"], "prune", PRUNE_TARGETS),
        *_derived(by_name["dwcnn_w32"], "prune", PRUNE_TARGETS),
        cnn_upstream,
        *_transfers(cnn_upstream, (0, 1, 2, 3)),
        res_upstream,
        *_transfers(res_upstream, (0, 1, 2, 3)),
        *signals,
        *_derived(signals[1], "noise", (0.02, 0.05, 0.10)),
        _keras_base("keras_cnn", 16),
        _keras_base("keras_cnn", 32),
        _keras_base("keras_mlp", 64),
        _keras_base("keras_mlp1d", 64, dataset="mnist1d"),
    ]


def small_catalogue() -> list[ModelSpec]:
    """Eight models covering every kind (base, noise, prune, transfer, MNIST-1D, Keras) for tests."""
    cnn = _torch_base("cnn", 16)
    upstream = _torch_base("cnn", 16, dataset="mnist8", suffix="_mnist8")
    return [
        cnn,
        *_derived(cnn, "noise", (0.04,)),
        *_derived(cnn, "prune", (0.04,)),
        _torch_base("mlp", 32),
        upstream,
        *_transfers(upstream, (2,)),
        _torch_base("mlp1d", 32, dataset="mnist1d"),
        _keras_base("keras_mlp", 32),
    ]
