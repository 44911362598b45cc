"""Stores from before the data format (pickled records, absolute paths): migrated once, or refused.

`migrate_legacy_store` rewrites every `models/<safe id>/<stage>.pkl` as the data-only record of
`records`, with paths inside the store relative to its root, and removes the pickles, the pickled
semantic store (the next index build rebuilds it from the records) and the pickled calibration cache (measured
again when a device's operator table is next built). The pickles are read by a
restricted unpickler: it resolves only the record classes the stage table reaches (by class name —
modules moved since those stores were written) and what `pathlib` paths and numpy arrays need; any
other global refuses the file with a message that says to re-index, so reading an old shared store
runs no code of its choosing. The manifest (`manifest`) marks a migrated store, so the check is once.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import pathlib
import pickle
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sommelier_core.stages import MODEL_OUTPUTS
from sommelier_core.store.atomic import write_atomic
from sommelier_core.store.codec import StorePaths
from sommelier_core.store.compact_outputs import kind_for_task
from sommelier_core.store.errors import REINDEX_HINT, DamagedArtifact, LegacyStoreError, StoreFormatError
from sommelier_core.store.manifest import STORE_VERSION, store_version, write_manifest
from sommelier_core.store.model_store import LEGACY_RECORD_SUFFIX, ModelStore
from sommelier_core.store.records import decode_record, encode_record, record_types

LEGACY_SEMANTIC_STORE = Path("index") / "semantic_store.pkl"
"""The semantic index's incremental state as pickled by stores of format 1."""
LEGACY_CACHES = "calibration/*.pkl"
"""The calibration sweep's measured profiles as pickled by stores of format 1 (a cache: measured again when needed)."""

_PATH_CLASSES = {"Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"}
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}
_BUILTINS = {"set", "frozenset", "complex"}

log = logging.getLogger(__name__)


@dataclass
class LegacyMigration:
    """What a migration did."""

    records: int = 0
    """Pickled records rewritten as data."""
    removed: list[str] = field(default_factory=list)
    """Other pickles and kept calibration graphs removed (rebuilt when needed), relative to the store root."""
    outputs: int = 0
    """Records of full outputs (`outputs.npy`) rewritten as compact records."""

    def __bool__(self) -> bool:
        return bool(self.records or self.removed or self.outputs)


class _RecordUnpickler(pickle.Unpickler):
    """Resolves only record classes (by name), `pathlib` paths and numpy arrays; refuses anything else."""

    def __init__(self, data: bytes, path: Path, classes: dict[str, type]) -> None:
        super().__init__(io.BytesIO(data))
        self._path = path
        self._classes = classes

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("sommelier_core") and name in self._classes:
            return self._classes[name]
        if module.startswith("pathlib") and name in _PATH_CLASSES:
            return getattr(pathlib, name)
        if (module, name) in _NUMPY_GLOBALS:
            return _numpy_global(module, name)
        if module in ("builtins", "__builtin__") and name in _BUILTINS:
            return {"set": set, "frozenset": frozenset, "complex": complex}[name]
        raise LegacyStoreError(
            f"{self._path} cannot be migrated: it refers to {module}.{name}, which is not a Sommelier record type; "
            f"{REINDEX_HINT}"
        )


def _numpy_global(module: str, name: str) -> Any:
    import numpy as np

    if name == "ndarray":
        return np.ndarray
    if name == "dtype":
        return np.dtype
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    return getattr(multiarray, name)


def read_legacy_record(path: Path, classes: dict[str, type] | None = None) -> Any:
    """Unpickle a record of a format-1 store with the restricted unpickler; `LegacyStoreError` if it cannot be."""
    try:
        return _RecordUnpickler(path.read_bytes(), path, classes or record_types()).load()
    except LegacyStoreError:
        raise
    except Exception as exc:  # any damage a pickle can have: truncated, wrong protocol, not a pickle
        raise LegacyStoreError(f"{path} cannot be migrated: not a readable record ({exc!r}); {REINDEX_HINT}") from None


def has_legacy_files(store: ModelStore) -> bool:
    """Whether a store still holds pickles of format 1."""
    return (
        (store.root / LEGACY_SEMANTIC_STORE).exists()
        or any((store.root / "models").glob(f"*/*{LEGACY_RECORD_SUFFIX}"))
        or any(store.root.glob(LEGACY_CACHES))
    )


def migrate_legacy_store(store: ModelStore) -> LegacyMigration:
    """Rewrite a format-1 store's pickled records as data and remove its pickles (see the module docstring).

    Every record is read before any is written, so a store that cannot be migrated is left as it was
    and `LegacyStoreError` says to re-index. Records whose absolute paths name another root (the store
    was moved before migrating) are rewritten relative to this one.
    """
    done = LegacyMigration()
    pickles = sorted((store.root / "models").glob(f"*/*{LEGACY_RECORD_SUFFIX}"))
    classes = record_types() if pickles else {}
    read: list[tuple[Path, str, str, Any]] = []
    for path in pickles:
        stage = path.name.removesuffix(LEGACY_RECORD_SUFFIX)
        try:
            record = read_legacy_record(path, classes)
        except FileNotFoundError:  # another process migrated it meanwhile
            continue
        read.append((path, stage, _model_id(record, path), record))
    paths = StorePaths(store.root, _former_roots(store, [r for *_, r in read]))
    encoded = []
    for path, stage, model_id, record in read:
        try:
            encoded.append((path, encode_record(stage, model_id, record, paths)))
        except (TypeError, StoreFormatError) as exc:
            raise LegacyStoreError(f"{path} cannot be migrated: {exc}; {REINDEX_HINT}") from None
    for path, data in encoded:
        write_atomic(path.with_suffix(".json"), data)
        path.unlink(missing_ok=True)
        done.records += 1
    for rebuilt in [store.root / LEGACY_SEMANTIC_STORE, *sorted(store.root.glob(LEGACY_CACHES))]:
        if rebuilt.exists():
            rebuilt.unlink(missing_ok=True)
            done.removed.append(rebuilt.relative_to(store.root).as_posix())
    return done


