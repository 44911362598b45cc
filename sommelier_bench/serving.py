"""The serving benchmark (paper §7.1, Fig. 9c): a bursty load against a fixed model, a fixed model with a
standby replica, model switching, and both; p50/p90/p99 latency ratios and the relative accuracy change.

**The models.** The built-in zoo's models run in 0.01–0.04 ms, less than an HTTP round trip, so switching among them
cannot change a served latency. This family spans two orders of magnitude of cost: `mlp_w4096`
(17 M MACs, ≈ 4.5 ms per request on one thread) is trained on labels; `mlp_w1024`, `cnn_w32`,
`cnn_w16` and `mlp_w256` are distilled from it (its softened outputs plus the labels), so they agree
with it as a cheaper model of a real repository would. It is published as a local Torch Hub
repository at `<store>/zoo/torchhub` — the store's default repository — and indexed by the real
pipeline (`python -m pipelines.index_run`, what `sommelier index` runs), so the server finds the
variants only through Sommelier's query API.

Training uses digits' `train` split minus its last `HELD_OUT` samples; those samples and the `val`
split (which the index compares models on, label-free) are the labelled data accuracy is measured on.

**The load.** Client (this process, asyncio, one connection per outstanding request) and server
(`python -m sommelier_cli.serve`, a subprocess) on 127.0.0.1. The fixed server's capacity μ is measured
first (saturated: four requests always outstanding); the trace is then fixed for all four settings:
Poisson arrivals in phases of light load (0.3 μ), heavy load (1.2 μ), light again, then bursts (2 μ for
0.5 s, 0.3 μ for 1.5 s).
Latency is from a request's scheduled send time to its answer (an open loop: a slow server does not
slow the arrivals). "Heavy load" figures are over the requests sent in the heavy phase and the bursts.
Each request carries a held-out labelled digit; the relative accuracy change of a request is
|acc(model that served it) − acc(configured model)| ÷ acc(configured model), accuracies measured on
all held-out samples, and `accuracy_change_p90` is its 90th percentile over the switching setting's
requests (paper §7.1); the accuracy of the answers actually returned is reported too.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sommelier_core.serving.client import ServingClient
from sommelier_core.zoo.datasets import Dataset, load_dataset

REPOSITORY = "zoo-torch"
WIDE = "mlp_w4096"
HELD_OUT = 300
FAMILY_FILE = "serving_family.json"


@dataclass(frozen=True)
class Member:
    """One model of the family: architecture, width, and how it is trained."""

    name: str
    architecture: str
    width: int
    distilled: bool
    epochs: int

    @property
    def model_id(self) -> str:
        """The id the index knows it by."""
        return f"{REPOSITORY}/{self.name}"


MEMBERS: tuple[Member, ...] = (
    Member(WIDE, "mlp", 4096, distilled=False, epochs=5),
    Member("mlp_w1024", "mlp", 1024, distilled=True, epochs=30),
    Member("cnn_w32", "cnn", 32, distilled=True, epochs=40),
    Member("cnn_w16", "cnn", 16, distilled=True, epochs=40),
    Member("mlp_w256", "mlp", 256, distilled=True, epochs=40),
)


def training_set() -> Dataset:
    """Digits' `train` split without its last `HELD_OUT` samples."""
    train = load_dataset("digits", "train")
    return Dataset("digits", train.x[:-HELD_OUT], train.y[:-HELD_OUT])


def labelled_test_set() -> Dataset:
    """Labelled samples no model of the family trained on: the held-out train tail and the `val` split."""
    train, val = load_dataset("digits", "train"), load_dataset("digits", "val")
    assert train.y is not None and val.y is not None
    x = np.concatenate([train.x[-HELD_OUT:], val.x])
    y = np.concatenate([train.y[-HELD_OUT:], val.y])
    return Dataset("digits-held-out", x, y)


