"""What indexing costs per model as the repository grows: 100 models, then 1 000, in one run (issue 14).

`generate_onnx_repository(folder, n)` writes `n` small ONNX models straight into a folder (milliseconds each):
the zoo's digits families written by hand — a linear classifier, a one-hidden-layer MLP at widths 8–64 and a
small CNN — on 8×8 digits, and an MLP on the 40-sample MNIST-1D signals, so peers are drawn from two
compatibility groups of the sizes a real folder has. Each model has its own seeded weights.

`measure_index_cost(root, sizes)` indexes the first `sizes[0]` models on a fresh store, then adds models until the
folder holds `sizes[1]` and indexes again (an incremental insertion, as a growing repository is indexed), and
reports for each step the wall seconds per model newly indexed and the seconds per stage. The target: per-model
cost at 1 000 no more than 1.2 × the cost at 100 (flat), and at most 1 s per model all-in on 2 cores.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DEFAULT_SIZES = (100, 1000)
"""Repository sizes the per-model cost is compared at."""
REPOSITORY_NAME = "gen"
"""The folder repository's name: models are `gen/<family>_<index>`."""
FAMILIES = ("linear", "mlp", "cnn", "mlp1d")
"""The generated families, drawn round-robin: three on 8×8 digits (one compatibility group), one on MNIST-1D."""
OPSET = 17


