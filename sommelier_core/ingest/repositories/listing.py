"""What the configured repositories list now, and which indexed models they no longer list."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sommelier_core.errors import SommelierError
from sommelier_core.models import ModelEntry


@dataclass(frozen=True)
class Listing:
    """Every model the configured repositories list, and the repositories that could not be listed."""

    entries: list[ModelEntry]
    errors: list[str]
    """One line per repository that could not be listed, naming it and why."""
    failed: frozenset[str]
    """Names of the repositories that could not be listed: their models are neither listed nor removed."""

    def removed(self, indexed: Iterable[str]) -> list[str]:
        """The indexed models no repository lists any more: gone from a repository that listed fine, or from
        one no longer configured. A repository that failed to list keeps its models (it may be back)."""
        listed = {e.model_id for e in self.entries}
        return sorted(m for m in indexed if m not in listed and m.split("/", 1)[0] not in self.failed)


def list_repositories(repositories: Sequence) -> Listing:
    """List every repository; one that cannot be listed is reported without hiding the others' models."""
    entries: list[ModelEntry] = []
    errors: list[str] = []
    failed: set[str] = set()
    for repo in repositories:
        try:
            entries.extend(repo.list_models())
        except SommelierError as exc:
            errors.append(f"{repo.name}: {exc}")
            failed.add(repo.name)
    return Listing(entries, errors, frozenset(failed))
