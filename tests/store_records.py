"""One small, hand-written record of every stage that keeps one, for tests of the store and of what reads it.

Classes are taken from the stage table (`record_class`) and, for nested records, by name among the
types it reaches (`record_types`), so these records follow a class that moves between modules.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sommelier_core.store.records import record_class, record_types


def _t(name: str) -> type:
    return record_types()[name]


def entry(model_id: str = "lab/m", version: str = "v1") -> Any:
    """A repository's listing of one ONNX classifier of 8×8 digits."""
    repository, name = model_id.split("/", 1)
    return _t("ModelEntry")(model_id, repository, name, version, "onnx", "classification", (1, 8, 8))


def signature() -> Any:
    """(batch, 1, 8, 8) float32 in, (batch, 10) out."""
    spec = _t("TensorSpec")
    return _t("Signature")((spec("input", "float32", ("batch", 1, 8, 8)),), (spec("output", "float32", ("batch", 10)),))


def fetched_model(model_id: str, root: Path, *, version: str = "v1") -> Any:
    return record_class("fetched_model")(entry(model_id, version), "onnx", root / "repo" / "m.onnx")


def onnx_model(model_id: str, root: Path, *, fingerprint: str = "sha256:f1") -> Any:
    onnx_path = root / "models" / model_id.replace("/", "__") / "model.onnx"
    return record_class("onnx_model")(model_id, onnx_path, fingerprint, signature(), "passthrough", 0.0, 0.0, 16, 1e-4)


def model_outputs(model_id: str, root: Path) -> Any:
    path = str(root / "models" / model_id.replace("/", "__") / "outputs.npy")
    key = signature().key()
    return record_class("model_outputs")(model_id, "digits", 360, path, key, "classification", None, 0.875)


def model_cushions(model_id: str, root: Path) -> Any:
    layer = _t("LayerCushion")("fc", "Gemm", 10, 3.5, 0.25, 0.125)
    cushions = _t("Cushions")(model_id, (layer,), math.inf, 4.0, 1.5, 2.0, 360, 8, 4, 0.5, "digits")
    return record_class("model_cushions")(model_id, "digits", cushions)


def model_profile(model_id: str, root: Path) -> Any:
    static = _t("StaticProfile")(650, 640, 1280, 2600, 512, 1, (("Gemm", 640),), ("Identity",))
    latency = _t("LatencyProfile")("cpu", 1, 0.05, 0.07, 100, 1)
    memory = _t("MemoryPoint")(1, 8, 2600, 512, 640)
    onnx_path = str(root / "models" / model_id.replace("/", "__") / "model.onnx")
    resolution = _t("InputResolution")(8, False)
    return record_class("model_profile")(
        model_id, "sha256:f1", onnx_path, static, (latency,), (static,), (memory,), resolution
    )


def device_profile(model_id: str, root: Path, *, fingerprint: str = "sha256:f1") -> Any:
    node = _t("ExecutedNode")("fc", "Gemm", "Gemm:f32", "matmul", "macs", 640.0, ("input",), ("output",), 10.0)
    graph = _t("ExecutionGraph")(1, "ORT_ENABLE_ALL", (node,))
    operators = _t("OperatorProfile")("cpu", graph, (12.5,), 100, 1, 0.05)
    latency = _t("LatencyProfile")("cpu", 1, 0.05, 0.07, 100, 1)
    return record_class("device_profile")(model_id, "cpu", (latency,), (operators,), 1.5, fingerprint)


def peers(model_id: str, root: Path) -> Any:
    return record_class("peers")(model_id, ("lab/a", "lab/b"), 2, 0)


def pair_scores(model_id: str, root: Path) -> Any:
    comparison = _t("Comparison")(model_id, "lab/a", "disagreement", 0.25, 360, 0.0)
    return record_class("pair_scores")(model_id, (comparison,))


def segment_matches(model_id: str, root: Path) -> Any:
    match = _t("SegmentMatch")(("fc",), ("fc",), ("Gemm",), "output", 0.5, 0.125, 640, 0.0625, False, True)
    analysis = _t("SegmentAnalysis")(
        model_id, "lab/a", "classification", 360, 0.25, (match,), 0.0625, 0.125, True, 0.5, None, None
    )
    return record_class("segment_matches")(model_id, (analysis,), 1, 0.75, ("lab/b: no common segment",))


def pair_bounds(model_id: str, root: Path) -> Any:
    bound = _t("PairBound")(model_id, "lab/a", "disagreement", 0.25, 0.125, 0.375, 360, "empirical", 0.05)
    return record_class("pair_bounds")(model_id, (bound,))


RECORDS: dict[str, Callable[..., Any]] = {
    "fetched_model": fetched_model,
    "onnx_model": onnx_model,
    "model_outputs": model_outputs,
    "model_cushions": model_cushions,
    "model_profile": model_profile,
    "device_profile": device_profile,
    "peers": peers,
    "pair_scores": pair_scores,
    "segment_matches": segment_matches,
    "pair_bounds": pair_bounds,
}
"""A small record of each stage that keeps one: `RECORDS[stage](model_id, store_root)`."""


def small_record(stage: str, model_id: str, root: Path) -> Any:
    """The small record of `stage` (a per-device name such as `device_profile@cpu` names its stage)."""
    return RECORDS[stage.split("@", 1)[0]](model_id, root)
