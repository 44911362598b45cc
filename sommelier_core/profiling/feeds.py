"""Seeded random inputs for an ONNX Runtime session: what measured and profiled runs feed a model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnxruntime as ort

from sommelier_core.ingest.validation import check_input_budget
from sommelier_core.profiling.shapes import UnprofilableModel, resolve_input_shapes

_ORT_INPUT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def random_feeds(
    session: ort.InferenceSession,
    batch_size: int,
    input_shapes: Mapping[str, Sequence[int]],
    rng: np.random.Generator,
    label: str,
) -> dict[str, np.ndarray]:
    """Seeded random inputs for an open session: standard normal for floats, 0/1 for integers and booleans
    (valid as indices).

    Shapes are resolved as in `measure_latency` (symbolic batch → `batch_size`, other symbolic dims from
    `input_shapes`); `label` names the model in errors. Inputs over the input budget are refused with
    `InputTooLarge` before anything is allocated (`ingest.validation.check_input_budget`). Shared by
    `measure_latency` and `operators.profile_operators` so a measured and a profiled run see the same inputs.
    """
    declared = {arg.name: [dim if isinstance(dim, int) else None for dim in arg.shape] for arg in session.get_inputs()}
    shapes = resolve_input_shapes(declared, batch_size, input_shapes, label)
    dtypes = {}
    for arg in session.get_inputs():
        dtypes[arg.name] = _ORT_INPUT_DTYPES.get(arg.type)
        if dtypes[arg.name] is None:
            raise UnprofilableModel(f"{label}: cannot generate random values for input {arg.name!r} of type {arg.type}")
    check_input_budget(label, {name: (shapes[name], dtype) for name, dtype in dtypes.items()})
    feeds = {}
    for arg in session.get_inputs():
        shape, dtype = shapes[arg.name], dtypes[arg.name]
        if np.issubdtype(dtype, np.floating):
            feeds[arg.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[arg.name] = rng.integers(0, 2, size=shape).astype(dtype)
    return feeds
