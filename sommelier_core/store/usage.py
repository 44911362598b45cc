"""What a store costs on disk: bytes per area of the store root, per kind of file, and per model.

Areas are the top-level directories of the store root (`models`, `index`, `calibration`, `devices`, `dagster`,
`mlflow`, the built-in `zoo`, …; files directly under the root count as `root`). Inside `models/` and MLflow's
artifacts each file also has a kind — `onnx` (model files), `outputs` (validation outputs), `records` (stage records),
`fetched` (what a repository fetched before conversion), `other` — so the cost of one model is its bytes by kind, and
the ONNX copies MLflow keeps show beside the store's own. A file hard-linked into several places (MLflow's artifact
and the store's `model.onnx` can be one file) takes its bytes once: it counts in the first area that holds it (`models`
first) and in each later one as linked bytes only. Nothing is read but directory entries and sizes (and one small
record per model, for its id).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sommelier_core.store.records import RECORD_SUFFIX

ONNX, OUTPUTS, RECORDS, FETCHED, OTHER = "onnx", "outputs", "records", "fetched", "other"
KINDS = (ONNX, OUTPUTS, RECORDS, FETCHED, OTHER)
"""Kinds of file inside a model's directory and MLflow's artifacts, in the order they are reported."""
ROOT_AREA = "root"
"""The area of files directly under the store root (`store.json`, `tasks.json`)."""
MLFLOW_ARTIFACTS = Path("mlflow") / "artifacts"


@dataclass(frozen=True)
class ModelUsage:
    """One model's directory in the store: its bytes by kind of file."""

    model_id: str
    bytes_by_kind: dict[str, int]

    @property
    def total_bytes(self) -> int:
        """Every byte of the model's directory."""
        return sum(self.bytes_by_kind.values())

    @property
    def bytes_without_onnx(self) -> int:
        """What the model costs beyond its ONNX file (and what was fetched to make it)."""
        return self.total_bytes - self.bytes_by_kind.get(ONNX, 0) - self.bytes_by_kind.get(FETCHED, 0)


@dataclass(frozen=True)
class StoreUsage:
    """A store's bytes on disk: per area of the root, per kind of file, per model, and in all."""

    root: Path
    bytes_by_area: dict[str, int]
    models: tuple[ModelUsage, ...] = ()
    mlflow_bytes_by_kind: dict[str, int] = field(default_factory=dict)
    """MLflow's artifacts by kind (`onnx`: the model files it logged), not counting files linked to the store's."""
    linked_bytes_by_area: dict[str, int] = field(default_factory=dict)
    """Bytes of files in an area that are hard links to files counted in an earlier area (no further disk space)."""

    @property
    def total_bytes(self) -> int:
        """Every byte under the store root."""
        return sum(self.bytes_by_area.values())

    @property
    def model_bytes_by_kind(self) -> dict[str, int]:
        """The models' directories added up, by kind of file."""
        total: Counter[str] = Counter()
        for model in self.models:
            total.update(model.bytes_by_kind)
        return {kind: total[kind] for kind in KINDS if kind in total}

    def bytes_beyond(self, *areas: str) -> int:
        """The store's bytes outside the named areas (e.g. beyond the zoo the store was indexed from)."""
        return self.total_bytes - sum(self.bytes_by_area.get(area, 0) for area in areas)

    def to_data(self) -> dict:
        """The usage as JSON data (what `sommelier store du --json` prints; tooling reads these keys)."""
        return {
            "root": str(self.root),
            "total_bytes": self.total_bytes,
            "bytes_by_area": dict(self.bytes_by_area),
            "model_bytes_by_kind": self.model_bytes_by_kind,
            "mlflow_artifact_bytes_by_kind": dict(self.mlflow_bytes_by_kind),
            "linked_bytes_by_area": dict(self.linked_bytes_by_area),
            "models": [
                {
                    "model_id": m.model_id,
                    "total_bytes": m.total_bytes,
                    "bytes_without_onnx": m.bytes_without_onnx,
                    "bytes_by_kind": dict(m.bytes_by_kind),
                }
                for m in self.models
            ],
        }


