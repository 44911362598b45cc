"""Running an ONNX model with ONNX Runtime on arrays, in batches."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from sommelier_core.errors import SommelierError

# ONNX Runtime raises its own exception classes (direct subclasses of Exception), e.g. for an input a
# probe graph cannot take; callers that turn them into domain errors naming the model catch these.
ORT_ERRORS: tuple[type[Exception], ...] = tuple(
    getattr(ort.capi.onnxruntime_pybind11_state, name)
    for name in ("Fail", "InvalidArgument", "InvalidGraph", "NotImplemented", "RuntimeException")
) + (RuntimeError,)


STAGE_THREADS_ENV = "SOMMELIER_STAGE_THREADS"
"""Intra-op threads of the ONNX Runtime sessions a stage computes with (`stage_threads`;
unset: ONNX Runtime's default, one per core). `deploy/local-cluster` gives each worker its share of the machine's
cores, so that workers on one machine do not each start a thread per core."""
SPINNING_ENTRY = "session.intra_op.allow_spinning"
"""ONNX Runtime's session option for whether idle intra-op threads spin waiting for work."""


def stage_threads() -> int | None:
    """Intra-op threads for a session a stage computes with: `$SOMMELIER_STAGE_THREADS` (a positive integer), or
    None for ONNX Runtime's default of one per core."""
    text = os.environ.get(STAGE_THREADS_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise SommelierError(f"{STAGE_THREADS_ENV}={text!r}: expected a positive number of threads")
    return int(text)


def open_session(
    onnx_path: Path | str, device: str = "cpu", threads: int | None = None, spin: bool = True
) -> ort.InferenceSession:
    """An ONNX Runtime session on the named device (`cpu` or `cuda`). `spin=False` for a session that computes
    what a stage stores rather than what latency is measured or served on: its idle threads wait without
    spinning, so they leave the cores to the other work of an index run (ONNX Runtime spins by default, which
    suits a session serving requests back to back), and it has `stage_threads()` threads unless `threads` says."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is None and not spin:
        threads = stage_threads()
    if threads is not None:
        options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry(SPINNING_ENTRY, "0")
    return ort.InferenceSession(str(onnx_path), sess_options=options, providers=providers_for(device))


def providers_for(device: str) -> list[str]:
    """ONNX Runtime execution providers for a device name, in order of preference (CPU is the fallback)."""
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]


def run_onnx(onnx_path: Path | str, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """First output of a single-input ONNX model on `x`, computed in batches and concatenated."""
    session = open_session(onnx_path, spin=False)
    input_name = session.get_inputs()[0].name
    parts = [session.run(None, {input_name: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)]
    return np.concatenate(parts, axis=0)


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of the model whose graph outputs are exactly `names` (float tensors, shapes left open)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    del copy.graph.output[:]
    copy.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names)
    return copy


def model_session(model: onnx.ModelProto) -> ort.InferenceSession:
    """A CPU session on an in-memory model, with basic graph optimizations only.

    Basic, not extended, optimization: fusions would remove the intermediate tensors the probes read. Idle
    threads do not spin, and there are `stage_threads()` of them (see `open_session`).
    """
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry(SPINNING_ENTRY, "0")
    threads = stage_threads()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])


def probe_session(model: onnx.ModelProto, outputs: list[str]) -> ort.InferenceSession:
    """A session on a copy of `model` whose outputs are exactly `outputs` (intermediate tensors included)."""
    return model_session(with_outputs(model, outputs))


def node_attribute(node: onnx.NodeProto, name: str, default: object) -> object:
    """An ONNX node's attribute value by name, or `default` when the node does not set it (the ONNX default)."""
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


class MemoryBudgetExceeded(SommelierError):
    """One sample of a model needs more intermediate memory than the stage's budget allows."""


def rows_within_budget(bytes_per_row: int, budget_bytes: int, label: str, stage: str, cap: int = 4096) -> int:
    """How many samples a streaming stage processes at once so that their tensors stay within `budget_bytes`.

    At least one; when even one sample needs more than the budget, `MemoryBudgetExceeded` names the model
    (`label`), the stage and the setting to raise (`IndexSettings.stage_memory_bytes`).
    """
    if bytes_per_row > budget_bytes:
        raise MemoryBudgetExceeded(
            f"{label}: stage {stage} needs {bytes_per_row / 2**20:.0f} MiB per sample, above the stage memory budget "
            f"of {budget_bytes / 2**20:.0f} MiB; raise stage_memory_bytes (IndexSettings) to run it"
        )
    return max(1, min(cap, budget_bytes // max(1, bytes_per_row)))
