"""Inference serving with automatic model switching (paper §2 (i), §6 Fig. 8, §7.1 Fig. 9c).

A small service runs ONNX Runtime sessions of indexed models behind an ASGI app (starlette on
uvicorn). Requests wait in one queue; workers (one per replica) take them in order. A switching
policy watches the service's own conditions — queue length, arrival rate, recent latency, a memory
budget — and asks Sommelier, through the public query API, for the best model LIKE the configured
one WITHIN an accuracy budget that fits them; the service loads the new session beside the old,
swaps it in one assignment, and lets requests already running finish on the old one.

- `selection`: `ModelSelector` — the queries the policy asks (`FIND 1 MODEL LIKE … WITHIN … WHERE
  latency@device <= … AND memory <= … ORDER BY similarity`), answered as `ModelChoice`s.
- `policy`: `SwitchingPolicy` — from `Conditions` to a `Decision` (the model and why), or none.
- `sessions`: `SessionPool` — ONNX Runtime sessions of the chosen models, kept within the memory budget.
- `stats`: `RecentRequests` — arrival rate and latency percentiles over a sliding window.
- `service`: `InferenceService` — the queue, the workers, the policy loop and the atomic swap.
- `app`: `create_app(service)` (starlette) and `serve(service, host, port)` (uvicorn).
- `client`: `ServingClient` — an asyncio HTTP/1.1 client of the service (benchmarks, tests).
"""

from sommelier_core.serving.policy import Conditions, Decision, PolicyConfig, SwitchingPolicy
from sommelier_core.serving.selection import ModelChoice, ModelSelector
from sommelier_core.serving.service import InferenceService, Prediction, ServiceConfig
from sommelier_core.serving.sessions import LoadedModel, SessionPool

__all__ = [
    "Conditions",
    "Decision",
    "InferenceService",
    "LoadedModel",
    "ModelChoice",
    "ModelSelector",
    "PolicyConfig",
    "Prediction",
    "ServiceConfig",
    "SessionPool",
    "SwitchingPolicy",
]
