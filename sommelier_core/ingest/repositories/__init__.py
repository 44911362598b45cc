"""Repositories of models behind one interface: list what is there, fetch one to local files.

Connectors: Torch Hub (local directory or GitHub), TF-Hub (handles or local SavedModels) and
folders of ONNX files. `repository_from_config` builds one from plain data, so the set of
repositories an installation indexes is configuration, not code. Frameworks are imported only
when a connector needs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sommelier_core.errors import RepositoryError
from sommelier_core.ingest.repositories.entries import METADATA_FILE
from sommelier_core.ingest.repositories.onnx_folder import OnnxFolderRepository
from sommelier_core.ingest.repositories.tfhub import TFHubRepository
from sommelier_core.ingest.repositories.torchhub import TorchHubRepository
from sommelier_core.models import FetchedModel, ModelEntry

__all__ = [
    "METADATA_FILE",
    "REPOSITORY_KINDS",
    "OnnxFolderRepository",
    "Repository",
    "TFHubRepository",
    "TorchHubRepository",
    "repository_from_config",
]


@runtime_checkable
class Repository(Protocol):
    """A source of models: `list_models` says what is there, `fetch` makes one local."""

    name: str

    def list_models(self) -> list[ModelEntry]:
        """Every model the repository holds, with version and metadata, sorted by name."""
        ...

    def fetch(self, entry: ModelEntry, dest_dir: Path) -> FetchedModel:
        """Local files for `entry`, loadable in its own framework."""
        ...


REPOSITORY_KINDS: dict[str, type] = {
    "torchhub": TorchHubRepository,
    "tfhub": TFHubRepository,
    "onnx": OnnxFolderRepository,
}


def repository_from_config(kind: str, name: str, location: str | list[str], **options: Any) -> Repository:
    """A repository of `kind` ("torchhub", "tfhub" or "onnx") called `name` at `location`.

    `location` is a Torch Hub directory or `owner/repo[:ref]`, TF-Hub handles or SavedModel
    directories, or an ONNX folder; `options` are the connector's keyword arguments
    (`input_shapes`, `metadata`, `entries`, `timeout_s`).
    """
    if kind not in REPOSITORY_KINDS:
        raise RepositoryError(
            f"repository {name!r}: unknown kind {kind!r}; expected one of {', '.join(REPOSITORY_KINDS)}"
        )
    if kind != "tfhub" and isinstance(location, list | tuple) and len(location) == 1:
        location = location[0]
    if kind != "tfhub" and not isinstance(location, str | Path):
        raise RepositoryError(f"repository {name!r}: kind {kind!r} takes one location, got {location!r}")
    try:
        return REPOSITORY_KINDS[kind](name, location, **options)
    except TypeError as exc:
        raise RepositoryError(f"repository {name!r} of kind {kind!r}: bad configuration options: {exc}") from exc
