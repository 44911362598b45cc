"""Default reference model per task, for `FOR TASK <name>` queries (design §6).

A small registry rather than names inside the parser: the built-in entries cover the built-in zoo,
`<store>/tasks.json` (a JSON object `{"task": "model id"}`) overrides or extends them per store, and
`TaskRegistry.register` does the same from Python.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from sommelier_core.errors import SommelierError
from sommelier_core.settings import store_root

TASKS_FILE = "tasks.json"

# The built-in zoo: digits (8×8 images, 10 classes) and the mnist1d signals.
BUILTIN_TASK_REFERENCES: dict[str, str] = {
    "image-classification": "zoo-torch/cnn_w32",
    "digits-classification": "zoo-torch/cnn_w32",
    "signal-classification": "zoo-torch/cnn1d_w32",
}


class UnknownTask(SommelierError):
    """A task with no default reference model registered."""


class TaskRegistry:
    """Task name → default reference model id (names are case-insensitive)."""

    def __init__(self, references: Mapping[str, str] | None = None) -> None:
        self._references = {k.lower(): v for k, v in (references or BUILTIN_TASK_REFERENCES).items()}

    def register(self, task: str, model_id: str) -> None:
        """Make `model_id` the default reference of `task` (replacing any earlier one)."""
        self._references[task.lower()] = model_id

    def resolve(self, task: str) -> str:
        """The default reference of `task`; a clear error naming the registered tasks otherwise."""
        found = self._references.get(task.lower())
        if found is None:
            known = ", ".join(sorted(self._references)) or "none"
            raise UnknownTask(
                f"task {task!r} has no default reference model; registered tasks: {known} "
                f"(add one in {TASKS_FILE} under the store root)"
            )
        return found

    def as_dict(self) -> dict[str, str]:
        """The current mapping."""
        return dict(self._references)


def load_task_registry(root: Path | None = None) -> TaskRegistry:
    """The built-in defaults, overridden by `<store>/tasks.json` when that file exists."""
    registry = TaskRegistry()
    path = (root or store_root()) / TASKS_FILE
    if path.exists():
        try:
            entries = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise SommelierError(f'{path}: not valid JSON ({exc}); expected {{"task": "model id"}}') from None
        if not isinstance(entries, dict) or not all(isinstance(v, str) for v in entries.values()):
            raise SommelierError(f"{path}: expected a JSON object mapping task names to model ids")
        for task, model_id in entries.items():
            registry.register(task, model_id)
    return registry
