"""A model's graph with its input shapes fixed and the element type and shape of every tensor known.

ONNX shape inference (with data propagation) gives most shapes; where it stops, one ONNX Runtime pass at
the fixed input shapes gives the rest. What `static.static_profile` reads tensor sizes from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, shape_inference

from sommelier_core.ingest.validation import check_input_budget
from sommelier_core.profiling.shapes import Shape, UnprofilableModel, resolve_input_shapes

# Initializers above this many elements lose their payload in the copy given to shape inference: only
# shape-like tensors (shapes, axes, Resize scales: a handful of elements) are ever read by shape rules.
_MAX_ELEMENTS_READ_BY_SHAPE_INFERENCE = 1024


def inferred_graph(
    model: onnx.ModelProto, batch_size: int, input_shapes: Mapping[str, Sequence[int]]
) -> onnx.GraphProto:
    """The model's graph with input shapes fixed and every tensor's type and shape inferred."""
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    graph = fixed.graph
    label = f"model {graph.name or '<unnamed>'!r}"
    for init in graph.initializer:
        if math.prod(init.dims) > _MAX_ELEMENTS_READ_BY_SHAPE_INFERENCE:
            for field in ("raw_data", "float_data", "double_data", "int32_data", "int64_data", "external_data"):
                init.ClearField(field)
            init.data_location = TensorProto.DEFAULT
    initializer_names = {init.name for init in graph.initializer}
    inputs = [vi for vi in graph.input if vi.name not in initializer_names]
    declared = {
        vi.name: [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
        if vi.type.tensor_type.HasField("shape")
        else None
        for vi in inputs
    }
    shapes = resolve_input_shapes(declared, batch_size, input_shapes, label)
    for vi in inputs:
        tensor_type = vi.type.tensor_type
        tensor_type.shape.Clear()
        for dim in shapes[vi.name]:
            tensor_type.shape.dim.add().dim_value = dim
    # Stale symbolic shapes from the exporter would otherwise be merged with the inferred ones.
    del graph.value_info[:]
    for out in graph.output:
        out.type.tensor_type.ClearField("shape")
    try:
        inferred = shape_inference.infer_shapes(fixed, check_type=True, strict_mode=True, data_prop=True).graph
    except (shape_inference.InferenceError, onnx.checker.ValidationError) as error:
        raise UnprofilableModel(f"{label}: shape inference failed: {error}") from error
    return _complete_shapes_by_execution(model, inferred, shapes, label)


def _complete_shapes_by_execution(
    model: onnx.ModelProto, inferred: onnx.GraphProto, shapes: Mapping[str, Sequence[int]], label: str
) -> onnx.GraphProto:
    """Fill the shapes that static inference left unknown by running the model once at the fixed input shapes.

    ONNX's data propagation stops at ops such as `Mod` in exporter-generated shape arithmetic (PyTorch
    emits it for negative-index `unsqueeze`/slicing), leaving later shapes unknown although the model's
    shapes are fully determined by its input shapes. One ONNX Runtime pass on zero inputs exposing
    those tensors gives their exact shapes; nothing is guessed.
    """
    types = tensor_types(inferred)
    initializers = {init.name for init in inferred.initializer}
    missing = [
        out
        for node in inferred.node
        for out in node.output
        if out and out not in initializers and (out not in types or types[out][1] is None)
    ]
    typed = [name for name in missing if name in types and types[name][0] != TensorProto.UNDEFINED]
    if not typed:
        return inferred
    runnable = onnx.ModelProto()
    runnable.CopyFrom(model)
    known_outputs = {out.name for out in runnable.graph.output}
    for name in typed:
        if name not in known_outputs:
            runnable.graph.output.append(onnx.helper.make_tensor_value_info(name, types[name][0], None))
    declared = {
        vi.name: (shapes[vi.name], onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))
        for vi in runnable.graph.input
        if vi.name in shapes
    }
    check_input_budget(label, declared)  # refuse before allocating inputs a hostile declared shape would need
    feeds = {name: np.zeros(shape, dtype=dtype) for name, (shape, dtype) in declared.items()}
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(
            runnable.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
        )
        values = session.run(typed, feeds)
    except Exception:  # onnxruntime raises its own untyped errors
        return inferred  # the first unknown tensor is then reported by name, with its node
    by_name = {vi.name: vi for vi in [*inferred.value_info, *inferred.output]}
    for name, value in zip(typed, values, strict=True):
        info = onnx.helper.make_tensor_value_info(name, types[name][0], list(value.shape))
        if name in by_name:
            by_name[name].CopyFrom(info)
        else:
            inferred.value_info.append(info)
    return inferred


def tensor_types(graph: onnx.GraphProto) -> dict[str, tuple[int, Shape | None]]:
    """Element type and static shape (None where unknown or symbolic) of every named tensor of the graph."""
    types: dict[str, tuple[int, Shape | None]] = {}
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = vi.type.tensor_type
        shape: Shape | None = None
        if tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in tensor_type.shape.dim):
            shape = tuple(d.dim_value for d in tensor_type.shape.dim)
        types[vi.name] = (tensor_type.elem_type, shape)
    for init in graph.initializer:
        types[init.name] = (init.data_type, tuple(init.dims))
    return types
