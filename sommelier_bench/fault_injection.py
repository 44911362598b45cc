"""Fault injection: every record and artifact kind of an indexed store truncated, bit-flipped and replaced by the
wrong type, on copies of the store; counts of what was detected, tracebacks and silent wrong answers.

    python benchmarks/fault_injection.py --store DIR          # an indexed store (copied per case, never changed)
    python benchmarks/fault_injection.py --store DIR --reindex all   # also re-index every damaged copy

`DIR` is a store root indexed by `sommelier index` (its `models/` and `index/`); by default the store root
(`SOMMELIER_HOME`, default `.sommelier/`). Each case copies `models/`, `index/`, `store.json` and the MLflow
store (the calibration sweep is linked, not copied), damages one file, then:

1. **verify**: `check_store` must report the damage (`sommelier verify` exits 1);
2. **queries**: a fixed set of queries (two references with refinement, a resource-only query, the query
   language with synthesized candidates) is answered on the damaged copy and compared with the answers on an
   undamaged copy: the same answer, a clear error (a `SommelierError`) or a changed answer with a
   `DamagedArtifactWarning` are fine; any other exception is a **traceback**, a changed answer without a
   warning a **silent wrong answer**;
3. **repair** (`--reindex`, or the representative subset `REINDEX_CASES`): `run_index` on the damaged copy must
   succeed, leave a store that `check_store` finds healthy, and answer the queries as before.

The case list, the damage and the classification are used as they are by `tests/test_fault_injection.py`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

COPIED = ("models", "index", "store.json", "mlflow", "extra-onnx")
"""What a case copies of the store (small); `calibration/` (the operator sweep, hundreds of MB) is linked."""
LINKED = ("calibration",)

RECORD_STAGES = (
    "fetched_model",
    "onnx_model",
    "model_outputs",
    "model_cushions",
    "model_profile",
    "device_profile@cpu",
    "peers",
    "pair_scores",
    "segment_matches",
    "pair_bounds",
)
"""Every per-model record kind (the device profile on the CPU)."""
INDEX_FILES = (
    "semantic_index.parquet",
    "resource_index.parquet",
    "synthesized_index.parquet",
    "operator_table/cpu.parquet",
    "semantic_store.npz",
    "bound_settings.json",
    "checksums.json",
)
"""Every index file kind, relative to the index directory (`checksums.json` is the manifest of the others)."""


OUTPUTS_FILE = "outputs/0.top1.npy"
"""A classifier's stored validation outputs (its top-1 labels), relative to its model directory."""


@dataclass(frozen=True)
class Target:
    """One file to damage: a record of a stage, an artifact (`model.onnx`, the stored top-1 labels
    `outputs/0.top1.npy` of the reference or of a candidate) or an index file."""

    name: str
    kind: str
    """`record`, `artifact` or `index`."""
    file: str
    """The stage record name, the artifact file name, or the index file's path under the index directory."""
    role: str = "reference"
    """Whose file: the queried reference's, or a candidate's (the model refinement measures against it)."""

    def path(self, root: Path, models: Models) -> Path:
        """The file under a store root."""
        from sommelier_core.store import ModelStore

        store = ModelStore(root)
        model_id = models.reference if self.role == "reference" else models.candidate
        if self.kind == "record":
            return store.record_path(self.file, model_id)
        if self.kind == "artifact":
            return store.model_dir(model_id) / self.file
        return store.index_dir / self.file


@dataclass(frozen=True)
class Models:
    """The models cases damage and query: a reference, a candidate of it refinement measures, another one."""

    reference: str
    candidate: str
    other: str


TARGETS: tuple[Target, ...] = (
    *(Target(f"record {stage}", "record", stage) for stage in RECORD_STAGES),
    Target("model.onnx", "artifact", "model.onnx"),
    Target("outputs top-1 (reference)", "artifact", OUTPUTS_FILE),
    Target("outputs top-1 (candidate)", "artifact", OUTPUTS_FILE, role="candidate"),
    *(Target(f"index {name}", "index", name) for name in INDEX_FILES),
)


