"""The semantic index at repository scale (paper §5.2, design §4): the measured pairs, kept per direction.

`SemanticStore` is the mutable index. Inserting a model adds its measured pairs (five sampled peers), each
in the direction it was measured (reference → candidate): O(peers), nothing else is recomputed. Bounds on
every other pair are computed when a query asks, by a search from its reference over the measured graph
(`measured_graph.MeasuredGraph`, which `freeze()` packs):

- upper bounds are shortest paths over the measured pairs, hops composed by `bound_rules.compose`
  (d(a→c) ≤ d(a→b) + d(b→c) for a disagreement rate; for relative l2, normalised by the reference,
  d(a→c) ≤ d(a→b) + d(b→c)·(1 + d(a→b)));
- lower bounds are the best one hop through a common measured neighbour (`bound_rules.hop_lower`);
- a pair measured in one direction bounds the other (`bound_rules.directed_bounds`: the same bounds for
  a symmetric measure, rescaled for relative l2), so a relative-l2 pair keeps two entries, never merged.

Candidate lists precomputed for every pair under a ceiling (the design before this one) grew with
models × the size of their compatible group: 286 MB and 810 s at 100 000 models in groups of 1 000.
The measured graph grows with models × peers; a query's search stops at its threshold, so it touches
only the models within it (docs/index.md has the design and the figures). `ceiling` still caps what a
query may ask (WITHIN above it is refused) and bounds the search of the refine stage and `to_frame`.

Deleting a model drops its measured pairs; nothing derived from them is stored, so nothing else changes.
`to_frame()` writes every model's candidates up to the ceiling as the `semantic_index` asset's table.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from sommelier_core.equivalence.bound import PairBound
from sommelier_core.errors import UnknownModel
from sommelier_core.index import bound_rules
from sommelier_core.index.candidate_lists import PROVENANCE
from sommelier_core.index.measured_graph import ASYMMETRIC_FLAG, IDENTICAL_FLAG, PRECOMPUTED_COMPONENT, MeasuredGraph
from sommelier_core.store import StoreFormatError, read_checked, write_checked

SEMANTIC_INDEX_SCHEMA: dict[str, pl.DataType] = {
    "reference_id": pl.Utf8(),
    "reference_fingerprint": pl.Utf8(),
    "candidate_id": pl.Utf8(),
    "candidate_fingerprint": pl.Utf8(),
    "kind": pl.Utf8(),
    "empirical": pl.Float64(),
    "lower": pl.Float64(),
    "upper": pl.Float64(),
    "equivalence": pl.Float64(),
    "provenance": pl.Utf8(),
    "hops": pl.Int32(),
    "n": pl.Int64(),
}

SEMANTIC_STORE_FILE = "semantic_store.npz"
"""The file in a store's index directory that `SemanticStore.save` writes (the `semantic_index` asset keeps it)."""

SEMANTIC_STORE_SCHEMA = 2
"""Version of the file `SemanticStore.save` writes: 2 keeps measured pairs per direction and no derived lists
(1 kept merged, undirected edges and every candidate list; such a file is refused and the asset rebuilds)."""


@dataclass
class _Measured:
    """The tightest measurement of one direction of a pair (reference → candidate)."""

    lower: float
    upper: float
    empirical: float | None
    n: int | None
    kind: str


@dataclass(frozen=True)
class CandidateRecord:
    """One entry of a candidate list."""

    candidate_id: str
    lower: float
    upper: float
    provenance: str
    hops: int
    empirical: float | None


