"""The model store: per-model artifacts and data-only stage records under one root, written atomically, verified.

- `model_store`: `ModelStore`, a model's files and stage records by model id.
- `records`: the record file format (versioned JSON with checksums; the class comes from the stage table).
- `codec`: typed values ↔ JSON data, paths inside the store written relative to its root.
- `checksums`: a file's size and SHA-256, and a stored file's health (`FileCheck`).
- `checked_files`: index files with their checksums in a manifest beside them (`checksums.json`).
- `health`: the whole store checked (`check_store`, what `sommelier verify` reports) and repaired.
- `legacy`: stores of pickled records, migrated once (`ensure_current_format`) or refused.
- `manifest`: the store's format version (`store.json`); `atomic`: files written through a rename.
"""

from sommelier_core.store.atomic import write_atomic
from sommelier_core.store.checked_files import (
    damaged_index_file,
    read_checked,
    read_parquet_checked,
    write_checked,
    write_parquet_atomic,
)
from sommelier_core.store.checksums import FileCheck
from sommelier_core.store.errors import DamagedArtifact, DamagedArtifactWarning, LegacyStoreError, StoreFormatError
from sommelier_core.store.legacy import ensure_current_format, migrate_legacy_store
from sommelier_core.store.model_store import ModelStore

__all__ = [
    "DamagedArtifact",
    "DamagedArtifactWarning",
    "FileCheck",
    "LegacyStoreError",
    "ModelStore",
    "StoreFormatError",
    "damaged_index_file",
    "ensure_current_format",
    "migrate_legacy_store",
    "read_checked",
    "read_parquet_checked",
    "write_atomic",
    "write_checked",
    "write_parquet_atomic",
]
