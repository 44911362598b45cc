"""The index of I/O signatures: which models share a comparable output signature, so peers are drawn without
reading every model's `model_outputs` record (issue 14: that scan made inserting a model O(N), a repository O(N²)).

A small SQLite table under the store root, one row per model: its signature (the caller's string for "outputs
comparable element by element": dataset, size, signature, task), its label vocabulary (or none) and when it joined
its signature's group (members are listed earliest first, so a group's first models — its pivots — stay fixed).
Updated when a model's outputs are stored; read by the `peers` stage, which asks for one signature's members.
SQLite gives atomic updates from several processes (cluster workers on a shared store root), O(log N) each.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

SIGNATURE_INDEX_FILE = Path("signatures") / "signatures.db"
"""Where the signature index lives, relative to the store root."""
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS signatures ("
    " model_id TEXT PRIMARY KEY, signature TEXT NOT NULL, labels TEXT, joined INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS signatures_by_signature ON signatures (signature, joined)",
)
_BUSY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class SignatureEntry:
    """One model's place in the index: its outputs' signature and label vocabulary (None: unlabelled)."""

    model_id: str
    signature: str
    labels: str | None = None


class SignatureIndex:
    """signature → model ids, persisted under the store root (`SIGNATURE_INDEX_FILE`)."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / SIGNATURE_INDEX_FILE

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S)
        for statement in _SCHEMA:
            connection.execute(statement)
        return connection

    def add(self, entries: Iterable[SignatureEntry]) -> None:
        """Record each model's signature, in one transaction, in the order given. A model already indexed under the
        same signature keeps its place in the group (a re-run changes nothing); under another one it joins that
        group last."""
        entries = list(entries)
        if not entries:
            return
        with closing(self._connect()) as connection, connection:
            connection.execute("BEGIN IMMEDIATE")  # one writer at a time: `joined` numbers stay distinct
            (last,) = connection.execute("SELECT COALESCE(MAX(joined), 0) FROM signatures").fetchone()
            for e in entries:
                row = connection.execute(
                    "SELECT signature FROM signatures WHERE model_id = ?", (e.model_id,)
                ).fetchone()
                if row is not None and row[0] == e.signature:
                    connection.execute("UPDATE signatures SET labels = ? WHERE model_id = ?", (e.labels, e.model_id))
                    continue
                last += 1
                connection.execute(
                    "INSERT OR REPLACE INTO signatures VALUES (?, ?, ?, ?)", (e.model_id, e.signature, e.labels, last)
                )

    def remove(self, model_ids: Iterable[str]) -> None:
        """Forget models (their outputs are about to be recomputed, or they left the repository)."""
        rows = [(m,) for m in model_ids]
        if not rows:
            return
        with closing(self._connect()) as connection, connection:
            connection.executemany("DELETE FROM signatures WHERE model_id = ?", rows)

    def entry(self, model_id: str) -> SignatureEntry | None:
        """A model's entry, or None when its outputs are not indexed."""
        with closing(self._connect()) as connection:
            row = connection.execute(
                "SELECT model_id, signature, labels FROM signatures WHERE model_id = ?", (model_id,)
            ).fetchone()
        return SignatureEntry(*row) if row else None

    def members(self, signature: str) -> list[SignatureEntry]:
        """Every model of one signature, in the order they joined it (earliest first)."""
        with closing(self._connect()) as connection:
            rows = connection.execute(
                "SELECT model_id, signature, labels FROM signatures WHERE signature = ? ORDER BY joined",
                (signature,),
            ).fetchall()
        return [SignatureEntry(*row) for row in rows]

    def model_ids(self) -> set[str]:
        """Every indexed model id."""
        with closing(self._connect()) as connection:
            return {model_id for (model_id,) in connection.execute("SELECT model_id FROM signatures")}

    def compatible(self, entry: SignatureEntry, registered: Iterable[str] | None = None) -> list[str]:
        """The models whose outputs compare with `entry`'s (same signature; label vocabularies equal, or either
        unlabelled), in the order they joined the group, itself included (choosing peers leaves it out); only
        those in `registered` when given (a model no repository lists any more stays in the index, no peer)."""
        allowed = None if registered is None else set(registered)
        return [
            m.model_id
            for m in self.members(entry.signature)
            if (allowed is None or m.model_id in allowed)
            and (m.labels is None or entry.labels is None or m.labels == entry.labels)
        ]
