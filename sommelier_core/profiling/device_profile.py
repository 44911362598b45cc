"""A model on one device (paper §5.3): measured latency and operator profile per batch size — the record of
the `device_profile` stage."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sommelier_core import defaults
from sommelier_core.profiling.latency import LatencyProfile, measure_latency
from sommelier_core.profiling.operators import OperatorProfile, profile_operators
from sommelier_core.profiling.shapes import ProfiledShapes


@dataclass(frozen=True)
class DeviceProfile:
    """A model on one device: measured latency and operator profile per batch size of the exec-spec.

    The record of the `device_profile` asset (one partition per model × device).
    """

    model_id: str
    device: str
    latency: tuple[LatencyProfile, ...]
    """Measured `session.run` latency (median, p90, repeats, threads), one per batch size."""
    operators: tuple[OperatorProfile, ...]
    """Per-node kernel times and the executed graph, one per batch size (same order as `latency`)."""
    seconds: float
    """Wall time this profile took (measuring and profiling)."""
    onnx_fingerprint: str = ""
    """Fingerprint of the converted ONNX file measured (`Conversion.fingerprint`; empty in profiles from
    before it was recorded): a republished model whose file changed needs profiling again."""


def profile_device(
    onnx_path: Path,
    model_id: str,
    device: str = "cpu",
    batch_sizes: Sequence[int] = (1,),
    repeats: int = defaults.LATENCY_REPEATS,
    profile_runs: int = defaults.PROFILE_RUNS,
    warmup: int = 5,
    threads: int | None = None,
    seed: int = 0,
    shapes: ProfiledShapes | None = None,
) -> DeviceProfile:
    """Measure latency (warm-up, median and p90 of `repeats`) and profile every operator, per batch size.

    `shapes` are the input shapes the exec-spec profiles the model at (`shapes.profiled_shapes`: a model with
    symbolic spatial dims at its resolution), so latency, operator keys and the executed graph estimates walk
    are at the same shapes as its static profile; None: the model's own shapes.
    """
    started = time.perf_counter()
    latency, operators = [], []
    for batch_size in batch_sizes:
        input_shapes = shapes.at_batch(batch_size) if shapes is not None else None
        latency.append(
            measure_latency(
                onnx_path, device, batch_size, warmup, repeats, threads=threads, seed=seed, input_shapes=input_shapes
            )
        )
        operators.append(
            profile_operators(
                onnx_path, device, batch_size, profile_runs, warmup, threads, seed=seed, input_shapes=input_shapes
            )
        )
    return DeviceProfile(model_id, device, tuple(latency), tuple(operators), time.perf_counter() - started)
