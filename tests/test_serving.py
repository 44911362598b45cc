"""Serving with model switching: the policy's choices, the service's switching without dropped requests, HTTP.

The index is built by hand (`serving_index`): a configured model R and four variants with known bounds and
costs, so every choice below can be checked by hand —

| model | upper bound from R | latency (ms) | memory (bytes) |
|---|---|---|---|
| R | 0 | 8.0 | 40 100 |
| A | 1 % | 4.0 | 20 100 |
| B | 2 % | 1.0 | 10 100 |
| C | 4 % | 0.1 | 1 100 |
| D | 8 % | 0.01 | 500 |

— and, for the service, each model is a real ONNX file (y = x @ W, its own W) run by ONNX Runtime.
The policy runs with `scale` 1 (index latency = service time), a 50 ms target, utilisation ≤ 0.7, WITHIN 5 %
tried at 1.25 %, 2.5 % and 5 %.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import polars as pl
import pytest
from onnx import TensorProto, helper, numpy_helper

from sommelier_core.index.resource import RESOURCE_INDEX_SCHEMA
from sommelier_core.index.semantic import SEMANTIC_INDEX_SCHEMA
from sommelier_core.querying import Index
from sommelier_core.serving import (
    Conditions,
    InferenceService,
    ModelSelector,
    PolicyConfig,
    ServiceConfig,
    SwitchingPolicy,
)
from sommelier_core.serving.service import BadInput

MODELS = {  # id: (upper bound from R, latency ms, memory bytes)
    "R": (0.0, 8.0, 40_100),
    "A": (0.01, 4.0, 20_100),
    "B": (0.02, 1.0, 10_100),
    "C": (0.04, 0.1, 1_100),
    "D": (0.08, 0.01, 500),
}


def write_linear_onnx(path: Path, seed: int) -> Path:
    """A model y = x @ W with W (4, 3) drawn from `seed`; input (N, 4)."""
    weight = numpy_helper.from_array(np.random.default_rng(seed).normal(size=(4, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def serving_index(onnx_dir: Path | None = None) -> Index:
    """The table above as the two index tables (ONNX files written to `onnx_dir` when given)."""
    paths = {}
    for seed, model_id in enumerate(MODELS):
        paths[model_id] = str(write_linear_onnx(onnx_dir / f"{model_id}.onnx", seed)) if onnx_dir else f"/x/{model_id}"
    resource = pl.DataFrame(
        [
            {
                "model_id": m,
                "fingerprint": m,
                "onnx_path": paths[m],
                "device": "cpu",
                "batch_size": 1,
                "params": memory // 4,
                "macs": memory,
                "flops": 2 * memory,
                "weight_bytes": memory - 100,
                "peak_activation_bytes": 100,
                "memory_bytes": memory,
                "latency_ms": latency,
                "latency_p90_ms": latency,
                "threads": 1,
            }
            for m, (_, latency, memory) in MODELS.items()
        ],
        schema=RESOURCE_INDEX_SCHEMA,
    )
    semantic = pl.DataFrame(
        [
            {
                "reference_id": "R",
                "reference_fingerprint": "R",
                "candidate_id": c,
                "candidate_fingerprint": c,
                "kind": "disagreement",
                "empirical": None,
                "lower": upper / 2,
                "upper": upper,
                "equivalence": 1 - upper,
                "provenance": "measured",
                "hops": 1,
                "n": 500,
            }
            for c, (upper, _, _) in MODELS.items()
            if c != "R"
        ],
        schema=SEMANTIC_INDEX_SCHEMA,
    )
    return Index(semantic, resource)


@pytest.fixture
def selector() -> ModelSelector:
    return ModelSelector("R", index=serving_index())


def _policy(selector: ModelSelector, **config) -> SwitchingPolicy:
    return SwitchingPolicy(selector, PolicyConfig(**config), scale=1.0)


def _conditions(
    arrivals: float = 10.0, queue: int = 0, p90: float | None = None, service: float | None = None, now=100.0
):
    return Conditions(now=now, queue_length=queue, workers=1, arrivals_per_s=arrivals, p90_ms=p90, service_ms=service)


def test_light_load_keeps_the_configured_model(selector):
    # 10 requests/s × 8 ms = 8 % utilisation, no queue: R fits the 50 ms target
    assert _policy(selector).decide(selector.reference, _conditions(10, p90=9.0, service=8.0), None) is None


def test_arrivals_beyond_what_the_model_keeps_up_with_choose_the_most_similar_model_that_does(selector):
    # 200 requests/s: a model keeps up at ≤ 0.7 × 1000 / 200 = 3.5 ms. R (8) and A (4) do not;
    # within 1.25 % only A exists, so the policy asks again within 2.5 % and gets B (1 ms, 2 %).
    decision = _policy(selector).decide(selector.reference, _conditions(200, service=8.0), None)
    assert decision is not None and decision.choice.model_id == "B"
    assert "WITHIN 2.5%" in decision.query and "latency@cpu <= 3.5 ms" in decision.query
    assert "arrivals 200/s" in decision.reason and "B is the most similar model that fits" in decision.reason


def test_a_long_queue_shrinks_the_budget_to_the_target_over_the_requests_ahead(selector):
    # 99 queued + this one = 100 requests for 50 ms: 0.5 ms each, which only C (0.1 ms, 4 %) meets within 5 %
    decision = _policy(selector).decide(selector.reference, _conditions(0, queue=99, service=8.0), None)
    assert decision.choice.model_id == "C" and "WITHIN 5%" in decision.query


def test_when_nothing_fits_the_fastest_model_within_the_accuracy_budget_is_chosen(selector):
    # 999 queued: 0.05 ms each; nothing within 5 % is that fast; D (0.01 ms) is 8 % away, beyond the budget
    decision = _policy(selector).decide(selector.reference, _conditions(0, queue=999, service=8.0), None)
    assert decision.choice.model_id == "C"
    assert "nothing fits" in decision.reason and "ORDER BY latency@cpu" in decision.query


def test_the_memory_budget_is_a_condition_of_the_query(selector):
    # 200 requests/s wants B (10 100 bytes), but only 5 000 bytes are free: C (1 100 bytes) is the answer
    decision = _policy(selector).decide(selector.reference, _conditions(200, service=8.0), 5_000)
    assert decision.choice.model_id == "C" and "memory <= 5000 B" in decision.query


def test_a_queue_that_would_miss_the_target_moves_to_a_model_that_meets_it(selector):
    # few arrivals, but 9 queued + this one at 8 ms = 80 ms > 50 ms: each may take 5 ms, and A (4 ms, 1 %) does
    decision = _policy(selector).decide(selector.reference, _conditions(10, queue=9, p90=80.0, service=8.0), None)
    assert decision.choice.model_id == "A" and "WITHIN 1.25%" in decision.query


def test_switching_back_waits_for_the_cooldown_and_for_headroom(selector):
    policy = _policy(selector, cooldown_s=1.0)
    heavy = policy.decide(selector.reference, _conditions(200, service=8.0, now=100.0), None)
    current = heavy.choice  # B, chosen at t = 100 s
    calm = dict(arrivals=10.0, p90=5.0, service=1.0)
    assert policy.decide(current, _conditions(**calm, now=100.5), None) is None  # within the cooldown
    # p90 30 ms > headroom 0.5 × 50 ms: not calm enough to go back
    assert policy.decide(current, _conditions(10, p90=30.0, service=1.0, now=102.0), None) is None
    back = policy.decide(current, _conditions(**calm, now=102.0), None)
    # half the targets: 25 ms and 0.5 × 0.7 × 1000 / 10 = 35 ms; R's 8 ms fits
    assert back.choice.model_id == "R" and "configured model fits" in back.reason


def test_moves_back_undone_by_the_next_burst_double_the_cooldown_and_a_long_calm_resets_it(selector):
    policy = _policy(selector, cooldown_s=1.0)
    heavy = dict(arrivals=200.0, service=8.0)
    calm = dict(arrivals=10.0, p90=5.0, service=1.0)
    b = policy.decide(selector.reference, _conditions(**heavy, now=100.0), None).choice  # down to B
    assert policy.decide(b, _conditions(**calm, now=101.0), None).choice.model_id == "R"  # back after 1 s
    # the burst returns 0.5 s later (< 2 × 1 s): down again, and the next move back waits 2 s
    assert policy.decide(selector.reference, _conditions(**heavy, now=101.5), None).choice.model_id == "B"
    assert policy.cooldown_s == 2.0
    assert policy.decide(b, _conditions(**calm, now=103.0), None) is None  # 1.5 s < 2 s
    assert policy.decide(b, _conditions(**calm, now=103.5), None).choice.model_id == "R"
    # load returns long after (20 s > 2 × 2 s): the cooldown is back to 1 s
    policy.decide(selector.reference, _conditions(**heavy, now=123.5), None)
    assert policy.cooldown_s == 1.0


def test_switching_back_moves_only_toward_the_configured_model(selector):
    policy = _policy(selector, cooldown_s=0.0)
    c_choice = policy.decide(selector.reference, _conditions(0, queue=99, service=8.0), None).choice
    # 60 requests/s: headroom budget 0.5 × 0.7 × 1000 / 60 = 5.8 ms: R (8) does not fit, A (4 ms, 1 %) does
    step = policy.decide(c_choice, _conditions(60, p90=2.0, service=0.1, now=200.0), None)
    assert step.choice.model_id == "A"


def test_policy_config_refuses_meaningless_budgets():
    with pytest.raises(ValueError, match="within"):
        PolicyConfig(within=0.0)
    with pytest.raises(ValueError, match="slo_ms"):
        PolicyConfig(slo_ms=-1)


def test_an_unindexed_configured_model_is_a_clear_error():
    from sommelier_core.errors import UnknownModel

    with pytest.raises(UnknownModel, match="'Z' is indexed on no device"):
        ModelSelector("Z", index=serving_index())


# -- the service, with real ONNX Runtime sessions ----------------------------------------------------------


@pytest.fixture
def service(tmp_path) -> InferenceService:
    selector = ModelSelector("R", index=serving_index(tmp_path))
    svc = InferenceService(selector, PolicyConfig(), ServiceConfig(switching=False, workers=2))
    svc.start()
    yield svc
    svc.stop()


def test_requests_are_answered_by_the_configured_model(service):
    x = np.ones(4, dtype=np.float32)
    answer = service.submit(x).result(timeout=10)
    expected = x @ np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    assert answer.model_id == "R" and np.allclose(answer.outputs[0], expected, atol=1e-5)
    batch = service.submit(np.ones((5, 4))).result(timeout=10)
    assert batch.outputs.shape == (5, 3)


def test_inputs_the_model_cannot_take_are_one_clear_line(service):
    with pytest.raises(BadInput, match=r"inputs of shape \(3,\) do not fit R: expected one sample of shape \(4,\)"):
        service.submit([1.0, 2.0, 3.0])


def test_switching_under_a_stream_of_requests_drops_none(service):
    """Requests keep arriving while the active model is swapped 40 times: every one is answered, by R, B or C."""
    futures = []
    stop = threading.Event()

    def send():
        while not stop.is_set():
            futures.append(service.submit(np.ones(4)))
            time.sleep(0.0005)

    sender = threading.Thread(target=send)
    sender.start()
    ask = service.selector.ask
    b = ask(service.selector.query_text(0.05, 1.0, None, "similarity"))  # within 5 %, ≤ 1 ms, most similar
    c = ask(service.selector.query_text(0.05, 0.5, None, "similarity"))  # within 5 %, ≤ 0.5 ms
    assert (b.model_id, c.model_id) == ("B", "C")
    for i in range(40):
        service.switch_to([b, c, service.selector.reference][i % 3], "test")
        time.sleep(0.005)
    stop.set()
    sender.join()
    answers = [f.result(timeout=10) for f in futures]
    assert len(answers) == len(futures) > 40
    assert {a.model_id for a in answers} <= {"R", "B", "C"} and len({a.model_id for a in answers}) >= 2
    status = service.status()
    assert status["switch_count"] == 40 and sum(status["served"].values()) == len(answers)
    # the first switch loaded B; later ones found it loaded (no memory budget: every session stays)
    assert status["switches"][0]["load_ms"] > 0 and status["switches"][3]["load_ms"] == 0.0
    assert set(status["loaded_models"]) == {"R", "B", "C"}


def test_the_session_pool_drops_idle_models_the_memory_budget_cannot_hold(tmp_path):
    # budget 50 000 bytes: R (40 100) + A (20 100) do not fit together; after the switch to A, R (idle) is dropped
    selector = ModelSelector("R", index=serving_index(tmp_path))
    svc = InferenceService(selector, PolicyConfig(memory_budget_bytes=50_000), ServiceConfig(switching=False))
    svc.start()
    try:
        a = selector.ask(selector.query_text(0.05, None, None, "similarity"))
        assert a.model_id == "A"
        svc.switch_to(a, "test")
        assert svc.pool.loaded_ids() == ["A"] and svc.pool.resident_bytes() == 20_100
        assert svc.submit(np.zeros(4)).result(timeout=10).model_id == "A"
    finally:
        svc.stop()


def test_the_policy_loop_switches_on_a_real_queue(tmp_path):
    """A burst of 300 queued requests: the policy, ticking on its own, moves to a faster model, and says why."""
    selector = ModelSelector("R", index=serving_index(tmp_path))
    # the test's models take microseconds whatever the table says: take the index's latencies as they are
    policy = PolicyConfig(slo_ms=0.5, latency_scale=1.0)
    svc = InferenceService(selector, policy, ServiceConfig(switching=True, tick_s=0.01))
    svc.start()
    try:
        futures = [svc.submit(np.ones(4)) for _ in range(300)]
        deadline = time.monotonic() + 10
        while svc.status()["switch_count"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        for f in futures:
            f.result(timeout=10)
        status = svc.status()
        assert status["switch_count"] >= 1
        first = status["switches"][0]
        assert first["from_model"] == "R" and first["to_model"] != "R" and "target 0.5 ms" in first["reason"]
    finally:
        svc.stop()


# -- over HTTP (starlette on uvicorn, real sockets) ---------------------------------------------------------


def test_http_predict_status_metrics_and_errors(tmp_path):
    import socket

    import uvicorn

    from sommelier_core.serving.app import create_app
    from sommelier_core.serving.client import ServingClient

    selector = ModelSelector("R", index=serving_index(tmp_path))
    svc = InferenceService(selector, PolicyConfig(), ServiceConfig(switching=True))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(svc), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    async def talk():
        client = ServingClient("127.0.0.1", port)
        for _ in range(200):
            try:
                await client.request("GET", "/healthz")
                break
            except OSError:
                await asyncio.sleep(0.05)
        answers = await asyncio.gather(*(client.predict([1.0, 0.0, 0.0, 0.0]) for _ in range(20)))
        bad = await client.request("POST", "/predict", {"inputs": [[1.0, 2.0]]})
        not_json = await client.request("POST", "/predict", None)
        status = await client.status()
        metrics_reader, metrics_writer = await asyncio.open_connection("127.0.0.1", port)
        metrics_writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        metrics = (await metrics_reader.read()).decode()
        metrics_writer.close()
        await client.close()
        return answers, bad, not_json, status, metrics, client.connections_opened

    try:
        answers, bad, not_json, status, metrics, connections = asyncio.run(talk())
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert {a["model"] for a in answers} == {"R"} and len(answers[0]["labels"]) == 1
    assert connections >= 2  # concurrent requests went on their own connections
    assert bad[0] == 422 and "do not fit R" in bad[1]["error"]
    assert not_json[0] in (400, 422)
    assert status["model"] == "R" and status["served"] == {"R": 20} and status["switching"] is True
    assert 'sommelier_serving_active_model{model="R",reason="configured model"} 1' in metrics
    assert 'sommelier_serving_requests_total{model="R"} 20' in metrics


# -- the command lines (the lead wires them into `sommelier`; here their parsers alone) ---------------------


def test_serve_and_bench_serving_flags_parse_sizes_percentages_and_refuse_nonsense():
    import argparse

    from sommelier_cli.bench_serving import add_bench_serving
    from sommelier_cli.serve import add_serve_arguments, parse_bytes

    assert parse_bytes("256MiB") == 256 * 2**20 and parse_bytes("64 MB") == 64_000_000 and parse_bytes("10") == 10
    with pytest.raises(argparse.ArgumentTypeError, match="expected a size like 256MiB"):
        parse_bytes("lots")
    serve = argparse.ArgumentParser()
    add_serve_arguments(serve)
    args = serve.parse_args(["--like", "zoo/m", "--within", "2.5%", "--memory-budget", "1GiB", "--replicas", "2"])
    assert (args.like, args.within, args.memory_budget, args.replicas, args.fixed) == ("zoo/m", 0.025, 2**30, 2, False)
    assert args.host == "127.0.0.1"
    with pytest.raises(SystemExit):
        serve.parse_args(["--like", "zoo/m", "--slo-ms", "0"])
    bench = argparse.ArgumentParser().add_subparsers(dest="bench_command")
    add_bench_serving(bench)
    parsed = bench._name_parser_map["serving"].parse_args(["--json", "--duration-scale", "0.5"])
    assert parsed.json and parsed.duration_scale == 0.5 and parsed.within == 0.05
