"""The inference service: one request queue, worker threads, and a policy loop that switches models.

Switching never drops a request: the policy's thread loads the new model's session (and runs it
once) while the workers go on with the old one, then replaces the active model in one assignment.
A worker reads the active model when it takes a request, so requests already running finish on the
old session; later ones run on the new. Workers are the replicas: each runs one request at a time
on `threads` intra-op threads (ONNX Runtime releases the GIL while it runs).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future
from dataclasses import asdict, dataclass

import numpy as np

from sommelier_core.errors import SommelierError
from sommelier_core.serving.policy import Conditions, Decision, PolicyConfig, SwitchingPolicy
from sommelier_core.serving.selection import ModelChoice, ModelSelector
from sommelier_core.serving.sessions import LoadedModel, SessionPool
from sommelier_core.serving.stats import RecentRequests

logger = logging.getLogger("sommelier.serving")


class BadInput(SommelierError):
    """A request whose inputs the served model cannot take."""


@dataclass(frozen=True)
class ServiceConfig:
    """How the service runs."""

    switching: bool = True
    """Ask the policy for a model as conditions change (False: serve the configured model only)."""
    workers: int = 1
    """Replicas taking requests from the one queue."""
    threads: int = 1
    """Intra-op threads of each worker's inference."""
    device: str = "cpu"
    tick_s: float = 0.05
    """How often the policy looks at the conditions."""
    window_s: float = 1.0
    """The recent window of arrival rate and latency percentiles."""
    history: int = 500
    """Switches kept for `status()`."""

    def __post_init__(self) -> None:
        if self.workers < 1 or self.threads < 1:
            raise ValueError(f"workers and threads must be ≥ 1, got {self.workers} and {self.threads}")


@dataclass(frozen=True)
class Prediction:
    """One answered request: the model that served it, its outputs, and where the time went."""

    model_id: str
    outputs: np.ndarray
    queued_ms: float
    service_ms: float


@dataclass(frozen=True)
class SwitchEvent:
    """One switch, as logged and reported by `status()`."""

    at_s: float
    """Seconds since the service started."""
    from_model: str
    to_model: str
    reason: str
    query: str
    load_ms: float
    """Time to have the new session ready (0 when it was still loaded)."""


