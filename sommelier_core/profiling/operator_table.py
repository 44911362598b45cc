"""A device's per-operator latency table (paper §5.5): mean time per executed-node key, built from profiled
models, stored as one parquet file, and imported to describe a device measured elsewhere.

A fitted per-run and per-node overhead (session dispatch, input copies; what the profiler's kernel times
leave out) is stored with the entries and added to every estimate (`estimate`).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import polars as pl

from sommelier_core.errors import SommelierError
from sommelier_core.profiling.executed_nodes import ExecutedNode
from sommelier_core.profiling.node_times import NodeTimes
from sommelier_core.profiling.operators import SEQUENTIAL, OperatorProfile
from sommelier_core.store import read_parquet_checked

OPERATOR_TABLE_SCHEMA: dict[str, pl.DataType] = {
    "device": pl.Utf8(),
    "key": pl.Utf8(),
    "op": pl.Utf8(),
    "op_class": pl.Utf8(),
    "work_kind": pl.Utf8(),
    "work": pl.Float64(),
    "elements": pl.Float64(),
    "time_us": pl.Float64(),
    "count": pl.Int64(),
    "models": pl.Utf8(),
    "execution_mode": pl.Utf8(),
    "optimization_level": pl.Utf8(),
    "threads": pl.Int64(),
    "run_overhead_us": pl.Float64(),
    "node_overhead_us": pl.Float64(),
}
"""One row per executed-node key; the device-wide constants are repeated on every row so one parquet file
is the whole table (importable on another machine)."""


class UnknownOperatorTable(SommelierError, ValueError):
    """A table file that is not an operator latency table, or a device with no table."""


@dataclass(frozen=True)
class OperatorLatencyTable:
    """A device described by its per-operator latency table (`entries`, schema `OPERATOR_TABLE_SCHEMA`)."""

    device: str
    entries: pl.DataFrame
    execution_mode: str
    optimization_level: str
    threads: int
    run_overhead_us: float
    node_overhead_us: float

    @cached_property
    def lookup(self) -> NodeTimes:
        """Exact and interpolated node times, indexed once per table."""
        return NodeTimes(_with_elements(self.entries))

    def to_frame(self) -> pl.DataFrame:
        """The table as one frame, device constants repeated per row (what is stored and imported)."""
        return (
            _with_elements(self.entries)
            .with_columns(
                pl.lit(self.device).alias("device"),
                pl.lit(self.execution_mode).alias("execution_mode"),
                pl.lit(self.optimization_level).alias("optimization_level"),
                pl.lit(self.threads, dtype=pl.Int64).alias("threads"),
                pl.lit(self.run_overhead_us).alias("run_overhead_us"),
                pl.lit(self.node_overhead_us).alias("node_overhead_us"),
            )
            .select(list(OPERATOR_TABLE_SCHEMA))
        )

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, device: str | None = None) -> OperatorLatencyTable:
        """A table from its stored frame; `device` renames it (an imported table names a new device)."""
        frame = _with_elements(frame)
        missing = set(OPERATOR_TABLE_SCHEMA) - set(frame.columns)
        if missing or frame.height == 0:
            why = f"missing columns {', '.join(sorted(missing))}" if missing else "no rows"
            raise UnknownOperatorTable(f"not an operator latency table: {why}")
        first = frame.row(0, named=True)
        return cls(
            device=device or first["device"],
            entries=frame.select(list(OPERATOR_TABLE_SCHEMA)),
            execution_mode=first["execution_mode"],
            optimization_level=first["optimization_level"],
            threads=int(first["threads"]),
            run_overhead_us=float(first["run_overhead_us"]),
            node_overhead_us=float(first["node_overhead_us"]),
        )

    def write(self, path: Path) -> None:
        """Store the table as parquet (the form `read`/`sommelier device import` take)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            self.to_frame().write_parquet(tmp)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)  # a failed write leaves nothing behind
            raise

    @classmethod
    def read(cls, path: Path, device: str | None = None) -> OperatorLatencyTable:
        """A table from a parquet file written by `write`."""
        try:
            frame = read_parquet_checked(path)
        except Exception as error:  # polars raises several error types for non-parquet files
            raise UnknownOperatorTable(f"{path}: not a parquet operator latency table ({error})") from error
        return cls.from_frame(frame, device)


def _with_elements(frame: pl.DataFrame) -> pl.DataFrame:
    """Tables written before the `elements` column existed: `work` stands in for it."""
    if "elements" not in frame.columns and "work" in frame.columns:
        return frame.with_columns(pl.col("work").alias("elements"))
    return frame


@dataclass(frozen=True)
class ProfiledModel:
    """One model's contribution to a table: its operator profile at one batch size."""

    model_id: str
    operators: OperatorProfile
    measured_ms: float | None = None
    """Latency measured without the profiler at the same batch size; the overhead fit prefers it."""