def wrong_types(target: Target) -> tuple[str, ...]:
    """The well-formed replacements of the wrong type tried on a target."""
    if target.kind == "record":
        return ("other stage's record", "other model's record", "JSON list")
    if target.file == OUTPUTS_FILE:
        return ("int64 array of shape (3,)", "other model's outputs")
    if target.file == "model.onnx":
        return ("other model's ONNX file",)
    if target.file.endswith(".parquet"):
        return ("other index table",)
    if target.file.endswith(".npz"):
        return ("npz of other arrays",)
    if target.file == "bound_settings.json":
        return ("JSON list", "other valid settings")
    return ("JSON list",)


@dataclass(frozen=True)
class Case:
    """One file damaged one way."""

    target: Target
    damage: str
    """`truncate`, `bit-flip`, or one of `wrong_types(target)`."""

    @property
    def id(self) -> str:
        """A name for the case (a pytest id)."""
        return f"{self.target.name}: {self.damage}".replace(" ", "_")


CASES: tuple[Case, ...] = tuple(
    Case(target, damage) for target in TARGETS for damage in ("truncate", "bit-flip", *wrong_types(target))
)

REINDEX_CASES = frozenset(
    {
        "record_fetched_model:_truncate",
        "record_pair_bounds:_truncate",
        "record_model_cushions:_bit-flip",
        "model.onnx:_truncate",
        "outputs_top-1_(reference):_bit-flip",
        "index_semantic_index.parquet:_truncate",
    }
)
"""The representative subset re-indexed by the tests (each case re-runs a stage and the index: ≈ 20–40 s)."""


# -- damage ------------------------------------------------------------------------------------------------


def damage(case: Case, root: Path, models: Models) -> Path:
    """Damage one file of the store under `root` as the case says; returns the damaged file."""
    path = case.target.path(root, models)
    data = path.read_bytes()
    if case.damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif case.damage == "bit-flip":
        path.write_bytes(_flip(data, path))
    else:
        path.write_bytes(_replacement(case, root, models, path))
    return path


