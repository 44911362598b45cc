"""The resource index (paper §5.3, design §4): one row per model per device per batch size with its costs.

Memory is weights plus peak live activations (what a runtime must hold at once); FLOPs = 2 × MACs; both
are computed at the row's batch size, so `memory <= 80%` is evaluated under the query's exec-spec. A row
also says at which input resolution its figures were taken (`resolution`: H = W, None when the input has
no square spatial size), whether the model takes other resolutions (`dynamic_resolution`: symbolic H, W)
and, for those, memory and MACs at the batch's other profiled resolutions (`memory_by_resolution`, the
`memory_resolutions` setting), so a query `RESOLUTION r` takes them at r (`ResourceStore.at_resolution`).
Latency is `measured` on devices the model was profiled on, and `estimated` from a device's operator
latency table (`profiling.estimate_latency`) on devices known only by an imported table.
Filtering is an exact scan of the table, so results equal a brute-force scan by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from sommelier_core.profiling import (
    DeviceProfile,
    LatencyProfile,
    MemoryPoint,
    OperatorLatencyTable,
    StaticProfile,
    estimate_latency,
)
from sommelier_core.store import ModelStore, read_parquet_checked


@dataclass(frozen=True)
class InputResolution:
    """The input resolution a model's profile was taken at, and whether it takes others."""

    size: int | None
    """H = W (the length of a 1-D signal) of the input its static profile and latency are at; None when the
    input has no square spatial size (`profiling.native_resolution`)."""
    dynamic: bool
    """True when the inputs have symbolic spatial dimensions (`profiling.has_dynamic_resolution`): the model
    runs at any resolution, with the memory and MACs of `ModelProfile.memory` at that resolution."""


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
    "latency_source": pl.Utf8(),
    "resolution": pl.Int64(),
    "dynamic_resolution": pl.Boolean(),
    "memory_by_resolution": pl.List(
        pl.Struct(
            {
                "resolution": pl.Int64(),
                "weight_bytes": pl.Int64(),
                "peak_activation_bytes": pl.Int64(),
                "macs": pl.Int64(),
            }
        )
    ),
}
"""`resolution` and `dynamic_resolution` are null in rows of profiles recorded before resolutions were (and
the three columns absent from tables written before then): such models run at no query `RESOLUTION`."""
MEASURED, ESTIMATED = "measured", "estimated"

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
    """The device-independent half of a model's resource profile (record of the `model_profile` asset).

    Latency per device lives in `DeviceProfile` records (asset `device_profile`, model × device);
    `latency` is kept for records written before that split and for callers that carry both.
    """

    model_id: str
    fingerprint: str
    onnx_path: str
    static: StaticProfile
    latency: tuple[LatencyProfile, ...] = ()
    static_by_batch: tuple[StaticProfile, ...] = ()
    """The static profile at every batch size of the exec-spec (`static` is the first)."""
    memory: tuple[MemoryPoint, ...] = ()
    """Memory and MACs over batch sizes × resolutions (paper Fig. 12a)."""
    input_resolution: InputResolution | None = None
    """The resolution `static` and latency are at; None in records from before it was recorded."""

    @property
    def memory_bytes(self) -> int:
        """Weights plus peak live activations."""
        return self.static.memory_bytes

    def static_at(self, batch_size: int) -> StaticProfile | None:
        """The static profile at a batch size, when it was computed."""
        for static in (*self.static_by_batch, self.static):
            if static.batch_size == batch_size:
                return static
        return None


def build_resource_index(
    profiles: Sequence[ModelProfile],
    device_profiles: Sequence[DeviceProfile] = (),
    tables: Sequence[OperatorLatencyTable] = (),
    store_root: Path | None = None,
) -> pl.DataFrame:
    """The resource table: a row per model per device per batch size.

    Measured rows come from `device_profiles` (and from the legacy `ModelProfile.latency`); for every
    table in `tables` whose device has no measurement of a model, an estimated row is added from the
    model's executed graph (taken from any of its device profiles at that batch size). With `store_root`,
    `onnx_path`s inside it are written relative to it, so the table stays true in a copied store
    (`read_resource_index` takes them back under the root it is read from).
    """
    rows = []
    by_model: dict[str, list[DeviceProfile]] = {}
    for d in device_profiles:
        by_model.setdefault(d.model_id, []).append(d)
    for p in profiles:
        measured = {(lat.device, lat.batch_size): (lat.median_ms, lat.p90_ms, lat.threads) for lat in p.latency}
        graphs = {}
        for d in by_model.get(p.model_id, []):
            for lat, ops in zip(d.latency, d.operators, strict=True):
                measured[(d.device, lat.batch_size)] = (lat.median_ms, lat.p90_ms, lat.threads)
                graphs.setdefault(lat.batch_size, ops.graph)
        for (device, batch_size), (median_ms, p90_ms, threads) in measured.items():
            row = _static_row(p, batch_size)
            if row is not None:
                rows.append(row | _latency_row(device, batch_size, median_ms, p90_ms, threads, MEASURED))
        for table in tables:
            for batch_size, graph in graphs.items():
                if (table.device, batch_size) in measured:
                    continue
                row = _static_row(p, batch_size)
                if row is not None:
                    estimate = estimate_latency(graph, table).latency_ms
                    rows.append(row | _latency_row(table.device, batch_size, estimate, None, table.threads, ESTIMATED))
    frame = pl.DataFrame(rows, schema=RESOURCE_INDEX_SCHEMA).sort(["model_id", "device", "batch_size"])
    if store_root is None:
        return frame
    store = ModelStore(store_root)
    relative = {path: store.relative_path(path) for path in frame["onnx_path"].unique().to_list()}
    return frame.with_columns(pl.col("onnx_path").replace(relative))


