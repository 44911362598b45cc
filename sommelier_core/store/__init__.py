"""The model store: per-model artifacts and data-only stage records under one root, written atomically.

- `model_store`: `ModelStore`, a model's files and stage records by model id.
- `records`: the record file format (versioned JSON; the class comes from the stage table).
- `codec`: typed values ↔ JSON data, paths inside the store written relative to its root.
- `legacy`: stores of pickled records, migrated once (`ensure_current_format`) or refused.
- `manifest`: the store's format version (`store.json`); `atomic`: files written through a rename.
"""

from sommelier_core.store.atomic import write_atomic, write_parquet_atomic
from sommelier_core.store.errors import LegacyStoreError, StoreFormatError
from sommelier_core.store.legacy import ensure_current_format, migrate_legacy_store
from sommelier_core.store.model_store import ModelStore

__all__ = [
    "LegacyStoreError",
    "ModelStore",
    "StoreFormatError",
    "ensure_current_format",
    "migrate_legacy_store",
    "write_atomic",
    "write_parquet_atomic",
]
