"""`sommelier serve` on a store indexed by the real pipeline (the small zoo): HTTP answers, and the policy's
questions answered by the public query API exactly as a user's query would be."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time

import numpy as np

import sommelier_core
from sommelier_core.serving import Conditions, ModelSelector, PolicyConfig, SwitchingPolicy
from sommelier_core.serving.client import ServingClient
from sommelier_core.zoo import load_dataset

REFERENCE = "zoo-torch/cnn_w16"


def test_the_policy_asks_the_store_what_a_user_query_answers(indexed_store):
    index_dir = indexed_store.root / "index"
    selector = ModelSelector(REFERENCE, index_dir=index_dir)
    hits = sommelier_core.query(ref=REFERENCE, within=0.2, index_dir=index_dir)
    fastest = min(hits, key=lambda h: h.profile.latency_ms)
    asked = selector.ask(selector.query_text(0.2, None, None, "latency"))
    assert asked is not None and asked.model_id == fastest.model_id
    # heavy load: a service-time budget of half the reference's latency; the policy's choice is the most
    # similar hit within that budget, as `query(..., latency_ms=budget)` ranks them
    budget = selector.reference.latency_ms / 2
    arrivals = 0.7 * 1000 / budget
    policy = SwitchingPolicy(selector, PolicyConfig(within=0.2, within_steps=(1.0,)), scale=1.0)
    conditions = Conditions(100.0, 0, 1, arrivals, None, selector.reference.latency_ms)
    decision = policy.decide(selector.reference, conditions, None)
    expected = sommelier_core.query(ref=REFERENCE, within=0.2, latency_ms=budget, index_dir=index_dir, limit=1)
    if expected:
        assert decision is not None and decision.choice.model_id == expected[0].model_id
    else:
        assert decision is None or decision.choice.latency_ms < selector.reference.latency_ms


def test_sommelier_serve_answers_digits_over_http(indexed_store):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = os.environ | {"SOMMELIER_HOME": str(indexed_store.root)}
    command = [sys.executable, "-m", "sommelier_cli.serve", "--like", REFERENCE, "--port", str(port), "--within", "5%"]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    digits = load_dataset("digits", "val")

    async def talk():
        client = ServingClient("127.0.0.1", port)
        deadline = time.monotonic() + 60
        while True:
            try:
                await client.request("GET", "/healthz")
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "the server did not start within 60 s"
                await asyncio.sleep(0.2)
        answers = await asyncio.gather(*(client.predict(digits.x[i].tolist()) for i in range(50)))
        status = await client.status()
        await client.close()
        return answers, status

    try:
        answers, status = asyncio.run(talk())
    finally:
        server.terminate()
        server.wait(timeout=30)
    labels = np.array([a["labels"][0] for a in answers])
    assert {a["model"] for a in answers} <= {REFERENCE} | {h["to_model"] for h in status["switches"]}
    assert np.mean(labels == digits.y[:50]) > 0.8  # the zoo's models classify digits
    assert status["configured_model"] == REFERENCE and status["within"] == 0.05
    assert sum(status["served"].values()) == 50