def read_resource_index(path: Path, store_root: Path | None = None) -> pl.DataFrame:
    """The resource table of a store (`<root>/index/resource_index.parquet`), `onnx_path`s absolute under the
    root it is read from (default: the index directory's parent); paths outside the store stay as written."""
    path = Path(path)
    root = ModelStore(store_root if store_root is not None else path.parent.parent).rooted_path(".")
    frame = read_parquet_checked(path)
    onnx_path = pl.col("onnx_path")
    relative = ~onnx_path.str.starts_with("/") & (onnx_path != "")
    return frame.with_columns(
        pl.when(relative).then(pl.lit(root + "/") + onnx_path).otherwise(onnx_path).alias("onnx_path")
    )


def _static_row(p: ModelProfile, batch_size: int) -> dict | None:
    static = p.static_at(batch_size)
    if static is None:
        return None
    resolution = p.input_resolution
    own = resolution.size if resolution is not None else None
    return {
        "model_id": p.model_id,
        "fingerprint": p.fingerprint,
        "onnx_path": p.onnx_path,
        "params": static.params,
        "macs": static.macs,
        "flops": static.flops,
        "weight_bytes": static.weight_bytes,
        "peak_activation_bytes": static.peak_activation_bytes,
        "memory_bytes": static.memory_bytes,
        "resolution": own,
        "dynamic_resolution": resolution.dynamic if resolution is not None else None,
        "memory_by_resolution": [
            {
                "resolution": m.resolution,
                "weight_bytes": m.weight_bytes,
                "peak_activation_bytes": m.peak_activation_bytes,
                "macs": m.macs,
            }
            for m in sorted(p.memory, key=lambda m: m.resolution or 0)
            if m.batch_size == batch_size and m.resolution is not None and m.resolution != own
        ],
    }


