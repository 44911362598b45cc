"""Errors of the model store: a stored file this code cannot read, and a store from before the data format."""

from sommelier_core.errors import SommelierError

REINDEX_HINT = (
    "re-index: run `sommelier index` (it migrates a store of pickled records once), or index into a fresh store "
    "(remove the store's `models/` and `index/` directories, then run `sommelier index --full`)"
)
"""What to do about a store this version cannot read, said by every error below."""


class StoreFormatError(SommelierError):
    """A stored record or index file does not decode: written by a newer Sommelier, damaged, or not a record."""


class LegacyStoreError(StoreFormatError):
    """The store keeps pickled records (the format before data-only records); they are migrated or refused."""
