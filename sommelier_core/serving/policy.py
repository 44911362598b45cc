"""When to switch models, and to which: the service's conditions turned into a query (paper §6, Fig. 8).

A model can serve the load when it keeps up with arrivals and answers within the latency target:

- *keeps up*: arrivals × its service time ≤ `max_utilization` × workers (a queue served at a
  utilisation near 1 grows without bound under bursts);
- *answers in time*: (requests ahead of a new arrival per worker + 1) × its service time ≤ `slo_ms`.

That gives a per-request service-time budget. The policy asks Sommelier for the most similar model
within it: the configured model itself when it fits, else `FIND 1 MODEL LIKE ref WITHIN ε WHERE
latency@device <= budget AND memory <= free memory ORDER BY similarity`, with ε stepping up to the
configured accuracy budget (the smallest accuracy cost that fits the conditions), and, when nothing
fits, the fastest model within that budget. It moves to a cheaper model as soon as the current one
does not fit, and back toward the configured one only after `cooldown_s` with the recent p90 latency
under `headroom` × `slo_ms` and the better model fitting within the same headroom. A move back undone
within twice the cooldown (the load came back: bursts) doubles the cooldown, up to `max_cooldown_s`; a
move down after a longer calm resets it — exponential backoff, so a bursty load does not make the server
flap between models at the bursts' rhythm.

Index latencies are measured at batch size 1 with ONNX Runtime's own threading; the configured model's
service time on this server calibrates them (`scale`), so budgets are in the index's terms. Candidates are
compared with each other, and with the current model, by their index latencies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sommelier_core.serving.selection import ModelChoice, ModelSelector


@dataclass(frozen=True)
class PolicyConfig:
    """Targets and limits of the switching policy."""

    within: float = 0.05
    """Largest accuracy budget: the upper bound on a served model's difference from the configured one."""
    slo_ms: float = 50.0
    """Latency target for one request, queueing included."""
    memory_budget_bytes: int | None = None
    """Memory the served models may take (ONNX weights + peak activations, as indexed); None: unlimited."""
    within_steps: Sequence[float] = (0.25, 0.5, 1.0)
    """Fractions of `within` tried in turn: the first that holds a model fitting the conditions wins."""
    max_utilization: float = 0.7
    """Highest arrivals × service time per worker a model is chosen for."""
    headroom: float = 0.5
    """Switch back toward the configured model only when it would use at most this share of the targets."""
    cooldown_s: float = 1.0
    """Least time between a switch and a switch back toward the configured model (when loads do not oscillate)."""
    max_cooldown_s: float = 16.0
    """Longest that wait grows to when moves back keep being undone (bursts closer together than the wait)."""
    latency_scale: float | None = None
    """This server's service time ÷ the index's latency; None: measured on the configured model when it loads."""

    def __post_init__(self) -> None:
        if not 0 < self.within <= 1:
            raise ValueError(f"within must be a fraction in (0, 1], got {self.within}")
        if self.slo_ms <= 0:
            raise ValueError(f"slo_ms must be positive, got {self.slo_ms}")
        if not 0 < self.max_utilization <= 1 or not 0 < self.headroom <= 1:
            raise ValueError("max_utilization and headroom must be fractions in (0, 1]")


@dataclass(frozen=True)
class Conditions:
    """What the service sees at one moment."""

    now: float
    queue_length: int
    workers: int
    arrivals_per_s: float
    p90_ms: float | None
    """p90 latency (queueing + inference) of the requests completed in the recent window."""
    service_ms: float | None
    """The current model's recent mean service time (None before it served anything)."""


@dataclass(frozen=True)
class Decision:
    """Serve `choice`, for `reason`; `query` is the question Sommelier answered (empty for the configured model)."""

    choice: ModelChoice
    reason: str
    query: str


