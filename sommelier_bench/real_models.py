"""Real models of real size (issue 19): index real pretrained models and their int8/fp16 variants with default
settings, and report memory, time, equivalence, weight bytes and a peer profiler's figures.

The repository is `sommelier_core.zoo.pretrained`'s: a 224×224 document-orientation classifier (1.7 M params), a
Paddle-exported text-direction classifier run at 48×192, and MTCNN's ONet (three outputs), each with int8 dynamic
(QOperator), int8 static (QDQ) and fp16 variants made by ONNX Runtime's and onnxconverter-common's own tools.

`sommelier index` runs in a child process (so its peak memory is its own) with `IndexSettings()` untouched: one
ONNX-folder repository per family, each family's validation `.npz` chosen by repository (the families have
different input shapes and the text-direction graph's symbolic H, W fit any of them). Its peak memory is the
kernel's high-water mark of its resident set (`getrusage(RUSAGE_CHILDREN).ru_maxrss`; `sommelier index` runs every
stage in that one process), cross-checked by polling `/proc/<pid>/status` (VmRSS) of the child and its descendants.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

LINEAR_OP_TYPES = frozenset({"Conv", "Gemm", "MatMul", "ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul"})
"""The operators whose MACs both profilers count the same way (onnx-tool also counts elementwise ops)."""

_CHILD = textwrap.dedent(
    """
    import json, sys
    from dagster import ConfigurableResource
    from pipelines.definitions import build_resources
    from pipelines.index_run import run_index
    from resources.repositories import RepositoriesResource, RepositoryConfig
    from resources.validation import ValidationDataResource
    from sommelier_core.ingest.validation import validation_input_shape, validation_set_for

    folders, data = json.loads(sys.argv[1]), json.loads(sys.argv[2])

    class ValidationByRepository(ValidationDataResource):
        \"\"\"The validation `.npz` of each model's repository (the families differ in input shape).\"\"\"

        by_repository: dict[str, str] = {}

        def dataset_for(self, model_id, signature):
            return validation_set_for(model_id, signature, self.by_repository[model_id.split("/")[0]], None)

        def input_shape_for(self, model_id, signature):
            return validation_input_shape(model_id, signature, self.by_repository[model_id.split("/")[0]])

    resources = build_resources("local")
    resources["repositories"] = RepositoriesResource(
        repositories=[RepositoryConfig(kind="onnx", name=name, location=[path]) for name, path in folders.items()]
    )
    resources["validation"] = ValidationByRepository(by_repository=data)
    summary = run_index(resources=resources)
    print("SUMMARY " + json.dumps({
        "models": summary.models, "failures": summary.failures,
        "stage_seconds": dict(summary.stage_seconds), "total_seconds": summary.total_seconds,
    }))
    """
)


@dataclass
class IndexRun:
    """What the child `sommelier index` did, and what it cost."""

    models: list[str]
    failures: dict[str, str]
    stage_seconds: dict[str, float]
    total_seconds: float
    wall_seconds: float
    peak_rss_bytes: int
    """The kernel's high-water mark of the child's resident set."""
    polled_peak_rss_bytes: int
    """The largest sum of VmRSS over the child and its descendants seen while polling."""


@dataclass
class VariantRow:
    """One variant against its original, as the index recorded it, and as measured here."""

    original: str
    variant: str
    measured_difference: float
    bound: float
    equivalent_within_default: bool
    bound_covers_measured: bool


@dataclass
class ProfileRow:
    """Sommelier's static profile of one model next to onnx-tool's and the file's stored tensors."""

    model: str
    params: int
    weight_bytes: int
    stored_tensor_bytes: int
    macs: int
    onnx_tool_linear_macs: int | None
    """None where onnx-tool cannot profile the graph (it has no shape rule for DynamicQuantizeLinear)."""
    onnx_tool_params: int | None


@dataclass
class RealModelsReport:
    """Every figure the benchmark prints."""

    index: IndexRun
    variants: list[VariantRow] = field(default_factory=list)
    profiles: list[ProfileRow] = field(default_factory=list)
    build_seconds: float = 0.0


