"""The semantic index at repository scale (paper §5.2, design §4): incremental candidate lists.

`SemanticStore` is the mutable index. Inserting a model adds its measured pairs (five sampled
peers) and updates every bound that can change, without a rebuild:

- upper bounds are shortest paths over the measured-pair graph (each edge weighted by its upper
  bound; d(X,Z) ≤ d(X,Y) + d(Y,Z) along the path). For a new model X with peers P,
  dist(X,Z) = min_P up(X,P) + dist(P,Z) read from the peers' candidate lists, and then every pair
  (Y,Z) of X's candidates may shorten through X: dist(Y,Z) ← min(dist(Y,Z), dist(Y,X) + dist(X,Z));
- lower bounds are the best one hop over measured neighbours, max(lo(A,Y) − up(Y,B), 0), the same
  rule as the oracle `sommelier_bench.oracles.build_semantic_index`.

**Bounded lists.** A list keeps only candidates whose upper bound is ≤ `ceiling`. This is sound and,
for any threshold ≤ ceiling, exact: every kept upper bound is the length of a real path of
measured bounds (never below the true difference, whatever was dropped), and a pair whose shortest
path is ≤ ceiling has every sub-path ≤ ceiling (edge weights are ≥ 0), so the updates above, run
over truncated lists, reach exactly the pairs the full graph would, with the same values
(`tests/test_query_scale.py` checks this against the full rebuild). A query with WITHIN above the
ceiling is refused rather than answered incompletely.

Deleting a model drops its edges and recomputes, by a Dijkstra bounded at the ceiling, the lists
of the models that were within the ceiling of it — the only pairs whose shortest path could have
passed through it.

`freeze()` packs the lists into `CandidateLists` (`candidate_lists`); a query reads one row of it.
"""

from __future__ import annotations

import heapq
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
from sommelier_core.index.candidate_lists import IDENTICAL, MEASURED, PROVENANCE, TRANSITIVE, CandidateLists
from sommelier_core.store import StoreFormatError, write_atomic

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

SEMANTIC_STORE_SCHEMA = 1
"""Version of the file `SemanticStore.save` writes (before it, the store was pickled)."""

_TIE = 1e-12  # a path must be shorter by more than this to replace a bound (float noise)


