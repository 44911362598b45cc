"""Candidate lists as a query reads them: packed (CSR) rows per reference, bounds rounded outward.

`SemanticStore.freeze()` (`semantic`) packs its lists here, and a query engine reads the `semantic_index`
asset's table back into the same form (`CandidateLists.from_frame`). Packed bounds are uint16 codes or float32,
rounded outward — upper up, lower down — so packing never makes a bound unsound.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import polars as pl

from sommelier_core.index.bound_rules import ASYMMETRIC_KINDS

PROVENANCE: tuple[str, ...] = ("identical", "measured", "transitive")
"""How a candidate's bounds were obtained, by code (the `provenance` column holds the codes as uint8)."""
IDENTICAL, MEASURED, TRANSITIVE = 0, 1, 2


class EmpiricalLookup(Protocol):
    """Measured (reference, candidate) positions → empirical difference (a dict, or the store's edges)."""

    def get(self, key: tuple[int, int], default: float | None = None) -> float | None: ...


_CODE_MAX = 65534  # one step of headroom so rounding up never overflows uint16


def _outward_codes(values: np.ndarray, scale: float, up: bool) -> np.ndarray:
    """float64 bounds in [0, ceiling] → uint16 codes whose decoded value (code · scale) is on the safe side."""
    raw = values / scale
    codes = np.clip(np.ceil(raw) if up else np.floor(raw), 0, _CODE_MAX).astype(np.int64)
    decoded = codes * scale
    if up:
        codes = np.where(decoded < values, codes + 1, codes)
    else:
        codes = np.where((decoded > values) & (codes > 0), codes - 1, codes)
    return codes.astype(np.uint16)


def _outward_float32(values: np.ndarray, up: bool) -> np.ndarray:
    """float64 → float32 rounded away from the true value's safe side (upper up, lower down)."""
    packed = values.astype(np.float32)
    back = packed.astype(np.float64)
    wrong = back < values if up else back > values
    if wrong.any():
        packed[wrong] = np.nextafter(packed[wrong], np.float32(np.inf if up else -np.inf))
    return packed


@dataclass(frozen=True)
class CandidateRow:
    """A reference's candidates up to some bound, sorted by (upper bound, id): what a query's semantic stage reads.

    Positions are model positions; `hops` is the number of measured pairs on the path (None where the
    source keeps no hop count).
    """

    positions: np.ndarray  # int64
    upper: np.ndarray  # float64
    lower: np.ndarray  # float64
    provenance: np.ndarray  # int64 codes into candidate_lists.PROVENANCE
    hops: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.positions)

    def entries(self) -> zip:
        """(position, lower, upper, provenance code, hops) per candidate as Python values (hops 1 where not kept)."""
        hops = self.hops if self.hops is not None else np.ones(len(self), dtype=np.int64)
        return zip(
            self.positions.tolist(),
            self.lower.tolist(),
            self.upper.tolist(),
            self.provenance.tolist(),
            hops.tolist(),
            strict=True,
        )

    @classmethod
    def sorted(
        cls,
        positions: np.ndarray,
        upper: np.ndarray,
        lower: np.ndarray,
        provenance: np.ndarray,
        hops: np.ndarray | None,
        rank: np.ndarray,
    ) -> CandidateRow:
        """The row sorted by (upper bound, id rank)."""
        order = np.lexsort((rank[positions], upper))
        return cls(
            positions[order], upper[order], lower[order], provenance[order], hops[order] if hops is not None else None
        )