def build_operator_table(
    device: str,
    profiled: Sequence[ProfiledModel],
    execution_mode: str = SEQUENTIAL,
    calibration: Sequence[ProfiledModel] = (),
) -> OperatorLatencyTable:
    """A device's table from profiled models: mean time per executed-node key, and the fitted overheads.

    Overheads: measured latency (or, without one, the profiler's own run time) − the sum of kernel
    times = run overhead + node overhead × nodes, fitted by least squares on relative errors over the
    models; they cover session dispatch and input/output handling that kernel times leave out (and, with a
    negative node term, the profiler's own cost inside tiny kernels).
    """
    if not profiled:
        raise ValueError(f"no profiled models to build the {device} table from")
    times: dict[str, list[float]] = defaultdict(list)
    meta: dict[str, ExecutedNode] = {}
    models: dict[str, set[str]] = defaultdict(set)
    for item in [*profiled, *calibration]:  # calibration graphs add entries, not overhead evidence
        for node, us in zip(item.operators.graph.nodes, item.operators.node_us, strict=True):
            times[node.key].append(us)
            meta.setdefault(node.key, node)
            models[node.key].add(item.model_id)
    keys = sorted(times)
    entries = pl.DataFrame(
        {
            "device": [device] * len(keys),
            "key": keys,
            "op": [meta[k].op for k in keys],
            "op_class": [meta[k].op_class for k in keys],
            "work_kind": [meta[k].work_kind for k in keys],
            "work": [meta[k].work for k in keys],
            "elements": [meta[k].elements for k in keys],
            "time_us": [float(np.mean(times[k])) for k in keys],  # mean: sums over repeated blocks stay right
            "count": [len(times[k]) for k in keys],
            "models": [",".join(sorted(models[k])) for k in keys],
        }
    )
    measured = np.array(
        [(item.measured_ms if item.measured_ms is not None else item.operators.run_ms) * 1000.0 for item in profiled]
    )
    residual = measured - np.array([sum(item.operators.node_us) for item in profiled])
    n_nodes = np.array([len(item.operators.graph.nodes) for item in profiled], dtype=float)
    run_us, node_us = _fit_overhead(residual, n_nodes, measured)
    threads = profiled[0].operators.threads
    levels = {item.operators.graph.optimization_level for item in profiled}
    table = OperatorLatencyTable(device, entries, execution_mode, ",".join(sorted(levels)), threads, run_us, node_us)
    return OperatorLatencyTable.from_frame(table.to_frame())


def _fit_overhead(residual_us: np.ndarray, n_nodes: np.ndarray, measured_us: np.ndarray) -> tuple[float, float]:
    """(a ≥ 0, b) with residual ≈ a + b·nodes, fitted on *relative* errors (each model's row divided by its
    latency) so that one large model's noise does not set the overhead of every small one.

    b may be negative: the profiler reports whole microseconds and its own bookkeeping inside each node's
    span, so on sub-microsecond kernels the kernel sum exceeds the unprofiled run.
    """
    weights = 1.0 / np.maximum(measured_us, 1.0)
    if len(residual_us) >= 3 and np.ptp(n_nodes) > 0:
        design = np.column_stack([np.ones_like(n_nodes), n_nodes]) * weights[:, None]
        (a, b), *_ = np.linalg.lstsq(design, residual_us * weights, rcond=None)
        if a >= 0:
            return float(a), float(b)
        return 0.0, float(np.sum(residual_us * n_nodes * weights**2) / np.sum((n_nodes * weights) ** 2))
    return max(float(np.median(residual_us)), 0.0), 0.0


def import_operator_table(source: Path, device: str, devices_dir: Path) -> OperatorLatencyTable:
    """Describe a device by a table measured elsewhere: validated, renamed to `device`, kept in `devices_dir`.

    Queries on that device then use estimates from the table (marked as such in their hits).
    """
    if not device or "/" in device or device.startswith("."):
        raise ValueError(f"device name {device!r}: give a plain name such as 'edge-cpu'")
    table = OperatorLatencyTable.read(Path(source), device)
    table.write(devices_dir / f"{device}.parquet")
    return table


def imported_operator_tables(devices_dir: Path) -> list[OperatorLatencyTable]:
    """Every table kept by `import_operator_table`, by device name.

    A file there that is not a table (copied in by hand, truncated) is left out with a `UserWarning` naming
    it, so one bad file does not stop the resource index of every model and device.
    """
    if not devices_dir.is_dir():
        return []
    tables = []
    for path in sorted(devices_dir.glob("*.parquet")):
        try:
            tables.append(OperatorLatencyTable.read(path, path.stem))
        except UnknownOperatorTable as error:
            warnings.warn(f"device {path.stem!r} left out: {error}", stacklevel=2)
    return tables
