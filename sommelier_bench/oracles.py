"""Test and benchmark oracles: answers computed the slow, direct way, that the library's fast paths must equal.

`build_semantic_index` rebuilds the semantic index from scratch (paper §5.2, design §4): `SemanticStore`
(the library's incremental index) must give the same candidate lists. `brute_force` answers a compiled
query plan by scanning every model and every candidate record: `execute` must return the same ids.

Only a few pairs are measured (five sampled peers per model). Every other pair of I/O-compatible
models gets bounds from the measured ones, because the difference is a metric:
- upper: the shortest path over the measured-pair graph with each edge weighted by its upper
  bound (d(X,Z) ≤ d(X,Y) + d(Y,Z), applied along the whole path — tighter than the paper's one hop);
- lower: the best one-hop bound max(lo(X,Y) − up(Y,Z), lo(Y,Z) − up(X,Y), 0).
For vector outputs (relative l2, normalised by the reference) the triangle inequality holds for
the un-normalised distance only, so their transitive bounds are approximate.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path

from sommelier_core.equivalence.bound import PairBound
from sommelier_core.index.semantic import SEMANTIC_INDEX_SCHEMA
from sommelier_core.querying.engine import QueryEngine
from sommelier_core.querying.filters import candidates_under_exec_spec, satisfies
from sommelier_core.querying.language import SIMILARITY
from sommelier_core.querying.plan import QueryPlan


def _tightest_measurements(pairs: Sequence[PairBound]) -> dict[tuple[str, str], PairBound]:
    """One bound per directed pair: the one with the smallest upper bound if measured twice."""
    best: dict[tuple[str, str], PairBound] = {}
    for p in pairs:
        key = (p.reference_id, p.candidate_id)
        if key not in best or p.upper < best[key].upper:
            best[key] = p
    return best


def build_semantic_index(pairs: Sequence[PairBound], fingerprints: Mapping[str, str]) -> pl.DataFrame:
    """Candidate lists for every model in `fingerprints`, from the measured `pairs`.

    Models with the same fingerprint are the same network (difference 0, provenance `identical`);
    measured pairs keep their own bounds unless a path through others is tighter (`transitive`).
    Pairs with no path between them (incompatible models) get no record.
    """
    models = sorted(fingerprints)
    pos = {m: i for i, m in enumerate(models)}
    measured = {k: v for k, v in _tightest_measurements(pairs).items() if k[0] in pos and k[1] in pos}
    n_models = len(models)
    if n_models == 0:
        return pl.DataFrame(schema=SEMANTIC_INDEX_SCHEMA)

    edge_upper: dict[tuple[int, int], float] = {}
    edge_lower: dict[tuple[int, int], float] = {}
    for (a, b), p in measured.items():
        i, j = sorted((pos[a], pos[b]))
        edge_upper[(i, j)] = min(edge_upper.get((i, j), np.inf), p.upper)
        edge_lower[(i, j)] = max(edge_lower.get((i, j), 0.0), p.lower)
    for a in models:
        for b in models:
            if a < b and fingerprints[a] == fingerprints[b]:
                edge_upper[(pos[a], pos[b])] = 0.0
                edge_lower[(pos[a], pos[b])] = 0.0

    # csgraph treats explicit zeros as missing edges; a tiny epsilon keeps identical models connected.
    keys = list(edge_upper)
    weights = [max(edge_upper[k], 1e-12) for k in keys]
    rows, cols = [k[0] for k in keys], [k[1] for k in keys]
    graph = csr_matrix((weights, (rows, cols)), shape=(n_models, n_models))
    upper, predecessors = shortest_path(graph, method="D", directed=False, return_predecessors=True)
    lower = _one_hop_lower(n_models, edge_upper, edge_lower)

    kinds = {a: p.kind for (a, _), p in measured.items()} | {b: p.kind for (_, b), p in measured.items()}
    records = []
    for a in models:
        i = pos[a]
        for b in models:
            j = pos[b]
            if i == j or not np.isfinite(upper[i, j]):
                continue
            direct = measured.get((a, b)) or measured.get((b, a))
            identical = fingerprints[a] == fingerprints[b]
            up = 0.0 if identical else float(upper[i, j])
            if identical:
                provenance, hops, up, lo = "identical", 1, 0.0, 0.0
            elif direct is not None and direct.upper <= up + 1e-12:
                provenance, hops, up, lo = "measured", 1, direct.upper, max(direct.lower, float(lower[i, j]))
            else:
                provenance, hops, lo = "transitive", _hops(predecessors, i, j), min(float(lower[i, j]), up)
            records.append(
                {
                    "reference_id": a,
                    "reference_fingerprint": fingerprints[a],
                    "candidate_id": b,
                    "candidate_fingerprint": fingerprints[b],
                    "kind": kinds.get(a, kinds.get(b, "disagreement")),
                    "empirical": direct.empirical if direct is not None else None,
                    "lower": lo,
                    "upper": up,
                    "equivalence": 1.0 - up,
                    "provenance": provenance,
                    "hops": hops,
                    "n": direct.n if direct is not None else None,
                }
            )
    frame = pl.DataFrame(records, schema=SEMANTIC_INDEX_SCHEMA)
    return frame.sort(["reference_id", "upper", "candidate_id"])


def _one_hop_lower(
    n_models: int, edge_upper: Mapping[tuple[int, int], float], edge_lower: Mapping[tuple[int, int], float]
) -> np.ndarray:
    """Best one-hop lower bound for every pair, visiting only each model's measured neighbours."""
    neighbours: dict[int, list[int]] = defaultdict(list)
    for i, j in edge_upper:
        neighbours[i].append(j)
        neighbours[j].append(i)
    lower = np.zeros((n_models, n_models))
    for y, around in neighbours.items():
        for x in around:
            lo_xy = edge_lower[tuple(sorted((x, y)))]
            for z in around:
                if z == x:
                    continue
                up_yz = edge_upper[tuple(sorted((y, z)))]
                lower[x, z] = max(lower[x, z], lo_xy - up_yz)
                lower[z, x] = lower[x, z]
    return lower