class InferenceService:
    """Serves the model like `selector.reference_id` that fits the current conditions (see the module doc)."""

    def __init__(
        self,
        selector: ModelSelector,
        policy: PolicyConfig | None = None,
        config: ServiceConfig | None = None,
    ) -> None:
        self.selector = selector
        self.config = config or ServiceConfig()
        self.policy = SwitchingPolicy(selector, policy or PolicyConfig())
        self.pool = SessionPool(self.policy.config.memory_budget_bytes, self.config.device, self.config.threads)
        self.recent = RecentRequests(self.config.window_s)
        self.served: Counter[str] = Counter()
        self.switches: deque[SwitchEvent] = deque(maxlen=self.config.history)
        self.switch_count = 0
        self.reason = "configured model"
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._active: LoadedModel | None = None
        self._in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = 0.0

    # -- life cycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Load the configured model, calibrate index latencies with it, start the workers and the policy."""
        self._started = time.monotonic()
        self._active = self.pool.get(self.selector.reference)
        if self.policy.config.latency_scale is not None:
            self.policy.scale = self.policy.config.latency_scale
        elif self.selector.reference.latency_ms > 0:
            self.policy.scale = self._active.warmup_ms / self.selector.reference.latency_ms
        for i in range(self.config.workers):
            self._spawn(self._work, f"sommelier-worker-{i}")
        if self.config.switching:
            self._spawn(self._watch, "sommelier-policy")
        logger.info(
            "serving %s (%s); switching %s; %.3f ms per request here vs %.3f ms in the index",
            self.active_model_id,
            self.config.device,
            "on" if self.config.switching else "off",
            self._active.warmup_ms,
            self.selector.reference.latency_ms,
        )

    def stop(self) -> None:
        """Finish the queued requests, then stop the workers and the policy."""
        self._stopping.set()
        for _ in range(self.config.workers):
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def _spawn(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- requests ---------------------------------------------------------------------------------------

    @property
    def active_model_id(self) -> str:
        """The model new requests run on."""
        if self._active is None:
            raise RuntimeError("the service has not started")
        return self._active.model_id

    def submit(self, inputs: object) -> Future[Prediction]:
        """Queue one request (one sample, or a batch with the batch dimension first); its future answer."""
        active = self._active
        if active is None or self._stopping.is_set():
            raise RuntimeError("the service is not running")
        x = self._as_batch(inputs, active)
        future: Future[Prediction] = Future()
        now = time.monotonic()
        self.recent.arrived(now)
        self._queue.put((x, future, now))
        return future

    def _as_batch(self, inputs: object, active: LoadedModel) -> np.ndarray:
        try:
            x = np.asarray(inputs, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise BadInput(f"inputs are not an array of numbers: {exc}") from exc
        shape = active.sample_shape
        if x.shape == shape:
            return x[None]
        if x.ndim == len(shape) + 1 and x.shape[1:] == shape and len(x) > 0:
            return x
        raise BadInput(
            f"inputs of shape {tuple(x.shape)} do not fit {active.model_id}: expected one sample of shape "
            f"{shape} or a batch of shape (N, {', '.join(map(str, shape))})"
        )

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            x, future, arrived = item
            if not future.set_running_or_notify_cancel():
                continue
            model = self._active  # read once: a swap during this request does not touch it
            assert model is not None
            with self._lock:
                self._in_flight += 1
            started = time.monotonic()
            try:
                outputs = model.run(x)
            except Exception as exc:  # an ONNX Runtime failure answers this request, not the service
                future.set_exception(exc)
                continue
            finally:
                with self._lock:
                    self._in_flight -= 1
            done = time.monotonic()
            service_ms = (done - started) * 1000
            self.recent.completed(done, (done - arrived) * 1000, model.model_id, service_ms)
            with self._lock:
                self.served[model.model_id] += 1
            future.set_result(Prediction(model.model_id, outputs, (started - arrived) * 1000, service_ms))

    # -- switching --------------------------------------------------------------------------------------

    def conditions(self, now: float | None = None) -> Conditions:
        """What the policy sees now."""
        now = time.monotonic() if now is None else now
        return Conditions(
            now=now,
            queue_length=self._queue.qsize(),
            workers=self.config.workers,
            arrivals_per_s=self.recent.arrival_rate(now),
            p90_ms=self.recent.latency_percentile(90, now),
            service_ms=self.recent.service_ms(self.active_model_id),
        )

    def _watch(self) -> None:
        while not self._stopping.wait(self.config.tick_s):
            try:
                self.step()
            except Exception:  # a failed query or load must not stop serving: keep the model, say why
                logger.exception("switching policy failed; keeping %s", self.active_model_id)

    def step(self, now: float | None = None) -> Decision | None:
        """Look at the conditions once and switch if the policy says so; the decision taken, if any."""
        active = self._active
        assert active is not None
        budget = self.policy.config.memory_budget_bytes
        free = None if budget is None else budget - active.choice.memory_bytes
        decision = self.policy.decide(active.choice, self.conditions(now), free)
        if decision is not None:
            self.switch_to(decision.choice, decision.reason, decision.query)
        return decision

    def switch_to(self, choice: ModelChoice, reason: str, query: str = "") -> None:
        """Load `choice` beside the active model, then make it the active one (requests running finish as they were)."""
        previous = self._active
        assert previous is not None
        started = time.monotonic()
        was_loaded = choice.model_id in self.pool.loaded_ids()
        loaded = self.pool.get(choice, pinned=(previous.model_id,))
        self._active = loaded  # the swap: one reference assignment, atomic for the workers
        self.pool.trim(keep=(choice.model_id,))  # a dropped session lives on until its running requests end
        event = SwitchEvent(
            at_s=round(started - self._started, 3),
            from_model=previous.model_id,
            to_model=choice.model_id,
            reason=reason,
            query=query,
            load_ms=0.0 if was_loaded else round((time.monotonic() - started) * 1000, 2),
        )
        with self._lock:
            self.switches.append(event)
            self.switch_count += 1
            self.reason = reason
        logger.info("switch %s → %s: %s%s", previous.model_id, choice.model_id, reason, f" [{query}]" if query else "")

    # -- reporting --------------------------------------------------------------------------------------

    def status(self) -> dict:
        """The served model and why, the conditions, the switches, and requests served per model (JSON-ready)."""
        now = time.monotonic()
        conditions = self.conditions(now)
        p50 = self.recent.latency_percentile(50, now)
        active = self._active
        assert active is not None
        with self._lock:
            served = dict(self.served)
            switches = [asdict(s) for s in self.switches]
            switch_count, reason, in_flight = self.switch_count, self.reason, self._in_flight
        return {
            "model": active.model_id,
            "reason": reason,
            "configured_model": self.selector.reference_id,
            "upper_bound": active.choice.upper_bound,
            "switching": self.config.switching,
            "workers": self.config.workers,
            "uptime_s": round(now - self._started, 3),
            "queue_length": conditions.queue_length,
            "in_flight": in_flight,
            "arrivals_per_s": conditions.arrivals_per_s,
            "latency_p50_ms": p50,
            "latency_p90_ms": conditions.p90_ms,
            "service_ms": conditions.service_ms,
            "latency_scale": self.policy.scale,
            "loaded_models": self.pool.loaded_ids(),
            "resident_bytes": self.pool.resident_bytes(),
            "memory_budget_bytes": self.policy.config.memory_budget_bytes,
            "within": self.policy.config.within,
            "slo_ms": self.policy.config.slo_ms,
            "served": served,
            "switch_count": switch_count,
            "switches": switches,
        }