def _save(path: Path, nodes: list, inputs: list, initializers: dict[str, np.ndarray], name: str) -> None:
    graph = helper.make_graph(
        nodes,
        name,
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        initializer=[numpy_helper.from_array(value, key) for key, value in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.save(model, path)


def _floats(rng: np.random.Generator, *shape: int) -> np.ndarray:
    fan_in = int(np.prod(shape[:-1])) if len(shape) == 2 else int(np.prod(shape[1:]))
    return (rng.normal(size=shape) / np.sqrt(max(fan_in, 1))).astype(np.float32)


def write_model(path: Path, family: str, seed: int) -> None:
    """One model of `family` (one of `FAMILIES`) with weights seeded by `seed`; (N, …) → (N, 10) logits."""
    rng = np.random.default_rng(seed)
    digits = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])]
    flatten = helper.make_node("Reshape", ["x", "shape"], ["flat"])
    shape = np.array([-1, 64], dtype=np.int64)
    if family == "linear":
        nodes = [flatten, helper.make_node("Gemm", ["flat", "w", "b"], ["y"])]
        _save(path, nodes, digits, {"shape": shape, "w": _floats(rng, 64, 10), "b": _floats(rng, 1, 10)[0]}, family)
    elif family in ("mlp", "mlp1d"):
        width = int(8 * 2 ** (seed % 4))
        features = 64 if family == "mlp" else 40
        inputs = (
            digits if family == "mlp" else [helper.make_tensor_value_info("flat", TensorProto.FLOAT, ["N", features])]
        )
        nodes = [
            helper.make_node("Gemm", ["flat", "w1", "b1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Gemm", ["r", "w2", "b2"], ["y"]),
        ]
        weights = {
            "w1": _floats(rng, features, width),
            "b1": np.zeros(width, np.float32),
            "w2": _floats(rng, width, 10),
            "b2": np.zeros(10, np.float32),
        }
        if family == "mlp":
            nodes, weights = [flatten, *nodes], {"shape": shape, **weights}
        _save(path, nodes, inputs, weights, family)
    elif family == "cnn":
        channels = 4 + seed % 5
        nodes = [
            helper.make_node("Conv", ["x", "k"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("GlobalAveragePool", ["r"], ["p"]),
            helper.make_node("Flatten", ["p"], ["f"]),
            helper.make_node("Gemm", ["f", "w", "b"], ["y"]),
        ]
        weights = {"k": _floats(rng, channels, 1, 3, 3), "w": _floats(rng, channels, 10), "b": np.zeros(10, np.float32)}
        _save(path, nodes, digits, weights, family)
    else:
        raise ValueError(f"unknown family {family!r}; families are {', '.join(FAMILIES)}")


def model_name(index: int) -> str:
    """The file stem of the `index`-th generated model (its family round-robin, zero-padded so names sort)."""
    return f"{FAMILIES[index % len(FAMILIES)]}_{index:05d}"


def generate_onnx_repository(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """Write models 0 … n−1 into `folder` (those already there are kept), returning every path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(n):
        path = folder / f"{model_name(index)}.onnx"
        if not path.exists():
            write_model(path, FAMILIES[index % len(FAMILIES)], seed * 1_000_003 + index)
        paths.append(path)
    return paths


@dataclass
class IndexCostStep:
    """One indexing run of the benchmark: how many models the folder held, how many were indexed, and the time."""

    repository_models: int
    indexed_models: int
    total_seconds: float
    cpu_seconds: float
    """CPU seconds of this process over the run (every thread, ONNX Runtime's included): the cost a loaded
    machine's wall time hides."""
    stage_seconds: dict[str, float] = field(default_factory=dict)
    overhead_seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def seconds_per_model(self) -> float:
        """Wall seconds of the run divided by the models it indexed (all-in: Dagster, MLflow, indexes)."""
        return self.total_seconds / max(self.indexed_models, 1)

    @property
    def cpu_seconds_per_model(self) -> float:
        """CPU seconds of the run divided by the models it indexed."""
        return self.cpu_seconds / max(self.indexed_models, 1)


def measure_index_cost(
    root: Path, sizes: Sequence[int] = DEFAULT_SIZES, settings: dict | None = None, echo: Callable = print
) -> list[IndexCostStep]:
    """Index a generated folder grown to each of `sizes` in turn on one store under `root`; one step per size.

    `settings` overrides `IndexSettings` fields (e.g. fewer latency repeats for a quick look)."""
    os.environ["SOMMELIER_HOME"] = str(root)
    from dagster import DagsterInstance

    from pipelines.definitions import build_resources
    from pipelines.index_run import prepare_instance, run_index
    from resources.repositories import RepositoriesResource, RepositoryConfig
    from resources.settings import IndexSettings

    folder = root / "repository"
    resources = build_resources("local") | {
        "repositories": RepositoriesResource(
            repositories=[RepositoryConfig(kind="onnx", name=REPOSITORY_NAME, location=[str(folder)])]
        ),
        "settings": IndexSettings(**(settings or {})),
    }
    instance: DagsterInstance = prepare_instance()
    steps = []
    indexed = 0
    for size in sizes:
        generate_onnx_repository(folder, size)
        t0, cpu0 = time.perf_counter(), time.process_time()
        summary = run_index(echo=echo, instance=instance, resources=resources)
        total, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        steps.append(
            IndexCostStep(
                repository_models=size,
                indexed_models=size - indexed,
                total_seconds=total,
                cpu_seconds=cpu,
                stage_seconds=dict(summary.stage_seconds),
                overhead_seconds=summary.run_overhead_seconds,
                failures=dict(summary.failures),
            )
        )
        indexed = size
    return steps


def cost_table(steps: Sequence[IndexCostStep]) -> str:
    """The per-stage table: seconds per newly indexed model for each step, and the last step's ratio to the first."""
    first, last = steps[0], steps[-1]
    stages = list(dict.fromkeys(name for step in steps for name in step.stage_seconds))
    header = f"{'stage':<44}" + "".join(f"{f'at {s.repository_models}':>12}" for s in steps) + f"{'ratio':>8}"
    lines = [header, f"{'':<44}" + "".join(f"{'s/model':>12}" for _ in steps)]

    def row(name: str, values: list[float]) -> str:
        ratio = values[-1] / values[0] if values[0] > 0 else float("nan")
        return f"{name:<44}" + "".join(f"{v:>12.3f}" for v in values) + f"{ratio:>8.2f}"

    for name in stages:
        lines.append(row(name, [s.stage_seconds.get(name, 0.0) / max(s.indexed_models, 1) for s in steps]))
    lines.append(row("Dagster and driver overhead", [s.overhead_seconds / max(s.indexed_models, 1) for s in steps]))
    lines.append(row("all-in, wall", [s.seconds_per_model for s in steps]))
    lines.append(row("all-in, CPU (this process, every thread)", [s.cpu_seconds_per_model for s in steps]))
    lines.append(
        f"per-model cost at {last.repository_models} ÷ at {first.repository_models}: "
        f"{last.seconds_per_model / first.seconds_per_model:.2f} (wall), "
        f"{last.cpu_seconds_per_model / first.cpu_seconds_per_model:.2f} (CPU); target ≤ 1.2"
    )
    return "\n".join(lines)
