"""Answering queries from the materialized index assets (paper §5.4): semantic filter, then
resource filter, then final selection. Dagster need not be running; the parquet files are enough.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl

from sommelier_core.errors import SommelierError, UnknownMetric, UnknownModel
from sommelier_core.settings import index_dir as default_index_dir

SEMANTIC_INDEX_FILE = "semantic_index.parquet"
RESOURCE_INDEX_FILE = "resource_index.parquet"

ORDER_BY_COLUMNS: dict[str, str] = {
    "similarity": "upper",
    "flops": "flops",
    "macs": "macs",
    "params": "params",
    "memory": "memory_bytes",
    "latency": "latency_ms",
}


class IndexNotBuilt(SommelierError):
    """The index assets have not been materialized in this store yet."""


@dataclass(frozen=True)
class ResourceFigures:
    """A hit's resource profile on the query's device."""

    device: str
    params: int
    macs: int
    flops: int
    weight_bytes: int
    peak_activation_bytes: int
    memory_bytes: int
    latency_ms: float


@dataclass(frozen=True)
class Hit:
    """One answer: a model equivalent to the reference within the threshold and within budget."""

    model_id: str
    onnx_path: str
    lower_bound: float
    upper_bound: float
    empirical: float | None
    provenance: str
    profile: ResourceFigures

    def to_json(self) -> dict:
        """The stable JSON form used by `sommelier query --json`."""
        return asdict(self)


@dataclass(frozen=True)
class Index:
    """The two materialized index tables."""

    semantic: pl.DataFrame
    resource: pl.DataFrame


def load_index(index_dir: Path | None = None) -> Index:
    """Read the semantic and resource index parquet files of a store."""
    directory = Path(index_dir) if index_dir is not None else default_index_dir()
    paths = [directory / SEMANTIC_INDEX_FILE, directory / RESOURCE_INDEX_FILE]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise IndexNotBuilt(
            f"no materialized index at {directory} (missing {', '.join(missing)}); run `sommelier index`"
        )
    return Index(pl.read_parquet(paths[0]), pl.read_parquet(paths[1]))


def query(
    ref: str,
    within: float = 0.05,
    memory: float | None = None,
    flops: float | None = None,
    params: float | None = None,
    latency_ms: float | None = None,
    device: str = "cpu",
    order_by: str = "similarity",
    limit: int | None = None,
    index_dir: Path | None = None,
    index: Index | None = None,
) -> list[Hit]:
    """Models equivalent to `ref` within `within` (upper bound on the difference) and within budget.

    `memory`, `flops` and `params` are fractions of the reference's own figures (0.8 = at most 80 %);
    `latency_ms` is an absolute budget on `device`. Hits are ordered by `order_by` (`similarity`
    ranks by the upper bound; resource orderings are ascending) and cut to `limit`.
    """
    if not 0 <= within <= 1:
        raise ValueError(f"within must be a fraction in [0, 1], got {within}")
    for name, value in (("memory", memory), ("flops", flops), ("params", params), ("latency_ms", latency_ms)):
        if value is not None and value <= 0:
            raise ValueError(f"{name} budget must be positive, got {value}")
    if order_by not in ORDER_BY_COLUMNS:
        raise UnknownMetric(f"cannot order by {order_by!r}; expected one of {', '.join(ORDER_BY_COLUMNS)}")
    idx = index if index is not None else load_index(index_dir)

    known = idx.resource["model_id"].unique().to_list()
    if ref not in known:
        close = difflib.get_close_matches(ref, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; the index holds {len(known)} models"
        raise UnknownModel(f"reference model {ref!r} is not in the index{hint}")
    devices = sorted(idx.resource["device"].unique().to_list())
    if device not in devices:
        raise UnknownMetric(f"device {device!r} has no profiles in the index; profiled devices: {', '.join(devices)}")

    on_device = idx.resource.filter(pl.col("device") == device)
    reference = on_device.filter(pl.col("model_id") == ref).row(0, named=True)
    candidates = idx.semantic.filter((pl.col("reference_id") == ref) & (pl.col("upper") <= within))
    joined = candidates.join(on_device, left_on="candidate_id", right_on="model_id", how="inner")
    budgets = {"memory_bytes": memory, "flops": flops, "params": params}
    for column, fraction in budgets.items():
        if fraction is not None:
            joined = joined.filter(pl.col(column) <= fraction * reference[column])
    if latency_ms is not None:
        joined = joined.filter(pl.col("latency_ms") <= latency_ms)
    joined = joined.sort([ORDER_BY_COLUMNS[order_by], "upper", "candidate_id"])
    if limit is not None:
        joined = joined.head(limit)
    return [_hit(row, device) for row in joined.iter_rows(named=True)]


def _hit(row: dict, device: str) -> Hit:
    figures = ResourceFigures(
        device=device,
        params=row["params"],
        macs=row["macs"],
        flops=row["flops"],
        weight_bytes=row["weight_bytes"],
        peak_activation_bytes=row["peak_activation_bytes"],
        memory_bytes=row["memory_bytes"],
        latency_ms=row["latency_ms"],
    )
    return Hit(
        model_id=row["candidate_id"],
        onnx_path=row["onnx_path"],
        lower_bound=row["lower"],
        upper_bound=row["upper"],
        empirical=row["empirical"],
        provenance=row["provenance"],
        profile=figures,
    )
