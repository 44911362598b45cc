"""The resource index (paper §5.3, design §4): one row per model per device with its costs.

Memory is weights plus peak live activations (what a runtime must hold at once); FLOPs = 2 × MACs.
Filtering is an exact scan of the table, so results equal a brute-force scan by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
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


STATIC_METRICS: tuple[str, ...] = ("params", "macs", "flops", "weight_bytes", "peak_activation_bytes", "memory_bytes")


class ResourceStore:
    """The resource index as columns for exact range filtering (design §4, paper §5.3).

    Static metrics are one int64 column each (device-independent); latency is one float64 column
    per device, NaN where a model was not profiled on it. A range predicate on a column is answered
    from a sorted copy by binary search (built lazily, per column), so a conjunction starts from its
    most selective term and checks the others only on the survivors. Every comparison is the same
    numpy comparison a brute-force scan makes, so the answers are the scan's, exactly — the paper's
    cosine LSH is not used because it can miss models.
    """

    def __init__(
        self,
        model_ids: Sequence[str],
        onnx_paths: Sequence[str],
        static: dict[str, np.ndarray],
        latency_ms: dict[str, np.ndarray],
        batch_sizes: dict[str, set[int]] | None = None,
    ) -> None:
        self.model_ids = list(model_ids)
        self.onnx_paths = list(onnx_paths)
        self.static = {k: _narrowest_int(np.asarray(v, dtype=np.int64)) for k, v in static.items()}
        self.latency_ms = {k: np.asarray(v, dtype=np.float64) for k, v in latency_ms.items()}
        self.batch_sizes = batch_sizes or {d: {1} for d in latency_ms}
        self._sorted: dict[tuple[str, str | None], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.model_ids)

    @property
    def devices(self) -> list[str]:
        """Devices with at least one latency profile."""
        return sorted(self.latency_ms)

    def column(self, metric: str, device: str | None = None) -> np.ndarray:
        """The values of one metric for every model (latency on `device`)."""
        if metric == "latency_ms":
            return self.latency_ms[device]
        return self.static[metric]

    def sorted_order(self, metric: str, device: str | None = None) -> np.ndarray:
        """Model positions in ascending order of one column (NaN latencies last), built once per column."""
        key = (metric, device if metric == "latency_ms" else None)
        order = self._sorted.get(key)
        if order is None:
            order = np.argsort(self.column(metric, device), kind="stable").astype(np.int32)
            self._sorted[key] = order
        return order

    def range_positions(self, metric: str, device: str | None, op: str, threshold: float) -> np.ndarray:
        """Positions of models with `value op threshold`, by binary search through the sorted order."""
        values, order = self.column(metric, device), self.sorted_order(metric, device)
        lo, hi = 0, len(values)
        if metric == "latency_ms":
            hi = int(np.searchsorted(values, np.inf, side="right", sorter=order))  # NaN sorts last: never matches
        t = np.float64(threshold)
        if op == "<":
            hi = min(hi, _search(values, order, t, "left"))
        elif op == "<=":
            hi = min(hi, _search(values, order, t, "right"))
        elif op == ">":
            lo = _search(values, order, t, "right")
        elif op == ">=":
            lo = _search(values, order, t, "left")
        elif op == "=":
            lo, hi = _search(values, order, t, "left"), min(hi, _search(values, order, t, "right"))
        else:
            raise ValueError(f"unknown comparison {op!r}")
        return order[lo:hi] if lo < hi else order[:0]

    @property
    def nbytes(self) -> int:
        """Bytes of the columns and of the sorted copies built so far."""
        total = sum(a.nbytes for a in self.static.values()) + sum(a.nbytes for a in self.latency_ms.values())
        return int(total + sum(o.nbytes for o in self._sorted.values()))

    @classmethod
    def from_frame(cls, frame: pl.DataFrame) -> ResourceStore:
        """Columns from the `resource_index` asset's table (one row per model per device)."""
        models = frame.select(["model_id", "onnx_path", *STATIC_METRICS]).unique("model_id", keep="first")
        models = models.sort("model_id")
        ids = models["model_id"].to_list()
        pos = {m: i for i, m in enumerate(ids)}
        latency: dict[str, np.ndarray] = {}
        batches: dict[str, set[int]] = {}
        for device in sorted(frame["device"].unique().to_list()):
            rows = frame.filter(pl.col("device") == device)
            column = np.full(len(ids), np.nan)
            column[[pos[m] for m in rows["model_id"].to_list()]] = rows["latency_ms"].to_numpy()
            latency[device] = column
            batches[device] = set(rows["batch_size"].to_list())
        static = {m: models[m].to_numpy() for m in STATIC_METRICS}
        return cls(ids, models["onnx_path"].to_list(), static, latency, batches)


def _narrowest_int(values: np.ndarray) -> np.ndarray:
    """int32 when every value fits (half the bytes), else int64; comparisons are exact either way."""
    if values.size and values.min() >= np.iinfo(np.int32).min and values.max() <= np.iinfo(np.int32).max:
        return values.astype(np.int32)
    return values


def _search(values: np.ndarray, order: np.ndarray, threshold: np.float64, side: str) -> int:
    """`searchsorted` through `order`, comparing as a float64 scan would (ints compared exactly).

    side="left": the first rank whose value is ≥ threshold; "right": the first whose value is > threshold.
    """
    if values.dtype.kind == "f":
        return int(np.searchsorted(values, threshold, side=side, sorter=order))
    info = np.iinfo(values.dtype)
    if not np.isfinite(threshold) or threshold > info.max or threshold < info.min:
        return 0 if threshold < info.min else len(values)
    # For integers v: v ≥ t ⇔ v ≥ ceil(t), and v > t ⇔ v > floor(t).
    bound = int(np.ceil(threshold)) if side == "left" else int(np.floor(threshold))
    return int(np.searchsorted(values, values.dtype.type(bound), side=side, sorter=order))