class SwitchingPolicy:
    """Chooses the model to serve from the service's conditions, asking `selector` (see the module doc)."""

    def __init__(self, selector: ModelSelector, config: PolicyConfig, scale: float = 1.0) -> None:
        self.selector = selector
        self.config = config
        self.scale = scale
        """Served service time ÷ index latency (set by the service from the configured model's warm-up)."""
        self.last_switch = float("-inf")
        self.last_move_back = float("-inf")
        self.cooldown_s = config.cooldown_s
        """The wait before moving back now: doubled each time a move back is undone within twice the wait."""

    def service_budget_ms(self, conditions: Conditions, headroom: float = 1.0) -> float:
        """The service time one request may take for the queue to keep up and answer within the target."""
        ahead = conditions.queue_length / conditions.workers + 1
        budget = headroom * self.config.slo_ms / ahead
        if conditions.arrivals_per_s > 0:
            keeps_up_ms = self.config.max_utilization * conditions.workers * 1000 / conditions.arrivals_per_s
            budget = min(budget, headroom * keeps_up_ms)
        return budget

    def predicted_ms(self, choice: ModelChoice) -> float:
        """A model's expected service time on this server, from the index."""
        return choice.latency_ms * self.scale

    def decide(self, current: ModelChoice, conditions: Conditions, free_memory_bytes: int | None) -> Decision | None:
        """The model to switch to now, or None to keep `current`.

        `free_memory_bytes` is what a newly loaded model may take (the budget less the models that
        must stay resident while requests drain), None when unlimited.
        """
        service = conditions.service_ms if conditions.service_ms is not None else self.predicted_ms(current)
        budget = self.service_budget_ms(conditions)
        p90 = conditions.p90_ms
        over = service > budget or (p90 is not None and p90 > self.config.slo_ms)
        if over:
            decision = self._fitting(budget, free_memory_bytes, conditions, "over")
            if decision.choice.model_id != current.model_id and decision.choice.latency_ms < current.latency_ms:
                undone_soon = conditions.now - self.last_move_back < 2 * self.cooldown_s
                self.cooldown_s = (
                    min(2 * self.cooldown_s, self.config.max_cooldown_s) if undone_soon else self.config.cooldown_s
                )
                return self._switched(decision, conditions)
            return None
        if current.model_id == self.selector.reference_id:
            return None
        calm = p90 is None or p90 <= self.config.headroom * self.config.slo_ms
        if not calm or conditions.now - self.last_switch < self.cooldown_s:
            return None
        decision = self._fitting(
            self.service_budget_ms(conditions, self.config.headroom), free_memory_bytes, conditions, "under"
        )
        if decision.choice.upper_bound < current.upper_bound:
            self.last_move_back = conditions.now
            return self._switched(decision, conditions)
        return None

    def _switched(self, decision: Decision, conditions: Conditions) -> Decision:
        self.last_switch = conditions.now
        return decision

    def _fitting(self, budget_ms: float, free_memory: int | None, conditions: Conditions, side: str) -> Decision:
        """The most similar model whose predicted service time fits `budget_ms`, else the fastest one."""
        p90 = "n/a" if conditions.p90_ms is None else f"{conditions.p90_ms:.1f} ms"
        state = (
            f"arrivals {conditions.arrivals_per_s:.0f}/s, queue {conditions.queue_length}, p90 {p90} "
            f"(target {self.config.slo_ms:g} ms): service budget {budget_ms:.3g} ms"
        )
        index_budget = budget_ms / self.scale
        if self.selector.reference_fits(index_budget, free_memory):
            return Decision(self.selector.reference, f"{state}; the configured model fits", "")
        for step in self.config.within_steps:
            text = self.selector.query_text(self.config.within * step, index_budget, free_memory, "similarity")
            choice = self.selector.ask(text)
            if choice is not None:
                verdict = "fits" if side == "under" else "is the most similar model that fits"
                return Decision(choice, f"{state}; {choice.model_id} {verdict}", text)
        text = self.selector.query_text(self.config.within, None, free_memory, "latency")
        choice = self.selector.ask(text)
        if choice is None or self.selector.reference.latency_ms <= choice.latency_ms:
            return Decision(self.selector.reference, f"{state}; nothing equivalent is faster", text)
        return Decision(choice, f"{state}; nothing fits, {choice.model_id} is the fastest equivalent", text)