def _latency_row(
    device: str, batch_size: int, median_ms: float, p90_ms: float | None, threads: int, source: str
) -> dict:
    return {
        "device": device,
        "batch_size": batch_size,
        "latency_ms": median_ms,
        "latency_p90_ms": p90_ms,
        "threads": threads,
        "latency_source": source,
    }


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
        estimated: dict[str, np.ndarray] | None = None,
        batch_size: int = 1,
        resolutions: ResolutionColumns | None = None,
    ) -> None:
        self.model_ids = list(model_ids)
        self.onnx_paths = list(onnx_paths)
        self.static = {k: _narrowest_int(np.asarray(v, dtype=np.int64)) for k, v in static.items()}
        self.latency_ms = {k: np.asarray(v, dtype=np.float64) for k, v in latency_ms.items()}
        self.batch_sizes = batch_sizes or {d: {1} for d in latency_ms}
        self.estimated = {d: np.asarray(v, dtype=bool) for d, v in (estimated or {}).items()}
        """Per device, whether each model's latency is an estimate from an operator table (not measured)."""
        self.batch_size = batch_size
        """The batch size every column holds (static costs and latency)."""
        self.resolutions = resolutions if resolutions is not None else ResolutionColumns.unrecorded(len(self.model_ids))
        """Each model's own input resolution, whether it takes others, and its memory points at those."""
        self.resolution: int | None = None
        """The input resolution the columns hold (`at_resolution`); None: each model's own."""
        self.profiled = {d: ~np.isnan(v) for d, v in self.latency_ms.items()}
        """Per device, whether each model has a latency row there (measured or estimated, at its own resolution)."""
        self.runs = np.ones(len(self.model_ids), dtype=bool)
        """Whether each model runs at the columns' exec-spec (False: not a candidate; see `excluded`)."""
        self.excluded: dict[int, str] = {}
        """Why each model that does not run at the exec-spec is left out, by position."""
        self.latency_unknown: dict[int, str] = {}
        """Models that run at the exec-spec but whose latency was measured at another resolution (NaN in
        `latency_ms`), and why, by position."""
        self.unprofiled: dict[int, str] = {}
        """Models that could run at the exec-spec's resolution but whose memory there the index does not hold."""
        self._sorted: dict[tuple[str, str | None], np.ndarray] = {}
        self._frame: pl.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.model_ids)

    def available(self, device: str) -> np.ndarray:
        """Which models are candidates on `device` under the exec-spec: profiled there and able to run."""
        return self.profiled[device] & self.runs

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
    def from_frame(cls, frame: pl.DataFrame, batch_size: int | None = None) -> ResourceStore:
        """Columns at one batch size from the `resource_index` table (a row per model per device per batch).

        `batch_size` None takes 1 when the table has it, else its smallest; the devices' profiled batch
        sizes are kept whole in `batch_sizes`. Tables written before `latency_source` existed read as measured.
        """
        batches: dict[str, set[int]] = {}
        for device, sizes in frame.group_by("device").agg(pl.col("batch_size").unique()).iter_rows():
            batches[device] = set(sizes)
        whole = frame
        if batch_size is None:
            every = set(frame["batch_size"].unique().to_list())
            batch_size = 1 if 1 in every or not every else min(every)
        frame = frame.filter(pl.col("batch_size") == batch_size)
        models = frame.select(["model_id", "onnx_path", *STATIC_METRICS]).unique("model_id", keep="first")
        models = models.sort("model_id")
        ids = models["model_id"].to_list()
        pos = {m: i for i, m in enumerate(ids)}
        latency: dict[str, np.ndarray] = {}
        estimated: dict[str, np.ndarray] = {}
        for device in sorted(batches):
            rows = frame.filter(pl.col("device") == device)
            column = np.full(len(ids), np.nan)
            flags = np.zeros(len(ids), dtype=bool)
            where = [pos[m] for m in rows["model_id"].to_list()]
            column[where] = rows["latency_ms"].to_numpy()
            if "latency_source" in rows.columns:
                flags[where] = (rows["latency_source"] == ESTIMATED).to_numpy()
            latency[device] = column
            estimated[device] = flags
        static = {m: models[m].to_numpy() for m in STATIC_METRICS}
        resolutions = ResolutionColumns.from_frame(frame.unique("model_id", keep="first").sort("model_id"))
        store = cls(ids, models["onnx_path"].to_list(), static, latency, batches, estimated, batch_size, resolutions)
        store._frame = whole
        return store

    def at_batch(self, batch_size: int) -> ResourceStore:
        """The same models, in the same order, with every column at another profiled batch size.

        Memory, MACs, FLOPs and activations scale with the batch; latency is the one measured (or
        estimated) at that batch, NaN where a model has none — so `memory <= 80%` is evaluated under the
        query's exec-spec. A batch size the index does not hold returns the store unchanged (the query
        compiler reports it).
        """
        frame = self._frame
        if batch_size == self.batch_size or frame is None or batch_size not in set(frame["batch_size"].to_list()):
            return self
        other = ResourceStore.from_frame(frame, batch_size)
        where = {m: i for i, m in enumerate(other.model_ids)}
        take = np.array([where.get(m, -1) for m in self.model_ids])
        found = take >= 0
        static = {k: np.where(found, v[np.maximum(take, 0)], self.static[k]) for k, v in other.static.items()}
        latency = {d: np.where(found, v[np.maximum(take, 0)], np.nan) for d, v in other.latency_ms.items()}
        estimated = {d: np.where(found, v[np.maximum(take, 0)], False) for d, v in other.estimated.items()}
        ids, paths = self.model_ids, self.onnx_paths
        resolutions = other.resolutions.aligned(take, self.resolutions)
        aligned = ResourceStore(ids, paths, static, latency, other.batch_sizes, estimated, batch_size, resolutions)
        aligned._frame = frame
        return aligned if self.resolution is None else aligned.at_resolution(self.resolution)

    def at_resolution(self, resolution: int) -> ResourceStore:
        """The same models with memory, activations, MACs and FLOPs at input resolution `resolution` (H = W).

        A model whose own resolution it is keeps its profile. A model with symbolic spatial dims takes the
        memory point the index holds at (this batch, `resolution`); its latency, measured at its own
        resolution only, becomes NaN and is listed in `latency_unknown`, so a latency condition never
        reads the wrong number. A fixed-resolution model does not run at another resolution: it is marked
        in `runs` and `excluded` (with the reason), never a candidate. A dynamic model without a memory
        point there is listed in `unprofiled` (the query compiler reports it).
        """
        if resolution == self.resolution:
            return self
        if resolution <= 0:
            raise ValueError(f"resolution must be a positive size, got {resolution}")
        base = self if self.resolution is None else self._own_resolution()
        info = base.resolutions
        static = {k: v.astype(np.int64, copy=True) for k, v in base.static.items()}
        latency = {d: v.copy() for d, v in base.latency_ms.items()}
        runs = np.ones(len(base), dtype=bool)
        excluded: dict[int, str] = {}
        latency_unknown: dict[int, str] = {}
        unprofiled: dict[int, str] = {}
        for i in range(len(base)):
            own = info.own_resolution(i)
            if not info.recorded[i]:
                runs[i] = False
                excluded[i] = "its profile records no input resolution (indexed before resolutions were); re-index it"
            elif own == resolution:
                continue
            elif not info.dynamic[i]:
                runs[i] = False
                excluded[i] = (
                    f"fixed input resolution {own}" if own is not None else "its input has no square spatial size"
                )
            elif resolution not in info.points[i]:
                held = ", ".join(str(r) for r in sorted({*info.points[i], *([own] if own is not None else [])}))
                unprofiled[i] = f"profiled resolutions at batch {base.batch_size}: {held or 'none'}"
            else:
                weight_bytes, activation_bytes, macs = info.points[i][resolution]
                static["macs"][i], static["flops"][i] = macs, 2 * macs
                static["weight_bytes"][i], static["peak_activation_bytes"][i] = weight_bytes, activation_bytes
                static["memory_bytes"][i] = weight_bytes + activation_bytes
                for column in latency.values():
                    column[i] = np.nan
                measured_at = f"resolution {own}" if own is not None else "its exported shape"
                latency_unknown[i] = f"latency measured at {measured_at} only, not {resolution}"
        store = ResourceStore(
            base.model_ids,
            base.onnx_paths,
            static,
            latency,
            base.batch_sizes,
            base.estimated,
            base.batch_size,
            info,
        )
        store.resolution = resolution
        store.profiled = base.profiled
        store.runs, store.excluded = runs, excluded
        store.latency_unknown, store.unprofiled = latency_unknown, unprofiled
        store._frame = base._frame
        return store

    def _own_resolution(self) -> ResourceStore:
        """This store's models at their own resolutions (from the table it was read from)."""
        if self._frame is None:
            raise ValueError("a store built without its table cannot change resolution twice")
        return ResourceStore.from_frame(self._frame, self.batch_size)

    def is_estimated(self, device: str, position: int) -> bool:
        """Whether a model's latency on a device is an estimate from an operator table."""
        flags = self.estimated.get(device)
        return bool(flags[position]) if flags is not None else False


