"""The two indexes (paper §5.2–5.3): the semantic index of measured pairs and per-device resource figures.

- `semantic`: `SemanticStore`, the measured pairs of the indexed models kept per direction (insertion and
  deletion touch only a model's own pairs), saved as `.npz`; `to_frame` writes candidate lists for the asset.
- `measured_graph`: `MeasuredGraph`, the packed pairs a query searches from its reference, stopping at its
  threshold (transitive bounds computed at query time; docs/index.md says why); models of small components
  keep their row precomputed instead.
- `bound_rules`: how measured bounds bound other pairs, per difference kind and direction.
- `candidate_lists`: `CandidateLists`, precomputed candidate lists packed per reference (read from the
  asset's table), and `CandidateRow`, what a query's semantic stage reads from either form.
- `resource`: `ModelProfile` (a model's static figures), `build_resource_index` (one row per model per
  device per batch size) and `ResourceStore`, the column store queries filter.
"""

from sommelier_core.index.candidate_lists import CandidateLists, CandidateRow
from sommelier_core.index.measured_graph import MeasuredGraph
from sommelier_core.index.resource import ModelProfile, ResourceStore, build_resource_index, read_resource_index
from sommelier_core.index.semantic import SEMANTIC_INDEX_SCHEMA, SemanticStore

__all__ = [
    "SEMANTIC_INDEX_SCHEMA",
    "CandidateLists",
    "CandidateRow",
    "MeasuredGraph",
    "ModelProfile",
    "ResourceStore",
    "SemanticStore",
    "build_resource_index",
    "read_resource_index",
]
