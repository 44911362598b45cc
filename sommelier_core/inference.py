"""Running an ONNX model with ONNX Runtime on arrays, in batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort


def open_session(onnx_path: Path | str, device: str = "cpu", threads: int | None = None) -> ort.InferenceSession:
    """An ONNX Runtime session on the named device (`cpu` or `cuda`)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    return ort.InferenceSession(str(onnx_path), sess_options=options, providers=providers)


def run_onnx(onnx_path: Path | str, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """First output of a single-input ONNX model on `x`, computed in batches and concatenated."""
    session = open_session(onnx_path)
    input_name = session.get_inputs()[0].name
    parts = [session.run(None, {input_name: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)]
    return np.concatenate(parts, axis=0)