@dataclass(frozen=True)
class ResolutionColumns:
    """Per model (by position): its own input resolution, whether it takes others, its memory points there."""

    own: np.ndarray
    """int64 H = W of the input the profile is at; -1 where the input has no square spatial size."""
    dynamic: np.ndarray
    """bool: the inputs have symbolic spatial dims."""
    recorded: np.ndarray
    """bool: the index records the model's resolution (False for tables and profiles from before it did)."""
    points: tuple[dict[int, tuple[int, int, int]], ...]
    """Per model, resolution → (weight_bytes, peak_activation_bytes, macs) at the store's batch size."""

    @classmethod
    def unrecorded(cls, n: int) -> ResolutionColumns:
        """No model's resolution known (a store built without a table, or from a table from before)."""
        return cls(np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), ({},) * n)

    @classmethod
    def from_frame(cls, rows: pl.DataFrame) -> ResolutionColumns:
        """From resource-index rows, one per model in store order (tables without the columns: unrecorded)."""
        if "dynamic_resolution" not in rows.columns:
            return cls.unrecorded(len(rows))
        dynamic = rows["dynamic_resolution"]
        points = tuple(
            {p["resolution"]: (p["weight_bytes"], p["peak_activation_bytes"], p["macs"]) for p in (cell or [])}
            for cell in rows["memory_by_resolution"].to_list()
        )
        return cls(
            rows["resolution"].fill_null(-1).to_numpy().astype(np.int64),
            dynamic.fill_null(False).to_numpy().astype(bool),
            dynamic.is_not_null().to_numpy(),
            points,
        )

    def own_resolution(self, position: int) -> int | None:
        """A model's own input resolution, None when its input has no square spatial size."""
        value = int(self.own[position])
        return value if value >= 0 else None

    def aligned(self, take: np.ndarray, fallback: ResolutionColumns) -> ResolutionColumns:
        """Rows `take` of these columns (-1: the model is not in them, keep `fallback`'s row at that position)."""
        found = take >= 0
        safe = np.maximum(take, 0)
        return ResolutionColumns(
            np.where(found, self.own[safe], fallback.own),
            np.where(found, self.dynamic[safe], fallback.dynamic),
            np.where(found, self.recorded[safe], fallback.recorded),
            tuple(self.points[t] if t >= 0 else fallback.points[i] for i, t in enumerate(take.tolist())),
        )


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