@dataclass
class _Edge:
    """The tightest measurement of one unordered pair (or an identical-fingerprint link)."""

    lower: float
    upper: float
    empirical: float | None
    n: int | None
    identical: bool = False


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
    """Candidate lists updated incrementally on insertion and deletion of models.

    `ceiling` bounds the lists (see the module docstring); `math.inf` keeps every connected pair.
    """

    def __init__(self, ceiling: float = math.inf) -> None:
        self.ceiling = ceiling
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}
        self.fingerprints: list[str] = []
        self.kinds: list[str] = []
        self.alive: list[bool] = []
        self._by_fingerprint: dict[str, set[int]] = {}
        self._edges: list[dict[int, _Edge]] = []
        # lists[a][b] = [upper, lower, provenance, hops]; the same list object is stored under [b][a].
        self._lists: list[dict[int, list]] = []
        self._signatures: dict[str, tuple] = {}  # per model, what `sync` last inserted it from

    # -- reading ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return sum(self.alive)

    def __contains__(self, model_id: str) -> bool:
        i = self.pos.get(model_id)
        return i is not None and self.alive[i]

    def candidates(self, model_id: str) -> list[CandidateRecord]:
        """A model's candidate list, most equivalent first (upper bound, then id)."""
        a = self._index(model_id)
        out = []
        for b, (up, lo, prov, hops) in self._lists[a].items():
            edge = self._edges[a].get(b)
            emp = edge.empirical if edge is not None else None
            out.append(CandidateRecord(self.ids[b], lo, up, PROVENANCE[prov], hops, emp))
        return sorted(out, key=lambda r: (r.upper, r.candidate_id))

    def entries(self) -> int:
        """Number of (reference, candidate) records over all lists."""
        return sum(len(lst) for lst, ok in zip(self._lists, self.alive, strict=True) if ok)

    # -- insertion and deletion ------------------------------------------------------------

    def insert(
        self,
        model_id: str,
        fingerprint: str,
        measured: Iterable[PairBound] = (),
        kind: str = "disagreement",
    ) -> int:
        """Add a model with its measured pairs (each naming an indexed peer); returns its position.

        Pairs may name the new model as reference or candidate. Models with the same fingerprint are
        linked with difference 0 (`identical`).
        """
        if model_id in self:
            raise ValueError(f"{model_id} is already indexed; delete it first to re-insert")
        x = self._allocate(model_id, fingerprint, kind)
        edges_x = self._edges[x]
        for pair in measured:
            peer = pair.candidate_id if pair.reference_id == model_id else pair.reference_id
            p = self.pos.get(peer)
            if p is None or not self.alive[p] or p == x:
                raise UnknownModel(f"{model_id} was measured against {peer!r}, which is not in the semantic index")
            edge = edges_x.get(p)
            if edge is None:
                edges_x[p] = _Edge(pair.lower, pair.upper, pair.empirical, pair.n)
            elif not edge.identical:
                if pair.upper < edge.upper:
                    edge.upper, edge.empirical, edge.n = pair.upper, pair.empirical, pair.n
                edge.lower = max(edge.lower, pair.lower)
        for q in self._by_fingerprint.get(fingerprint, ()):
            if q != x:
                edges_x[q] = _Edge(0.0, 0.0, None, None, identical=True)
        self._by_fingerprint.setdefault(fingerprint, set()).add(x)
        for p, edge in edges_x.items():
            self._edges[p][x] = edge

        dist: dict[int, tuple[float, int]] = {}
        for p, edge in edges_x.items():
            w = edge.upper
            if w <= self.ceiling and (p not in dist or w < dist[p][0] - _TIE):
                dist[p] = (w, 1)
            for z, entry in self._lists[p].items():
                d = w + entry[0]
                if z != x and d <= self.ceiling and (z not in dist or d < dist[z][0] - _TIE):
                    dist[z] = (d, 1 + entry[3])
        for z, (d, hops) in dist.items():
            self._set_pair(x, z, d, hops)
        items = list(dist.items())
        for i, (y, (dy, hy)) in enumerate(items):
            list_y = self._lists[y]
            for z, (dz, hz) in items[i + 1 :]:
                d = dy + dz
                if d > self.ceiling:
                    continue
                current = list_y.get(z)
                if current is None or d < current[0] - _TIE:
                    self._set_pair(y, z, d, hy + hz)
        self._refresh_lower_around(x)
        return x

    def delete(self, model_id: str) -> None:
        """Remove a model and every bound that relied on it."""
        x = self._index(model_id)
        affected = set(self._lists[x])
        neighbours = set(self._edges[x])
        for b in list(self._lists[x]):
            del self._lists[b][x]
        for p in neighbours:
            del self._edges[p][x]
        self._lists[x] = {}
        self._edges[x] = {}
        self.alive[x] = False
        self._by_fingerprint[self.fingerprints[x]].discard(x)
        for y in affected:
            reach = self._bounded_dijkstra(y)
            for z in affected:
                if z == y:
                    continue
                if z in reach:
                    d, hops = reach[z]
                    current = self._lists[y].get(z)
                    if current is None or abs(current[0] - d) > _TIE or current[3] != hops:
                        self._set_pair(y, z, d, hops)
                elif z in self._lists[y]:
                    del self._lists[y][z]
                    del self._lists[z][y]
        for p in neighbours:  # x was a common neighbour of these: their one-hop lower bounds may drop
            for q, entry in self._lists[p].items():
                if q in neighbours:
                    self._set_lower(p, q, entry)

    # -- packing -----------------------------------------------------------------------------

    def freeze(self) -> CandidateLists:
        """The read-only packed lists a query reads (see `CandidateLists`)."""
        alive_ids = [self.ids[i] for i in range(len(self.ids)) if self.alive[i]]
        return CandidateLists.pack(
            self.ids,
            [self._lists[i] if self.alive[i] else {} for i in range(len(self.ids))],
            self.ceiling,
            _EdgeEmpirical(self._edges),
            present=[self.alive[i] for i in range(len(self.ids))],
            model_count=len(alive_ids),
        )

    def to_frame(self) -> pl.DataFrame:
        """The lists as the `semantic_index` asset's table (`SEMANTIC_INDEX_SCHEMA`)."""
        records = []
        for a, model in enumerate(self.ids):
            if not self.alive[a]:
                continue
            for b, (up, lo, prov, hops) in self._lists[a].items():
                edge = self._edges[a].get(b)
                records.append(
                    {
                        "reference_id": model,
                        "reference_fingerprint": self.fingerprints[a],
                        "candidate_id": self.ids[b],
                        "candidate_fingerprint": self.fingerprints[b],
                        "kind": self.kinds[a],
                        "empirical": edge.empirical if edge is not None else None,
                        "lower": lo,
                        "upper": up,
                        "equivalence": 1.0 - up,
                        "provenance": PROVENANCE[prov],
                        "hops": hops,
                        "n": edge.n if edge is not None else None,
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

        Models, measured edges, candidate entries and `sync`'s per-model signatures become columns; an
        entry shared by both directions of a pair is written once and shared again by `load`.
        """
        edges = [(a, b, e) for a, row in enumerate(self._edges) for b, e in row.items() if a < b]
        entries = [(a, b, entry) for a, row in enumerate(self._lists) for b, entry in row.items() if a < b]
        signed = sorted(self._signatures)
        pairs = [(i, pair) for i, m in enumerate(signed) for pair in self._signatures[m][1]]
        columns = {
            "schema": np.array(SEMANTIC_STORE_SCHEMA),
            "ceiling": np.array(self.ceiling, dtype=np.float64),
            "ids": np.array(self.ids, dtype=np.str_),
            "fingerprints": np.array(self.fingerprints, dtype=np.str_),
            "kinds": np.array(self.kinds, dtype=np.str_),
            "alive": np.array(self.alive, dtype=bool),
            "edge_pair": np.array([(a, b) for a, b, _ in edges], dtype=np.int64).reshape(-1, 2),
            "edge_lower": np.array([e.lower for *_, e in edges], dtype=np.float64),
            "edge_upper": np.array([e.upper for *_, e in edges], dtype=np.float64),
            "edge_empirical": np.array([np.nan if e.empirical is None else e.empirical for *_, e in edges]),
            "edge_has_empirical": np.array([e.empirical is not None for *_, e in edges], dtype=bool),
            "edge_n": np.array([-1 if e.n is None else e.n for *_, e in edges], dtype=np.int64),
            "edge_identical": np.array([e.identical for *_, e in edges], dtype=bool),
            "entry_pair": np.array([(a, b) for a, b, _ in entries], dtype=np.int64).reshape(-1, 2),
            "entry_upper": np.array([x[0] for *_, x in entries], dtype=np.float64),
            "entry_lower": np.array([x[1] for *_, x in entries], dtype=np.float64),
            "entry_provenance": np.array([x[2] for *_, x in entries], dtype=np.int64),
            "entry_hops": np.array([x[3] for *_, x in entries], dtype=np.int64),
            "signed_ids": np.array(signed, dtype=np.str_),
            "signed_fingerprints": np.array([self._signatures[m][0] for m in signed], dtype=np.str_),
            "signed_pair_owner": np.array([i for i, _ in pairs], dtype=np.int64),
            "signed_pair_ids": np.array([p[:2] for _, p in pairs], dtype=np.str_).reshape(-1, 2),
            "signed_pair_bounds": np.array([p[2:] for _, p in pairs], dtype=np.float64).reshape(-1, 2),
        }
        buffer = io.BytesIO()
        np.savez(buffer, allow_pickle=False, **columns)
        write_atomic(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> SemanticStore:
        """A store saved by `save`; `StoreFormatError` if the file is not one (or is of a newer schema)."""
        try:
            with np.load(Path(path), allow_pickle=False) as stored:
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
        store._edges = [{} for _ in store.ids]
        store._lists = [{} for _ in store.ids]
        empirical = columns["edge_empirical"].tolist()
        for k, (a, b) in enumerate(columns["edge_pair"].tolist()):
            n = int(columns["edge_n"][k])
            edge = _Edge(
                float(columns["edge_lower"][k]),
                float(columns["edge_upper"][k]),
                empirical[k] if columns["edge_has_empirical"][k] else None,
                None if n < 0 else n,
                bool(columns["edge_identical"][k]),
            )
            store._edges[a][b] = store._edges[b][a] = edge
        values = zip(
            columns["entry_pair"].tolist(),
            columns["entry_upper"].tolist(),
            columns["entry_lower"].tolist(),
            columns["entry_provenance"].tolist(),
            columns["entry_hops"].tolist(),
            strict=True,
        )
        for (a, b), up, lo, prov, hops in values:
            store._lists[a][b] = store._lists[b][a] = [up, lo, prov, hops]
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
            self._edges.append({})
            self._lists.append({})
        else:  # re-insertion after a deletion reuses the slot
            self.fingerprints[i], self.kinds[i], self.alive[i] = fingerprint, kind, True
        return i

    def _one_hop_lower(self, a: int, b: int) -> float:
        ea, eb = self._edges[a], self._edges[b]
        if len(eb) < len(ea):
            ea, eb = eb, ea
        best = 0.0
        for y, e1 in ea.items():
            e2 = eb.get(y)
            if e2 is not None:
                best = max(best, e1.lower - e2.upper, e2.lower - e1.upper)
        return best

    def _set_pair(self, a: int, b: int, up: float, hops: int) -> None:
        """Record the shortest-path upper bound of (a, b) with its provenance and lower bound."""
        edge = self._edges[a].get(b)
        if edge is not None and edge.identical:
            entry = [0.0, 0.0, IDENTICAL, 1]
        elif edge is not None and edge.upper <= up + _TIE:
            entry = [edge.upper, max(edge.lower, self._one_hop_lower(a, b)), MEASURED, 1]
        else:
            entry = [up, min(self._one_hop_lower(a, b), up), TRANSITIVE, hops]
        self._lists[a][b] = entry
        self._lists[b][a] = entry

    def _set_lower(self, a: int, b: int, entry: list) -> None:
        if entry[2] == IDENTICAL:
            return
        hop = self._one_hop_lower(a, b)
        if entry[2] == MEASURED:
            entry[1] = max(self._edges[a][b].lower, hop)
        else:
            entry[1] = min(hop, entry[0])

    def _refresh_lower_around(self, x: int) -> None:
        """A new model is a new common neighbour of its peers: their pairs' one-hop lower bounds may rise."""
        peers = list(self._edges[x])
        for i, p in enumerate(peers):
            list_p = self._lists[p]
            for q in peers[i + 1 :]:
                entry = list_p.get(q)
                if entry is not None:
                    self._set_lower(p, q, entry)

    def _bounded_dijkstra(self, source: int) -> dict[int, tuple[float, int]]:
        """Shortest-path upper bounds from `source` to every model within the ceiling (hops on the path)."""
        best: dict[int, tuple[float, int]] = {}
        heap = [(0.0, 0, source)]
        done: set[int] = set()
        while heap:
            d, hops, node = heapq.heappop(heap)
            if node in done:
                continue
            done.add(node)
            if node != source:
                best[node] = (d, hops)
            for nxt, edge in self._edges[node].items():
                nd = d + edge.upper
                if nxt not in done and nd <= self.ceiling:
                    heapq.heappush(heap, (nd, hops + 1, nxt))
        return best


class _EdgeEmpirical:
    """`(reference, candidate) → empirical difference` of measured pairs, read from the store's edges."""

    def __init__(self, edges: list[dict[int, _Edge]]) -> None:
        self._edges = edges

    def get(self, key: tuple[int, int], default: float | None = None) -> float | None:
        a, b = key
        edge = self._edges[a].get(b) if a < len(self._edges) else None
        return edge.empirical if edge is not None and edge.empirical is not None else default