def _hops(predecessors: np.ndarray, i: int, j: int) -> int:
    """Number of measured edges on the shortest path from i to j."""
    hops, node = 0, j
    while node != i and node >= 0:
        node = predecessors[i, node]
        hops += 1
    return hops


def brute_force(plan: QueryPlan, engine: QueryEngine) -> list[str]:
    """The ids a plan must return, by scanning every model and every candidate record (for checks).

    No sorted columns, no early cut: every model is tested against every predicate, and the
    semantic predicate against the whole packed candidate table, not the reference's row.
    """
    resource, semantic = engine.resource, engine.semantic
    n = len(engine.ids)
    every = np.arange(n)
    ok = candidates_under_exec_spec(plan, resource)
    if plan.predicate is not None:
        ok &= satisfies(plan.predicate, every, resource)
    upper = np.ones(n)
    if plan.within is not None:
        owners = np.repeat(np.arange(n), np.diff(semantic.offsets))
        every_upper = semantic.upper_at(slice(None))
        mine = (owners == plan.reference_pos) & (every_upper <= plan.within)
        in_list = np.zeros(n, dtype=bool)
        in_list[semantic.candidates[mine]] = True
        upper[semantic.candidates[mine]] = every_upper[mine]
        ok &= in_list
    elif plan.reference_pos is not None:
        ok[plan.reference_pos] = False
    found = np.flatnonzero(ok)
    if plan.order_key == SIMILARITY:
        keys = -upper[found] if plan.descending else upper[found]
    elif plan.order_key.startswith("utility:"):
        raise ValueError("brute_force does not rank by utilities")
    else:
        values = resource.column(plan.order_key, plan.order_device)[found].astype(np.float64)
        keys = -values if plan.descending else values
    order = np.lexsort((engine.name_rank[found], upper[found], keys))
    chosen = found[order]
    if plan.limit is not None:
        chosen = chosen[: plan.limit]
    return [engine.ids[i] for i in chosen]
