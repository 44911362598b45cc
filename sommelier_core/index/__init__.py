"""The two indexes (paper §5.2–5.3): semantic candidate lists and per-device resource figures.

- `semantic`: `SemanticStore`, candidate lists updated incrementally as models are inserted (measured,
  transitive and identical bounds), saved as `.npz`.
- `candidate_lists`: `CandidateLists`, the packed form queries read (bounds rounded outward).
- `resource`: `ModelProfile` (a model's static figures), `build_resource_index` (one row per model per
  device per batch size) and `ResourceStore`, the column store queries filter.
"""

from sommelier_core.index.candidate_lists import CandidateLists
from sommelier_core.index.resource import ModelProfile, ResourceStore, build_resource_index, read_resource_index
from sommelier_core.index.semantic import SEMANTIC_INDEX_SCHEMA, SemanticStore

__all__ = [
    "SEMANTIC_INDEX_SCHEMA",
    "CandidateLists",
    "ModelProfile",
    "ResourceStore",
    "SemanticStore",
    "build_resource_index",
    "read_resource_index",
]
