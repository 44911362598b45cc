"""ONNX Runtime sessions of the models the service may serve, kept within a memory budget.

Loading happens off the request path (the policy's thread): a session is created and run once
before anyone is handed it. Sessions stay loaded while the budget allows, so switching back to a
model seen before is an assignment; the least recently chosen idle ones are dropped to make room.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from sommelier_core.inference import open_session
from sommelier_core.serving.selection import ModelChoice


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to serve: its session, input name and the shape of one sample."""

    choice: ModelChoice
    session: ort.InferenceSession
    input_name: str
    sample_shape: tuple[int, ...]
    warmup_ms: float
    """Median time of a few warm-up runs at batch size 1 (the service calibrates index latencies with it)."""

    @property
    def model_id(self) -> str:
        """The served model's id."""
        return self.choice.model_id

    def run(self, x: np.ndarray) -> np.ndarray:
        """The model's first output on a batch."""
        return self.session.run(None, {self.input_name: x})[0]


def load_model(choice: ModelChoice, device: str = "cpu", threads: int = 1, warmup_runs: int = 5) -> LoadedModel:
    """Open a session on the model's ONNX file and time a few runs on zeros of its input shape."""
    session = open_session(choice.onnx_path, device, threads)
    spec = session.get_inputs()[0]
    sample_shape = tuple(int(d) if isinstance(d, int) and d > 0 else 1 for d in spec.shape[1:])
    x = np.zeros((1, *sample_shape), dtype=np.float32)
    times = []
    for _ in range(max(1, warmup_runs)):
        started = time.perf_counter()
        session.run(None, {spec.name: x})
        times.append((time.perf_counter() - started) * 1000)
    return LoadedModel(choice, session, spec.name, sample_shape, float(np.median(times)))


class SessionPool:
    """Loaded models by id; at most `memory_budget_bytes` of indexed memory (None: unbounded)."""

    def __init__(self, memory_budget_bytes: int | None = None, device: str = "cpu", threads: int = 1) -> None:
        self.memory_budget_bytes = memory_budget_bytes
        self.device = device
        self.threads = threads
        self._loaded: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, choice: ModelChoice, pinned: tuple[str, ...] = ()) -> LoadedModel:
        """The model loaded (loading it now if needed), after dropping idle models the budget cannot hold.

        `pinned` models (the one serving now) are never dropped.
        """
        with self._lock:
            loaded = self._loaded.get(choice.model_id)
            if loaded is not None:
                self._loaded.move_to_end(choice.model_id)
                return loaded
        loaded = load_model(choice, self.device, self.threads)
        with self._lock:
            self._loaded[choice.model_id] = loaded
            self._make_room(keep=(*pinned, choice.model_id))
        return loaded

    def resident_bytes(self, model_ids: tuple[str, ...] | None = None) -> int:
        """Indexed memory of the loaded models (of `model_ids` only, when given)."""
        with self._lock:
            return sum(m.choice.memory_bytes for k, m in self._loaded.items() if model_ids is None or k in model_ids)

    def loaded_ids(self) -> list[str]:
        """Ids of the loaded models, least recently chosen first."""
        with self._lock:
            return list(self._loaded)

    def trim(self, keep: tuple[str, ...]) -> None:
        """Drop idle models, least recently chosen first, until the loaded ones fit the budget."""
        with self._lock:
            self._make_room(keep)

    def _make_room(self, keep: tuple[str, ...]) -> None:
        if self.memory_budget_bytes is None:
            return
        for model_id in list(self._loaded):
            total = sum(m.choice.memory_bytes for m in self._loaded.values())
            if total <= self.memory_budget_bytes:
                return
            if model_id not in keep:
                del self._loaded[model_id]
