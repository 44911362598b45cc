"""Conversion of every model to ONNX, Sommelier's one internal representation (design §2).

PyTorch goes through `torch.onnx.export`, TensorFlow SavedModels (TF-Hub, Keras) through
tf2onnx, ONNX passes through. Every conversion is checked numerically: the original framework
and ONNX Runtime run on the same inputs and the largest difference is recorded; a conversion
that disagrees beyond tolerance raises `ConversionMismatch` and leaves no file behind.

Parity rule: with `M` the largest magnitude of the original outputs, `max_abs_error` the largest
elementwise difference and `max_rel_error = max_abs_error / M`, a conversion passes iff
`max_abs_error <= tolerance * max(1, M)`, i.e. `min(max_abs_error, max_rel_error) <= tolerance`:
absolute for outputs of magnitude up to 1 (probabilities), relative to the output scale beyond
(large logits), never elementwise relative (which explodes for outputs near zero).

Converted graphs name their single input `input`, their outputs `output` (or `output_<key>`),
and their leading dimension `batch` (symbolic), whatever the framework called them.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx.helper import tensor_dtype_to_np_dtype

from sommelier_core import defaults
from sommelier_core.errors import ConversionError, ConversionMismatch
from sommelier_core.inference import open_session
from sommelier_core.ingest.fingerprint import fingerprint
from sommelier_core.ingest.validation import check_input_budget
from sommelier_core.models import FetchedModel, ModelEntry, Signature, TensorSpec

OPSET = 17
PARITY_SAMPLES = 16
BATCH_DIM = "batch"
INPUT_NAME = "input"
OUTPUT_NAME = "output"
# Tracing with a batch of 2 rather than 1 keeps exporters from specialising the batch dimension.
_EXPORT_BATCH = 2
_RUN_BATCH = 256
_MAX_WARNINGS_REPORTED = 3


@dataclass(frozen=True)
class Conversion:
    """A model converted to ONNX and checked against its original framework."""

    model_id: str
    """The converted model's id (`<repository>/<name>`)."""
    onnx_path: Path
    """Where the ONNX file was written."""
    fingerprint: str
    """sha256 over the canonical graph and weights: the same network published twice shares it."""
    signature: Signature
    """Input and output tensors of the ONNX graph, leading (batch) dimension symbolic."""
    converter: str
    """`torch.onnx.export`, `tf2onnx` or `passthrough`."""
    max_abs_error: float
    """Largest elementwise |ONNX Runtime − original| over the parity inputs."""
    max_rel_error: float
    """`max_abs_error` divided by the largest magnitude of the original outputs."""
    parity_samples: int
    """Number of inputs both runtimes were run on."""
    tolerance: float
    """The tolerance the errors were checked against (see the module's parity rule)."""
    notes: tuple[str, ...] = ()
    """Repairs made to a passed-through graph (`load_onnx_repaired`) and notable exporter warnings."""

    @property
    def parity_holds(self) -> bool:
        """Whether the stored errors meet the parity rule (a passed-through ONNX file has no original to differ)."""
        return self.parity_samples == 0 or within_parity(self.max_abs_error, self.max_rel_error, self.tolerance)


def within_parity(max_abs_error: float, max_rel_error: float, tolerance: float) -> bool:
    """The module docstring's parity rule: the smaller of the max absolute and max relative error within tolerance."""
    return min(max_abs_error, max_rel_error) <= tolerance


