"""User-registered ranking functions over hits: `register_utility(name, f)` makes `ORDER BY name` rank by f(hit)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sommelier_core.querying.engine import Hit
from sommelier_core.querying.language import METRIC_ALIASES, SIMILARITY


@dataclass(frozen=True)
class Utility:
    """A user-registered ranking function over hits (`ORDER BY <name>`)."""

    name: str
    function: Callable[[Hit], float]
    higher_is_better: bool = True


_UTILITIES: dict[str, Utility] = {}


def register_utility(name: str, function: Callable[[Hit], float], higher_is_better: bool = True) -> None:
    """Make `ORDER BY name` rank hits by `function(hit)` (best first: highest unless told otherwise)."""
    key = name.lower()
    if key == SIMILARITY or key in METRIC_ALIASES:
        raise ValueError(f"{name!r} is a built-in ordering; choose another utility name")
    _UTILITIES[key] = Utility(name, function, higher_is_better)


def unregister_utility(name: str) -> None:
    """Forget a registered utility."""
    _UTILITIES.pop(name.lower(), None)


def registered_utility(name: str) -> Utility:
    """The utility a plan's `utility:NAME` order key refers to (for ranking hits built outside `execute`)."""
    return _UTILITIES[name.lower()]


def find_utility(name: str) -> Utility | None:
    """The utility registered under `name` (any case), or None."""
    return _UTILITIES.get(name.lower())


def registered_names() -> list[str]:
    """The registered utilities' names (lower case), sorted."""
    return sorted(_UTILITIES)
