"""The measured-pair graph a query searches: bounds on unmeasured pairs computed at query time.

`SemanticStore.freeze()` packs its measured pairs here, one directed entry per (reference, candidate)
either direction of which was measured (or that share a fingerprint). Row a holds a's neighbours b, sorted
by position, with bounds on d(a→b) from `bound_rules.directed_bounds` (a measurement of a→b and/or of
b→a), rounded outward (upper up, lower down), and flags (identical link, asymmetric kind).

A semantic query searches from its reference (`search`): a Dijkstra over the entries, composing hops with
`bound_rules.compose`, that stops at the query's threshold. Every model whose shortest-path bound is ≤ the
threshold is reached, with that bound, because every prefix of such a path is ≤ it too (hops only add).
So the candidates and their upper bounds are exactly those of precomputed candidate lists truncated at the
threshold, while the index holds only the measured pairs: its size grows with the number of models × peers,
not with models × the size of their compatible group (see docs/index.md for the figures and why).
Lower bounds are the best one hop through a common measured neighbour (`bound_rules.hop_lower`). A search
reports bounds as the graph stores its entries (rounded outward to its codes or float32 in compact form), so
a row read back equals a row searched.

Two things keep a query cheap at both ends of the group sizes:
- **precomputed rows** for small components (`PRECOMPUTED_COMPONENT`): a model whose connected component is
  small keeps its search result up to the ceiling instead of its entries, and a query reads that one row, as
  the earlier candidate lists did — about what they held for such models, since a component's searches never
  leave it;
- **wide rows** (`WIDE_ROW`): a group pivot (`equivalence.peers.choose_peers`) is measured against every model
  of its group; the search relaxes such a row in numpy and visits only the entries within the threshold.
"""

from __future__ import annotations

import functools
import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from sommelier_core.index import bound_rules
from sommelier_core.index.candidate_lists import IDENTICAL, MEASURED, TRANSITIVE, CandidateRow, EmpiricalLookup
from sommelier_core.index.component_rows import component_rows

IDENTICAL_FLAG = 1
"""Entry flag: the two models share a fingerprint (difference 0)."""
ASYMMETRIC_FLAG = 2
"""Entry flag: the pair's difference kind is normalised by the reference (`bound_rules.is_asymmetric`)."""

TIE = 1e-12
"""A measured bound within this of the shortest path counts as the shortest (float noise of path sums)."""

_CODE_MAX = 65534  # codes 0…65534 are values code · scale; 65535 stands for "above the range"
_ABOVE = 65535
WIDE_ROW = 64
"""Rows longer than this (a group pivot's: one entry per model of its group) are relaxed in numpy by the search."""
_PRESENT, _PRECOMPUTED, _ASYMMETRIC_MODEL = 1, 2, 4  # bits of `model_flags`
_GRID_SLACK = 1e-6  # in codes: far above the float noise of value / scale, far below one code

PRECOMPUTED_COMPONENT = 32
"""Models of a connected component of at most this many models get their candidate row precomputed at packing
(up to the ceiling: one row read per query, as the earlier candidate lists); larger components are searched."""


def encode_outward(values: np.ndarray, scale: float | None, up: bool) -> np.ndarray:
    """float64 bounds → stored form rounded to the safe side: uint16 codes of `scale`, or float32 (scale None).

    An upper bound above the code range becomes the code for +inf; a lower bound there saturates (down).
    """
    values = np.asarray(values, dtype=np.float64)
    if scale is None:
        packed = values.astype(np.float32)
        wrong = packed.astype(np.float64) < values if up else packed.astype(np.float64) > values
        if wrong.any():
            packed[wrong] = np.nextafter(packed[wrong], np.float32(np.inf if up else -np.inf))
        return packed
    with np.errstate(invalid="ignore", over="ignore"):
        raw = values / scale
        # A value already on the grid (c·scale) keeps its code c whatever the float noise of the division;
        # the checks below step any code whose value is on the wrong side, so this never loosens soundness.
        codes = np.ceil(raw - _GRID_SLACK) if up else np.floor(raw + _GRID_SLACK)
        codes = np.where(np.isnan(codes), _ABOVE if up else 0, codes)
        codes = np.clip(codes, 0, _ABOVE if up else _CODE_MAX)
        decoded = codes * scale
        if up:
            codes = np.where((codes < _ABOVE) & (decoded < values), codes + 1, codes)
            codes = np.where(codes > _CODE_MAX, _ABOVE, codes)
        else:
            codes = np.where((decoded > values) & (codes > 0), codes - 1, codes)
    return codes.astype(np.uint16)


