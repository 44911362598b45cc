"""Measured latency of a model on one device (paper §5.3): `session.run` timed with ONNX Runtime after a
warm-up, on seeded random inputs (`feeds`)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from sommelier_core import defaults
from sommelier_core.errors import SommelierError
from sommelier_core.inference import open_session
from sommelier_core.profiling.feeds import random_feeds


class UnknownDevice(SommelierError, ValueError):
    """A device that is not known or not available on this machine."""


@dataclass(frozen=True)
class LatencyProfile:
    """Measured wall-clock latency of `session.run` on one device."""

    device: str
    """`cpu` or `cuda`."""
    batch_size: int
    """Batch size of the random inputs."""
    median_ms: float
    """Median latency over the timed repeats, in milliseconds."""
    p90_ms: float
    """90th percentile latency over the timed repeats, in milliseconds."""
    repeats: int
    """Number of timed runs (after the warm-up)."""
    threads: int
    """Intra-op threads: the requested number, or the CPU count when ONNX Runtime chose."""


def available_devices() -> list[str]:
    """Devices `measure_latency` can run on here: `cpu` always, `cuda` when ORT's CUDA provider is present."""
    devices = ["cpu"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        devices.append("cuda")
    return devices


def require_provider(session: ort.InferenceSession, device: str, label: str) -> None:
    """Raise `UnknownDevice` when a session for `device` fell back to another provider (a CUDA provider that
    failed to load runs on the CPU): its times would be recorded under the wrong device."""
    if device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise UnknownDevice(f"{label}: the CUDA execution provider failed to load; ran on {session.get_providers()}")


def measure_latency(
    onnx_path: Path,
    device: str = "cpu",
    batch_size: int = 1,
    warmup: int = 5,
    repeats: int = defaults.LATENCY_REPEATS,
    threads: int | None = None,
    seed: int = 0,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> LatencyProfile:
    """Median and p90 latency of `session.run` on seeded random inputs at `batch_size`, after `warmup` runs.

    Inputs get the graph's dtypes and shapes, with a symbolic batch dimension set to `batch_size` and other
    symbolic dimensions taken from `input_shapes`. Raises `UnknownDevice` (a `ValueError`) when the device
    is not available here, naming the ones that are.
    """
    devices = available_devices()
    if device not in devices:
        raise UnknownDevice(f"device {device!r} is not available here; available devices: {', '.join(devices)}")
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"need batch_size ≥ 1, repeats ≥ 1, warmup ≥ 0; got {batch_size}, {repeats}, {warmup}")
    session = open_session(onnx_path, device=device, threads=threads)
    require_provider(session, device, str(onnx_path))
    feeds = random_feeds(session, batch_size, input_shapes or {}, np.random.default_rng(seed), str(onnx_path))
    for _ in range(warmup):
        session.run(None, feeds)
    times_ms = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        session.run(None, feeds)
        times_ms[i] = (time.perf_counter() - start) * 1000.0
    return LatencyProfile(
        device=device,
        batch_size=batch_size,
        median_ms=float(np.median(times_ms)),
        p90_ms=float(np.percentile(times_ms, 90)),
        repeats=repeats,
        threads=threads if threads is not None else (os.cpu_count() or 1),
    )
