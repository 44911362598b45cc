"""Errors of the model store: a stored file this code cannot read, a damaged one, and a store from before the
data format."""

from __future__ import annotations

from pathlib import Path

from sommelier_core.errors import SommelierError

REINDEX_HINT = (
    "re-index: run `sommelier index` (it migrates a store of pickled records once), or index into a fresh store "
    "(remove the store's `models/` and `index/` directories, then run `sommelier index --full`)"
)
"""What to do about a store this version cannot read, said by every error below."""

REPAIR_HINT = "run `sommelier index` to re-run that stage (`sommelier verify` lists every damaged file)"
"""What to do about a damaged per-model record or artifact: the next index run re-runs the stage that wrote it."""

REBUILD_HINT = "run `sommelier index` to rebuild the index"
"""What to do about a damaged index file: every index run rebuilds the index tables."""


class StoreFormatError(SommelierError):
    """A stored record or index file does not decode: written by a newer Sommelier, damaged, or not a record."""


class LegacyStoreError(StoreFormatError):
    """The store keeps pickled records (the format before data-only records); they are migrated or refused."""


class DamagedArtifact(StoreFormatError):
    """A stored file is damaged: it does not decode, it is not what its name says, or its contents do not match
    the checksum recorded when it was written (truncated, bit-flipped, replaced).

    `path` is the damaged file; `model_id` and `stage` say whose and which stage wrote it, where known. The
    message names the file and says how to repair it.
    """

    def __init__(self, message: str, path: Path, model_id: str | None = None, stage: str | None = None) -> None:
        super().__init__(message)
        self.path = Path(path)
        self.model_id = model_id
        self.stage = stage


class DamagedArtifactWarning(UserWarning):
    """A damaged file was left out of an answer (a model left out of an index build, a pair not refined); the
    warning names the file, so the answer is never changed silently."""
