"""Indexing knobs (paper §5.5) as one Dagster resource."""

from __future__ import annotations

from dagster import ConfigurableResource

from sommelier_core.bound import BOUND_MODES


class IndexSettings(ConfigurableResource):
    """How models are compared, bounded and profiled."""

    peers: int = 5
    """Peers sampled per model (paper §5.2: five)."""
    seed: int = 0
    """Seed of peer sampling and profiling inputs."""
    bound_mode: str = "statistical"
    """`off` or `statistical` (the architecture term comes in a later mode)."""
    delta: float = 0.05
    """Bounds hold with confidence 1 − delta."""
    parity_tolerance: float = 1e-4
    """Largest accepted ONNX-vs-original error, relative to the output magnitude."""
    latency_repeats: int = 30
    """Timed ONNX Runtime runs per latency measurement (after warm-up)."""
    batch_size: int = 1
    """Batch size of the profile (static costs and latency)."""

    def checked_bound_mode(self) -> str:
        """The bound mode, validated."""
        if self.bound_mode not in BOUND_MODES:
            raise ValueError(f"bound_mode {self.bound_mode!r} is not one of {', '.join(BOUND_MODES)}")
        return self.bound_mode
