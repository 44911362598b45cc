"""What the switching policy asks Sommelier: queries in the query language, run on the store's index.

Every question is a query text (logged with the decision it led to), run through the public query
API (`querying.run_query` on an engine loaded once with `querying.load_engine`); the configured
model's own figures come from the resource index (`querying.load_index`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from sommelier_core.errors import UnknownModel
from sommelier_core.querying import Hit, Index, QueryEngine, load_engine, load_index, run_query
from sommelier_core.settings import index_dir as default_index_dir

REFERENCE = "reference"
"""Provenance of the configured model itself as a choice."""


@dataclass(frozen=True)
class ModelChoice:
    """A model the service can serve, with what the index knows of it."""

    model_id: str
    onnx_path: str
    upper_bound: float
    """Bound on its difference from the configured model (0 for that model itself)."""
    latency_ms: float
    """Latency on the device at batch size 1, as the index holds it."""
    memory_bytes: int
    provenance: str

    @classmethod
    def from_hit(cls, hit: Hit) -> ModelChoice:
        """A query hit as a choice."""
        return cls(
            hit.model_id,
            hit.onnx_path,
            hit.upper_bound,
            hit.profile.latency_ms,
            hit.profile.memory_bytes,
            hit.provenance,
        )


def format_fraction(value: float) -> str:
    """A fraction as the language's percentage (`0.0125` → `1.25%`)."""
    return f"{value * 100:.4g}%"


class ModelSelector:
    """Answers the policy's questions about models like `reference` from one store's index."""

    def __init__(
        self,
        reference: str,
        index_dir: Path | None = None,
        device: str = "cpu",
        index: Index | None = None,
    ) -> None:
        """Over the store's index (`index_dir`, default the store root's), loaded once; or over given tables.

        Over a store, queries may refine uncertain bounds from its stored outputs (`load_engine`).
        """
        self.reference_id = reference
        self.device = device
        if index is None:
            directory = Path(index_dir) if index_dir is not None else default_index_dir()
            index = load_index(directory)
            self.engine: QueryEngine = load_engine(directory, index)
        else:
            self.engine = load_engine(index=index)
        self.reference = self._reference_choice(index.resource)

    def _reference_choice(self, resource: pl.DataFrame) -> ModelChoice:
        rows = resource.filter(
            (pl.col("model_id") == self.reference_id) & (pl.col("device") == self.device) & (pl.col("batch_size") == 1)
        )
        if rows.is_empty():
            known = resource.filter(pl.col("model_id") == self.reference_id)
            where = "on no device" if known.is_empty() else f"not on device {self.device!r} at batch size 1"
            raise UnknownModel(f"model {self.reference_id!r} is indexed {where}; it cannot be served from this index")
        row = rows.row(0, named=True)
        return ModelChoice(
            self.reference_id, row["onnx_path"], 0.0, float(row["latency_ms"]), int(row["memory_bytes"]), REFERENCE
        )

    def query_text(self, within: float, latency_ms: float | None, memory_bytes: int | None, order: str) -> str:
        """The query for the most similar (`order="similarity"`) or fastest (`"latency"`) model in budget."""
        terms = []
        if latency_ms is not None:
            terms.append(f"latency@{self.device} <= {latency_ms:.6g} ms")
        if memory_bytes is not None:
            terms.append(f"memory <= {int(memory_bytes)} B")
        where = f" WHERE {' AND '.join(terms)}" if terms else ""
        ordering = "similarity" if order == "similarity" else f"latency@{self.device}"
        return (
            f"FIND 1 MODEL LIKE '{self.reference_id}' WITHIN {format_fraction(within)} ON {self.device}"
            f"{where} ORDER BY {ordering}"
        )

    def ask(self, text: str) -> ModelChoice | None:
        """Run one query; its first hit, or None."""
        hits = run_query(text, engine=self.engine).hits
        return ModelChoice.from_hit(hits[0]) if hits else None

    def reference_fits(self, latency_ms: float | None, memory_bytes: int | None) -> bool:
        """Whether the configured model itself is within the budgets."""
        return (latency_ms is None or self.reference.latency_ms <= latency_ms) and (
            memory_bytes is None or self.reference.memory_bytes <= memory_bytes
        )
