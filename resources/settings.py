"""Indexing knobs (paper §5.5) as one Dagster resource."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import onnx
from dagster import ConfigurableResource

from sommelier_core.equivalence.bound import ARORA_CONSTANT, BOUND_MODES
from sommelier_core.equivalence.pair_measure import BoundSettings
from sommelier_core.profiling.profile import ProfiledShapes, profiled_shapes


class IndexSettings(ConfigurableResource):
    """How models are compared, bounded and profiled."""

    peers: int = 5
    """Peers sampled per model (paper §5.2: five)."""
    seed: int = 0
    """Seed of peer sampling and profiling inputs."""
    bound_mode: str = "statistical"
    """`off`, `statistical`, `arora` (+ the reference's architecture term, paper §4.1) or `custom`
    (`arora` with the difference and cushions measured on `bound_data`)."""
    delta: float = 0.05
    """Bounds hold with confidence 1 − delta."""
    bound_constant: float = ARORA_CONSTANT
    """C of the architecture term (calibrated by benchmarks/bound_safety.py; see README)."""
    bound_data: str = ""
    """The dataset of the `custom` mode: an `.npz` with an array `x` and optional `y` (or a built-in name)."""
    cushion_jacobian_samples: int = 32
    """Validation samples the interlayer cushions (Jacobian norms) are measured on."""
    cushion_projections: int = 8
    """Random projections per Jacobian Frobenius-norm estimate."""
    segment_epsilon: float = 0.05
    """ε of segment equivalence (paper §4.2): the largest estimated difference of a synthesized model from its base."""
    segment_samples: int = 256
    """Validation samples the segment bounds and noise injection use (0: all)."""
    parity_tolerance: float = 1e-4
    """Largest accepted ONNX-vs-original error, relative to the output magnitude."""
    latency_repeats: int = 30
    """Timed ONNX Runtime runs per latency measurement (after warm-up)."""
    batch_size: int = 1
    """Batch size of the profile (static costs and latency)."""
    batch_sizes: list[int] = []
    """More batch sizes of the exec-spec, profiled besides `batch_size` (static costs, latency, operators)."""
    memory_batch_sizes: list[int] = [1, 8, 32]
    """Batch sizes the memory-vs-setting table (paper Fig. 12a) is computed at (static, cheap)."""
    memory_resolutions: list[int] = []
    """Input resolutions (H = W, pixels) of that table, for models exported with symbolic spatial dimensions: the
    resolutions a query's `RESOLUTION r` can ask of them (memory, activations, MACs and FLOPs at r). A query at a
    resolution not listed here is an error naming it; fixed-resolution models run only at their own."""
    resolution: int = 0
    """Input size (H = W, or the length L of a 1-D signal) at which models exported with symbolic spatial
    dimensions (dynamic H, W) are profiled: static costs, memory, latency and operator profiles, and the
    resolution their index rows are at (a query's `RESOLUTION`). 0 = the size of the validation inputs the
    model is compared on, so its profile describes the model as it was evaluated. Models with fixed spatial
    dimensions are profiled at their own, whatever this says."""
    profile_runs: int = 10
    """ONNX Runtime profiler runs per model and device for the per-operator latency table."""
    latency_threads: int = 0
    """Intra-op threads of latency measurement and profiling; 0 lets ONNX Runtime choose (recorded)."""
    operator_sweep: bool = True
    """Add the calibration sweep (`calibration_sweep`: ~1 000 small graphs over sampled configurations) to each
    device's operator table: the kernels the predictors for operators no model on the device ran are fitted on.
    Profiled once per device (about a minute on one CPU thread) and kept under `<store>/calibration`."""
    operator_sweep_rounds: int = 2
    """Rounds of the calibration sweep; each graph keeps its quietest round."""

    def exec_batch_sizes(self) -> list[int]:
        """The exec-spec's batch sizes: `batch_size` first, then `batch_sizes`, each once."""
        return list(dict.fromkeys([self.batch_size, *self.batch_sizes]))

    def profiled_shapes(
        self, model: onnx.ModelProto, validation_shape: Callable[[], Sequence[int]], model_id: str = ""
    ) -> ProfiledShapes:
        """The input shapes this exec-spec profiles `model` at (`profile.profiled_shapes`): `resolution`, or the
        validation inputs' shape (`validation_shape`, asked only for a model with symbolic spatial dims)."""
        if self.resolution < 0:
            raise ValueError(f"resolution must be 0 (the validation inputs') or a positive size, got {self.resolution}")
        return profiled_shapes(model, self.resolution, validation_shape, model_id)

    def checked_bound_mode(self) -> str:
        """The bound mode, validated."""
        if self.bound_mode not in BOUND_MODES:
            raise ValueError(f"bound_mode {self.bound_mode!r} is not one of {', '.join(BOUND_MODES)}")
        if self.bound_mode == "custom" and not self.bound_data:
            raise ValueError("bound_mode 'custom' needs bound_data: an .npz with an array 'x' and optional 'y'")
        return self.bound_mode

    def bound_settings(self) -> BoundSettings:
        """The bounding knobs as the core library takes them (stage `bound` and query-time refinement)."""
        return BoundSettings(self.checked_bound_mode(), self.delta, self.bound_constant, self.bound_data)