def convert_model(
    fetched: FetchedModel,
    out_path: Path,
    *,
    parity_inputs: np.ndarray | None = None,
    tolerance: float = defaults.PARITY_TOLERANCE,
    seed: int = 0,
) -> Conversion:
    """Convert a fetched model to ONNX at `out_path`, checking parity on `parity_inputs`.

    Without `parity_inputs`, 16 seeded random inputs of the entry's input shape are used. The
    file is written under a temporary name and renamed only once the check passes, so readers
    never see half a file or an unchecked one. Raises `ConversionError` when the exporter fails
    and `ConversionMismatch` when ONNX Runtime disagrees beyond `tolerance`.
    """
    entry = fetched.entry
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        converter, x, expected, notes = _write_onnx(fetched, tmp_path, parity_inputs, seed)
        observed = _run_onnx(tmp_path, x, entry.model_id)
        max_abs, max_rel = (0.0, 0.0) if expected is None else parity_errors(expected, observed, entry.model_id)
        if not within_parity(max_abs, max_rel, tolerance):
            raise ConversionMismatch(
                f"{entry.model_id}: {converter} output differs from the original on {len(x)} inputs: "
                f"max abs error {max_abs:.3g}, max rel error {max_rel:.3g}, tolerance {tolerance:g}"
                + (f"; exporter warnings: {' | '.join(notes)}" if notes else "")
            )
        model = onnx.load(str(tmp_path))
        os.replace(tmp_path, out_path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return Conversion(
        model_id=entry.model_id,
        onnx_path=out_path,
        fingerprint=fingerprint(model),
        signature=onnx_signature(model),
        converter=converter,
        max_abs_error=max_abs,
        max_rel_error=max_rel,
        parity_samples=len(x),
        tolerance=tolerance,
        notes=tuple(notes),
    )


class ExportFailed(ConversionError):
    """The framework's exporter (torch.onnx.export, tf2onnx) failed on the model: deterministic for a version."""


EXPORT_FAILURE_FILE = "export_failure.json"
"""Beside a model's stored files: the exporter failure of one version, so later runs do not export it again."""


def record_export_failure(model_dir: Path, version: str, message: str) -> Path:
    """Write the exporter failure of a model `version` into `model_dir` (a later run reads it back)."""
    path = Path(model_dir) / EXPORT_FAILURE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": version, "error": message}) + "\n")
    return path


def recorded_export_failure(model_dir: Path, version: str) -> str | None:
    """The exporter failure recorded for this `version` of the model, or None (none, or another version's)."""
    path = Path(model_dir) / EXPORT_FAILURE_FILE
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or recorded.get("version") != version:
        return None
    return str(recorded.get("error", ""))


def load_onnx(path: Path) -> onnx.ModelProto:
    """Read and validate an ONNX file, repaired as `load_onnx_repaired` does; a missing, corrupt or invalid file is a
    `ConversionError`."""
    return load_onnx_repaired(path)[0]


def load_onnx_repaired(path: Path) -> tuple[onnx.ModelProto, list[str]]:
    """Read and validate an ONNX file as toolchains write them, with a note per repair made.

    Two things ONNX Runtime accepts are repaired rather than refused: a dimension declared `-1` (Paddle's exports)
    becomes symbolic (`batch` when leading), and nodes out of topological order (ONNX Runtime's float16 converter
    puts its input casts last) are sorted. Anything else `onnx.checker` rejects is a `ConversionError` quoting the
    checker's whole message on one line.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file; expected an ONNX model file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise ConversionError(f"{path}: not an ONNX model (expected a serialized onnx.ModelProto): {exc}") from exc
    if not model.graph.output:
        raise ConversionError(f"{path}: not an ONNX model (expected a serialized onnx.ModelProto with a graph)")
    notes = symbolic_negative_dims(model)
    large = model.ByteSize() >= 2**31
    try:
        onnx.checker.check_model(model if not large else str(path))
    except onnx.checker.ValidationError as exc:
        if large or TOPOLOGICAL_ORDER_MESSAGE not in str(exc):
            raise ConversionError(f"{path}: not a valid ONNX model (onnx.checker: {one_line(exc)})") from exc
        notes.append(topologically_sort(model))
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as again:
            raise ConversionError(
                f"{path}: not a valid ONNX model after sorting its nodes (onnx.checker: {one_line(again)})"
            ) from again
    return model, notes


TOPOLOGICAL_ORDER_MESSAGE = "must be topologically sorted"
"""What `onnx.checker` says of a graph whose nodes are out of order (which ONNX Runtime runs all the same)."""


def first_line(error: BaseException, limit: int = 300) -> str:
    """`Type: first line of the message`, at most `limit` characters: exporters put whole graph dumps (a hundred
    lines of TorchScript) in their messages, which would bury the one line that says what failed."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(error: BaseException) -> str:
    """An exception's whole message on one line (progress lines and Dagster summaries keep only the first)."""
    return " ".join(str(error).split())


def symbolic_negative_dims(model: onnx.ModelProto) -> list[str]:
    """Make every graph input/output dimension declared as a negative number symbolic (`batch` when leading, else
    left unnamed), in place: `-1` is how Paddle and some converters spell "any size". A note per tensor changed."""
    notes = []
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        changed = [axis for axis, dim in enumerate(dims) if dim.HasField("dim_value") and dim.dim_value < 0]
        for axis in changed:
            dims[axis].Clear()
            if axis == 0:
                dims[axis].dim_param = BATCH_DIM
        if changed:
            notes.append(f"{value.name!r} declared dims {changed} as -1: read as symbolic")
    return notes


def topologically_sort(model: onnx.ModelProto) -> str:
    """Reorder the main graph's nodes so each comes after the producers of its inputs (stable: nodes already in
    order keep it), in place; returns the note saying so. A cycle is a `ConversionError`."""
    graph = model.graph
    available = {t.name for t in graph.initializer} | {v.name for v in graph.input} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    moved = 0
    while pending:
        still = []
        for node in pending:
            if all(name in available for name in node.input):
                if still:
                    moved += 1
                ordered.append(node)
                available.update(node.output)
            else:
                still.append(node)
        if len(still) == len(pending):
            names = ", ".join(repr(n.name or n.op_type) for n in still[:3])
            raise ConversionError(f"graph {graph.name!r}: nodes {names} read tensors no node produces (or a cycle)")
        pending = still
    copies = [onnx.NodeProto() for _ in ordered]
    for copy, node in zip(copies, ordered, strict=True):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(copies)
    return f"nodes were not in topological order (onnx.checker refuses that; ONNX Runtime does not): {moved} moved"


def load_native(fetched: FetchedModel) -> object:
    """The model in its own framework: an eval-mode `torch.nn.Module`, a loaded SavedModel
    (`tensorflow_hub.load`), or an `onnx.ModelProto` for ONNX files."""
    model_id = fetched.entry.model_id
    if fetched.loader == "torchhub":
        import torch

        try:
            model = torch.hub.load(str(fetched.source_path), fetched.entry_point, source="local", verbose=False)
        except Exception as exc:
            raise ConversionError(
                f"{model_id}: loading Torch Hub entry point {fetched.entry_point!r} from {fetched.source_path} "
                f"failed: {exc!r}"
            ) from exc
        if not isinstance(model, torch.nn.Module):
            raise ConversionError(
                f"{model_id}: entry point {fetched.entry_point!r} returned {type(model).__name__}, "
                "expected a torch.nn.Module"
            )
        return model.eval()
    if fetched.loader == "savedmodel":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # tensorflow_hub imports pkg_resources
            import tensorflow_hub as hub
        try:
            return hub.load(str(fetched.source_path))
        except Exception as exc:
            raise ConversionError(f"{model_id}: loading SavedModel {fetched.source_path} failed: {exc}") from exc
    if fetched.loader == "onnx":
        return load_onnx(fetched.source_path)
    raise ConversionError(f"{model_id}: unknown loader {fetched.loader!r}")


def onnx_signature(model: onnx.ModelProto) -> Signature:
    """Inputs (initializers excluded) and outputs of the graph; symbolic dims keep their names."""
    initializers = {t.name for t in model.graph.initializer}
    return Signature(
        inputs=tuple(_tensor_spec(v) for v in model.graph.input if v.name not in initializers),
        outputs=tuple(_tensor_spec(v) for v in model.graph.output),
    )


def parity_errors(expected: Sequence[np.ndarray], observed: Sequence[np.ndarray], model_id: str) -> tuple[float, float]:
    """(max abs error, max rel error) of `observed` against `expected` (see the module's rule)."""
    if len(expected) != len(observed):
        raise ConversionMismatch(f"{model_id}: the original has {len(expected)} outputs, ONNX {len(observed)}")
    max_abs, scale = 0.0, 0.0
    for ref, out in zip(expected, observed, strict=True):
        if ref.shape != out.shape:
            raise ConversionMismatch(f"{model_id}: output shape {out.shape} in ONNX, {ref.shape} in the original")
        ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
        diff = np.where(ref64 == out64, 0.0, np.abs(ref64 - out64))
        diff = np.where(np.isnan(diff) & ~(np.isnan(ref64) & np.isnan(out64)), np.inf, np.nan_to_num(diff, nan=0.0))
        if diff.size:
            max_abs = max(max_abs, float(diff.max()))
            scale = max(scale, float(np.nanmax(np.abs(np.where(np.isinf(ref64), 0.0, ref64)), initial=0.0)))
    return max_abs, max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))


