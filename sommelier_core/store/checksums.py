"""Checksums of stored files: what a record or an index manifest keeps of each file, and how a file is checked.

A checksum is the file's size in bytes and its SHA-256. The size is checked first (a truncated file is found
by a `stat`, without reading it); the digest finds a file of the right size whose contents changed (a flipped
bit, another file copied over it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

ALGORITHM = "sha256"
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class FileChecksum:
    """A file's size and SHA-256 (hex), as recorded when it was written."""

    size_bytes: int
    sha256: str

    def to_data(self) -> dict[str, Any]:
        """The checksum as JSON data (`{"bytes": …, "sha256": …}`)."""
        return {"bytes": self.size_bytes, ALGORITHM: self.sha256}

    @classmethod
    def from_data(cls, data: Any) -> FileChecksum | None:
        """The checksum `to_data` wrote; None if `data` is not one (a damaged manifest or record)."""
        if not isinstance(data, dict):
            return None
        size, digest = data.get("bytes"), data.get(ALGORITHM)
        if isinstance(size, bool) or not isinstance(size, int) or not isinstance(digest, str) or len(digest) != 64:
            return None
        return cls(size, digest)


Status = Literal["ok", "unverified", "damaged", "missing", "newer", "legacy"]
"""A stored file's health: `ok` (matches its checksum), `unverified` (no checksum was recorded: written before
checksums), `damaged`, `missing`, `newer` (written by a newer Sommelier) or `legacy` (a pickled record)."""

SEVERITY: dict[str, int] = {"ok": 0, "unverified": 1, "missing": 2, "legacy": 3, "newer": 4, "damaged": 5}
"""Statuses from best to worst: a record's health is the worst of its own and its files'."""


@dataclass(frozen=True)
class FileCheck:
    """The health of one stored file: a record, a file a record points to, or an index file."""

    path: Path
    status: Status
    kind: str = ""
    """What sort of file: `record <stage>`, an artifact's file name (`model.onnx`), `index <file>`."""
    model_id: str | None = None
    stage: str | None = None
    problem: str = ""
    """For a damaged (or newer) file: what is wrong, naming the file."""
    records: tuple[Path, ...] = ()
    """The record files whose removal repairs it (the next `sommelier index` runs their stages again): the record
    itself, or the records pointing to this file. Empty for an index file."""


def bytes_checksum(data: bytes) -> FileChecksum:
    """The checksum of contents held in memory (what is about to be written, or what was just read)."""
    return FileChecksum(len(data), hashlib.sha256(data).hexdigest())


def file_checksum(path: Path) -> FileChecksum:
    """The checksum of a file on disk, read in chunks (an ONNX file may be large)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return FileChecksum(size, digest.hexdigest())


def text_digest(text: str) -> str:
    """`sha256:<hex>` of a text's UTF-8 bytes (a record body's checksum)."""
    return f"{ALGORITHM}:{hashlib.sha256(text.encode()).hexdigest()}"


def mismatch(expected: FileChecksum, found: FileChecksum) -> str | None:
    """What differs between the recorded and the found checksum, in words; None when they agree."""
    if found.size_bytes != expected.size_bytes:
        return f"{found.size_bytes} bytes where {expected.size_bytes} were written"
    if found.sha256 != expected.sha256:
        return f"contents changed (sha256 {found.sha256[:12]}… where {expected.sha256[:12]}… was written)"
    return None


def check_file(path: Path, expected: FileChecksum, full: bool = True) -> str | None:
    """What is wrong with a file against its recorded checksum, in words; None when it matches.

    `full=False` checks only that it exists with its recorded size (a `stat`): enough to find a truncated
    or missing file every time a record is read, without reading large files.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if not path.is_file():
        return "not a file"
    if size != expected.size_bytes:
        return f"{size} bytes where {expected.size_bytes} were written"
    if not full:
        return None
    try:
        return mismatch(expected, file_checksum(path))
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
