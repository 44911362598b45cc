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
Lower bounds are the best one hop through a common measured neighbour (`bound_rules.hop_lower`).
"""

from __future__ import annotations

import functools
import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sommelier_core.index import bound_rules
from sommelier_core.index.candidate_lists import IDENTICAL, MEASURED, TRANSITIVE, CandidateRow, EmpiricalLookup

IDENTICAL_FLAG = 1
"""Entry flag: the two models share a fingerprint (difference 0)."""
ASYMMETRIC_FLAG = 2
"""Entry flag: the pair's difference kind is normalised by the reference (`bound_rules.is_asymmetric`)."""

TIE = 1e-12
"""A measured bound within this of the shortest path counts as the shortest (float noise of path sums)."""

_CODE_MAX = 65534  # codes 0…65534 are values code · scale; 65535 stands for "above the range"
_ABOVE = 65535


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
        codes = np.ceil(raw) if up else np.floor(raw)
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


def code_scale(ceiling: float) -> float | None:
    """The uint16 code step for a ceiling (finite and ≤ 1: ceiling/65534), else None (float32)."""
    return ceiling / _CODE_MAX if 0 < ceiling <= 1 else None


@dataclass(frozen=True)
class MeasuredGraph:
    """Directed measured entries in CSR form, searched from a reference at query time (module docstring).

    Row a (entries offsets[a]:offsets[a+1]) holds a's neighbours sorted by position, with bounds on d(a→b).
    Bounds are uint16 codes of `bound_scale` (ceiling finite and ≤ 1) or float32, rounded outward; an upper
    bound above the ceiling is stored as +inf, which no path a query can ask for ever uses.
    """

    ids: list[str]
    offsets: np.ndarray  # int32 (int64 past 2**31 entries), len(ids) + 1
    table: np.ndarray  # packed records: neighbour int32, upper and lower (uint16 codes or float32), flags uint8
    ceiling: float
    empirical: Mapping[tuple[int, int], float] | EmpiricalLookup
    present: np.ndarray  # bool per position
    model_count: int
    bound_scale: float | None
    rank: np.ndarray  # int32: each position's rank in id order (ties in a row are broken by id)

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
        return int(sum(a.nbytes for a in (self.offsets, self.table, self.present, self.rank)))

    @property
    def entry_count(self) -> int:
        """Directed entries (each measured pair is two: one per direction)."""
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
    ) -> MeasuredGraph:
        """Pack directed entries (source → target with bounds on d(source→target)); rows sorted by target.

        `compact` rounds bounds outward to uint16 codes (ceiling finite and ≤ 1) or float32; otherwise they
        stay float64, bit-identical to the given ones.
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
        rank = np.empty(n, dtype=np.int32)
        rank[np.argsort(np.array(ids, dtype=object), kind="stable")] = np.arange(n)
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
        return cls(
            ids=list(ids),
            offsets=offsets,
            table=table,
            ceiling=ceiling,
            empirical=empirical,
            present=flags_present,
            model_count=int(flags_present.sum()),
            bound_scale=scale,
            rank=rank,
        )

    # -- reading -----------------------------------------------------------------------------

    def _row(self, a: int) -> list[tuple[int, float, float, int]]:
        """Row a as (neighbour, upper, lower, flags) tuples, bounds as stored (decode with `_values`)."""
        return self.table[self.offsets[a] : self.offsets[a + 1]].tolist()

    @property
    def _values(self) -> list[float] | _Identity:
        """Stored bound → float: the code table, or the identity where bounds are stored as floats."""
        return _code_list(self.bound_scale) if self.bound_scale is not None else _IDENTITY

    def entry(self, a: int, b: int) -> tuple[float, float, int] | None:
        """(lower, upper, flags) of the entry a→b, or None when neither direction was measured."""
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
        above the upper bound.
        """
        values = self._values
        rows: dict[int, list[tuple[int, float, float, int]]] = {}
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
            rows[node] = row = self._row(node)
            for z, code, _, f in row:
                if z in done:
                    continue
                w = values[code]
                nd = d + w * (1.0 + d) if f & ASYMMETRIC_FLAG else d + w
                if nd <= bound and nd < dist.get(z, math.inf):
                    dist[z] = nd
                    heapq.heappush(heap, (nd, hops + 1, z))
        direct = {b: (values[lo], values[up], f) for b, up, lo, f in rows[reference]}
        count = len(reached)
        positions = np.empty(count, dtype=np.int64)
        upper = np.empty(count)
        lower = np.empty(count)
        provenance = np.empty(count, dtype=np.int64)
        hop_counts = np.empty(count, dtype=np.int64)
        for k, (z, d, hops) in enumerate(reached):
            lo, up, prov, hops = self._bounds(reference, direct, rows[z], z, d, hops, values)
            positions[k], upper[k], lower[k], provenance[k], hop_counts[k] = z, up, lo, prov, hops
        return CandidateRow.sorted(positions, upper, lower, provenance, hop_counts, self.rank)

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

    def reference_row(self, reference: int, bound: float) -> CandidateRow:
        """The reference's candidates with upper bound ≤ `bound`, sorted (the query engine's entry point)."""
        return self.search(reference, bound)
