"""Candidate rows of every model of small components at once: what `MeasuredGraph.search` gives, in numpy.

`MeasuredGraph.pack` stores the rows of models whose connected component is small (`PRECOMPUTED_COMPONENT`).
Searching each of them in Python took most of a 100 000-model build, so here the components of one size are
stacked (components × s × s arrays of their entries) and every model's row is computed together, with the
search's own arithmetic, so a stored row equals the row a search would give, bit for bit:

- upper bounds: label-correcting rounds from every source at once, each a prefix bound plus one hop composed as
  the search composes it (d + w, or d + w·(1 + d) for an asymmetric entry), pruned above the ceiling. The search
  takes the least such left-to-right sum over paths; so do the rounds (float addition is monotone);
- lower bounds: the best one hop through a common neighbour, the same formulas (`bound_rules.hop_lower`);
- provenance: identical, measured (the entry within `TIE` of the path) or transitive, as `search` decides it.
"""

from __future__ import annotations

import numpy as np

from sommelier_core.index.candidate_lists import IDENTICAL, MEASURED, TRANSITIVE

_CHUNK_ELEMENTS = 500_000
"""Most elements of the components × s × s × s arrays built at once (≈ 4 MB each of float64)."""


def component_rows(
    members: np.ndarray,
    local_of: np.ndarray,
    offsets: np.ndarray,
    neighbours: np.ndarray,
    upper: np.ndarray,
    lower: np.ndarray,
    flags: np.ndarray,
    ceiling: float,
    tie: float,
    identical_flag: int,
    asymmetric_flag: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows of the models of components of one size s: `members` (components × s positions).

    `local_of[p]` is position p's index within its component; the entries are the graph's (CSR `offsets`,
    `neighbours`, decoded float64 `upper`/`lower`, `flags`). Returns one array per field over every
    (model, candidate) of the rows: model, candidate, upper, lower, provenance — float64 bounds not yet rounded
    as stored, in no particular order.
    """
    count, size = members.shape
    chunk = max(1, _CHUNK_ELEMENTS // max(size**3, 1))
    out = []
    for first in range(0, count, chunk):
        out.append(
            _rows_of(
                members[first : first + chunk],
                local_of,
                offsets,
                neighbours,
                upper,
                lower,
                flags,
                ceiling,
                tie,
                identical_flag,
                asymmetric_flag,
            )
        )
    return tuple(np.concatenate(field) for field in zip(*out, strict=True))


def _rows_of(
    members: np.ndarray,
    local_of: np.ndarray,
    offsets: np.ndarray,
    neighbours: np.ndarray,
    upper: np.ndarray,
    lower: np.ndarray,
    flags: np.ndarray,
    ceiling: float,
    tie: float,
    identical_flag: int,
    asymmetric_flag: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    count, size = members.shape
    flat = members.ravel()
    starts, stops = offsets[flat].astype(np.int64), offsets[flat + 1].astype(np.int64)
    lengths = stops - starts
    entry = np.repeat(starts - np.cumsum(np.concatenate(([0], lengths[:-1]))), lengths) + np.arange(lengths.sum())
    component = np.repeat(np.repeat(np.arange(count), size), lengths)
    source = np.repeat(np.tile(np.arange(size), count), lengths)
    target = local_of[neighbours[entry]]
    up = np.full((count, size, size), np.inf)
    lo = np.zeros((count, size, size))
    linked = np.zeros((count, size, size), dtype=bool)
    fl = np.zeros((count, size, size), dtype=np.int64)
    up[component, source, target] = upper[entry]
    lo[component, source, target] = lower[entry]
    linked[component, source, target] = True
    fl[component, source, target] = flags[entry]
    skew = (fl & asymmetric_flag) != 0
    any_skew = bool(skew.any())

    # Upper bounds: dist[c, r, j] over every source r, relaxed hop by hop as the search relaxes them.
    dist = np.full((count, size, size), np.inf)
    dist[:, np.arange(size), np.arange(size)] = 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        for _ in range(size):
            d = dist[:, :, :, None]  # [c, r, i, ·]
            step = d + up[:, None, :, :]
            if any_skew:
                step = np.where(skew[:, None, :, :], d + up[:, None, :, :] * (1.0 + d), step)
            reach = step.min(axis=2)  # pruning after the min: the least step is within the ceiling iff any is
            reach[~(reach <= ceiling)] = np.inf
            better = np.minimum(dist, reach)
            if np.array_equal(better, dist):
                break
            dist = better

    # One-hop lower bounds through every common neighbour y (entries r→y and z→y, or y→z if asymmetric).
    lo_ry, up_ry, f_ry = lo[:, :, None, :], up[:, :, None, :], fl[:, :, None, :]  # [c, r, ·, y]
    lo_zy, up_zy, f_zy = lo[:, None, :, :], up[:, None, :, :], fl[:, None, :, :]  # [c, ·, z, y]
    lo_yz = np.swapaxes(lo, 1, 2)[:, None, :, :]  # [c, ·, z, y] = entry y→z (asymmetric hops)
    up_yz = np.swapaxes(up, 1, 2)[:, None, :, :]
    common = linked[:, :, None, :] & linked[:, None, :, :]
    common &= ~np.eye(size, dtype=bool)[None, :, None, :]  # y ≠ r
    with np.errstate(invalid="ignore", over="ignore"):
        hop = np.fmax(lo_ry - up_zy, lo_zy - up_ry)
        if any_skew:
            asymmetric_hop = ((f_ry | f_zy) & asymmetric_flag) != 0
            first = lo_ry - up_yz * (1.0 + up_ry)
            second = lo_yz * np.maximum(1.0 - up_ry, 0.0) - up_ry
            directed = np.fmax(np.fmax(first, second), 0.0)  # NaN (∞·0) never wins, as in hop_lower
            hop = np.where(asymmetric_hop, directed, hop)
            common &= ~(asymmetric_hop & ~np.swapaxes(linked, 1, 2)[:, None, :, :])  # y→z must be an entry
        hop = np.fmax(np.where(common, hop, 0.0).max(axis=3), 0.0)  # [c, r, z]

    identical = linked & ((fl & identical_flag) != 0)
    measured = linked & ~identical & (up <= dist + tie)
    row_upper = np.where(identical, 0.0, np.where(measured, up, dist))
    row_lower = np.where(identical, 0.0, np.where(measured, np.minimum(np.maximum(lo, hop), up), np.minimum(hop, dist)))
    provenance = np.where(identical, IDENTICAL, np.where(measured, MEASURED, TRANSITIVE))
    c, r, z = np.nonzero(np.isfinite(dist) & ~np.eye(size, dtype=bool)[None, :, :])
    return members[c, r], members[c, z], row_upper[c, r, z], row_lower[c, r, z], provenance[c, r, z]
