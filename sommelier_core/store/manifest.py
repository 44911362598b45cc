"""The store's format, marked in `store.json` at its root: a reader knows a store is current without a scan."""

from __future__ import annotations

import json
from pathlib import Path

from sommelier_core.store.atomic import write_atomic
from sommelier_core.store.errors import StoreFormatError

MANIFEST_FILE = "store.json"
STORE_FORMAT = "sommelier.store"
STORE_VERSION = 3
"""1: pickled stage records with absolute paths; 2: data-only records, paths relative to the store root; 3: compact
validation outputs (`compact_outputs`) instead of full `outputs.npy`, no kept calibration graphs (`legacy` compacts a
store of version 2 once)."""


def manifest_path(root: Path) -> Path:
    """Where a store's manifest lives."""
    return Path(root) / MANIFEST_FILE


def store_version(root: Path) -> int | None:
    """The format version a store's manifest states; None when it has none (new, or from before manifests)."""
    path = manifest_path(root)
    if not path.exists():
        return None
    try:
        payload = json.loads(path.read_bytes())
        version = payload["version"] if payload.get("format") == STORE_FORMAT else None
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        version = None
    if not isinstance(version, int):
        raise StoreFormatError(f"{path} is not a Sommelier store manifest (expected format {STORE_FORMAT!r})")
    return version


def write_manifest(root: Path) -> None:
    """Mark a store as of the current format."""
    payload = {"format": STORE_FORMAT, "version": STORE_VERSION}
    write_atomic(manifest_path(root), (json.dumps(payload, indent=2) + "\n").encode())
