"""The model store: per-model artifacts and stage records under the store root, written atomically.

Stages of other models are read through here by model id (design §8: peers are read through the
store, not through partition mappings), and the query module reads the index parquet files from
here without Dagster running. Records are data-only JSON (`records`) with paths relative to the
root, so a copied or moved store reads its own files; a pickled record of an older store is never
unpickled here (`legacy` migrates it) but refused with `LegacyStoreError`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from sommelier_core.errors import MissingStageOutput
from sommelier_core.models import safe_name
from sommelier_core.store.atomic import write_atomic
from sommelier_core.store.codec import StorePaths
from sommelier_core.store.errors import REINDEX_HINT, LegacyStoreError
from sommelier_core.store.records import RECORD_SUFFIX, decode_record, encode_record

LEGACY_RECORD_SUFFIX = ".pkl"
"""Records of stores from before the data format (schema 1: pickled dataclasses)."""


class ModelStore:
    """Files of each model (`models/<safe id>/`) and the index directory under one root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.paths = StorePaths(self.root)

    def model_dir(self, model_id: str) -> Path:
        """The directory holding one model's artifacts."""
        return self.root / "models" / safe_name(model_id)

    def onnx_path(self, model_id: str) -> Path:
        """Where the converted ONNX file of a model lives."""
        return self.model_dir(model_id) / "model.onnx"

    def fetch_dir(self, model_id: str) -> Path:
        """Scratch space a repository may fetch a model into."""
        return self.model_dir(model_id) / "fetched"

    def outputs_path(self, model_id: str) -> Path:
        """Where a model's outputs on its validation set are stored."""
        return self.model_dir(model_id) / "outputs.npy"

    def save_outputs(self, model_id: str, outputs: np.ndarray) -> Path:
        """Store a model's validation outputs (computed once per model, design §3)."""
        path = self.outputs_path(model_id)
        tmp = path.with_name(".outputs.tmp.npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(tmp, outputs, allow_pickle=False)
        os.replace(tmp, path)
        return path

    def load_outputs(self, model_id: str) -> np.ndarray:
        """A model's stored validation outputs; a clear error if the stage has not run for it."""
        path = self.outputs_path(model_id)
        if not path.exists():
            raise MissingStageOutput(f"outputs of {model_id} are not materialized yet (expected {path})")
        return np.load(path, allow_pickle=False)

    def record_path(self, stage: str, model_id: str) -> Path:
        """Where one stage's record for one model is kept (`<stage>.json`; `device_profile@cpu.json` per device)."""
        return self.model_dir(model_id) / f"{stage}{RECORD_SUFFIX}"

    def legacy_record_path(self, stage: str, model_id: str) -> Path:
        """Where a store from before the data format kept the record (a pickle, read only by migration)."""
        return self.model_dir(model_id) / f"{stage}{LEGACY_RECORD_SUFFIX}"

    def save_record(self, stage: str, model_id: str, record: Any) -> None:
        """Keep a stage's record for a model, as data (its type must be the stage table's record type)."""
        write_atomic(self.record_path(stage, model_id), encode_record(stage, model_id, record, self.paths))
        self.legacy_record_path(stage, model_id).unlink(missing_ok=True)

    def load_record(self, stage: str, model_id: str) -> Any:
        """A stage's record for a model; `MissingStageOutput` if that stage has not run for it,
        `StoreFormatError` if its file does not decode, `LegacyStoreError` if it is still a pickle."""
        path = self.record_path(stage, model_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            legacy = self.legacy_record_path(stage, model_id)
            if legacy.exists():
                raise _legacy(legacy, model_id, stage) from None
            raise MissingStageOutput(
                f"stage {stage!r} has not been materialized for {model_id} (expected {path})"
            ) from None
        return decode_record(data, path, stage, model_id, self.paths)[1]

    def has_record(self, stage: str, model_id: str) -> bool:
        """Whether a stage's record exists for a model (a pickled one counts: reading it says to migrate)."""
        return self.record_path(stage, model_id).exists() or self.legacy_record_path(stage, model_id).exists()

    def records(self, stage: str, model_ids: list[str] | None = None) -> dict[str, Any]:
        """All stored records of a stage (optionally only for some models), keyed by model id."""
        if model_ids is not None:
            return {m: self.load_record(stage, m) for m in model_ids if self.has_record(stage, m)}
        models = self.root / "models"
        legacy = sorted(models.glob(f"*/{stage}{LEGACY_RECORD_SUFFIX}"))
        if legacy:
            raise _legacy(legacy[0], None, stage)
        found = {}
        for path in sorted(models.glob(f"*/{stage}{RECORD_SUFFIX}")):
            model_id, record = decode_record(path.read_bytes(), path, stage, None, self.paths)
            found[model_id] = record
        return found

    def relative_path(self, path: str) -> str:
        """A path as a store-independent string: relative to the root when inside it, else unchanged."""
        relative = self.paths.relative(path)
        return path if relative is None else relative

    def rooted_path(self, path: str) -> str:
        """The inverse of `relative_path` for this store: a relative path is taken under the root."""
        if not path or os.path.isabs(path):
            return path
        return str(self.paths.absolute(path))

    @property
    def index_dir(self) -> Path:
        """The directory of the materialized index assets."""
        return self.root / "index"

    @property
    def devices_dir(self) -> Path:
        """Imported operator latency tables, one `<device>.parquet` per device known by its table alone."""
        return self.root / "devices"

    def write_json(self, path: Path, payload: Any) -> None:
        """Write JSON atomically (used for small human-readable summaries)."""
        write_atomic(path, json.dumps(payload, indent=2, sort_keys=True, default=str).encode())


def _legacy(path: Path, model_id: str | None, stage: str) -> LegacyStoreError:
    return LegacyStoreError(
        f"{path} (model {model_id or path.parent.name}, stage {stage}) is a pickled record of a store from before "
        f"Sommelier's data-only format; {REINDEX_HINT}"
    )