@dataclass(frozen=True)
class CandidateLists:
    """Packed candidate lists (CSR): row i holds model i's candidates sorted by (upper, id).

    In compact form `upper`/`lower` are rounded outward (uint16 codes or float32, see `pack`), so a
    packed bound is never tighter than the stored one; lists read from the asset table keep float64.
    `empirical` maps measured (reference, candidate) positions to their empirical difference; it is
    consulted only for the hits a query returns.
    """

    ids: list[str]
    offsets: np.ndarray  # int64, len(ids) + 1
    candidates: np.ndarray  # int32
    upper: np.ndarray  # float64, float32 (rounded up) or uint16 codes (× bound_scale, rounded up)
    lower: np.ndarray  # same encoding, rounded down
    provenance: np.ndarray  # uint8 index into PROVENANCE
    ceiling: float
    empirical: Mapping[tuple[int, int], float] | EmpiricalLookup
    present: np.ndarray  # bool per position: the model is in the semantic index
    model_count: int
    bound_scale: float | None = None  # set when bounds are uint16 codes
    asymmetric: np.ndarray | None = None  # bool per position: its difference kind is normalised by it

    def is_asymmetric(self, position: int) -> bool:
        """Whether bounds from the model at `position` are of an asymmetric kind (relative l2: directed rules)."""
        return bool(self.asymmetric[position]) if self.asymmetric is not None else False

    def upper_at(self, index: slice | np.ndarray) -> np.ndarray:
        """Decoded upper bounds (float64) of some entries."""
        values = self.upper[index]
        return values * self.bound_scale if self.bound_scale is not None else values.astype(np.float64)

    def lower_at(self, index: slice | np.ndarray) -> np.ndarray:
        """Decoded lower bounds (float64) of some entries."""
        values = self.lower[index]
        return values * self.bound_scale if self.bound_scale is not None else values.astype(np.float64)

    def as_stored(self, values: np.ndarray, up: bool) -> np.ndarray:
        """Bounds measured elsewhere, rounded outward as these lists store theirs (so equal bounds compare equal)."""
        values = np.asarray(values, dtype=np.float64)
        if self.bound_scale is not None:
            return _outward_codes(values, self.bound_scale, up).astype(np.float64) * self.bound_scale
        if self.upper.dtype == np.float32:
            return _outward_float32(values, up).astype(np.float64)
        return values

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays a query reads (ids and the empirical map excluded)."""
        return int(
            self.offsets.nbytes
            + self.candidates.nbytes
            + self.upper.nbytes
            + self.lower.nbytes
            + self.provenance.nbytes
            + self.present.nbytes
        )

    def reference_row(self, reference: int, bound: float) -> CandidateRow:
        """The reference's candidates, sorted: its whole precomputed list (every entry ≤ `bound` is in it, and the
        query engine's filters read the list's length as what the semantic stage considered)."""
        row = self.row(reference)
        return CandidateRow(
            self.candidates[row].astype(np.int64),
            self.upper_at(row),
            self.lower_at(row),
            self.provenance[row].astype(np.int64),
        )

    def row(self, i: int) -> slice:
        """The slice of the packed arrays holding model i's candidates."""
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    @classmethod
    def pack(
        cls,
        ids: list[str],
        lists: Sequence[Mapping[int, Sequence]],
        ceiling: float,
        empirical: Mapping[tuple[int, int], float] | EmpiricalLookup,
        present: Sequence[bool] | None = None,
        model_count: int | None = None,
        compact: bool = True,
        asymmetric: Sequence[bool] | None = None,
    ) -> CandidateLists:
        """Pack per-model `{candidate: (upper, lower, provenance, hops…)}` maps, sorted by (upper, id).

        `compact` stores the bounds rounded outward (never tighter than the stored ones): as uint16
        codes of ceiling/65534 when the ceiling is finite and ≤ 1 (a resolution of 1.5e-6 at a 10 %
        ceiling), else as float32; otherwise they stay float64, bit-identical to the stored ones.
        """
        n = len(ids)
        sizes = np.fromiter((len(lst) for lst in lists), dtype=np.int64, count=n)
        offsets = np.zeros(n + 1, dtype=np.int64 if sizes.sum() >= 2**31 else np.int32)
        np.cumsum(sizes, out=offsets[1:])
        total = int(offsets[-1])
        cand = np.empty(total, dtype=np.int32)
        up = np.empty(total, dtype=np.float64)
        lo = np.empty(total, dtype=np.float64)
        prov = np.empty(total, dtype=np.uint8)
        k = 0
        for lst in lists:
            for b, entry in lst.items():
                cand[k], up[k], lo[k], prov[k] = b, entry[0], entry[1], entry[2]
                k += 1
        rank = np.empty(n, dtype=np.int64)
        rank[np.argsort(np.array(ids, dtype=object), kind="stable")] = np.arange(n)
        scale = None
        if compact and 0 < ceiling <= 1:
            scale = ceiling / _CODE_MAX
            up32, lo32 = _outward_codes(up, scale, up=True), _outward_codes(lo, scale, up=False)
        elif compact:
            up32, lo32 = _outward_float32(up, up=True), _outward_float32(lo, up=False)
        else:
            up32, lo32 = up, lo
        owner = np.repeat(np.arange(n), sizes)
        order = np.lexsort((rank[cand], up32, owner))
        flags = np.ones(n, dtype=bool) if present is None else np.asarray(present, dtype=bool)
        return cls(
            ids=list(ids),
            offsets=offsets,
            candidates=cand[order],
            upper=up32[order],
            lower=lo32[order],
            provenance=prov[order],
            ceiling=ceiling,
            empirical=empirical,
            present=flags,
            model_count=int(flags.sum()) if model_count is None else model_count,
            bound_scale=scale,
            asymmetric=np.asarray(asymmetric, dtype=bool) if asymmetric is not None else None,
        )

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, ids: list[str]) -> CandidateLists:
        """Pack the `semantic_index` asset's table for the models `ids` (positions = order of `ids`)."""
        pos = {m: i for i, m in enumerate(ids)}
        lists: list[dict[int, tuple]] = [{} for _ in ids]
        empirical: dict[tuple[int, int], float] = {}
        present = np.zeros(len(ids), dtype=bool)
        asymmetric = np.zeros(len(ids), dtype=bool)
        codes = {p: i for i, p in enumerate(PROVENANCE)}
        columns = ["reference_id", "candidate_id", "upper", "lower", "provenance", "empirical", "kind"]
        for ref, cand, up, lo, prov, emp, kind in frame.select(columns).iter_rows():
            a, b = pos.get(ref), pos.get(cand)
            if a is None or b is None:
                continue
            present[a] = True
            asymmetric[a] = kind in ASYMMETRIC_KINDS
            lists[a][b] = (up, lo, codes.get(prov, TRANSITIVE))
            if emp is not None:
                empirical[(a, b)] = emp
        return cls.pack(ids, lists, math.inf, empirical, present=present, compact=False, asymmetric=asymmetric)
