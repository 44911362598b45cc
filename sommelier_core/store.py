"""The model store: per-model artifacts and stage records under the store root, written atomically.

Stages of other models are read through here by model id (design §8: peers are read through the
store, not through partition mappings), and the query module reads the index parquet files from
here without Dagster running.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sommelier_core.errors import MissingStageOutput
from sommelier_core.models import safe_name


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to `path` through a temporary file and a rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> None:
    """Write a polars frame as parquet through a temporary name and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, path)


class ModelStore:
    """Files of each model (`models/<safe id>/`) and the index directory under one root."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

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
        np.save(tmp, outputs)
        os.replace(tmp, path)
        return path

    def load_outputs(self, model_id: str) -> np.ndarray:
        """A model's stored validation outputs; a clear error if the stage has not run for it."""
        path = self.outputs_path(model_id)
        if not path.exists():
            raise MissingStageOutput(f"outputs of {model_id} are not materialized yet (expected {path})")
        return np.load(path)

    def record_path(self, stage: str, model_id: str) -> Path:
        """Where one stage's typed record for one model is kept."""
        return self.model_dir(model_id) / f"{stage}.pkl"

    def save_record(self, stage: str, model_id: str, record: Any) -> None:
        """Keep a stage's typed record for a model (pickled dataclass)."""
        write_atomic(self.record_path(stage, model_id), pickle.dumps(record))

    def load_record(self, stage: str, model_id: str) -> Any:
        """A stage's record for a model; `MissingStageOutput` if that stage has not run for it."""
        path = self.record_path(stage, model_id)
        if not path.exists():
            raise MissingStageOutput(f"stage {stage!r} has not been materialized for {model_id} (expected {path})")
        return pickle.loads(path.read_bytes())

    def has_record(self, stage: str, model_id: str) -> bool:
        """Whether a stage's record exists for a model."""
        return self.record_path(stage, model_id).exists()

    def records(self, stage: str, model_ids: list[str] | None = None) -> dict[str, Any]:
        """All stored records of a stage (optionally only for some models), keyed by model id."""
        if model_ids is None:
            found = {}
            for path in sorted((self.root / "models").glob(f"*/{stage}.pkl")):
                record = pickle.loads(path.read_bytes())
                found[getattr(record, "model_id", path.parent.name)] = record
            return found
        return {m: self.load_record(stage, m) for m in model_ids if self.has_record(stage, m)}

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