def _flip(data: bytes, path: Path) -> bytes:
    """One bit flipped where it keeps the file well-formed where possible: a digit of a JSON number (the
    record body for a record), a float's exponent in an `.npy`, else the middle byte."""
    flipped = bytearray(data)
    if path.suffix == ".json":
        start = data.find(b'"record":') if b'"record":' in data else data.find(b"{") + 1
        offsets = [i for i in range(max(start, 0), len(data)) if 0x30 <= data[i] <= 0x38]
        at = offsets[len(offsets) // 2] if offsets else len(data) // 2
        flipped[at] ^= 0x01
    elif path.suffix == ".npy":
        header = 10 + int.from_bytes(data[8:10], "little")
        at = header + 4 * ((len(data) - header) // 8) + 3
        flipped[at] ^= 0x40
    else:
        flipped[len(data) // 2] ^= 0x10
    return bytes(flipped)


def _replacement(case: Case, root: Path, models: Models, path: Path) -> bytes:
    """A well-formed file of the wrong type for the case's target."""
    from sommelier_core.store import ModelStore

    store = ModelStore(root)
    owner = models.reference if case.target.role == "reference" else models.candidate
    if case.damage == "JSON list":
        return b"[1, 2, 3]"
    if case.damage == "other stage's record":
        other = "pair_scores" if case.target.file == "peers" else "peers"
        return store.record_path(other, owner).read_bytes()
    if case.damage == "other model's record":
        return store.record_path(case.target.file, models.other).read_bytes()
    if case.damage == "int64 array of shape (3,)":
        buffer = io.BytesIO()
        np.save(buffer, np.arange(3, dtype=np.int64))
        return buffer.getvalue()
    if case.damage in ("other model's outputs", "other model's ONNX file"):
        return (store.model_dir(models.other) / case.target.file).read_bytes()
    if case.damage == "other index table":
        swap = "synthesized_index.parquet" if "semantic" in case.target.file else "semantic_index.parquet"
        return (store.index_dir / swap).read_bytes()
    if case.damage == "npz of other arrays":
        buffer = io.BytesIO()
        np.savez(buffer, schema=np.array(1), models=np.array(["a", "b"]))
        return buffer.getvalue()
    if case.damage == "other valid settings":
        settings = json.loads(path.read_bytes())
        return json.dumps(settings | {"delta": 0.5}, indent=2, sort_keys=True).encode()
    raise ValueError(f"unknown damage {case.damage!r}")


# -- running a case ------------------------------------------------------------------------------------------


def copy_store(source: Path, destination: Path) -> Path:
    """A copy of a store's small parts, with its calibration sweep linked (cases never write there)."""
    destination.mkdir(parents=True)
    for name in COPIED:
        item = source / name
        if item.is_dir():
            shutil.copytree(item, destination / name, symlinks=True)
        elif item.exists():
            shutil.copy2(item, destination / name)
    for name in LINKED:
        if (source / name).exists():
            (destination / name).symlink_to((source / name).resolve())
    return destination


REFERENCE_WITHIN = 0.5
"""The threshold of the queries that name the reference: it is picked with a transitive candidate within it, so
those queries have an answer to lose (a reference unlike every model, such as a model pretrained on another task and
not fine-tuned, would answer nothing whatever the damage)."""


def pick_models(root: Path) -> Models:
    """A reference with a transitive candidate within `REFERENCE_WITHIN` (what refinement measures), that candidate,
    and a third model comparable with the reference (the one closest to it, so the query naming it has answers)."""
    import polars as pl

    semantic = pl.read_parquet(root / "index" / "semantic_index.parquet")
    transitive = semantic.filter((pl.col("provenance") == "transitive") & (pl.col("upper") <= REFERENCE_WITHIN)).sort(
        ["reference_id", "candidate_id"]
    )
    row = transitive.row(0, named=True) if transitive.height else semantic.sort("reference_id").row(0, named=True)
    reference, candidate = row["reference_id"], row["candidate_id"]
    others = semantic.filter(
        (pl.col("reference_id") == reference) & ~pl.col("candidate_id").is_in([reference, candidate])
    )
    other = others.sort(["upper", "candidate_id"]).row(0, named=True)["candidate_id"]  # the closest: it has answers
    return Models(reference, candidate, other)


def answers(index_dir: Path, models: Models) -> list[object]:
    """The fixed queries' answers, as comparable data (no paths): one entry per query."""
    import sommelier_core
    from sommelier_core.querying.api import run_query

    def hits(found) -> list[tuple]:
        return [
            (h.model_id, h.provenance, round(h.upper_bound, 9), round(h.lower_bound, 9), repr(h.profile)) for h in found
        ]

    queries: list[Callable[[], object]] = [
        lambda: hits(
            sommelier_core.query(ref=models.reference, within=REFERENCE_WITHIN, index_dir=index_dir, refine=50)
        ),
        lambda: hits(sommelier_core.query(ref=models.other, within=0.1, limit=3, index_dir=index_dir, refine=50)),
        lambda: hits(sommelier_core.query(within=None, latency_ms=1000.0, index_dir=index_dir)),
        lambda: hits(
            run_query(
                f"FIND MODELS LIKE '{models.reference}' WITHIN {REFERENCE_WITHIN:.0%}",
                index_dir=index_dir,
                synthesized=True,
            ).hits
        ),
    ]
    return [_answer(q) for q in queries]


@dataclass(frozen=True)
class Answer:
    """One query's outcome: its hits, or the error it raised (a clear one or a traceback)."""

    hits: object = None
    error: str = ""
    traceback: str = ""
    warnings: tuple[str, ...] = ()


def _answer(run: Callable[[], object]) -> Answer:
    from sommelier_core.errors import SommelierError
    from sommelier_core.store import DamagedArtifactWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = run()
        except SommelierError as exc:
            return Answer(error=str(exc), warnings=_damage_warnings(caught, DamagedArtifactWarning))
        except Exception:  # noqa: BLE001 - any other exception is what this counts
            return Answer(traceback=traceback.format_exc(limit=-3))
    return Answer(hits=result, warnings=_damage_warnings(caught, DamagedArtifactWarning))


def _damage_warnings(caught, category) -> tuple[str, ...]:
    return tuple(str(w.message) for w in caught if issubclass(w.category, category))


@dataclass
class Outcome:
    """What one case gave."""

    case: Case
    damaged_file: str
    detected: bool
    """`check_store` reported damage."""
    verify_names_file: bool
    """The damage it reported names the damaged file (or the record pointing to it)."""
    answers: list[str] = field(default_factory=list)
    """Per query: `same`, `error`, `warned` (changed, with a warning naming the damage), `traceback`, `silent`."""
    details: list[str] = field(default_factory=list)
    repaired: bool | None = None
    """After `run_index` on the damaged copy: healthy and answering as before (None: not re-indexed)."""

    @property
    def tracebacks(self) -> int:
        """Queries (and the re-index) that ended in an exception other than a clear error."""
        reindex = any(d.startswith("reindex traceback") for d in self.details)
        return self.answers.count("traceback") + int(reindex)

    @property
    def silent(self) -> int:
        """Queries whose answer changed without a warning or an error."""
        return self.answers.count("silent")


def run_case(
    case: Case,
    source: Path,
    work: Path,
    models: Models,
    baseline: list[Answer],
    reindex: Callable[[Path], object] | None = None,
) -> Outcome:
    """Damage a copy of the store as the case says; verify it, query it, and (given `reindex`) repair it."""
    from sommelier_core.store import ModelStore
    from sommelier_core.store.health import check_store

    root = copy_store(source, work / case.id)
    path = damage(case, root, models)
    health = check_store(ModelStore(root))
    names = any(
        c.path.name == path.name or any(r == path for r in c.records) or str(path) in c.problem for c in health.damaged
    )
    outcome = Outcome(case, str(path.relative_to(root)), not health.healthy, names)
    for before, after in zip(baseline, answers(root / "index", models), strict=True):
        verdict, detail = classify(before, after, path)
        outcome.answers.append(verdict)
        if detail:
            outcome.details.append(detail)
    if reindex is not None:
        try:
            reindex(root)
        except Exception:  # noqa: BLE001 - counted
            outcome.details.append(f"reindex traceback: {traceback.format_exc(limit=-3)}")
            outcome.repaired = False
        else:
            healthy = check_store(ModelStore(root)).healthy
            again = answers(root / "index", models)
            same = all(classify(b, a, path)[0] == "same" for b, a in zip(baseline, again, strict=True))
            outcome.repaired = healthy and same
            if not outcome.repaired:
                outcome.details.append(f"after re-index: healthy={healthy}, same answers={same}")
    shutil.rmtree(root, ignore_errors=True)
    return outcome


def classify(before: Answer, after: Answer, damaged: Path) -> tuple[str, str]:
    """`same`, `error` (a clear error), `warned`, `traceback` or `silent`, with a line of detail."""
    if after.traceback:
        return "traceback", after.traceback.strip().splitlines()[-1]
    if after.error:
        if before.error == after.error:
            return "same", ""
        return "error", after.error
    if before.error or after.hits != before.hits:
        if after.warnings:
            return "warned", after.warnings[0]
        return "silent", f"answer changed without a warning ({damaged.name})"
    return "same", ""


def counts(outcomes: list[Outcome]) -> dict[str, int]:
    """Cases tried, detected (by `sommelier verify`), tracebacks, silent wrong answers, repaired/re-indexed."""
    reindexed = [o for o in outcomes if o.repaired is not None]
    return {
        "cases tried": len(outcomes),
        "cases detected": sum(o.detected for o in outcomes),
        "tracebacks": sum(o.tracebacks for o in outcomes),
        "silent wrong answers": sum(o.silent for o in outcomes),
        "queries answered with a clear error": sum(o.answers.count("error") for o in outcomes),
        "queries answered with a warning": sum(o.answers.count("warned") for o in outcomes),
        "cases re-indexed": len(reindexed),
        "cases repaired by re-indexing": sum(bool(o.repaired) for o in reindexed),
    }


def reindexer(repositories: Callable[[Path], list], settings: object | None = None) -> Callable[[Path], object]:
    """`run_index` on a store root (a fresh Dagster instance; the store's records say what to run), with the
    repositories `repositories(root)` lists."""

    def run(root: Path) -> object:
        from dagster import DagsterInstance

        from pipelines.definitions import build_resources
        from pipelines.index_run import run_index
        from resources.repositories import RepositoriesResource
        from resources.settings import IndexSettings

        previous = os.environ.get("SOMMELIER_HOME")
        os.environ["SOMMELIER_HOME"] = str(root)
        try:
            resources = build_resources("local") | {
                "repositories": RepositoriesResource(repositories=repositories(root)),
                "settings": settings or IndexSettings(operator_sweep_rounds=1),
            }
            with DagsterInstance.ephemeral() as instance:
                summary = run_index(echo=lambda line: None, instance=instance, resources=resources)
            if "<index>" in summary.failures:
                raise RuntimeError(f"index build failed: {summary.failures['<index>']}")
            return summary
        finally:
            if previous is None:
                os.environ.pop("SOMMELIER_HOME", None)
            else:
                os.environ["SOMMELIER_HOME"] = previous

    return run


def zoo_repositories(zoo: Path) -> Callable[[Path], list]:
    """The built-in zoo's two repositories (what `sommelier index` lists by default)."""

    def listed(root: Path) -> list:
        from resources.repositories import RepositoryConfig

        return [
            RepositoryConfig(kind="torchhub", name="zoo-torch", location=[str(zoo / "torchhub")], trusted=True),
            RepositoryConfig(kind="tfhub", name="zoo-tf", location=[str(zoo / "tfhub")], trusted=True),
        ]

    return listed


def main(argv: list[str] | None = None) -> int:
    """Run every case on copies of an indexed store; print each case's outcome and the counts."""
    from sommelier_core.settings import store_root

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=None, help="an indexed store root (default: the store root)")
    parser.add_argument("--reindex", choices=("none", "subset", "all"), default="none")
    parser.add_argument("--zoo", type=Path, default=None, help="the zoo the store indexed (for --reindex)")
    parser.add_argument("--json", type=Path, default=None, help="also write the counts and outcomes here")
    args = parser.parse_args(argv)
    source = (args.store or store_root()).resolve()
    models = pick_models(source)
    work = source.parent / f".{source.name}-faults"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    reindex = reindexer(zoo_repositories(args.zoo or source / "zoo")) if args.reindex != "none" else None
    started = time.perf_counter()
    baseline = answers(copy_store(source, work / "baseline") / "index", models)
    print(f"models: reference {models.reference}, candidate {models.candidate}, other {models.other}")
    outcomes = []
    for case in CASES:
        chosen = args.reindex == "all" or (args.reindex == "subset" and case.id in REINDEX_CASES)
        outcome = run_case(case, source, work, models, baseline, reindex if chosen else None)
        outcomes.append(outcome)
        flags = "detected" if outcome.detected else "NOT DETECTED"
        repaired = "" if outcome.repaired is None else (" repaired" if outcome.repaired else " NOT REPAIRED")
        print(f"  {case.id:<60} {flags:<13} queries {','.join(outcome.answers)}{repaired}")
        for detail in outcome.details:
            print(f"      {detail[:200]}")
    shutil.rmtree(work, ignore_errors=True)
    figures = counts(outcomes)
    print(f"\nFault injection on {source} ({time.perf_counter() - started:.0f} s):")
    for name, value in figures.items():
        print(f"  {name:<40} {value}")
    if args.json:
        args.json.write_text(json.dumps({"counts": figures, "cases": [o.case.id for o in outcomes]}, indent=2))
    return 0 if figures["tracebacks"] == 0 and figures["silent wrong answers"] == 0 else 1
