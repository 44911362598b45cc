"""Static cost under each execution setting (paper Fig. 12a): how memory and MACs move with batch size and
input resolution."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import onnx

from sommelier_core.profiling.shapes import shapes_at_resolution
from sommelier_core.profiling.static import StaticProfile, UncostedOpsWarning, static_profile


@dataclass(frozen=True)
class MemoryPoint:
    """Static cost under one execution setting (paper Fig. 12a): batch size and input resolution."""

    batch_size: int
    resolution: int | None
    """Size given to every symbolic spatial dimension of the inputs; None = the model's own shapes."""
    weight_bytes: int
    peak_activation_bytes: int
    macs: int

    @property
    def memory_bytes(self) -> int:
        """Weights plus peak live activations: what a runtime holds at once under this setting."""
        return self.weight_bytes + self.peak_activation_bytes


def memory_profile(
    model: onnx.ModelProto,
    batch_sizes: Sequence[int] = (1,),
    resolutions: Sequence[int | None] = (None,),
    known: Sequence[StaticProfile] = (),
    known_resolution: int | None = None,
) -> list[MemoryPoint]:
    """Memory and MACs for every batch size × resolution: how peak memory moves with the execution setting.

    A resolution fills every symbolic non-batch dimension of every input (H and W of an image model
    exported with dynamic spatial size); a model whose inputs have none only takes `None`, and asking
    for another resolution raises `UnprofilableModel`. `known` are static profiles of this model already
    computed at `known_resolution` (None: its own shapes; the exec-spec's batch sizes at the resolution it
    is profiled at, `profiled_shapes`): those settings are not profiled again.
    """
    at_known_resolution = {p.batch_size: p for p in known}
    points = []
    for resolution in resolutions:
        shapes = None if resolution is None else shapes_at_resolution(model, resolution)
        for batch_size in batch_sizes:
            shaped = None if shapes is None else {k: (batch_size, *v[1:]) for k, v in shapes.items()}
            profile = at_known_resolution.get(batch_size) if resolution == known_resolution else None
            if profile is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UncostedOpsWarning)
                    profile = static_profile(model, batch_size, shaped)
            points.append(
                MemoryPoint(batch_size, resolution, profile.weight_bytes, profile.peak_activation_bytes, profile.macs)
            )
    return points