def _write_onnx(
    fetched: FetchedModel, tmp_path: Path, parity_inputs: np.ndarray | None, seed: int
) -> tuple[str, np.ndarray, list[np.ndarray] | None, list[str]]:
    """Convert (or copy) the model to `tmp_path`. Returns the converter, the parity inputs, the
    original framework's outputs on them (None for passthrough) and notable exporter warnings."""
    entry = fetched.entry
    if fetched.loader == "onnx":
        x, notes = _passthrough(fetched, tmp_path, parity_inputs, seed)
        return "passthrough", x, None, notes
    x = _parity_inputs(entry, parity_inputs, seed, entry.input_shape)
    if fetched.loader == "torchhub":
        converter, export = "torch.onnx.export", _export_torch
    elif fetched.loader == "savedmodel":
        converter, export = "tf2onnx", _export_tensorflow
    else:
        raise ConversionError(f"{entry.model_id}: unknown loader {fetched.loader!r}")
    model, expected, notes = export(fetched, x)
    _check(model, entry.model_id, converter)
    onnx.save_model(model, str(tmp_path))
    return converter, x, expected, notes


def _export_torch(fetched: FetchedModel, x: np.ndarray) -> tuple[onnx.ModelProto, list[np.ndarray], list[str]]:
    """Trace with the TorchScript exporter (`dynamo=False`): on small CNNs it takes a tenth of a
    second and emits opset 17 directly; the torch.export-based exporter (seconds, opset 18) is
    the fallback for models tracing cannot handle."""
    import torch

    model_id = fetched.entry.model_id
    model = load_native(fetched)
    with torch.no_grad():
        expected = _torch_outputs(model, x, model_id)
    output_names = _output_names([str(i) for i in range(len(expected))])
    names = [INPUT_NAME, *output_names]
    dummy = torch.from_numpy(np.array(x[:_EXPORT_BATCH], copy=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            buffer = io.BytesIO()
            torch.onnx.export(
                model,
                (dummy,),
                buffer,
                input_names=[INPUT_NAME],
                output_names=output_names,
                dynamic_axes={n: {0: BATCH_DIM} for n in names},
                opset_version=OPSET,
                dynamo=False,
            )
            model_proto = onnx.load_from_string(buffer.getvalue())
        except Exception as legacy_exc:
            try:
                program = torch.onnx.export(
                    model,
                    (dummy,),
                    input_names=[INPUT_NAME],
                    output_names=output_names,
                    dynamic_shapes=({0: torch.export.Dim(BATCH_DIM)},),
                    opset_version=max(OPSET, 18),
                    dynamo=True,
                    verbose=False,
                )
                model_proto = program.model_proto
            except Exception as exc:
                raise ExportFailed(
                    f"{model_id}: torch.onnx.export failed (TorchScript exporter: {first_line(legacy_exc)}; "
                    f"torch.export exporter: {first_line(exc)})"
                ) from exc
    notes = [str(w.message).split("\n")[0] for w in caught if w.category.__name__ == "TracerWarning"]
    _name_batch_dims(model_proto)
    return model_proto, expected, notes[:_MAX_WARNINGS_REPORTED]


def _torch_outputs(model: Any, x: np.ndarray, model_id: str) -> list[np.ndarray]:
    """The model's outputs on `x` (run in chunks), as a list of arrays in output order."""
    import torch

    chunks: list[list[np.ndarray]] = []
    for start in range(0, len(x), _RUN_BATCH):
        try:
            result = model(torch.from_numpy(np.array(x[start : start + _RUN_BATCH], copy=True)))
        except Exception as exc:
            raise ConversionError(f"{model_id}: the PyTorch model fails on inputs of shape {x.shape}: {exc!r}") from exc
        tensors = list(result) if isinstance(result, list | tuple) else [result]
        if not all(isinstance(t, torch.Tensor) for t in tensors):
            raise ConversionError(f"{model_id}: the model returns {type(result).__name__}; expected tensors")
        chunks.append([t.detach().cpu().numpy() for t in tensors])
    return [np.concatenate(parts, axis=0) for parts in zip(*chunks, strict=True)]


def _export_tensorflow(fetched: FetchedModel, x: np.ndarray) -> tuple[onnx.ModelProto, list[np.ndarray], list[str]]:
    """Convert the serving signature with `tf2onnx.convert.from_function`.

    A signature function takes keyword arguments and returns a dict, which tf2onnx cannot trace
    directly, so it is wrapped in a `tf.function` with one positional input returning the
    outputs in sorted-key order.
    """
    import tensorflow as tf
    import tf2onnx

    model_id = fetched.entry.model_id
    loaded = load_native(fetched)
    signature = _serving_function(loaded, model_id)
    input_specs = signature.structured_input_signature[1]
    if len(input_specs) != 1:
        raise ConversionError(f"{model_id}: Sommelier handles single-input models; inputs are {sorted(input_specs)}")
    ((input_key, input_spec),) = input_specs.items()
    output_keys = sorted(signature.structured_outputs)
    spec = tf.TensorSpec(input_spec.shape, input_spec.dtype, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serve(inputs: Any) -> list[Any]:
        outputs = signature(**{input_key: inputs})
        return [outputs[k] for k in output_keys]

    x = x.astype(input_spec.dtype.as_numpy_dtype, copy=False)
    expected = _run_tensorflow(serve, x, model_id)
    try:
        model_proto, _ = tf2onnx.convert.from_function(serve, input_signature=[spec], opset=OPSET)
    except Exception as exc:
        raise ExportFailed(f"{model_id}: tf2onnx failed: {first_line(exc)}") from exc
    graph = model_proto.graph
    mapping = {graph.input[0].name: INPUT_NAME}
    mapping.update(zip([o.name for o in graph.output], _output_names(output_keys), strict=True))
    _rename_values(graph, mapping)
    _name_batch_dims(model_proto)
    return model_proto, expected, []


def _run_tensorflow(function: Any, x: np.ndarray, model_id: str) -> list[np.ndarray]:
    """The outputs of a TensorFlow function returning a list of tensors, run on `x` in chunks."""
    import tensorflow as tf

    try:
        chunks = [function(tf.constant(x[i : i + _RUN_BATCH])) for i in range(0, len(x), _RUN_BATCH)]
    except Exception as exc:
        raise ConversionError(f"{model_id}: the SavedModel fails on inputs of shape {x.shape}: {exc}") from exc
    return [np.concatenate([t.numpy() for t in parts], axis=0) for parts in zip(*chunks, strict=True)]


def _serving_function(loaded: Any, model_id: str) -> Any:
    """The `serving_default` signature, or the only signature when there is exactly one."""
    signatures = dict(getattr(loaded, "signatures", {}) or {})
    if "serving_default" in signatures:
        return signatures["serving_default"]
    if len(signatures) == 1:
        return next(iter(signatures.values()))
    raise ConversionError(
        f"{model_id}: the SavedModel has no 'serving_default' signature (signatures: {sorted(signatures) or 'none'})"
    )


def _passthrough(
    fetched: FetchedModel, tmp_path: Path, parity_inputs: np.ndarray | None, seed: int
) -> tuple[np.ndarray, list[str]]:
    """Copy a checked ONNX file to `tmp_path` (repaired, when `load_onnx_repaired` had to) and return inputs to run
    it on once, with the repair notes."""
    entry = fetched.entry
    try:
        model, notes = load_onnx_repaired(fetched.source_path)
    except ConversionError as exc:
        raise ConversionError(f"{entry.model_id}: {exc}") from exc
    inputs = onnx_signature(model).inputs
    if len(inputs) != 1:
        raise ConversionError(
            f"{entry.model_id}: Sommelier handles single-input models; {fetched.source_path} has inputs "
            f"{[t.name for t in inputs]}"
        )
    shape = inputs[0].shape
    samples = shape[0] if shape and isinstance(shape[0], int) else PARITY_SAMPLES
    graph_shape = tuple(shape[1:]) if all(isinstance(d, int) for d in shape[1:]) else None
    x = _parity_inputs(entry, parity_inputs, seed, entry.input_shape or graph_shape, samples)  # type: ignore[arg-type]
    if isinstance(shape[0], int):
        x = x[: shape[0]]  # a graph with a fixed batch size runs only that many at once
    if notes or _uses_external_data(fetched.source_path):
        onnx.save_model(model, str(tmp_path))  # repaired, or its external data loaded: one self-contained file
    else:
        shutil.copyfile(fetched.source_path, tmp_path)
    return x, notes


def _uses_external_data(path: Path) -> bool:
    """Whether the file keeps weights in separate files (which a plain copy would leave behind)."""
    from onnx.external_data_helper import uses_external_data

    return any(uses_external_data(t) for t in onnx.load(str(path), load_external_data=False).graph.initializer)


def _parity_inputs(
    entry: ModelEntry,
    given: np.ndarray | None,
    seed: int,
    input_shape: Sequence[int] | None,
    samples: int = PARITY_SAMPLES,
) -> np.ndarray:
    """`given` as an array of the entry's dtype, else seeded random inputs of `input_shape` — refused with
    `InputTooLarge` before anything is allocated when `samples` of that shape exceed the input budget."""
    if given is not None:
        x = np.asarray(given).astype(entry.input_dtype, copy=False)
        if len(x) == 0 or (input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape)):
            raise ConversionError(
                f"{entry.model_id}: parity inputs of shape {x.shape} do not fit the input shape "
                f"(N, {', '.join(map(str, input_shape or ()))}) with N >= 1"
            )
        return x
    if input_shape is None:
        raise ConversionError(
            f"{entry.model_id}: no input shape known to generate parity inputs; declare input_shape in the "
            "repository metadata or pass parity_inputs"
        )
    shape = (samples, *input_shape)
    dtype = np.dtype(entry.input_dtype)
    check_input_budget(entry.model_id, {INPUT_NAME: (shape, dtype)})  # before allocating: declared dims can be huge
    rng = np.random.default_rng(seed)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(dtype)
    return rng.integers(0, 10, shape).astype(dtype)


def _run_onnx(path: Path, x: np.ndarray, model_id: str) -> list[np.ndarray]:
    """Every output of the model at `path` on `x` in ONNX Runtime, in chunks."""
    try:
        session = open_session(path, spin=False)
        name = session.get_inputs()[0].name
        chunks = [session.run(None, {name: x[i : i + _RUN_BATCH]}) for i in range(0, len(x), _RUN_BATCH)]
    except Exception as exc:
        raise ConversionError(f"{model_id}: the ONNX model does not run in ONNX Runtime: {exc}") from exc
    return [np.concatenate(parts, axis=0) for parts in zip(*chunks, strict=True)]


def _check(model: onnx.ModelProto, model_id: str, converter: str) -> None:
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"{model_id}: {converter} produced an invalid ONNX model: {one_line(exc)}") from exc


def _output_names(keys: Sequence[str]) -> list[str]:
    return [OUTPUT_NAME] if len(keys) == 1 else [f"{OUTPUT_NAME}_{k}" for k in keys]


def _name_batch_dims(model: onnx.ModelProto) -> None:
    """Call the leading dimension of every graph input and output `batch` unless it is fixed."""
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = BATCH_DIM


def _rename_values(graph: onnx.GraphProto, mapping: dict[str, str]) -> None:
    """Rename tensors throughout `graph` and its subgraphs; a new name already in use is skipped."""
    used = {n for node in graph.node for n in [*node.input, *node.output]} | {v.name for v in graph.input}
    mapping = {old: new for old, new in mapping.items() if old == new or new not in used}

    def rename(g: onnx.GraphProto) -> None:
        for node in g.node:
            node.input[:] = [mapping.get(n, n) for n in node.input]
            node.output[:] = [mapping.get(n, n) for n in node.output]
            for attribute in node.attribute:
                for sub in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                    rename(sub)
        for value in [*g.input, *g.output, *g.value_info]:
            value.name = mapping.get(value.name, value.name)

    rename(graph)


def _tensor_spec(value: onnx.ValueInfoProto) -> TensorSpec:
    tensor_type = value.type.tensor_type
    dtype = tensor_dtype_to_np_dtype(tensor_type.elem_type).name if tensor_type.elem_type else "undefined"
    dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor_type.shape.dim)
    return TensorSpec(name=value.name, dtype=dtype, shape=dims)
