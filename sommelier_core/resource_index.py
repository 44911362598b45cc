"""The resource index (paper §5.3, design §4): one row per model per device with its costs.

Memory is weights plus peak live activations (what a runtime must hold at once); FLOPs = 2 × MACs.
Filtering is an exact scan of the table, so results equal a brute-force scan by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from sommelier_core.profile import LatencyProfile, StaticProfile

RESOURCE_INDEX_SCHEMA: dict[str, pl.DataType] = {
    "model_id": pl.Utf8(),
    "fingerprint": pl.Utf8(),
    "onnx_path": pl.Utf8(),
    "device": pl.Utf8(),
    "batch_size": pl.Int64(),
    "params": pl.Int64(),
    "macs": pl.Int64(),
    "flops": pl.Int64(),
    "weight_bytes": pl.Int64(),
    "peak_activation_bytes": pl.Int64(),
    "memory_bytes": pl.Int64(),
    "latency_ms": pl.Float64(),
    "latency_p90_ms": pl.Float64(),
    "threads": pl.Int64(),
}

RESOURCE_METRICS: tuple[str, ...] = (
    "params",
    "macs",
    "flops",
    "weight_bytes",
    "peak_activation_bytes",
    "memory_bytes",
    "latency_ms",
)


@dataclass(frozen=True)
class ModelProfile:
    """Everything the resource index holds about one model: static costs and latency per device."""

    model_id: str
    fingerprint: str
    onnx_path: str
    static: StaticProfile
    latency: tuple[LatencyProfile, ...]

    @property
    def memory_bytes(self) -> int:
        """Weights plus peak live activations."""
        return self.static.weight_bytes + self.static.peak_activation_bytes


def build_resource_index(profiles: Sequence[ModelProfile]) -> pl.DataFrame:
    """The resource table: a row per model per profiled device."""
    rows = []
    for p in profiles:
        for lat in p.latency:
            rows.append(
                {
                    "model_id": p.model_id,
                    "fingerprint": p.fingerprint,
                    "onnx_path": p.onnx_path,
                    "device": lat.device,
                    "batch_size": lat.batch_size,
                    "params": p.static.params,
                    "macs": p.static.macs,
                    "flops": p.static.flops,
                    "weight_bytes": p.static.weight_bytes,
                    "peak_activation_bytes": p.static.peak_activation_bytes,
                    "memory_bytes": p.memory_bytes,
                    "latency_ms": lat.median_ms,
                    "latency_p90_ms": lat.p90_ms,
                    "threads": lat.threads,
                }
            )
    return pl.DataFrame(rows, schema=RESOURCE_INDEX_SCHEMA).sort(["model_id", "device"])
