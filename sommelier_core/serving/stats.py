"""The service's view of its recent past: arrival rate, latency percentiles, service time per model."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np


class RecentRequests:
    """Arrivals and completions over the last `window_s` seconds (thread-safe).

    Latency is arrival to completion inside the service (queueing + inference); service time is
    the inference alone, kept per model as an exponentially weighted mean (weight `alpha`).
    """

    def __init__(self, window_s: float = 1.0, alpha: float = 0.2) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self.window_s = window_s
        self.alpha = alpha
        self._arrivals: deque[float] = deque()
        self._done: deque[tuple[float, float]] = deque()
        self._service_ms: dict[str, float] = {}
        self._lock = threading.Lock()

    def arrived(self, now: float) -> None:
        """Count one arrival at time `now` (seconds, monotonic)."""
        with self._lock:
            self._arrivals.append(now)
            self._trim(now)

    def completed(self, now: float, latency_ms: float, model_id: str, service_ms: float) -> None:
        """Record one completion: its latency and the model's service time."""
        with self._lock:
            self._done.append((now, latency_ms))
            previous = self._service_ms.get(model_id)
            self._service_ms[model_id] = (
                service_ms if previous is None else (1 - self.alpha) * previous + self.alpha * service_ms
            )
            self._trim(now)

    def arrival_rate(self, now: float) -> float:
        """Arrivals per second over the window."""
        with self._lock:
            self._trim(now)
            return len(self._arrivals) / self.window_s

    def latency_percentile(self, q: float, now: float) -> float | None:
        """The q-th percentile (0–100) of the latencies completed in the window, or None if none completed."""
        with self._lock:
            self._trim(now)
            if not self._done:
                return None
            return float(np.percentile([latency for _, latency in self._done], q))

    def service_ms(self, model_id: str) -> float | None:
        """The model's recent mean service time, or None if it has served nothing yet."""
        with self._lock:
            return self._service_ms.get(model_id)

    def _trim(self, now: float) -> None:
        horizon = now - self.window_s
        while self._arrivals and self._arrivals[0] < horizon:
            self._arrivals.popleft()
        while self._done and self._done[0][0] < horizon:
            self._done.popleft()
