"""The whole store checked file by file (what `sommelier verify` reports), and repaired.

Every stage record under `models/` is read and checked against its checksum, with every file it points to
(`model.onnx`, `outputs.npy`, …); every file of the index directories is checked against the manifest beside
it (`checked_files`). Repairing removes each damaged record, and each record pointing to a damaged file, so the
next `sommelier index` runs that model's stage again, and each damaged index file, which the next index build
writes again.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from sommelier_core.stages import BY_NAME, DEVICE_SEPARATOR
from sommelier_core.store.checked_files import CHECKSUMS_FILE, check_listed, forget
from sommelier_core.store.checksums import SEVERITY, FileCheck
from sommelier_core.store.model_store import ModelStore
from sommelier_core.store.records import RECORD_SUFFIX

INDEX_DIRECTORIES = ("index", "index/operator_table", "devices")
"""Directories under the store root whose files are index files (checked against their `checksums.json`)."""


@dataclass
class StoreHealth:
    """Each stored file's health, one check per file (the worst, where several records point to one file)."""

    root: Path
    checks: list[FileCheck] = field(default_factory=list)
    models: int = 0

    @property
    def damaged(self) -> list[FileCheck]:
        """The damaged files, each naming the model and what is wrong."""
        return [c for c in self.checks if c.status == "damaged"]

    @property
    def healthy(self) -> bool:
        """Whether nothing is damaged (unverified files from before checksums are not damage)."""
        return not self.damaged

    def counts(self) -> dict[str, dict[str, int]]:
        """Kind of file → status → how many files."""
        counts: dict[str, Counter] = {}
        for check in self.checks:
            counts.setdefault(check.kind, Counter())[check.status] += 1
        return {kind: dict(counter) for kind, counter in sorted(counts.items())}

    def to_data(self) -> dict:
        """The report as JSON data (what `sommelier verify --json` prints)."""
        return {
            "root": str(self.root),
            "healthy": self.healthy,
            "models": self.models,
            "files": len(self.checks),
            "counts": self.counts(),
            "damaged": [
                {
                    "path": str(c.path),
                    "kind": c.kind,
                    "model_id": c.model_id,
                    "stage": c.stage,
                    "problem": c.problem,
                }
                for c in self.damaged
            ],
        }


def check_store(store: ModelStore, full: bool = True) -> StoreHealth:
    """Check every stage record (and the files each points to) and every index file of a store.

    `full` compares every file with its recorded SHA-256; without it only sizes are compared (a `stat`).
    """
    by_path: dict[Path, FileCheck] = {}
    models = store.root / "models"
    model_dirs = sorted(p for p in models.iterdir() if p.is_dir()) if models.is_dir() else []
    for directory in model_dirs:
        for path in sorted(directory.glob(f"*{RECORD_SUFFIX}")):
            name = path.name.removesuffix(RECORD_SUFFIX)
            stage = BY_NAME.get(name.split(DEVICE_SEPARATOR, 1)[0])
            if stage is None or not stage.record:
                continue  # not a stage record
            for check in store.inspect_record(path, name, full=full):
                _keep_worst(by_path, check)
    for relative in INDEX_DIRECTORIES:
        directory = store.root / relative
        if directory.is_dir():
            names = [p.name for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")]
            for check in check_listed(directory, [n for n in names if n != CHECKSUMS_FILE], full):
                kind = f"index {check.path.name}" if relative == "index" else f"{relative}/*{check.path.suffix}"
                _keep_worst(by_path, FileCheck(check.path, check.status, kind, problem=check.problem))
    return StoreHealth(store.root, sorted(by_path.values(), key=lambda c: str(c.path)), len(model_dirs))


def repair(store: ModelStore, health: StoreHealth) -> list[Path]:
    """Remove what is damaged so the next `sommelier index` writes it again: each damaged record and each record
    pointing to a damaged file (its stage re-runs), and each damaged index file (the index is rebuilt).

    The damaged files a record points to are left for its stage to overwrite. Returns the files removed.
    """
    removed: list[Path] = []
    for check in health.damaged:
        if not check.records:
            forget(check.path)
            removed.append(check.path)
        for path in check.records:
            if path.exists():
                path.unlink()
                removed.append(path)
    return sorted(set(removed), key=str)


def _keep_worst(by_path: dict[Path, FileCheck], check: FileCheck) -> None:
    """Keep one check per file, the worst; a damaged file several records point to names every record that
    found it damaged, so repairing removes them all."""
    seen = by_path.get(check.path)
    if seen is None or SEVERITY[check.status] > SEVERITY[seen.status]:
        by_path[check.path] = check
    elif check.status == seen.status == "damaged":
        by_path[check.path] = replace(seen, records=tuple(dict.fromkeys((*seen.records, *check.records))))