def decode(stored: np.ndarray, scale: float | None) -> np.ndarray:
    """Stored bounds → float64 (the code for "above the range" → +inf)."""
    if scale is None:
        return stored.astype(np.float64)
    return _code_values(scale)[stored]


class _Identity:
    """`values[x] == x`: decoding bounds stored as floats."""

    def __getitem__(self, value: float) -> float:
        return value


_IDENTITY = _Identity()


@functools.lru_cache(maxsize=8)
def _code_list(scale: float) -> list[float]:
    """`_code_values` as a Python list (decoding inside a Python loop)."""
    return _code_values(scale).tolist()


@functools.lru_cache(maxsize=8)
def _code_values(scale: float) -> np.ndarray:
    """The float64 value of every uint16 code at `scale` (one table lookup decodes a row)."""
    values = np.arange(_ABOVE + 1, dtype=np.float64) * scale
    values[_ABOVE] = math.inf
    return values


def _id_rank(ids: Sequence[str]) -> np.ndarray:
    """int32: each position's rank in id order."""
    rank = np.empty(len(ids), dtype=np.int32)
    rank[np.argsort(np.array(ids, dtype=object), kind="stable")] = np.arange(len(ids))
    return rank


def code_scale(ceiling: float) -> float | None:
    """The uint16 code step for a ceiling (finite and ≤ 1: ceiling/65534), else None (float32)."""
    return ceiling / _CODE_MAX if 0 < ceiling <= 1 else None