class SemanticStore:
    """The measured pairs of the indexed models, per direction, updated on insertion and deletion.

    `ceiling` caps the thresholds queries may ask and bounds the searches of `to_frame` and refinement;
    `math.inf` allows any threshold.
    """

    def __init__(self, ceiling: float = math.inf) -> None:
        self.ceiling = ceiling
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}
        self.fingerprints: list[str] = []
        self.kinds: list[str] = []
        self.alive: list[bool] = []
        self._by_fingerprint: dict[str, set[int]] = {}
        self._out: list[dict[int, _Measured]] = []  # _out[a][b]: measurement with reference a, candidate b
        self._adjacent: list[set[int]] = []  # models measured against each model, either direction
        self._signatures: dict[str, tuple] = {}  # per model, what `sync` last inserted it from

    # -- reading ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return sum(self.alive)

    def __contains__(self, model_id: str) -> bool:
        i = self.pos.get(model_id)
        return i is not None and self.alive[i]

    def candidates(self, model_id: str) -> list[CandidateRecord]:
        """A model's candidates up to the ceiling, most equivalent first (upper bound, then id)."""
        a = self._index(model_id)
        graph = self.freeze(compact=False, precompute=0)
        row = graph.search(a, self.ceiling)
        return [
            CandidateRecord(self.ids[b], lo, up, PROVENANCE[prov], hop, graph.empirical.get((a, b)))
            for b, lo, up, prov, hop in row.entries()
        ]

    def entries(self) -> int:
        """Number of directed measured entries (a pair measured either way, or identical, is two)."""
        return sum(len(self._neighbours(a)) for a in range(len(self.ids)) if self.alive[a])

    # -- insertion and deletion ------------------------------------------------------------

    def insert(
        self,
        model_id: str,
        fingerprint: str,
        measured: Iterable[PairBound] = (),
        kind: str = "disagreement",
    ) -> int:
        """Add a model with its measured pairs (each naming an indexed peer); returns its position.

        Pairs may name the new model as reference or candidate; each is kept in its direction, the tightest
        (smallest upper bound; largest lower bound) where a direction was measured twice. Models with the
        same fingerprint are linked with difference 0 (`identical`).
        """
        if model_id in self:
            raise ValueError(f"{model_id} is already indexed; delete it first to re-insert")
        pairs = list(measured)
        for pair in pairs:
            peer = pair.candidate_id if pair.reference_id == model_id else pair.reference_id
            p = self.pos.get(peer)
            if p is None or not self.alive[p] or peer == model_id:
                raise UnknownModel(f"{model_id} was measured against {peer!r}, which is not in the semantic index")
        x = self._allocate(model_id, fingerprint, kind)
        for pair in pairs:
            a, b = self.pos[pair.reference_id], self.pos[pair.candidate_id]
            current = self._out[a].get(b)
            if current is None:
                self._out[a][b] = _Measured(pair.lower, pair.upper, pair.empirical, pair.n, pair.kind)
            else:
                if pair.upper < current.upper:
                    current.upper, current.empirical, current.n = pair.upper, pair.empirical, pair.n
                current.lower = max(current.lower, pair.lower)
            self._adjacent[a].add(b)
            self._adjacent[b].add(a)
        self._by_fingerprint.setdefault(fingerprint, set()).add(x)
        return x

    def delete(self, model_id: str) -> None:
        """Remove a model and its measured pairs."""
        x = self._index(model_id)
        for p in self._adjacent[x]:
            self._adjacent[p].discard(x)
            self._out[p].pop(x, None)
        self._out[x] = {}
        self._adjacent[x] = set()
        self.alive[x] = False
        self._by_fingerprint[self.fingerprints[x]].discard(x)

    # -- packing -----------------------------------------------------------------------------

    def freeze(
        self, compact: bool = True, ids: Sequence[str] | None = None, precompute: int = PRECOMPUTED_COMPONENT
    ) -> MeasuredGraph:
        """The read-only measured graph a query searches (`MeasuredGraph`).

        `compact` stores bounds rounded outward (uint16 codes when the ceiling is finite and ≤ 1, else
        float32); otherwise they stay float64, bit-identical to the measured ones. Models of connected
        components of at most `precompute` models get their candidate row stored instead of their entries
        (`MeasuredGraph.pack`; 0: every model is searched). `ids` sets the graph's
        positions (a query engine's model order): models of `ids` this store lacks are absent, models it holds
        that `ids` does not list are left out with their pairs. By default positions are the store's own.
        """
        order = list(self.ids) if ids is None else list(ids)
        if ids is None:
            position = list(range(len(self.ids)))
            present = list(self.alive)
        else:
            wanted = {m: i for i, m in enumerate(order)}
            position = [wanted.get(m, -1) for m in self.ids]
            present = [False] * len(order)
            for a, p in enumerate(position):
                if p >= 0 and self.alive[a]:
                    present[p] = True
        source, target, lower, upper, flags = self._directed_entries()
        mapped = np.asarray(position, dtype=np.int64)
        source, target = mapped[source], mapped[target]
        keep = (source >= 0) & (target >= 0)
        source, target, lower, upper, flags = source[keep], target[keep], lower[keep], upper[keep], flags[keep]
        empirical = _Empirical(self._out) if ids is None else _Empirical(self._out, position, len(order))
        return MeasuredGraph.pack(
            order,
            source,
            target,
            lower,
            upper,
            flags,
            self.ceiling,
            empirical,
            present=present,
            compact=compact,
            precompute=precompute,
        )

    def _directed_entries(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every directed entry a→b of the alive models (store indices): source, target, lower, upper, flags.

        A pair measured either way gives both directions, bounded by `bound_rules.directed_bounds` (computed
        here for all entries at once, with the same arithmetic); models sharing a fingerprint are linked with
        [0, 0] and `IDENTICAL_FLAG`, whatever was measured between them.
        """
        measured = [(a, b, m) for a, row in enumerate(self._out) for b, m in row.items()]
        if not measured:  # no pair measured: only twins are linked
            measured = [(0, 0, _Measured(0.0, 0.0, None, None, "disagreement"))]  # a self-pair: never an entry
        columns = list(zip(*((a, b, m.lower, m.upper, m.kind) for a, b, m in measured), strict=True))
        ref, cand = np.array(columns[0], dtype=np.int64), np.array(columns[1], dtype=np.int64)
        m_lower, m_upper = np.array(columns[2], dtype=np.float64), np.array(columns[3], dtype=np.float64)
        m_skew = np.isin(np.array(columns[4]), list(bound_rules.ASYMMETRIC_KINDS))
        n = max(len(self.ids), 1)
        source = np.concatenate([ref, cand])
        target = np.concatenate([cand, ref])
        key = np.sort((source * n + target)[source != target])
        key = key[np.concatenate(([True], key[1:] != key[:-1]))] if len(key) else key  # distinct, sorted
        source, target = key // n, key % n
        measured_key = ref * n + cand
        order = np.argsort(measured_key)
        forward = _lookup(measured_key[order], key, order)  # index of the a→b measurement, or -1
        backward = _lookup(measured_key[order], target * n + source, order)
        has_f, has_b = forward >= 0, backward >= 0
        skew = (has_f & m_skew[forward]) | (has_b & m_skew[backward])
        with np.errstate(divide="ignore", invalid="ignore"):
            lower = np.where(has_f, np.maximum(0.0, m_lower[forward]), 0.0)
            upper = np.where(has_f, np.minimum(np.inf, m_upper[forward]), np.inf)
            b_lo, b_up = m_lower[backward], m_upper[backward]
            reverse_lower = np.where(skew, b_lo / (1.0 + b_lo), b_lo)
            reverse_upper = np.where(skew, np.where(b_up < 1.0, b_up / (1.0 - b_up), np.inf), b_up)
        lower = np.where(has_b, np.maximum(lower, reverse_lower), lower)
        upper = np.where(has_b, np.minimum(upper, reverse_upper), upper)
        lower = np.minimum(lower, upper)
        flags = np.where(skew, ASYMMETRIC_FLAG, 0).astype(np.uint8)
        twins = [(a, b) for group in self._by_fingerprint.values() if len(group) > 1 for a in group for b in group]
        twin_key = np.array([a * n + b for a, b in twins if a != b], dtype=np.int64)
        if len(twin_key):
            is_twin = np.isin(key, twin_key)
            lower, upper = np.where(is_twin, 0.0, lower), np.where(is_twin, 0.0, upper)
            flags = np.where(is_twin, IDENTICAL_FLAG, flags).astype(np.uint8)
            extra = np.setdiff1d(twin_key, key)
            source = np.concatenate([source, extra // n])
            target = np.concatenate([target, extra % n])
            lower, upper = np.concatenate([lower, np.zeros(len(extra))]), np.concatenate([upper, np.zeros(len(extra))])
            flags = np.concatenate([flags, np.full(len(extra), IDENTICAL_FLAG, dtype=np.uint8)])
        return source, target, lower, upper, flags

    def to_frame(self) -> pl.DataFrame:
        """Every model's candidates up to the ceiling: the `semantic_index` asset's table (`SEMANTIC_INDEX_SCHEMA`)."""
        graph = self.freeze(compact=False, precompute=0)
        records = []
        for a, model in enumerate(self.ids):
            if not self.alive[a]:
                continue
            row = graph.search(a, self.ceiling)
            for b, lo, up, prov, hop in row.entries():
                measurement = self._measurement(a, b)
                records.append(
                    {
                        "reference_id": model,
                        "reference_fingerprint": self.fingerprints[a],
                        "candidate_id": self.ids[b],
                        "candidate_fingerprint": self.fingerprints[b],
                        "kind": self.kinds[a],
                        "empirical": measurement.empirical if measurement is not None else None,
                        "lower": lo,
                        "upper": up,
                        "equivalence": 1.0 - up,
                        "provenance": PROVENANCE[prov],
                        "hops": hop,
                        "n": measurement.n if measurement is not None else None,
                    }
                )
        frame = pl.DataFrame(records, schema=SEMANTIC_INDEX_SCHEMA)
        return frame.sort(["reference_id", "upper", "candidate_id"])

    @classmethod
    def from_pairs(
        cls,
        pairs: Sequence[PairBound],
        fingerprints: Mapping[str, str],
        ceiling: float = math.inf,
        kinds: Mapping[str, str] | None = None,
    ) -> SemanticStore:
        """Insert every model of `fingerprints` in id order, each with its pairs to models before it."""
        by_model: dict[str, list[PairBound]] = {}
        order = {m: i for i, m in enumerate(sorted(fingerprints))}
        for p in pairs:
            if p.reference_id in order and p.candidate_id in order and p.reference_id != p.candidate_id:
                later = max(p.reference_id, p.candidate_id, key=order.__getitem__)
                by_model.setdefault(later, []).append(p)
        store = cls(ceiling)
        for model in sorted(fingerprints):
            store.insert(model, fingerprints[model], by_model.get(model, ()), (kinds or {}).get(model, "disagreement"))
        return store

    def sync(
        self,
        pairs: Sequence[PairBound],
        fingerprints: Mapping[str, str],
        kinds: Mapping[str, str] | None = None,
    ) -> tuple[list[str], list[str]]:
        """Bring the store to what `from_pairs(pairs, fingerprints)` would build, touching only what changed.

        A model is re-inserted when its fingerprint or any measured pair it is part of changed (new
        peers, new bounds); models no longer listed are deleted; new models are inserted with their
        pairs to the models present. Because insertion and deletion give the same lists as a build
        from scratch in any order, the result equals the full build. Returns (inserted, deleted) ids.
        """
        kinds = kinds or {}
        wanted = {m: fp for m, fp in fingerprints.items()}
        touching: dict[str, list[PairBound]] = {m: [] for m in wanted}
        for p in pairs:
            if p.reference_id in wanted and p.candidate_id in wanted and p.reference_id != p.candidate_id:
                touching[p.reference_id].append(p)
                touching[p.candidate_id].append(p)
        signatures = {
            m: (wanted[m], tuple(sorted((p.reference_id, p.candidate_id, p.lower, p.upper) for p in touching[m])))
            for m in wanted
        }
        previous = self._signatures
        stale = [m for m in self.ids if m in self and (m not in wanted or previous.get(m) != signatures[m])]
        for m in stale:
            self.delete(m)
        fresh = sorted(m for m in wanted if m not in self)
        for m in fresh:
            present = [p for p in touching[m] if (p.candidate_id if p.reference_id == m else p.reference_id) in self]
            self.insert(m, wanted[m], present, kinds.get(m, "disagreement"))
        self._signatures = signatures
        return fresh, [m for m in stale if m not in wanted]

    # -- persistence -------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Keep the store as data (`.npz` of plain arrays, `SEMANTIC_STORE_SCHEMA`), written atomically.

        Models, directed measurements and `sync`'s per-model signatures become columns; identical links
        are not written (they follow from the fingerprints).
        """
        measured = [(a, b, m) for a, row in enumerate(self._out) for b, m in row.items()]
        signed = sorted(self._signatures)
        pairs = [(i, pair) for i, m in enumerate(signed) for pair in self._signatures[m][1]]
        columns = {
            "schema": np.array(SEMANTIC_STORE_SCHEMA),
            "ceiling": np.array(self.ceiling, dtype=np.float64),
            "ids": np.array(self.ids, dtype=np.str_),
            "fingerprints": np.array(self.fingerprints, dtype=np.str_),
            "kinds": np.array(self.kinds, dtype=np.str_),
            "alive": np.array(self.alive, dtype=bool),
            "measured_pair": np.array([(a, b) for a, b, _ in measured], dtype=np.int64).reshape(-1, 2),
            "measured_lower": np.array([m.lower for *_, m in measured], dtype=np.float64),
            "measured_upper": np.array([m.upper for *_, m in measured], dtype=np.float64),
            "measured_empirical": np.array([np.nan if m.empirical is None else m.empirical for *_, m in measured]),
            "measured_has_empirical": np.array([m.empirical is not None for *_, m in measured], dtype=bool),
            "measured_n": np.array([-1 if m.n is None else m.n for *_, m in measured], dtype=np.int64),
            "measured_kind": np.array([m.kind for *_, m in measured], dtype=np.str_),
            "signed_ids": np.array(signed, dtype=np.str_),
            "signed_fingerprints": np.array([self._signatures[m][0] for m in signed], dtype=np.str_),
            "signed_pair_owner": np.array([i for i, _ in pairs], dtype=np.int64),
            "signed_pair_ids": np.array([p[:2] for _, p in pairs], dtype=np.str_).reshape(-1, 2),
            "signed_pair_bounds": np.array([p[2:] for _, p in pairs], dtype=np.float64).reshape(-1, 2),
        }
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **columns)
        write_checked(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> SemanticStore:
        """A store saved by `save`; `StoreFormatError` if the file is not one (or is of a newer schema)."""
        try:
            with np.load(io.BytesIO(read_checked(Path(path))), allow_pickle=False) as stored:
                columns = {name: stored[name] for name in stored.files}
            schema = int(columns["schema"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise StoreFormatError(f"{path} is not a saved semantic store ({exc})") from None
        if schema != SEMANTIC_STORE_SCHEMA:
            raise StoreFormatError(
                f"{path} has semantic store schema {schema}; this Sommelier reads {SEMANTIC_STORE_SCHEMA}"
            )
        try:
            return cls._from_columns(columns)
        except (KeyError, ValueError, IndexError) as exc:
            raise StoreFormatError(f"{path} does not decode as a semantic store ({exc!r})") from None

    @classmethod
    def _from_columns(cls, columns: dict[str, np.ndarray]) -> SemanticStore:
        store = cls(float(columns["ceiling"]))
        store.ids = columns["ids"].tolist()
        store.pos = {m: i for i, m in enumerate(store.ids)}
        store.fingerprints = columns["fingerprints"].tolist()
        store.kinds = columns["kinds"].tolist()
        store.alive = columns["alive"].tolist()
        for i, (fingerprint, alive) in enumerate(zip(store.fingerprints, store.alive, strict=True)):
            store._by_fingerprint.setdefault(fingerprint, set()).update({i} if alive else ())
        store._out = [{} for _ in store.ids]
        store._adjacent = [set() for _ in store.ids]
        empirical = columns["measured_empirical"].tolist()
        values = zip(
            columns["measured_pair"].tolist(),
            columns["measured_lower"].tolist(),
            columns["measured_upper"].tolist(),
            columns["measured_has_empirical"].tolist(),
            columns["measured_n"].tolist(),
            columns["measured_kind"].tolist(),
            strict=True,
        )
        for k, ((a, b), lo, up, has_empirical, n, kind) in enumerate(values):
            store._out[a][b] = _Measured(lo, up, empirical[k] if has_empirical else None, None if n < 0 else n, kind)
            store._adjacent[a].add(b)
            store._adjacent[b].add(a)
        pairs: list[list[tuple]] = [[] for _ in columns["signed_ids"]]
        bounds = columns["signed_pair_bounds"].tolist()
        for k, (owner, (ref, cand)) in enumerate(
            zip(columns["signed_pair_owner"].tolist(), columns["signed_pair_ids"].tolist(), strict=True)
        ):
            pairs[owner].append((ref, cand, *bounds[k]))
        store._signatures = {
            m: (fp, tuple(pairs[i]))
            for i, (m, fp) in enumerate(
                zip(columns["signed_ids"].tolist(), columns["signed_fingerprints"].tolist(), strict=True)
            )
        }
        return store

    # -- internals ---------------------------------------------------------------------------

    def _index(self, model_id: str) -> int:
        i = self.pos.get(model_id)
        if i is None or not self.alive[i]:
            raise UnknownModel(f"{model_id!r} is not in the semantic index")
        return i

    def _allocate(self, model_id: str, fingerprint: str, kind: str) -> int:
        i = self.pos.get(model_id)
        if i is None:
            i = len(self.ids)
            self.ids.append(model_id)
            self.pos[model_id] = i
            self.fingerprints.append(fingerprint)
            self.kinds.append(kind)
            self.alive.append(True)
            self._out.append({})
            self._adjacent.append(set())
        else:  # re-insertion after a deletion reuses the slot
            self.fingerprints[i], self.kinds[i], self.alive[i] = fingerprint, kind, True
        return i

    def _twins(self, a: int) -> set[int]:
        """Other indexed models with a's fingerprint."""
        same = self._by_fingerprint.get(self.fingerprints[a], set())
        return same - {a} if len(same) > 1 else set()

    def _neighbours(self, a: int) -> set[int]:
        """Models with an entry in a's row: measured against a (either direction) or identical to it."""
        twins = self._twins(a)
        return self._adjacent[a] | twins if twins else self._adjacent[a]

    def _measurement(self, a: int, b: int) -> _Measured | None:
        """The measurement that speaks for d(a→b): a→b, or b→a when the measure is symmetric."""
        measured = self._out[a].get(b)
        if measured is None:
            other = self._out[b].get(a)
            if other is not None and not bound_rules.is_asymmetric(other.kind):
                return other
        return measured


def _lookup(sorted_keys: np.ndarray, wanted: np.ndarray, order: np.ndarray) -> np.ndarray:
    """For each wanted key, the index (into the unsorted keys, `order` sorting them) where it is, or -1."""
    if len(sorted_keys) == 0:
        return np.full(len(wanted), -1, dtype=np.int64)
    at = np.minimum(np.searchsorted(sorted_keys, wanted), len(sorted_keys) - 1)
    return np.where(sorted_keys[at] == wanted, order[at], -1)


class _Empirical:
    """`(reference, candidate) → empirical difference` of measured pairs, read from the store's measurements.

    Keys are graph positions: the store's own, or those `freeze(ids=…)` gave (`position[a]` per store index).
    A pair measured only the other way answers with that measurement when the measure is symmetric.
    """

    def __init__(
        self, out: list[dict[int, _Measured]], position: list[int] | None = None, size: int | None = None
    ) -> None:
        self._out = out
        self._store_index: list[int] | None = None
        if position is not None:
            self._store_index = [-1] * (size if size is not None else len(position))
            for a, p in enumerate(position):
                if p >= 0:
                    self._store_index[p] = a

    def get(self, key: tuple[int, int], default: float | None = None) -> float | None:
        a, b = key
        if self._store_index is not None:
            if not (0 <= a < len(self._store_index) and 0 <= b < len(self._store_index)):
                return default
            a, b = self._store_index[a], self._store_index[b]
            if a < 0 or b < 0:
                return default
        if a >= len(self._out) or b >= len(self._out):
            return default
        measured = self._out[a].get(b)
        if measured is None:
            other = self._out[b].get(a)
            if other is not None and not bound_rules.is_asymmetric(other.kind):
                measured = other
        return measured.empirical if measured is not None and measured.empirical is not None else default