def compact_full_outputs(store: ModelStore) -> int:
    """Rewrite every `model_outputs` record of full outputs (`outputs.npy`, stores of format ≤ 2) as a compact record
    (`compact_outputs`: top-1 labels, or float16 vectors with their error bound) and remove the full file; how many.

    The compact record reads exactly as the full outputs did (the same top-1 labels; vectors within their recorded
    error). A record whose outputs are damaged is left as it is: `sommelier verify` names it and the next
    `sommelier index` re-runs its stage.
    """
    done = 0
    for path in sorted((store.root / "models").glob(f"*/{MODEL_OUTPUTS.name}.json")):
        try:
            model_id, record = decode_record(path.read_bytes(), path, MODEL_OUTPUTS.name, None, store.paths)
            if record.stored or not store.outputs_path(model_id).exists():
                continue
            full = store.load_outputs(model_id)
        except (DamagedArtifact, StoreFormatError, OSError):
            continue
        writer = store.outputs_writer(model_id, len(full), kind_for_task(record.task))
        try:
            writer.add(["output"], [full])
            stored = writer.finish()
        except BaseException:
            writer.abandon()
            raise
        compact = dataclasses.replace(record, stored=stored, path=str(store.outputs_dir(model_id)))
        store.save_record(MODEL_OUTPUTS.name, model_id, compact)
        store.outputs_path(model_id).unlink(missing_ok=True)
        done += 1
    return done


def remove_kept_calibration_graphs(store: ModelStore) -> list[str]:
    """Remove the calibration sweep's graphs an older version kept (`calibration/v<N>/*.onnx`, 842 MB for sweep 7):
    they are regenerated from their seed when a device is profiled, and only the measured profiles are kept.
    Returns the directories removed, relative to the store root."""
    removed = []
    for directory in sorted((store.root / "calibration").glob("v*")):
        if directory.is_dir():
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory.relative_to(store.root).as_posix())
    return removed


def ensure_current_format(store: ModelStore) -> LegacyMigration:
    """Make a store readable by this version: migrate a format-1 store once, compact the full outputs of a store of
    format ≤ 2 and remove its kept calibration graphs, mark the format in the manifest.

    A store marked with a newer format is refused (`StoreFormatError`); one marked current is not scanned.
    """
    version = store_version(store.root)
    if version is not None and version > STORE_VERSION:
        raise StoreFormatError(
            f"the store at {store.root} has format {version}, newer than this Sommelier reads ({STORE_VERSION}): "
            "upgrade Sommelier to use it"
        )
    if version == STORE_VERSION:
        return LegacyMigration()
    done = migrate_legacy_store(store) if has_legacy_files(store) else LegacyMigration()
    done.outputs = compact_full_outputs(store)
    graphs = remove_kept_calibration_graphs(store)
    done.removed += graphs
    if done.outputs or graphs:
        log.warning(
            "compacted the stored validation outputs of %d models%s",
            done.outputs,
            f"; removed the calibration graphs in {', '.join(graphs)} (regenerated from their seed when needed)"
            if graphs
            else "",
        )
    if done.records:
        log.warning(
            "migrated the store at %s to format %d: %d pickled records rewritten as data%s",
            store.root,
            STORE_VERSION,
            done.records,
            f"; removed {', '.join(done.removed)} (rebuilt when next needed)" if done.removed else "",
        )
    write_manifest(store.root)
    return done


def _model_id(record: Any, path: Path) -> str:
    """The model a legacy record belongs to (every record names it; a fetched model through its entry)."""
    model_id = getattr(record, "model_id", None) or getattr(getattr(record, "entry", None), "model_id", None)
    if not isinstance(model_id, str):
        raise LegacyStoreError(f"{path} cannot be migrated: the record names no model; {REINDEX_HINT}")
    return model_id


def _former_roots(store: ModelStore, records: list[Any]) -> tuple[Path, ...]:
    """Roots a moved store used to have: X where a record's path is `X/models/<a model dir of this store>/…`."""
    models = store.root / "models"
    roots: dict[Path, None] = {}
    for record in records:
        for value in vars(record).values() if hasattr(record, "__dict__") else ():
            if isinstance(value, str | Path) and Path(value).is_absolute():
                parts = Path(value).parts
                for i in range(len(parts) - 2):
                    if parts[i] == "models" and (models / parts[i + 1]).is_dir():
                        roots[Path(*parts[:i])] = None
                        break
    return tuple(roots)
