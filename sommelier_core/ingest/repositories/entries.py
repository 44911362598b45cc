"""Turning a repository's per-model metadata into `ModelEntry` records, and content versions.

Every connector reads the same flat metadata (`sommelier.json` next to the models, keyed by model
name, as the built-in zoo writes it; or the same mapping given in configuration) and builds
entries here, so the three connectors agree on what a field means.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sommelier_core.errors import RepositoryError
from sommelier_core.models import Framework, ModelEntry, Task, model_id_for

METADATA_FILE = "sommelier.json"
VERSION_HEX_CHARS = 12
_CHUNK_BYTES = 1 << 20
# Keys with a field of their own on ModelEntry, or too long to repeat as text (labels).
_NOT_REPEATED_IN_METADATA = frozenset({"labels"})
_TASK_ALIASES: dict[str, Task] = {"regression": "regression", "embedding": "regression", "embeddings": "regression"}


def read_metadata_file(directory: Path) -> dict[str, dict[str, Any]]:
    """`{model name: metadata}` from `directory/sommelier.json`, or `{}` when there is none."""
    path = Path(directory) / METADATA_FILE
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RepositoryError(
            f"{path}: expected a JSON object {{model name: metadata}}, cannot read it: {exc}"
        ) from exc
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise RepositoryError(f"{path}: expected a JSON object {{model name: {{key: value}}}}")
    return raw


def merged_metadata(*sources: Mapping[str, Mapping[str, Any]] | None, name: str) -> dict[str, Any]:
    """The metadata of model `name` from several `{name: metadata}` sources; later sources win."""
    merged: dict[str, Any] = {}
    for source in sources:
        if source and name in source:
            merged.update(source[name])
    return merged


def make_entry(
    repository: str,
    name: str,
    framework: Framework,
    metadata: Mapping[str, Any],
    *,
    version: str,
    task: str | None = None,
    input_shape: Sequence[int] | None = None,
    input_dtype: str = "float32",
) -> ModelEntry:
    """A `ModelEntry`; values in `metadata` (task, input_shape, input_dtype, labels, version) win.

    The remaining metadata is kept as sorted `(key, text)` pairs; `None` values are dropped and
    lists or mappings are written as JSON so they read back unambiguously.
    """
    shape = metadata.get("input_shape", input_shape)
    labels = metadata.get("labels")
    return ModelEntry(
        model_id=model_id_for(repository, name),
        repository=repository,
        name=name,
        version=str(metadata.get("version") or version),
        framework=framework,
        task=normalize_task(metadata.get("task", task), repository, name),
        input_shape=_shape_tuple(shape, repository, name),
        input_dtype=str(metadata.get("input_dtype", input_dtype)),
        labels=tuple(str(label) for label in labels) if labels is not None else None,
        metadata=metadata_pairs(metadata),
    )


def metadata_pairs(metadata: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """Sorted `(key, text)` pairs of a flat metadata mapping (see `make_entry`)."""
    pairs = []
    for key, value in metadata.items():
        if value is None or key in _NOT_REPEATED_IN_METADATA:
            continue
        text = json.dumps(value, sort_keys=True) if isinstance(value, list | tuple | dict) else str(value)
        pairs.append((str(key), text))
    return tuple(sorted(pairs))


def normalize_task(task: object, repository: str, name: str) -> Task:
    """`classification` or `regression` from a declared task; hub spellings such as
    `image-classification` or `embedding` are accepted. Undeclared tasks default to classification,
    the task of nearly every published vision model."""
    if task is None:
        return "classification"
    text = str(task).strip().lower()
    if "classif" in text:
        return "classification"
    if text in _TASK_ALIASES:
        return _TASK_ALIASES[text]
    raise RepositoryError(
        f"{model_id_for(repository, name)}: unknown task {task!r}; expected 'classification' or 'regression'"
    )


def short_sha256(parts: Iterable[bytes | Path]) -> str:
    """The first hex digits of a sha256 over byte strings and files (files streamed, in order)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            with part.open("rb") as handle:
                while chunk := handle.read(_CHUNK_BYTES):
                    digest.update(chunk)
        else:
            digest.update(part)
    return digest.hexdigest()[:VERSION_HEX_CHARS]


def tree_version(directory: Path) -> str:
    """A content version of a directory: sha256 over its files' relative paths and bytes."""
    parts: list[bytes | Path] = []
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        parts += [str(path.relative_to(directory)).encode(), path]
    return short_sha256(parts)


def _shape_tuple(shape: object, repository: str, name: str) -> tuple[int, ...] | None:
    if shape is None:
        return None
    try:
        return tuple(int(d) for d in shape)  # type: ignore[union-attr]
    except (TypeError, ValueError) as exc:
        raise RepositoryError(
            f"{model_id_for(repository, name)}: input_shape must be a list of integers "
            f"(batch dimension excluded), got {shape!r}"
        ) from exc
