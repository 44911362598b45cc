"""Which model repositories are indexed, as Dagster configuration.

`RepositoriesResource()` with no repositories reads the project configuration (`sommelier.yaml` at the store
root, or `$SOMMELIER_CONFIG`), so `sommelier index`, the sensor, the schedule and the launchpad all index what
`sommelier repo add` configured; with none configured there either, the built-in zoo. Repositories given
here in code win over the file (tests and drivers use that).
"""

from __future__ import annotations

from dagster import Config, ConfigurableResource

from sommelier_core.errors import UnknownModel
from sommelier_core.ingest.project_config import load_project_config
from sommelier_core.ingest.repositories import Repository, repository_from_config
from sommelier_core.ingest.repositories.listing import Listing, list_repositories
from sommelier_core.models import ModelEntry
from sommelier_core.settings import zoo_dir


class RepositoryConfig(Config):
    """One repository: `kind` is `torchhub`, `tfhub`, `onnx` or `mlflow`; `location` a dir, GitHub ref, handles,
    folder or tracking URI; `trusted` lets models that run code when loaded be indexed (hubconf, pickles,
    SavedModels — see `sommelier_core.ingest.repositories.trust`)."""

    kind: str
    name: str
    location: list[str]
    trusted: bool = False


def builtin_zoo_repositories() -> list[RepositoryConfig]:
    """The embedded default: the built-in zoo's Torch Hub dir and TF-Hub SavedModel dir. Trusted: Sommelier
    generated its code and weights itself (`sommelier zoo build`)."""
    root = zoo_dir()
    return [
        RepositoryConfig(kind="torchhub", name="zoo-torch", location=[str(root / "torchhub")], trusted=True),
        RepositoryConfig(kind="tfhub", name="zoo-tf", location=[str(root / "tfhub")], trusted=True),
    ]


class RepositoriesResource(ConfigurableResource):
    """The repositories to index (empty = the project configuration's, else the built-in zoo)."""

    repositories: list[RepositoryConfig] = []

    def connectors(self) -> list[Repository]:
        """A connector per repository: those configured here, else the project configuration's, else the zoo."""
        if not self.repositories:
            project = load_project_config()
            if project.repositories:
                return project.connectors()
        configs = self.repositories or builtin_zoo_repositories()
        return [
            repository_from_config(
                c.kind, c.name, c.location[0] if len(c.location) == 1 else c.location, trusted=c.trusted
            )
            for c in configs
        ]

    def list_models(self) -> Listing:
        """Every listed model, an error line per repository that could not be listed, and those repositories.

        One unreachable repository does not hide the models of the others; callers report the errors.
        """
        return list_repositories(self.connectors())

    def find(self, model_id: str) -> tuple[Repository, ModelEntry]:
        """The repository and entry of a model id."""
        repository_name = model_id.split("/", 1)[0]
        for repo in self.connectors():
            if repo.name == repository_name:
                find = getattr(repo, "find", None)  # one model's entry without listing them all, where it can
                entry = (
                    find(model_id)
                    if find is not None
                    else next((e for e in repo.list_models() if e.model_id == model_id), None)
                )
                if entry is not None:
                    return repo, entry
                raise UnknownModel(f"repository {repository_name} does not list {model_id}")
        raise UnknownModel(f"{model_id}: no configured repository named {repository_name!r}")
