"""Default values of the knobs people set, each written once: the library, the Dagster resource `IndexSettings`
(`resources/settings.py`) and the `sommelier` command line all read them from here.

Plain values and no imports, so any layer may read it; what a knob means is documented where it is used
(`IndexSettings` for the indexing knobs, `sommelier_core.query` for the query ones).
"""

from __future__ import annotations

DEVICE = "cpu"
"""The device a query's latency figures and budgets refer to, and that `sommelier profile` measures on."""

WITHIN = 0.05
"""Equivalence threshold of a query that names a reference (or a task) without WITHIN: 5 %."""
REFINE_BUDGET = 64
"""Most candidate pairs one query measures from stored outputs (a few ms each on the built-in zoo)."""

SEED = 0
"""Seed of peer sampling, profiling inputs and the built-in zoo."""
PEERS = 5
"""Peers sampled per model (paper §5.2: five)."""

BOUND_MODE = "statistical"
"""How measured differences are bounded (the modes: `sommelier_core.equivalence.bound.BOUND_MODE_SPECS`)."""
DELTA = 0.05
"""Bounds hold with confidence 1 − delta."""
CUSHION_JACOBIAN_SAMPLES = 32
"""Validation samples the interlayer cushions (Jacobian norms) are measured on."""
CUSHION_PROJECTIONS = 8
"""Random projections per Jacobian Frobenius-norm estimate."""

SEGMENT_EPSILON = 0.05
"""ε of segment equivalence (paper §4.2): the largest estimated difference of a synthesized model from its base."""
SEGMENT_SAMPLES = 256
"""Validation samples the segment bounds and noise injection use (0: all)."""

PARITY_TOLERANCE = 1e-4
"""Largest accepted ONNX-vs-original error, relative to the output magnitude."""

BATCH_SIZE = 1
"""Batch size of the profile (static costs and latency)."""
MEMORY_BATCH_SIZES = (1, 8, 32)
"""Batch sizes the memory-vs-setting table (paper Fig. 12a) is computed at."""
LATENCY_REPEATS = 30
"""Timed ONNX Runtime runs per latency measurement (after warm-up)."""
PROFILE_RUNS = 10
"""ONNX Runtime profiler runs per model and device for the per-operator latency table."""
OPERATOR_SWEEP_ROUNDS = 2
"""Rounds of the calibration sweep; each graph keeps its quietest round."""

INPUT_BUDGET_BYTES = 256 * 1024**2
"""Most bytes of inputs Sommelier generates to run a model once (parity inputs, profiling feeds), computed from the
declared shape before anything is allocated: a file of a few KB declaring an input of (N, 1, 10⁶, 8) is refused
instead of taking gigabytes. `$SOMMELIER_INPUT_BUDGET_BYTES` overrides it (`ingest.validation.input_budget_bytes`)."""

STAGE_MEMORY_BYTES = 1024**3
"""Most bytes of intermediate tensors one stage holds at once while it streams the validation set in batches
(cushions' probed activations, segment bounds and noise injection): the batch is sized from the model's per-sample
tensors, so a stage's memory is set by this, not by the model or the number of samples."""

OUTPUTS_BATCH_SIZE = 64
"""Samples per ONNX Runtime run when a model's validation outputs are computed (a model whose input declares a fixed
batch size runs at that size). It bounds the stage's memory (one batch of inputs, activations and outputs, whatever the
validation set's size) and is recorded with the outputs: a model whose arithmetic depends on the batch (dynamic int8
quantization scales each batch together) gives the same outputs at the same batch size."""

INDEX_PARENT_PID_ENV = "SOMMELIER_INDEX_PARENT_PID"
"""Set by `sommelier index` for the indexing process it starts (`pipelines.index_run`): the pid of the command, so
the indexing process stops when the command is gone, even killed outright (SIGKILL leaves it no way to pass it on)."""

PIVOTS = 2
"""Of the peers each model is compared with, how many are its compatible group's pivots (the group's first models):
every pair of a group then has a two-hop path through a shared pivot, so path bounds can rank them (`choose_peers`)."""

PARTITIONS_PER_RUN = 25
"""Partitions (models, or models on one device) one Dagster run of a wave covers, in `sommelier index` and in
backfills launched from the UI: Dagster's cost per run (creating it, planning, its events) is then shared by that many
models instead of paid by each. A run whose step fails for one of them is run again one model per run, so a bad model
still fails alone."""
