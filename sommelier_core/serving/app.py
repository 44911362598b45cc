"""The service over HTTP: a starlette app run by uvicorn (an ASGI server).

- `POST /predict` — body `{"inputs": sample or batch}` → `{"model", "labels", "outputs", "queued_ms", "service_ms"}`;
  an input the model cannot take is a 422 with one line saying what was expected.
- `GET /status` — the served model and why, the conditions, the last switches, requests per model (JSON).
- `GET /metrics` — the same figures in Prometheus' text format.
- `GET /healthz` — 200 once the configured model is loaded.

The handler only parses and awaits: the request waits in the service's queue and runs on a worker
thread, so the event loop keeps accepting requests (and the queue the policy watches is real).
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from sommelier_core.serving.service import BadInput, InferenceService


def create_app(service: InferenceService) -> Starlette:
    """The ASGI app of a service; starting the app starts the service, stopping it drains the queue."""

    @asynccontextmanager
    async def lifespan(app: Starlette):
        await asyncio.to_thread(service.start)
        try:
            yield
        finally:
            await asyncio.to_thread(service.stop)

    async def predict(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except json.JSONDecodeError as exc:
            return JSONResponse({"error": f"request body is not JSON: {exc}"}, status_code=400)
        if not isinstance(body, dict) or "inputs" not in body:
            return JSONResponse({"error": 'expected a JSON object with an "inputs" array'}, status_code=422)
        try:
            future = service.submit(body["inputs"])
        except BadInput as exc:
            return JSONResponse({"error": str(exc)}, status_code=422)
        answer = await asyncio.wrap_future(future)
        return JSONResponse(
            {
                "model": answer.model_id,
                "labels": answer.outputs.argmax(axis=-1).tolist(),
                "outputs": answer.outputs.tolist(),
                "queued_ms": answer.queued_ms,
                "service_ms": answer.service_ms,
            }
        )

    async def status(request: Request) -> Response:
        return JSONResponse(service.status())

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(prometheus_text(service.status()), media_type="text/plain; version=0.0.4")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"model": service.active_model_id})

    return Starlette(
        routes=[
            Route("/predict", predict, methods=["POST"]),
            Route("/status", status),
            Route("/metrics", metrics),
            Route("/healthz", healthz),
        ],
        lifespan=lifespan,
    )


def prometheus_text(status: dict) -> str:
    """The status figures as Prometheus metrics (`sommelier_serving_*`)."""

    def escaped(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")

    lines = [
        "# HELP sommelier_serving_active_model The model serving new requests (1 for the active one).",
        "# TYPE sommelier_serving_active_model gauge",
        f'sommelier_serving_active_model{{model="{escaped(status["model"])}",reason="{escaped(status["reason"])}"}} 1',
        "# TYPE sommelier_serving_requests_total counter",
        *(f'sommelier_serving_requests_total{{model="{escaped(m)}"}} {n}' for m, n in sorted(status["served"].items())),
        "# TYPE sommelier_serving_switches_total counter",
        f"sommelier_serving_switches_total {status['switch_count']}",
        "# TYPE sommelier_serving_queue_length gauge",
        f"sommelier_serving_queue_length {status['queue_length']}",
        "# TYPE sommelier_serving_arrivals_per_second gauge",
        f"sommelier_serving_arrivals_per_second {status['arrivals_per_s']}",
        "# TYPE sommelier_serving_resident_bytes gauge",
        f"sommelier_serving_resident_bytes {status['resident_bytes']}",
    ]
    for name in ("latency_p50_ms", "latency_p90_ms"):
        if status[name] is not None:
            lines += [f"# TYPE sommelier_serving_{name} gauge", f"sommelier_serving_{name} {status[name]}"]
    return "\n".join(lines) + "\n"


def serve(service: InferenceService, host: str = "127.0.0.1", port: int = 8000, log_level: str = "warning") -> None:
    """Run the service's app with uvicorn until interrupted."""
    import uvicorn

    # idle keep-alive connections stay open a minute (uvicorn's default is 5 s), so bursty clients reuse them
    uvicorn.run(create_app(service), host=host, port=port, log_level=log_level, access_log=False, timeout_keep_alive=60)
