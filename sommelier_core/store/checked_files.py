"""Index files written with their checksums in a small manifest beside them, and read back verified.

The index tables (`index/*.parquet`, `index/operator_table/<device>.parquet`), the semantic store
(`semantic_store.npz`) and the bound settings (`bound_settings.json`) are not per-model records, so their
checksums live in `checksums.json` in the same directory: `{"format": "sommelier.checksums", "checksum": …,
"files": {"semantic_index.parquet": {"bytes": …, "sha256": …}}}`. A writer replaces the file (through a rename)
and its manifest entry under an exclusive lock on the directory, a reader reads both under a shared lock, so a
reader never pairs a new file with an old entry. A file without an entry (written before checksums) is read
as before, unverified; one that does not match its entry, or does not parse, raises `DamagedArtifact` naming
the file and saying to run `sommelier index`, which rebuilds every index file.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from sommelier_core.store.atomic import write_atomic
from sommelier_core.store.checksums import FileCheck, FileChecksum, bytes_checksum, file_checksum, mismatch, text_digest
from sommelier_core.store.errors import REBUILD_HINT, DamagedArtifact

CHECKSUMS_FILE = "checksums.json"
CHECKSUMS_FORMAT = "sommelier.checksums"
_LOCK_FILE = ".checksums.lock"


def write_checked(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically and record its checksum in the manifest beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent, exclusive=True):
        write_atomic(path, data)
        files = _read_manifest(path.parent)[0] or {}
        files[path.name] = bytes_checksum(data)
        _write_manifest(path.parent, files)


def read_checked(path: Path) -> bytes:
    """The contents of an index file, checked against the checksum recorded when it was written
    (`DamagedArtifact` naming it if they differ; `FileNotFoundError` if there is no such file)."""
    path = Path(path)
    with _locked(path.parent, exclusive=False):
        data = path.read_bytes()
        files = _read_manifest(path.parent)[0] or {}
    recorded = files.get(path.name)
    if recorded is not None and (problem := mismatch(recorded, bytes_checksum(data))):
        raise damaged_index_file(path, problem)
    return data


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> None:
    """Write a polars frame as parquet through a temporary name and a rename, its checksum in the manifest."""
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    write_checked(path, buffer.getvalue())


def read_parquet_checked(path: Path) -> pl.DataFrame:
    """An index table written by `write_parquet_atomic`, verified; `DamagedArtifact` naming the file if it is
    damaged or is not a parquet table."""
    data = read_checked(path)
    try:
        return pl.read_parquet(io.BytesIO(data))
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise damaged_index_file(path, f"not a parquet table ({_first_line(exc)})") from None


def damaged_index_file(path: Path, problem: str) -> DamagedArtifact:
    """The error for a damaged index file: names it, says what is wrong and to rebuild the index."""
    return DamagedArtifact(f"{path} is damaged: {problem}; {REBUILD_HINT}", Path(path))


def check_listed(directory: Path, names: list[str] | None = None, full: bool = True) -> list[FileCheck]:
    """The health of the files of one directory that its manifest lists, plus `names` (files expected there
    whether listed or not): each `ok`, `unverified` (no checksum recorded) or `damaged`; and the manifest
    itself, when it is damaged. `full=False` compares sizes only."""
    directory = Path(directory)
    with _locked(directory, exclusive=False):
        files, problem = _read_manifest(directory)
    checks = []
    if problem is not None:
        checks.append(FileCheck(directory / CHECKSUMS_FILE, "damaged", problem=problem))
    listed = files or {}
    for name in sorted(set(listed) | {n for n in names or () if (directory / n).exists()}):
        path = directory / name
        recorded = listed.get(name)
        if recorded is None:
            problem = _unreadable(path)
            status = "unverified" if problem is None else "damaged"
            checks.append(
                FileCheck(path, status, problem="" if problem is None else str(damaged_index_file(path, problem)))
            )
            continue
        try:
            found = file_checksum(path) if full else FileChecksum(path.stat().st_size, recorded.sha256)
        except FileNotFoundError:
            checks.append(FileCheck(path, "missing", problem=f"{path} is listed in {CHECKSUMS_FILE} but missing"))
            continue
        except OSError as exc:
            checks.append(FileCheck(path, "damaged", problem=f"{path} cannot be read ({exc.strerror or exc})"))
            continue
        difference = mismatch(recorded, found)
        if difference is None:
            checks.append(FileCheck(path, "ok"))
        else:
            checks.append(FileCheck(path, "damaged", problem=str(damaged_index_file(path, difference))))
    return checks


def _unreadable(path: Path) -> str | None:
    """What keeps a file without a recorded checksum from being read as what its name says; None when it reads
    (a parquet footer, a zip's CRCs, JSON): damage is found where no checksum can find it."""
    try:
        if path.suffix == ".parquet":
            pl.read_parquet_schema(path)
        elif path.suffix == ".npz":
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            if bad is not None:
                return f"member {bad} does not match its CRC"
        elif path.suffix == ".json":
            json.loads(path.read_bytes())
    except (pl.exceptions.PolarsError, OSError, ValueError, zipfile.BadZipFile, RecursionError) as exc:
        return f"does not read as a {path.suffix} file ({_first_line(exc)})"
    return None


def forget(path: Path) -> None:
    """Remove an index file and its manifest entry (what `sommelier verify --repair` does to a damaged one; the
    next `sommelier index` writes it again). Removing a damaged manifest leaves its files unverified."""
    path = Path(path)
    with _locked(path.parent, exclusive=True):
        path.unlink(missing_ok=True)
        files = _read_manifest(path.parent)[0]
        if path.name != CHECKSUMS_FILE and files is not None and path.name in files:
            del files[path.name]
            _write_manifest(path.parent, files)


def _read_manifest(directory: Path) -> tuple[dict[str, FileChecksum] | None, str | None]:
    """(file name → recorded checksum, what is wrong with the manifest): ({}, None) without a manifest,
    (None, problem) for a damaged one, whose entries are then not trusted."""
    path = directory / CHECKSUMS_FILE
    try:
        payload = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}, None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        return None, f"{path} is damaged: not a checksum manifest ({_first_line(exc)}); {REBUILD_HINT}"
    entries = payload.get("files") if isinstance(payload, dict) else None
    if (
        not isinstance(payload, dict)
        or payload.get("format") != CHECKSUMS_FORMAT
        or not isinstance(entries, dict)
        or payload.get("checksum") != text_digest(_entries_text(entries))
    ):
        return None, f"{path} is damaged: it does not match its own checksum; {REBUILD_HINT}"
    files = {name: FileChecksum.from_data(data) for name, data in entries.items()}
    if any(checksum is None for checksum in files.values()):
        return None, f"{path} is damaged: an entry is not a checksum; {REBUILD_HINT}"
    return {name: checksum for name, checksum in files.items() if checksum is not None}, None


def _write_manifest(directory: Path, files: dict[str, FileChecksum]) -> None:
    entries = {name: files[name].to_data() for name in sorted(files)}
    payload = {"format": CHECKSUMS_FORMAT, "checksum": text_digest(_entries_text(entries)), "files": entries}
    write_atomic(directory / CHECKSUMS_FILE, (json.dumps(payload, indent=1) + "\n").encode())


def _entries_text(entries: dict) -> str:
    try:
        return json.dumps(entries, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return ""


@contextlib.contextmanager
def _locked(directory: Path, exclusive: bool) -> Iterator[None]:
    """Hold the directory's checksum lock; without one where it cannot be created (a read-only store)."""
    try:
        fd = os.open(directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