def _distill(student, teacher_logits: np.ndarray, data: Dataset, epochs: int, seed: int, temperature: float = 3.0):
    """Train `student` on the teacher's softened outputs (Hinton et al. 2015) plus the labels."""
    import torch
    from torch import nn

    x, y = torch.from_numpy(np.array(data.x)), torch.from_numpy(np.array(data.y))
    soft = torch.softmax(torch.from_numpy(teacher_logits) / temperature, dim=1)
    optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        student.train()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 64):
            batch = order[start : start + 64]
            optimizer.zero_grad()
            logits = student(x[batch])
            kd = nn.functional.kl_div(
                torch.log_softmax(logits / temperature, dim=1), soft[batch], reduction="batchmean"
            ) * (temperature**2)
            (0.7 * kd + 0.3 * nn.functional.cross_entropy(logits, y[batch])).backward()
            optimizer.step()
    return student.eval()


def build_family(store: Path, seed: int = 0, echo: Callable[[str], None] = print) -> dict[str, float]:
    """Train the family and publish it as the Torch Hub repository of the store; return accuracy per model id."""
    from sommelier_core.zoo import build as zoo_build
    from sommelier_core.zoo import torchhub
    from sommelier_core.zoo.manifest import ZooModel, write_hub_metadata
    from sommelier_core.zoo.torch_architectures import build_architecture
    from sommelier_core.zoo.training import (
        TrainConfig,
        accuracy,
        deterministic_torch,
        predict_logits,
        seeded_init,
        top1,
        train_classifier,
    )

    hub_dir = Path(store) / "zoo" / "torchhub"
    torchhub.init_hub(hub_dir)
    train, test = training_set(), labelled_test_set()
    records, accuracies = [], {}
    teacher_logits: np.ndarray | None = None
    with deterministic_torch(2):
        for member in MEMBERS:
            started = time.perf_counter()
            model_seed = zoo_build.model_seed(seed, member.name)
            net = seeded_init(lambda m=member: build_architecture(m.architecture, m.width), model_seed)
            if member.distilled:
                assert teacher_logits is not None, "the wide model is trained first"
                net = _distill(net, teacher_logits, train, member.epochs, model_seed)
            else:
                config = TrainConfig(epochs=member.epochs, batch_size=64, learning_rate=1e-3)
                net = train_classifier(net, train, model_seed, config)
                teacher_logits = predict_logits(net, train.x)
            torchhub.save_weights(hub_dir, member.name, net)
            accuracies[member.model_id] = accuracy(top1(net, test.x), test.y)
            echo(
                f"  {member.model_id:22s} accuracy {accuracies[member.model_id]:.4f} on {len(test.y)} held-out "
                f"samples  ({time.perf_counter() - started:.1f} s)"
            )
            records.append(
                ZooModel(
                    name=member.name,
                    framework="torch",
                    task="classification",
                    dataset="digits",
                    input_shape=[1, 8, 8],
                    labels=[str(d) for d in range(10)],
                    family="serving",
                    architecture=member.architecture,
                    width=member.width,
                    parent=None if not member.distilled else WIDE,
                    transformation="base",
                    frozen_layers=None,
                    noise_scale=None,
                    prune_fraction=None,
                    accuracy=accuracies[member.model_id],
                    disagreement_from_parent=None,
                    seed=model_seed,
                    artifact=f"torchhub/weights/{member.name}.pt",
                    description=("distilled from " + WIDE if member.distilled else "trained on labels")
                    + f": {member.architecture} of width {member.width} on digits",
                )
            )
    torchhub.write_hubconf(hub_dir, [(r.name, r.architecture, r.width, r.description) for r in records])
    write_hub_metadata(hub_dir, records)
    return accuracies


def _missing_from_index(store: Path) -> list[str]:
    """Members of the family the store's index does not hold (all of them when there is no index)."""
    from sommelier_core.querying import IndexNotBuilt, load_index

    try:
        indexed = set(load_index(Path(store) / "index").resource["model_id"].to_list())
    except IndexNotBuilt:
        indexed = set()
    return [m.model_id for m in MEMBERS if m.model_id not in indexed]


