"""The query engine and its answers: the two indexes aligned by model position, and the hits a query returns.

`QueryEngine` holds the semantic index (a measured graph searched per query, or packed candidate lists)
and the resource columns, in the same model order; a `PairMeasurer` lets it refine uncertain candidates at
query time (`querying.refinement`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from sommelier_core import defaults
from sommelier_core.equivalence.bound import PairBound
from sommelier_core.index.candidate_lists import CandidateLists
from sommelier_core.index.measured_graph import MeasuredGraph
from sommelier_core.index.resource import ResourceStore
from sommelier_core.index.semantic import SemanticStore

NO_RELATION = "none"  # provenance of a resource-only hit: no semantic bound was asked for
DEFAULT_REFINE_BUDGET = defaults.REFINE_BUDGET
"""Most pairs one query measures from stored outputs (a few ms each on the built-in zoo)."""

PairMeasurer = Callable[[str, Sequence[str]], Sequence[PairBound | None]]
"""Measures (reference, candidate) pairs directly: one bound per candidate, None where it cannot."""


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
    latency_estimated: bool = False
    """True when the latency is estimated from the device's operator latency table, not measured."""


@dataclass(frozen=True)
class Hit:
    """One answer: a model equivalent to the reference within the threshold and within budget.

    A query without a semantic predicate returns the trivial bounds [0, 1] with provenance `none`.
    """

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


class QueryEngine:
    """The two indexes aligned by model position: the semantic index and resource columns.

    The semantic index is either the measured graph a query searches (`MeasuredGraph`, from a
    `SemanticStore`) or candidate lists precomputed per reference (`CandidateLists`, read from the asset's
    table); both answer `reference_row(reference, bound)`.

    With a `measurer`, semantic queries refine uncertain candidates by measuring them, at most
    `refine_budget` pairs per query (0 answers from the index alone).
    """

    def __init__(
        self,
        semantic: CandidateLists | MeasuredGraph,
        resource: ResourceStore,
        measurer: PairMeasurer | None = None,
        refine_budget: int = DEFAULT_REFINE_BUDGET,
    ) -> None:
        if semantic.ids != resource.model_ids:
            raise ValueError("semantic and resource indexes must list the same models in the same order")
        if refine_budget < 0:
            raise ValueError(f"refine budget must be ≥ 0, got {refine_budget}")
        self.semantic = semantic
        self.resource = resource
        self.measurer = measurer
        self.refine_budget = refine_budget
        self.ids = resource.model_ids
        self.pos = {m: i for i, m in enumerate(self.ids)}
        rank = np.empty(len(self.ids), dtype=np.int64)
        rank[np.argsort(np.array(self.ids, dtype=object), kind="stable")] = np.arange(len(self.ids))
        self.name_rank = rank

    @classmethod
    def from_frames(
        cls,
        semantic: pl.DataFrame,
        resource: pl.DataFrame,
        measurer: PairMeasurer | None = None,
        refine_budget: int = DEFAULT_REFINE_BUDGET,
    ) -> QueryEngine:
        """From the materialized asset tables (models without a resource row are left out)."""
        store = ResourceStore.from_frame(resource)
        return cls(CandidateLists.from_frame(semantic, store.model_ids), store, measurer, refine_budget)

    def at_batch(self, batch_size: int) -> QueryEngine:
        """This engine with its resource columns at another profiled batch size (the query's exec-spec)."""
        return self._with_resource(self.resource.at_batch(batch_size))

    def at_resolution(self, resolution: int) -> QueryEngine:
        """This engine with memory, MACs and FLOPs at input resolution `resolution` (the query's exec-spec);
        models that cannot run there are marked, not dropped (`ResourceStore.at_resolution`)."""
        return self._with_resource(self.resource.at_resolution(resolution))

    def _with_resource(self, resource: ResourceStore) -> QueryEngine:
        if resource is self.resource:
            return self
        engine = copy.copy(self)
        engine.resource = resource
        return engine

    @classmethod
    def from_store(
        cls,
        semantic: SemanticStore,
        resource: ResourceStore,
        measurer: PairMeasurer | None = None,
        refine_budget: int = DEFAULT_REFINE_BUDGET,
    ) -> QueryEngine:
        """From an incrementally built semantic store and resource columns in the same model order."""
        return cls(semantic.freeze(), resource, measurer, refine_budget)

    @property
    def nbytes(self) -> dict[str, int]:
        """Bytes of each index as a query reads it."""
        return {"semantic": self.semantic.nbytes, "resource": self.resource.nbytes}


def resource_figures(resource: ResourceStore, position: int, device: str) -> ResourceFigures:
    """The resource figures of the model at `position` on `device`, as a hit reports them."""
    static = {m: int(resource.static[m][position]) for m in resource.static}
    return ResourceFigures(
        device=device,
        params=static["params"],
        macs=static["macs"],
        flops=static["flops"],
        weight_bytes=static["weight_bytes"],
        peak_activation_bytes=static["peak_activation_bytes"],
        memory_bytes=static["memory_bytes"],
        latency_ms=float(resource.latency_ms[device][position]),
        latency_estimated=resource.is_estimated(device, position),
    )
