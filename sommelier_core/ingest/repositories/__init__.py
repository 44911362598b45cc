"""Repositories of models behind one interface: list what is there, fetch one to local files.

Connectors: Torch Hub (local directory or GitHub), TF-Hub (handles or local SavedModels), folders
of ONNX files and MLflow Model Registries. `repository_from_config` builds one from plain data, so the
set of repositories an installation indexes is configuration (`sommelier.yaml`, see
`ingest.project_config`), not code. Frameworks are imported only when a connector needs them. Models
that run code when loaded are fetched only from trusted repositories (`trust`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sommelier_core.errors import RepositoryError
from sommelier_core.ingest.repositories.entries import METADATA_FILE
from sommelier_core.ingest.repositories.mlflow_registry import MlflowRegistryRepository
from sommelier_core.ingest.repositories.onnx_folder import OnnxFolderRepository
from sommelier_core.ingest.repositories.tfhub import TFHubRepository
from sommelier_core.ingest.repositories.torchhub import TorchHubRepository
from sommelier_core.ingest.repositories.trust import OutsideRepository, UntrustedRepository
from sommelier_core.models import FetchedModel, ModelEntry

__all__ = [
    "METADATA_FILE",
    "REPOSITORY_KINDS",
    "MlflowRegistryRepository",
    "OnnxFolderRepository",
    "OutsideRepository",
    "Repository",
    "TFHubRepository",
    "TorchHubRepository",
    "UntrustedRepository",
    "repository_from_config",
]


@runtime_checkable
class Repository(Protocol):
    """A source of models: `list_models` says what is there, `fetch` makes one local (refusing, when the
    repository is not `trusted`, a model whose loading runs code)."""

    name: str
    trusted: bool

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
    "mlflow": MlflowRegistryRepository,
}


def repository_from_config(
    kind: str, name: str, location: str | list[str], *, trusted: bool = False, **options: Any
) -> Repository:
    """A repository of `kind` ("torchhub", "tfhub", "onnx" or "mlflow") called `name` at `location`.

    `location` is a Torch Hub directory or `owner/repo[:ref]`, TF-Hub handles or SavedModel
    directories, an ONNX folder, or an MLflow tracking URI; `options` are the connector's keyword
    arguments (`input_shapes`, `metadata`, `entries`, `timeout_s`, `filter`). `trusted` lets models
    that run code when loaded be fetched (`trust`).
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
        return REPOSITORY_KINDS[kind](name, location, trusted=trusted, **options)
    except TypeError as exc:
        raise RepositoryError(f"repository {name!r} of kind {kind!r}: bad configuration options: {exc}") from exc