def store_usage(root: Path) -> StoreUsage:
    """Walk a store root and add up its bytes per area, per model and kind, and MLflow's artifacts by kind.

    Sizes are apparent sizes (`st_size`) of regular files; symbolic links are not followed (a zoo linked in is not
    counted), and a file with several hard links counts once, in the first area holding it (`models` first). A model's
    own bytes count all its files. A root that does not exist has no bytes.
    """
    root = Path(root)
    areas: Counter[str] = Counter()
    linked: Counter[str] = Counter()
    seen: set[tuple[int, int]] = set()
    if not root.is_dir():
        return StoreUsage(root, {})
    entries = sorted(os.scandir(root), key=lambda e: (e.name != "models", e.name))
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            for path, size in _files(Path(entry.path)):
                if _first_sighting(path, seen):
                    areas[entry.name] += size
                else:
                    linked[entry.name] += size
        elif entry.is_file(follow_symlinks=False):
            areas[ROOT_AREA] += entry.stat(follow_symlinks=False).st_size
    models = []
    models_dir = root / "models"
    if models_dir.is_dir():
        for directory in sorted(p for p in models_dir.iterdir() if p.is_dir() and not p.is_symlink()):
            by_kind: Counter[str] = Counter()
            for path, size in _files(directory):
                by_kind[model_file_kind(path.relative_to(directory))] += size
            models.append(ModelUsage(_model_id(directory), {k: by_kind[k] for k in KINDS if k in by_kind}))
    mlflow: Counter[str] = Counter()
    artifacts = root / MLFLOW_ARTIFACTS
    store_files = {_inode(path) for path in models_dir.glob("*/*") if path.is_file() and not path.is_symlink()}
    if artifacts.is_dir():
        for path, size in _files(artifacts):
            if _inode(path) not in store_files:
                mlflow[ONNX if path.suffix == ".onnx" else OTHER] += size
    return StoreUsage(
        root,
        dict(sorted(areas.items())),
        tuple(models),
        {k: mlflow[k] for k in KINDS if k in mlflow},
        dict(sorted(linked.items())),
    )


def model_file_kind(relative: Path) -> str:
    """The kind of a file inside a model's directory, from its path there."""
    parts = relative.parts
    if parts and parts[0] == "fetched":
        return FETCHED
    if relative.suffix == ".onnx":
        return ONNX
    if (parts and parts[0] == "outputs") or relative.name.startswith("outputs"):
        return OUTPUTS
    if relative.suffix == RECORD_SUFFIX and len(parts) == 1:
        return RECORDS
    return OTHER


def _files(directory: Path):
    """(path, size) of every regular file under a directory, links not followed."""
    for current, _dirs, files in os.walk(directory):
        for name in files:
            path = Path(current) / name
            try:
                info = path.lstat()
            except OSError:
                continue  # removed while walking
            if not path.is_symlink():
                yield path, info.st_size


def _inode(path: Path) -> tuple[int, int]:
    info = path.lstat()
    return info.st_dev, info.st_ino


def _first_sighting(path: Path, seen: set[tuple[int, int]]) -> bool:
    """Whether this is the first of a file's hard links met (a file with one link always is)."""
    info = path.lstat()
    if info.st_nlink < 2:
        return True
    key = (info.st_dev, info.st_ino)
    if key in seen:
        return False
    seen.add(key)
    return True


def _model_id(directory: Path) -> str:
    """A model's id as its records name it (the directory name when none names it)."""
    for record in sorted(directory.glob(f"*{RECORD_SUFFIX}")):
        try:
            model_id = json.loads(record.read_bytes()).get("model_id")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(model_id, str):
            return model_id
    return directory.name


def projected_hub_bytes(
    models: int, samples: int, classes: int, records_bytes_per_model: float, shared_bytes: float = 0.0
) -> float:
    """Bytes a hub of `models` classifiers would take beyond their model files, from what one model costs here:
    its top-1 labels (`compact_outputs.label_dtype` bytes per sample, plus the 128-byte `.npy` header) and its stage
    records (`records_bytes_per_model`, measured on a store), plus what the store shares (`shared_bytes`: index,
    calibration profiles, orchestration)."""
    from sommelier_core.store.compact_outputs import label_dtype

    labels = label_dtype(classes).itemsize * samples + 128
    return models * (labels + records_bytes_per_model) + shared_bytes