def run_child_index(home: Path, folders: dict[str, Path], data: dict[str, Path], poll_s: float = 0.2) -> IndexRun:
    """`sommelier index` (default `IndexSettings`) in a child process under store root `home`, its peak RSS."""
    env = {**os.environ, "SOMMELIER_HOME": str(home)}
    command = [
        sys.executable,
        "-c",
        _CHILD,
        json.dumps({k: str(v) for k, v in folders.items()}),
        json.dumps({k: str(v) for k, v in data.items()}),
    ]
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(child.stdout or []), daemon=True)
    reader.start()
    while child.poll() is None:
        peak = max(peak, _tree_rss_bytes(child.pid))
        time.sleep(poll_s)
    reader.join()
    high_water = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
    wall = time.perf_counter() - started
    summary_lines = [line for line in lines if line.startswith("SUMMARY ")]
    if child.returncode != 0 or not summary_lines:
        tail = "".join(line for line in lines[-30:] if "W:onnxruntime" not in line)
        raise RuntimeError(f"sommelier index exited with {child.returncode}:\n{tail}")
    summary = json.loads(summary_lines[-1][len("SUMMARY ") :])
    progress = [line.rstrip() for line in lines if line.startswith(("  [", "Indexed", "Stage", "Indexing"))]
    print("\n".join(progress))
    return IndexRun(
        summary["models"],
        summary["failures"],
        summary["stage_seconds"],
        summary["total_seconds"],
        wall,
        high_water,
        peak,
    )


def _tree_rss_bytes(root: int) -> int:
    """VmRSS of process `root` and every descendant, summed (read from /proc; 0 for processes gone meanwhile)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    total = 0
    for pid in tree:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def variant_rows(home: Path, families: dict[str, list[str]]) -> list[VariantRow]:
    """Each variant's (original → variant) record in the semantic index: measured difference and upper bound."""
    import polars as pl

    from sommelier_core import defaults

    frame = pl.read_parquet(home / "index" / "semantic_index.parquet")
    rows = []
    for family_name, names in families.items():
        original = f"{family_name}/{names[0]}"
        for name in names[1:]:
            variant = f"{family_name}/{name}"
            hit = frame.filter((pl.col("reference_id") == original) & (pl.col("candidate_id") == variant))
            if hit.is_empty():
                rows.append(VariantRow(original, variant, float("nan"), float("nan"), False, False))
                continue
            record = hit.row(0, named=True)
            measured, upper = _measured(home, original, variant), float(record["upper"])
            rows.append(VariantRow(original, variant, measured, upper, upper <= defaults.WITHIN, upper >= measured))
    return rows


def _measured(home: Path, reference: str, candidate: str) -> float:
    """The pair's measured difference as the `pair_bounds` records hold it (either model's record)."""
    from sommelier_core.store import ModelStore

    store = ModelStore(home)
    for owner in (reference, candidate):
        if not store.has_record("pair_bounds", owner):
            continue
        for bound in store.load_record("pair_bounds", owner).bounds:
            if bound.reference_id == reference and bound.candidate_id == candidate:
                return float(bound.empirical)
    return float("nan")


def profile_rows(folders: dict[str, Path], input_shapes: dict[str, tuple[int, ...]]) -> list[ProfileRow]:
    """Sommelier's static profile (batch 1) of every file, the bytes of its stored tensors, and onnx-tool's figures."""
    from onnx import numpy_helper

    from sommelier_core.ingest.convert import load_onnx
    from sommelier_core.profiling.static import static_profile

    rows = []
    for family_name, folder in folders.items():
        for path in sorted(folder.glob("*.onnx")):
            model = load_onnx(path)
            name = next(i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer})
            shape = input_shapes[family_name]
            profile = static_profile(model, 1, {name: shape})
            stored = sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)
            stored += sum(
                numpy_helper.to_array(a.t).nbytes
                for node in model.graph.node
                if node.op_type == "Constant"
                for a in node.attribute
                if a.name == "value"
            )
            linear, peer_params = _onnx_tool_figures(model, path.name, shape)
            rows.append(
                ProfileRow(
                    f"{family_name}/{path.stem}",
                    profile.params,
                    profile.weight_bytes,
                    stored,
                    profile.macs,
                    linear,
                    peer_params,
                )
            )
    return rows