@dataclass(frozen=True)
class MeasuredGraph:
    """Directed measured entries in CSR form, searched from a reference at query time (module docstring).

    Row a (entries offsets[a]:offsets[a+1]) holds a's neighbours sorted by position, with bounds on d(a→b); for a
    `precomputed` model it holds its candidate row instead (candidate, bounds, provenance code in `flags`),
    sorted by (upper, id).
    Bounds are uint16 codes of `bound_scale` (ceiling finite and ≤ 1) or float32, rounded outward; an upper
    bound above the ceiling is stored as +inf, which no path a query can ask for ever uses.
    """

    ids: list[str]
    offsets: np.ndarray  # int32 (int64 past 2**31 entries), len(ids) + 1
    table: np.ndarray  # packed records: neighbour int32, upper and lower (uint16 codes or float32), flags uint8
    ceiling: float
    empirical: Mapping[tuple[int, int], float] | EmpiricalLookup
    model_flags: np.ndarray  # uint8 per position: PRESENT | PRECOMPUTED | ASYMMETRIC_MODEL
    model_count: int
    bound_scale: float | None

    @property
    def present(self) -> np.ndarray:
        """Per position: the model is in the index."""
        return (self.model_flags & _PRESENT) != 0

    @property
    def precomputed(self) -> np.ndarray:
        """Per position: its row of `table` is its candidate row (a small component), not its entries."""
        return (self.model_flags & _PRECOMPUTED) != 0

    @functools.cached_property
    def rank(self) -> np.ndarray:
        """int32: each position's rank in id order (ties in a row are broken by id); built at the first search."""
        return _id_rank(self.ids)

    @property
    def neighbours(self) -> np.ndarray:
        """Each entry's neighbour position (int32)."""
        return self.table["neighbour"]

    @property
    def upper(self) -> np.ndarray:
        """Each entry's upper bound as stored (uint16 codes, float32 or float64), rounded up."""
        return self.table["upper"]

    @property
    def lower(self) -> np.ndarray:
        """Each entry's lower bound as stored, rounded down."""
        return self.table["lower"]

    @property
    def flags(self) -> np.ndarray:
        """Each entry's flags (uint8: IDENTICAL_FLAG | ASYMMETRIC_FLAG)."""
        return self.table["flags"]

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays a query reads (ids and the empirical map excluded)."""
        arrays = [self.offsets, self.table, self.model_flags]
        if "rank" in self.__dict__:  # held once a search needed it (never where every row is precomputed)
            arrays.append(self.rank)
        return int(sum(a.nbytes for a in arrays))

    @property
    def entry_count(self) -> int:
        """Entries stored: directed measured entries of the searched models and candidates of the precomputed rows."""
        return int(self.neighbours.size)

    def as_stored(self, values: np.ndarray, up: bool) -> np.ndarray:
        """Bounds measured elsewhere, rounded outward as this graph stores its own (so equal bounds compare equal)."""
        values = np.asarray(values, dtype=np.float64)
        if self.upper.dtype == np.float64:
            return values
        return decode(encode_outward(values, self.bound_scale, up), self.bound_scale)

    @classmethod
    def pack(
        cls,
        ids: list[str],
        source: Sequence[int] | np.ndarray,
        target: Sequence[int] | np.ndarray,
        lower: Sequence[float] | np.ndarray,
        upper: Sequence[float] | np.ndarray,
        flags: Sequence[int] | np.ndarray,
        ceiling: float,
        empirical: Mapping[tuple[int, int], float] | EmpiricalLookup,
        present: Sequence[bool] | None = None,
        compact: bool = True,
        precompute: int = PRECOMPUTED_COMPONENT,
    ) -> MeasuredGraph:
        """Pack directed entries (source → target with bounds on d(source→target)); rows sorted by target.

        `compact` rounds bounds outward to uint16 codes (ceiling finite and ≤ 1) or float32; otherwise they
        stay float64, bit-identical to the given ones. Models of connected components of at most `precompute`
        models (0: none) keep their search result up to the ceiling instead of their entries (`precomputed`).
        """
        n = len(ids)
        src = np.asarray(source, dtype=np.int64)
        dst = np.asarray(target, dtype=np.int64)
        order = np.lexsort((dst, src))
        sizes = np.bincount(src, minlength=n) if n else np.zeros(0, dtype=np.int64)
        offsets = np.zeros(n + 1, dtype=np.int64 if len(src) >= 2**31 else np.int32)
        np.cumsum(sizes, out=offsets[1:])
        scale = code_scale(ceiling) if compact else None
        up64 = np.asarray(upper, dtype=np.float64)[order]
        lo64 = np.asarray(lower, dtype=np.float64)[order]
        flags_present = np.ones(n, dtype=bool) if present is None else np.asarray(present, dtype=bool)
        upper_stored = encode_outward(up64, scale, up=True) if compact else up64
        lower_stored = encode_outward(lo64, scale, up=False) if compact else lo64
        table = np.empty(
            len(src),
            dtype=np.dtype(
                [
                    ("neighbour", np.int32),
                    ("upper", upper_stored.dtype),
                    ("lower", lower_stored.dtype),
                    ("flags", np.uint8),
                ]
            ),  # packed (no padding): one slice and one tolist read a row
        )
        table["neighbour"] = dst[order]
        table["upper"], table["lower"] = upper_stored, lower_stored
        table["flags"] = np.asarray(flags, dtype=np.uint8)[order]
        model_flags = np.where(flags_present, _PRESENT, 0).astype(np.uint8)
        model_flags[src[order][(table["flags"] & ASYMMETRIC_FLAG) != 0]] |= _ASYMMETRIC_MODEL
        graph = cls(
            ids=list(ids),
            offsets=offsets,
            table=table,
            ceiling=ceiling,
            empirical=empirical,
            model_flags=model_flags,
            model_count=int(flags_present.sum()),
            bound_scale=scale,
        )
        return graph._with_precomputed_rows(precompute) if precompute > 0 and n else graph

    def _with_precomputed_rows(self, limit: int) -> MeasuredGraph:
        """This graph with the models of components of ≤ `limit` models answered by stored rows (see `pack`).

        A component's searches never leave it, so its models' entries are needed by nobody once their rows are
        stored: they are dropped, and the index holds about what the earlier candidate lists held for such models.
        """
        n = len(self.ids)
        adjacency = csr_matrix((np.ones(self.entry_count, dtype=np.int8), self.neighbours, self.offsets), shape=(n, n))
        _, label = connected_components(adjacency, directed=True, connection="weak")
        component_size = np.bincount(label)
        small = (component_size <= limit)[label]
        by_component = np.argsort(label, kind="stable")  # positions, grouped by component, ascending within
        starts = np.concatenate(([0], np.cumsum(component_size)))
        local_of = np.empty(n, dtype=np.int64)
        local_of[by_component] = np.arange(n) - np.repeat(starts[:-1], component_size)
        upper, lower = decode(self.upper, self.bound_scale), decode(self.lower, self.bound_scale)
        parts = [
            component_rows(
                by_component[starts[components][:, None] + np.arange(size)[None, :]],
                local_of,
                self.offsets,
                self.neighbours,
                upper,
                lower,
                self.flags,
                self.ceiling,
                TIE,
                IDENTICAL_FLAG,
                ASYMMETRIC_FLAG,
            )
            for size in range(2, limit + 1)
            if len(components := np.flatnonzero(component_size == size))
        ]
        empty = (np.empty(0, dtype=np.int64),) * 2 + (np.empty(0),) * 2 + (np.empty(0, dtype=np.int64),)
        owner, candidate, row_upper, row_lower, provenance = (
            tuple(np.concatenate(field) for field in zip(*parts, strict=True)) if parts else empty
        )
        stored_upper = self._encode(row_upper, up=True)
        stored_lower = np.minimum(self._encode(row_lower, up=False), stored_upper)
        rank = _id_rank(self.ids)  # not kept: a graph whose every row is precomputed never searches
        order = np.lexsort((rank[candidate], stored_upper, owner))  # rows sorted by (upper, id), as searched
        sizes = np.where(small, 0, np.diff(self.offsets)) + np.bincount(owner, minlength=n)
        offsets = np.zeros(n + 1, dtype=np.int64 if sizes.sum() >= 2**31 else np.int32)
        np.cumsum(sizes, out=offsets[1:])
        table = np.empty(int(offsets[-1]), dtype=self.table.dtype)
        searched = np.flatnonzero(~small)
        if len(searched):  # the searched models keep their entries, moved to their new offsets
            lengths = np.diff(self.offsets)[searched]
            shift = np.repeat(offsets[searched].astype(np.int64) - self.offsets[searched], lengths)
            source = np.concatenate([np.arange(self.offsets[a], self.offsets[a + 1]) for a in searched.tolist()])
            table[source + shift] = self.table[source]
        owner = owner[order]
        slot = offsets[owner].astype(np.int64) + (np.arange(len(owner)) - np.searchsorted(owner, owner))
        table["neighbour"][slot] = candidate[order]
        table["upper"][slot], table["lower"][slot] = stored_upper[order], stored_lower[order]
        table["flags"][slot] = provenance[order]
        model_flags = np.where(small, self.model_flags | _PRECOMPUTED, self.model_flags).astype(np.uint8)
        return replace(self, offsets=offsets, table=table, model_flags=model_flags)

    # -- reading -----------------------------------------------------------------------------

    @property
    def _values(self) -> list[float] | _Identity:
        """Stored bound → float: the code table, or the identity where bounds are stored as floats."""
        return _code_list(self.bound_scale) if self.bound_scale is not None else _IDENTITY

    def entry(self, a: int, b: int) -> tuple[float, float, int] | None:
        """(lower, upper, flags) of the entry a→b, or None when neither direction was measured (or a's row is
        precomputed: it keeps no entries)."""
        if self.model_flags[a] & _PRECOMPUTED:
            return None
        start, stop = int(self.offsets[a]), int(self.offsets[a + 1])
        neighbours = self.neighbours
        k = start + int(np.searchsorted(neighbours[start:stop], b))
        if k >= stop or int(neighbours[k]) != b:
            return None
        _, up, lo, flags = self.table[k].tolist()
        values = self._values
        return values[lo], values[up], flags

    def search(self, reference: int, bound: float) -> CandidateRow:
        """The reference's candidates with a path bound ≤ `bound` (math.inf: its whole component), sorted.

        Upper bounds are shortest paths (hops composed by `bound_rules.compose`); a measured pair keeps its
        own bounds when no path is tighter (`measured`), a shared fingerprint gives 0 (`identical`), any
        other pair is `transitive`. Lower bounds are the best one hop through a common neighbour, never
        above the upper bound. Bounds are given as this graph stores them (`as_stored`: rounded outward to its
        codes or float32 in compact form). A precomputed model's row is read whole (up to the ceiling), as
        candidate lists are: the same candidates, bounds and order, longer than `bound`.
        """
        if self.model_flags[reference] & _PRECOMPUTED:
            part = self.table[self.offsets[reference] : self.offsets[reference + 1]]
            return CandidateRow(
                part["neighbour"].astype(np.int64),
                decode(part["upper"], self.bound_scale),
                decode(part["lower"], self.bound_scale),
                part["flags"].astype(np.int64),  # a stored row's provenance code
            )
        positions, upper, lower, provenance, hops = self._searched(reference, bound)
        return CandidateRow(
            positions.astype(np.int64),
            decode(upper, self.bound_scale),
            decode(lower, self.bound_scale),
            provenance.astype(np.int64),
            hops,
        )

    def _searched(
        self, reference: int, bound: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The search of `search` over the entries: (positions, upper, lower, provenance, hops), sorted by (upper,
        id), the bounds encoded as this graph stores its entries (rounded outward: upper up, lower down)."""
        values = self._values
        rows: dict[int, list[tuple[int, float, float, int]] | np.ndarray] = {}  # an array for a wide row
        dist: dict[int, float] = {reference: 0.0}
        heap: list[tuple[float, int, int]] = [(0.0, 0, reference)]
        done: set[int] = set()
        reached: list[tuple[int, float, int]] = []
        while heap:
            d, hops, node = heapq.heappop(heap)
            if node in done:
                continue
            done.add(node)
            if node != reference:
                reached.append((node, d, hops))
            start, stop = int(self.offsets[node]), int(self.offsets[node + 1])
            if stop - start > WIDE_ROW:  # a pivot's row: relax in numpy, visit only what stays within `bound`
                rows[node] = part = self.table[start:stop]
                w = decode(part["upper"], self.bound_scale)
                steps = np.where((part["flags"] & ASYMMETRIC_FLAG) != 0, d + w * (1.0 + d), d + w)
                within = np.flatnonzero(steps <= bound)
                relax = zip(part["neighbour"][within].tolist(), steps[within].tolist(), strict=True)
            else:
                rows[node] = row = self.table[start:stop].tolist()
                relax = ((z, d + values[c] * (1.0 + d) if f & ASYMMETRIC_FLAG else d + values[c]) for z, c, _, f in row)
            for z, nd in relax:
                if z in done:
                    continue
                if nd <= bound and nd < dist.get(z, math.inf):
                    dist[z] = nd
                    heapq.heappush(heap, (nd, hops + 1, z))
        first = rows[reference]
        direct = (
            _WideRow(first, values)
            if isinstance(first, np.ndarray)
            else {b: (values[lo], values[up], f) for b, up, lo, f in first}
        )
        count = len(reached)
        positions = np.empty(count, dtype=np.int64)
        upper = np.empty(count)
        lower = np.empty(count)
        provenance = np.empty(count, dtype=np.int64)
        hop_counts = np.empty(count, dtype=np.int64)
        for k, (z, d, hops) in enumerate(reached):
            lo, up, prov, hops = self._bounds(reference, direct, rows[z], z, d, hops, values)
            positions[k], upper[k], lower[k], provenance[k], hop_counts[k] = z, up, lo, prov, hops
        stored_upper = self._encode(upper, up=True)
        stored_lower = np.minimum(self._encode(lower, up=False), stored_upper)
        order = np.lexsort((self.rank[positions], stored_upper))
        return (
            positions[order],
            stored_upper[order],
            stored_lower[order],
            provenance[order],
            hop_counts[order],
        )

    def _encode(self, values: np.ndarray, up: bool) -> np.ndarray:
        """float64 bounds in the form this graph stores its entries, rounded outward (float64: unchanged)."""
        if self.upper.dtype == np.float64:
            return values
        return encode_outward(values, self.bound_scale, up)

    def _bounds(
        self,
        reference: int,
        direct: dict[int, tuple[float, float, int]],
        row_z: list[tuple[int, float, float, int]],
        z: int,
        path: float,
        hops: int,
        values: list[float] | _Identity,
    ) -> tuple[float, float, int, int]:
        """(lower, upper, provenance, hops) of reference→z given its shortest path bound and z's row (as stored)."""
        entry = direct.get(z)
        if entry is not None and entry[2] & IDENTICAL_FLAG:
            return 0.0, 0.0, IDENTICAL, 1
        hop = self._hop_lower(reference, direct, row_z, z, values)
        if entry is not None and entry[1] <= path + TIE:
            return min(max(entry[0], hop), entry[1]), entry[1], MEASURED, 1
        return min(hop, path), path, TRANSITIVE, hops

    def _hop_lower(
        self,
        reference: int,
        direct: dict[int, tuple[float, float, int]],
        row_z: list[tuple[int, float, float, int]],
        z: int,
        values: list[float] | _Identity,
    ) -> float:
        """Best one-hop lower bound on d(reference→z) through their common neighbours.

        The bounds on d(y→z) are z's own entry for y when the measure is symmetric (directed_bounds gives
        both directions the same), else y's entry for z.
        """
        best = 0.0
        if isinstance(row_z, np.ndarray):  # a pivot's row: go through the reference's entries instead
            wide = _WideRow(row_z, values)
            pairs = ((y, wide.codes(y)) for y in direct)
            row_z = [(y, *codes) for y, codes in pairs if codes is not None]
        for y, up_code, lo_code, f in row_z:
            first = direct.get(y)
            if first is None or y == reference:
                continue
            lo_ry, up_ry, f_ry = first
            up_zy, lo_zy = values[up_code], values[lo_code]
            if (f_ry | f) & ASYMMETRIC_FLAG:
                second = self.entry(y, z)
                if second is not None:
                    best = max(best, bound_rules.hop_lower(lo_ry, up_ry, second[0], second[1], True))
                continue
            # bound_rules.hop_lower for a symmetric measure, inlined (this loop is the query's inner loop)
            if lo_ry - up_zy > best:
                best = lo_ry - up_zy
            if lo_zy - up_ry > best:
                best = lo_zy - up_ry
        return best

    def is_asymmetric(self, position: int) -> bool:
        """Whether bounds from the model at `position` are of an asymmetric kind (relative l2: directed rules)."""
        return bool(self.model_flags[position] & _ASYMMETRIC_MODEL)

    def reference_row(self, reference: int, bound: float) -> CandidateRow:
        """The reference's candidates with upper bound ≤ `bound` (a precomputed row: all of it), sorted (the query
        engine's entry point)."""
        return self.search(reference, bound)


class _WideRow:
    """A wide row (a pivot's) looked up by neighbour with a binary search instead of read into a dict."""

    def __init__(self, part: np.ndarray, values: list[float] | _Identity) -> None:
        self.part = part
        self.neighbours = part["neighbour"]
        self.values = values

    def codes(self, y: int) -> tuple[float, float, int] | None:
        """(upper, lower, flags) of the entry for `y` as stored, or None."""
        k = int(np.searchsorted(self.neighbours, y))
        if k >= len(self.neighbours) or int(self.neighbours[k]) != y:
            return None
        _, up, lo, f = self.part[k].tolist()
        return up, lo, f

    def get(self, y: int) -> tuple[float, float, int] | None:
        """(lower, upper, flags) of the entry for `y`, decoded, or None (a dict's `get`)."""
        found = self.codes(y)
        return None if found is None else (self.values[found[1]], self.values[found[0]], found[2])

    def __iter__(self):
        return iter(self.neighbours.tolist())
