"""Indexing knobs (paper §5.5) as one Dagster resource."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import onnx
import pydantic
from dagster import ConfigurableResource

from sommelier_core import defaults
from sommelier_core.equivalence.bound import ARORA_CONSTANT, BOUND_MODE_SPECS, BOUND_MODES
from sommelier_core.equivalence.pair_measure import BoundSettings
from sommelier_core.ingest.project_config import ProjectConfigError, load_project_config
from sommelier_core.profiling import ProfiledShapes, profiled_shapes


class IndexSettings(ConfigurableResource):
    """How models are compared, bounded and profiled (each default is `sommelier_core.defaults`')."""

    peers: int = defaults.PEERS
    """Peers each new model is compared with (paper §5.2: five), `pivots` of them its compatible group's pivots."""
    pivots: int = defaults.PIVOTS
    """Of the `peers`, how many are the group's first models (`equivalence.choose_peers`): every pair of a group
    then shares a measured pivot, so path bounds rank candidates in groups of thousands."""
    partitions_per_run: int = defaults.PARTITIONS_PER_RUN
    """Models (or models on one device) one Dagster run of `sommelier index` covers: Dagster's cost per run is
    shared by them. A run that fails is run again one model per run, so a bad model fails alone."""
    seed: int = defaults.SEED
    """Seed of peer sampling and profiling inputs."""
    bound_mode: str = defaults.BOUND_MODE
    """A mode of `bound.BOUND_MODE_SPECS`: `off`, `statistical`, `arora` (+ the reference's architecture term,
    paper §4.1) or `custom` (`arora` with the difference and cushions measured on `bound_data`)."""
    delta: float = defaults.DELTA
    """Bounds hold with confidence 1 − delta."""
    bound_constant: float = ARORA_CONSTANT
    """C of the architecture term (calibrated by benchmarks/bound_safety.py; see README)."""
    bound_data: str = ""
    """The dataset of the `custom` mode: an `.npz` with an array `x` and optional `y` (or a built-in name)."""
    cushion_jacobian_samples: int = defaults.CUSHION_JACOBIAN_SAMPLES
    """Validation samples the interlayer cushions (Jacobian norms) are measured on."""
    cushion_projections: int = defaults.CUSHION_PROJECTIONS
    """Random projections per Jacobian Frobenius-norm estimate."""
    stage_memory_bytes: int = defaults.STAGE_MEMORY_BYTES
    """Most bytes of intermediate tensors a stage holds at once while streaming the validation set (cushions,
    segments): batches are sized from it. A model one sample of which needs more fails alone, naming the stage."""
    input_shapes: dict[str, list[int]] = {}
    """Input shapes by input name (`{"x": [1, 3, 48, 192]}`, batch dim included) at which models with symbolic
    dims are profiled: names no model has are ignored, and a model's own concrete dims must agree. Takes
    precedence over `resolution` for the inputs it names; non-square shapes are fine."""
    segment_epsilon: float = defaults.SEGMENT_EPSILON
    """ε of segment equivalence (paper §4.2): the largest estimated difference of a synthesized model from its base."""
    segment_samples: int = defaults.SEGMENT_SAMPLES
    """Validation samples the segment bounds and noise injection use (0: all)."""
    parity_tolerance: float = defaults.PARITY_TOLERANCE
    """Largest accepted ONNX-vs-original error, relative to the output magnitude."""
    latency_repeats: int = defaults.LATENCY_REPEATS
    """Timed ONNX Runtime runs per latency measurement (after warm-up)."""
    batch_size: int = defaults.BATCH_SIZE
    """Batch size of the profile (static costs and latency)."""
    batch_sizes: list[int] = []
    """More batch sizes of the exec-spec, profiled besides `batch_size` (static costs, latency, operators)."""
    memory_batch_sizes: list[int] = list(defaults.MEMORY_BATCH_SIZES)
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
    profile_runs: int = defaults.PROFILE_RUNS
    """ONNX Runtime profiler runs per model and device for the per-operator latency table."""
    latency_threads: int = 0
    """Intra-op threads of latency measurement and profiling; 0 lets ONNX Runtime choose (recorded)."""
    operator_sweep: bool = True
    """Add the calibration sweep (`calibration_sweep`: ~1 000 small graphs over sampled configurations) to each
    device's operator table: the kernels the predictors for operators no model on the device ran are fitted on.
    Profiled once per device (about a minute on one CPU thread): the graphs are regenerated from their seed and
    deleted once measured; only the measured profiles are kept under `<store>/calibration`."""
    operator_sweep_rounds: int = defaults.OPERATOR_SWEEP_ROUNDS
    """Rounds of the calibration sweep; each graph keeps its quietest round."""

    @classmethod
    def from_project_config(cls, **overrides: object) -> IndexSettings:
        """The `settings:` of the project configuration (`sommelier.yaml`; names checked against these fields),
        `overrides` on top. A bad value is refused naming the file, the key and what was expected."""
        config = load_project_config()
        configured = config.settings_overrides(cls.model_fields)
        try:
            return cls(**{**configured, **overrides})
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(part) for part in first["loc"])
            raise ProjectConfigError(
                f"{config.path}: settings.{key}: {first['msg']}, got {first.get('input')!r}"
            ) from exc

    def exec_batch_sizes(self) -> list[int]:
        """The exec-spec's batch sizes: `batch_size` first, then `batch_sizes`, each once."""
        return list(dict.fromkeys([self.batch_size, *self.batch_sizes]))

    def profiled_shapes(
        self, model: onnx.ModelProto, validation_shape: Callable[[], Sequence[int]], model_id: str = ""
    ) -> ProfiledShapes:
        """The input shapes this exec-spec profiles `model` at (`profiling.profiled_shapes`): `resolution`, or the
        validation inputs' shape (`validation_shape`, asked only for a model with symbolic spatial dims)."""
        if self.resolution < 0:
            raise ValueError(f"resolution must be 0 (the validation inputs') or a positive size, got {self.resolution}")
        return profiled_shapes(model, self.resolution, validation_shape, model_id, input_shapes=self.input_shapes)

    def checked_bound_mode(self) -> str:
        """The bound mode, validated: one of `BOUND_MODE_SPECS`, with `bound_data` where the mode needs it."""
        spec = BOUND_MODE_SPECS.get(self.bound_mode)
        if spec is None:
            raise ValueError(f"bound_mode {self.bound_mode!r} is not one of {', '.join(BOUND_MODES)}")
        if spec.custom_data and not self.bound_data:
            raise ValueError(
                f"bound_mode {self.bound_mode!r} needs bound_data: an .npz with an array 'x' and optional 'y'"
            )
        return self.bound_mode

    def bound_settings(self) -> BoundSettings:
        """The bounding knobs as the core library takes them (stage `bound` and query-time refinement)."""
        return BoundSettings(self.checked_bound_mode(), self.delta, self.bound_constant, self.bound_data)