def _onnx_tool_figures(model: object, name: str, shape: tuple[int, ...]) -> tuple[int | None, int | None]:
    """onnx-tool's Conv/Gemm/MatMul MACs and its params for a model at `shape`; (None, None) where it fails."""
    import warnings

    import onnx
    import onnx_tool

    with (
        contextlib.redirect_stdout(io.StringIO()),
        tempfile.TemporaryDirectory() as scratch,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        repaired = Path(scratch) / name  # onnx-tool reads the same (repaired, -1-free) graph
        onnx.save_model(model, str(repaired))
        try:
            peer = onnx_tool.Model(str(repaired))
            peer.graph.shape_infer({peer.graph.input[0]: np.zeros(shape, dtype=np.float32)})
            peer.graph.profile()
        except Exception:  # a peer profiler's gap (e.g. no value_infer for DynamicQuantizeLinear) is not ours
            return None, None
    linear = sum(
        int(node.macs[0] if isinstance(node.macs, list) else node.macs)
        for node in peer.graph.nodemap.values()
        if node.op_type in LINEAR_OP_TYPES
    )
    return linear, int(peer.graph.params)


def run_benchmark(work_dir: Path, samples: int = 256) -> RealModelsReport:
    """Build the repository, index it in a child process, and gather every figure."""
    from sommelier_core.zoo.pretrained import FAMILIES, build_pretrained_repository

    started = time.perf_counter()
    repository = build_pretrained_repository(work_dir / "repository", samples=samples)
    build_seconds = time.perf_counter() - started
    home = work_dir / "home"
    index = run_child_index(home, repository.folders, repository.validation)
    report = RealModelsReport(index, build_seconds=build_seconds)
    report.variants = variant_rows(home, repository.models)
    report.profiles = profile_rows(repository.folders, {f.name: (1, *f.sample_shape) for f in FAMILIES})
    return report


def print_report(report: RealModelsReport) -> None:
    """The figures, as tables people read."""
    index = report.index
    count = max(1, len(index.models))
    sweep = index.stage_seconds.get("operator_table", 0.0)
    print(f"\nRepository built in {report.build_seconds:.1f} s; {len(index.models)} models indexed")
    peak_gib = index.peak_rss_bytes / 2**30
    polled_gib = index.polled_peak_rss_bytes / 2**30
    print(
        f"sommelier index (default settings): wall {index.wall_seconds:.1f} s, peak RSS {peak_gib:.2f} GiB "
        f"(polled process tree: {polled_gib:.2f} GiB)"
    )
    print(
        f"  per model: {(index.wall_seconds - sweep) / count:.1f} s excluding the once-per-device calibration sweep "
        f"({sweep:.1f} s), {index.wall_seconds / count:.1f} s including it"
    )
    for stage, seconds in sorted(index.stage_seconds.items(), key=lambda item: -item[1])[:8]:
        print(f"    {stage:<28} {seconds:8.1f} s")
    if index.failures:
        print("  FAILURES: " + "; ".join(f"{k}: {v}" for k, v in index.failures.items()))
    print("\nVariant vs original (semantic index, original as reference)")
    print(f"  {'variant':<44} {'measured':>9} {'bound':>8} {'bound≥measured':>15} {'≤ 5 %':>6}")
    for row in report.variants:
        print(
            f"  {row.variant:<44} {row.measured_difference:9.2%} {row.bound:8.2%} "
            f"{'yes' if row.bound_covers_measured else 'NO':>15} {'yes' if row.equivalent_within_default else 'no':>6}"
        )
    print("\nStatic profile (batch 1) vs the stored tensors and onnx-tool 1.0.1 (Conv/Gemm/MatMul MACs)")
    print(
        f"  {'model':<44} {'params':>9} {'weight B':>10} {'stored B':>10} {'ratio':>6} {'MACs':>11} "
        f"{'onnx-tool':>11} {'otool params':>12}"
    )
    for row in report.profiles:
        ratio = row.weight_bytes / row.stored_tensor_bytes if row.stored_tensor_bytes else float("nan")
        print(
            f"  {row.model:<44} {row.params:9d} {row.weight_bytes:10d} {row.stored_tensor_bytes:10d} {ratio:6.3f} "
            f"{row.macs:11d} {_or_dash(row.onnx_tool_linear_macs):>11} {_or_dash(row.onnx_tool_params):>12}"
        )


def report_json(report: RealModelsReport) -> dict:
    """The report as JSON-ready data."""
    return asdict(report)


def _or_dash(value: int | None) -> str:
    return "—" if value is None else str(value)