def prepare_store(store: Path, seed: int = 0, echo: Callable[[str], None] = print) -> dict[str, float]:
    """A store holding the family, indexed by the real pipeline; reused when already built with `seed`.

    Returns the held-out accuracy of every model (recorded in `<store>/serving_family.json`).
    """
    store = Path(store)
    record = store / FAMILY_FILE
    if record.exists() and not _missing_from_index(store):
        saved = json.loads(record.read_text())
        if saved.get("seed") == seed and sorted(saved["accuracy"]) == sorted(m.model_id for m in MEMBERS):
            echo(f"Reusing the indexed serving family in {store}")
            return {k: float(v) for k, v in saved["accuracy"].items()}
    store.mkdir(parents=True, exist_ok=True)
    echo(f"Training the serving family into {store}/zoo/torchhub")
    accuracies = build_family(store, seed, echo)
    echo("Indexing it (python -m pipelines.index_run, the `sommelier index` driver) …")
    started = time.perf_counter()
    env = os.environ | {"SOMMELIER_HOME": str(store.resolve())}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-m", "pipelines.index_run"], env=env, capture_output=True, text=True)
    missing = _missing_from_index(store)
    if done.returncode != 0 or missing:
        raise RuntimeError(
            f"indexing the serving family failed (exit {done.returncode}; not indexed: {', '.join(missing)}):\n"
            f"{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    echo(f"Indexed in {time.perf_counter() - started:.1f} s")
    record.write_text(json.dumps({"seed": seed, "accuracy": accuracies}, indent=2, sort_keys=True) + "\n")
    return accuracies


# -- the load --------------------------------------------------------------------------------------------

SETTINGS: dict[str, dict[str, object]] = {
    "fixed": {"switching": False, "replicas": 1},
    "replica": {"switching": False, "replicas": 2},
    "switching": {"switching": True, "replicas": 1},
    "both": {"switching": True, "replicas": 2},
}
"""(a) a fixed model, (b) with a standby replica sharing the queue, (c) switching, (d) both."""


@dataclass(frozen=True)
class Phase:
    """A stretch of the trace: Poisson arrivals at `load` × the fixed model's capacity."""

    name: str
    duration_s: float
    load: float
    heavy: bool


def default_phases(scale: float = 1.0) -> list[Phase]:
    """Light, heavy, light, then four bursts; `scale` stretches every duration."""
    phases = [
        Phase("light", 5.0 * scale, 0.3, False),
        Phase("heavy", 8.0 * scale, 1.2, True),
        Phase("light", 4.0 * scale, 0.3, False),
    ]
    for _ in range(4):
        phases += [Phase("burst", 0.5 * scale, 2.0, True), Phase("light", 1.5 * scale, 0.3, False)]
    return phases


def arrival_times(phases: list[Phase], capacity_per_s: float, seed: int) -> list[tuple[float, Phase]]:
    """Seeded Poisson arrival times (seconds from the start) with the phase each falls in."""
    rng = np.random.default_rng(seed)
    arrivals: list[tuple[float, Phase]] = []
    start = 0.0
    for phase in phases:
        rate = phase.load * capacity_per_s
        t = start + rng.exponential(1 / rate)
        while t < start + phase.duration_s:
            arrivals.append((t, phase))
            t += rng.exponential(1 / rate)
        start += phase.duration_s
    return arrivals


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m sommelier_cli.serve` on a free port of 127.0.0.1, for one setting."""

    def __init__(self, store: Path, model: str, within: float, slo_ms: float, switching: bool, replicas: int):
        self.port = _free_port()
        command = [
            sys.executable, "-m", "sommelier_cli.serve", "--like", model, "--within", str(within),
            "--slo-ms", str(slo_ms), "--replicas", str(replicas), "--port", str(self.port), "--log-level", "warning",
        ]  # fmt: skip
        if not switching:
            command.append("--fixed")
        env = os.environ | {"SOMMELIER_HOME": str(Path(store).resolve())}
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    async def ready(self, timeout_s: float = 120.0) -> ServingClient:
        """A client once the server answers /healthz."""
        client = ServingClient("127.0.0.1", self.port)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}):\n{self.process.stdout.read()}")
            try:
                await client.request("GET", "/healthz")
                return client
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    def stop(self) -> None:
        """Stop the server (SIGTERM: uvicorn shuts down, the service drains)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def measure_capacity(client: ServingClient, x: np.ndarray, seconds: float = 3.0, concurrency: int = 4) -> float:
    """Requests per second the server answers when saturated (`concurrency` requests always outstanding).

    Saturated, not one at a time: the server's own overheads and the machine's other load count, as they
    will under the trace.
    """
    done = 0
    deadline = time.perf_counter() + seconds

    async def loop(offset: int) -> None:
        nonlocal done
        i = offset
        while time.perf_counter() < deadline:
            await client.predict(x[i % len(x)].tolist())
            done += 1
            i += concurrency

    for i in range(10):  # warm up
        await client.predict(x[i].tolist())
    started = time.perf_counter()
    await asyncio.gather(*(loop(k) for k in range(concurrency)))
    return done / (time.perf_counter() - started)


async def play(client: ServingClient, arrivals: list[tuple[float, Phase]], x: np.ndarray, drain_s: float) -> list[dict]:
    """Send every request at its time (open loop); one record per request."""
    records: list[dict] = [{} for _ in arrivals]
    start = time.perf_counter() + 0.2

    async def one(i: int, at: float) -> None:
        try:
            answer = await client.predict(x[i % len(x)].tolist())
        except (OSError, RuntimeError, asyncio.IncompleteReadError) as exc:
            records[i]["error"] = str(exc)
            return
        records[i].update(
            latency_ms=(time.perf_counter() - (start + at)) * 1000, model=answer["model"], label=answer["labels"][0]
        )

    tasks = []
    for i, (at, phase) in enumerate(arrivals):
        records[i].update(phase=phase.name, heavy=phase.heavy, sample=i % len(x))
        delay = start + at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, at)))
    done, pending = await asyncio.wait(tasks, timeout=drain_s) if tasks else (set(), set())
    for task in pending:
        task.cancel()
    for record in records:
        if "latency_ms" not in record and "error" not in record:
            record["error"] = f"no answer within {drain_s:g} s of the last arrival"
    return records


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99)}


def summarize(records: list[dict], labels: np.ndarray, accuracy: dict[str, float], reference: str) -> dict:
    """Latency percentiles (heavy load, all), answers' accuracy, relative accuracy change, requests per model."""
    answered = [r for r in records if "latency_ms" in r]
    changes = [abs(accuracy[r["model"]] - accuracy[reference]) / accuracy[reference] for r in answered]
    served: dict[str, int] = {}
    for r in answered:
        served[r["model"]] = served.get(r["model"], 0) + 1
    return {
        "requests": len(records),
        "errors": len(records) - len(answered),
        "heavy": _percentiles([r["latency_ms"] for r in answered if r["heavy"]]),
        "all": _percentiles([r["latency_ms"] for r in answered]),
        "answers_accuracy": float(np.mean([r["label"] == labels[r["sample"]] for r in answered])) if answered else None,
        "accuracy_change_p90": float(np.percentile(changes, 90)) if changes else None,
        "accuracy_change_mean": float(np.mean(changes)) if changes else None,
        "served": dict(sorted(served.items())),
    }


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if not numerator or not denominator else round(numerator / denominator, 3)


async def _run_settings(
    store: Path,
    settings: list[str],
    phases: list[Phase],
    within: float,
    slo_ms: float,
    seed: int,
    accuracy: dict[str, float],
    echo: Callable[[str], None] | None,
) -> dict:
    test = labelled_test_set()
    reference = f"{REPOSITORY}/{WIDE}"
    order = np.random.default_rng(seed).permutation(len(test.y))
    x, labels = test.x[order], test.y[order]
    results: dict[str, dict] = {}
    arrivals: list[tuple[float, Phase]] = []
    capacity = None
    for name in settings:
        setting = SETTINGS[name]
        server = ServerProcess(store, reference, within, slo_ms, bool(setting["switching"]), int(setting["replicas"]))
        try:
            client = await server.ready()
            if capacity is None:  # the fixed model's capacity, measured once, fixes the trace for every setting
                capacity = await measure_capacity(client, x)
                arrivals = arrival_times(phases, capacity, seed)
                if echo:
                    echo(f"Fixed model capacity {capacity:.0f} requests/s; trace of {len(arrivals)} requests")
            else:
                for i in range(20):  # warm the connection and the model like the first setting's calibration did
                    await client.predict(x[i].tolist())
            await asyncio.sleep(1.5)  # let the warm-up leave the policy's one-second window before the trace
            started = time.perf_counter()
            records = await play(client, arrivals, x, drain_s=60.0)
            status = await client.status()
            await client.close()
        finally:
            server.stop()
        summary = summarize(records, labels, accuracy, reference)
        summary["seconds"] = round(time.perf_counter() - started, 1)
        summary["switches"] = status["switch_count"]
        summary["switch_log"] = [
            {k: s[k] for k in ("at_s", "from_model", "to_model", "reason", "query")} for s in status["switches"][:20]
        ]
        results[name] = summary
        if echo:
            heavy = summary["heavy"]
            echo(
                f"  {name:9s} heavy p50/p90/p99 {heavy['p50_ms']:.1f} / {heavy['p90_ms']:.1f} / "
                f"{heavy['p99_ms']:.1f} ms"
                f"  answers' accuracy {summary['answers_accuracy']:.4f}  switches {summary['switches']}"
                f"  errors {summary['errors']}  ({summary['seconds']} s)"
            )
    return {"capacity_per_s": capacity, "requests": len(arrivals), "settings": results}


def run_serving_benchmark(
    store: Path,
    within: float = 0.05,
    slo_ms: float = 50.0,
    duration_scale: float = 1.0,
    seed: int = 0,
    settings: list[str] | None = None,
    echo: Callable[[str], None] | None = print,
) -> dict:
    """Build (or reuse) the indexed family in `store`, play the trace against each setting, report the ratios."""
    accuracy = prepare_store(Path(store), seed, echo or (lambda _: None))
    chosen = settings or list(SETTINGS)
    unknown = [s for s in chosen if s not in SETTINGS]
    if unknown or chosen[0] != "fixed":
        raise ValueError(f"settings must start with 'fixed' and be among {', '.join(SETTINGS)}; got {chosen}")
    phases = default_phases(duration_scale)
    run = asyncio.run(_run_settings(Path(store), chosen, phases, within, slo_ms, seed, accuracy, echo))
    results = run["settings"]
    fixed = results["fixed"]
    report: dict[str, object] = {}
    for name in ("switching", "replica", "both"):
        if name in results:
            for q in ("p50", "p90", "p99"):
                report[f"{q}_ratio_{name}"] = _ratio(fixed["heavy"][f"{q}_ms"], results[name]["heavy"][f"{q}_ms"])
    if "switching" in results:
        report["accuracy_change_p90"] = results["switching"]["accuracy_change_p90"]
    if "both" in results:
        report["accuracy_change_p90_both"] = results["both"]["accuracy_change_p90"]
    report |= {
        "configured_model": f"{REPOSITORY}/{WIDE}",
        "within": within,
        "slo_ms": slo_ms,
        "capacity_per_s": run["capacity_per_s"],
        "requests_per_setting": run["requests"],
        "trace": [{"phase": p.name, "seconds": p.duration_s, "load": p.load, "heavy": p.heavy} for p in phases],
        "model_accuracy": accuracy,
        "settings": results,
    }
    return report


def format_serving_report(report: dict) -> str:
    """The ratios and each setting's heavy-load percentiles as a table."""
    lines = [
        f"Configured model {report['configured_model']}, WITHIN {report['within']:.1%}, "
        f"target {report['slo_ms']:g} ms; fixed-model capacity {report['capacity_per_s']:.0f}/s; "
        f"{report['requests_per_setting']} requests per setting",
        "",
        "| setting | heavy p50 ms | heavy p90 ms | heavy p99 ms | p90 ratio (fixed ÷ setting) | answers' accuracy "
        "| accuracy change p90 | switches |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    fixed_p90 = report["settings"]["fixed"]["heavy"]["p90_ms"]
    for name, result in report["settings"].items():
        heavy = result["heavy"]
        lines.append(
            f"| {name} | {heavy['p50_ms']:.1f} | {heavy['p90_ms']:.1f} | {heavy['p99_ms']:.1f} | "
            f"{fixed_p90 / heavy['p90_ms']:.2f} | {result['answers_accuracy']:.4f} | "
            f"{result['accuracy_change_p90']:.2%} | {result['switches']} |"
        )
    return "\n".join(lines)
