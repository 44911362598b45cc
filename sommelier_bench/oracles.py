"""Test and benchmark oracles: answers computed the slow, direct way, that the library's fast paths must equal.

`build_semantic_index` rebuilds the semantic index from scratch (paper §5.2, design §4): `SemanticStore`
(the library's incremental index) must give the same candidate lists. `brute_force` answers a compiled
query plan by scanning every model and every candidate record: `execute` must return the same ids.

Only a few pairs are measured (five sampled peers per model). Every other pair of I/O-compatible
models gets bounds from the measured ones, by the rules of `sommelier_core.index.bound_rules` (each
direction of a pair on its own; relative l2 is normalised by the reference):
- upper: the shortest path over the measured entries, hops composed (d(X,Z) ≤ d(X,Y) + d(Y,Z) for a
  disagreement rate, applied along the whole path — tighter than the paper's one hop);
- lower: the best one-hop bound through a common measured neighbour.
The oracles here compute them densely (every pair, every path length) or by label-correcting rounds,
never by the index's search, so an agreement is a check of the search.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from sommelier_core.equivalence.bound import PairBound
from sommelier_core.index import bound_rules
from sommelier_core.index.measured_graph import ASYMMETRIC_FLAG, IDENTICAL_FLAG, TIE, MeasuredGraph, decode
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


def _largest_lower(pairs: Sequence[PairBound]) -> dict[tuple[str, str], float]:
    best: dict[tuple[str, str], float] = {}
    for p in pairs:
        key = (p.reference_id, p.candidate_id)
        best[key] = max(best.get(key, 0.0), p.lower)
    return best


def directed_entries(
    pairs: Sequence[PairBound], fingerprints: Mapping[str, str]
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Dense matrices over the models (sorted ids) of every measured or identical entry a→b.

    Returns (models, lower, upper, asymmetric, linked): linked[a, b] where either direction of (a, b) was
    measured or the two share a fingerprint (0 both sides); upper is +inf where not linked. The bound rules
    are `bound_rules.directed_bounds`.
    """
    models = sorted(fingerprints)
    pos = {m: i for i, m in enumerate(models)}
    n = len(models)
    tight = {k: v for k, v in _tightest_measurements(pairs).items() if k[0] in pos and k[1] in pos and k[0] != k[1]}
    lowest = _largest_lower(pairs)
    lower, upper = np.zeros((n, n)), np.full((n, n), np.inf)
    asymmetric = np.zeros((n, n), dtype=bool)
    linked = np.zeros((n, n), dtype=bool)
    done: set[tuple[str, str]] = set()
    for a, b in tight:
        for x, y in ((a, b), (b, a)):
            if (x, y) in done:
                continue
            done.add((x, y))
            forward, backward = tight.get((x, y)), tight.get((y, x))
            skew = any(m is not None and bound_rules.is_asymmetric(m.kind) for m in (forward, backward))
            lo, up = bound_rules.directed_bounds(
                (lowest[(x, y)], forward.upper) if forward is not None else None,
                (lowest[(y, x)], backward.upper) if backward is not None else None,
                skew,
            )
            lower[pos[x], pos[y]], upper[pos[x], pos[y]], asymmetric[pos[x], pos[y]] = lo, up, skew
            linked[pos[x], pos[y]] = True
    for a in models:
        for b in models:
            if a != b and fingerprints[a] == fingerprints[b]:
                lower[pos[a], pos[b]] = upper[pos[a], pos[b]] = 0.0
                asymmetric[pos[a], pos[b]] = False
                linked[pos[a], pos[b]] = True
    return models, lower, upper, asymmetric, linked


def all_path_bounds(upper: np.ndarray, asymmetric: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shortest-path upper bounds between every two models, by relaxing every entry until nothing changes.

    Hops compose as `bound_rules.compose`; returns (bounds, hops), hops the fewest on a shortest path.
    """
    n = len(upper)
    best = np.full((n, n), np.inf)
    np.fill_diagonal(best, 0.0)
    hops = np.zeros((n, n), dtype=np.int64)
    for k in range(1, n + 1):
        # best[a, b] + upper[b, c] (·(1 + best[a, b]) for an asymmetric entry), minimised over b
        with np.errstate(invalid="ignore"):
            scale = np.where(asymmetric[None, :, :], 1.0 + best[:, :, None], 1.0)
            through = np.nan_to_num(best[:, :, None] + upper[None, :, :] * scale, nan=np.inf, posinf=np.inf).min(axis=1)
        shorter = through < best
        if not shorter.any():
            break
        best = np.where(shorter, through, best)
        hops = np.where(shorter, k, hops)
    return best, hops


def one_hop_lower(lower: np.ndarray, upper: np.ndarray, asymmetric: np.ndarray, linked: np.ndarray) -> np.ndarray:
    """The best one-hop lower bound of every pair through every common neighbour (`bound_rules.hop_lower`)."""
    n = len(upper)
    best = np.zeros((n, n))
    for a in range(n):
        for c in range(n):
            for b in range(n):
                if b in (a, c) or a == c or not linked[a, b] or not linked[b, c]:
                    continue
                skew = bool(asymmetric[a, b] or asymmetric[b, c])
                hop = bound_rules.hop_lower(lower[a, b], upper[a, b], lower[b, c], upper[b, c], skew)
                best[a, c] = max(best[a, c], hop)
    return best


def build_semantic_index(pairs: Sequence[PairBound], fingerprints: Mapping[str, str]) -> pl.DataFrame:
    """Candidate lists for every model in `fingerprints`, from the measured `pairs`, by dense brute force.

    Models with the same fingerprint are the same network (difference 0, provenance `identical`);
    measured pairs keep their own bounds unless a path through others is tighter (`transitive`).
    Pairs with no path between them (incompatible models) get no record. Each direction of a pair is
    bounded on its own (`bound_rules`): for relative l2, which is normalised by the reference, a measurement
    of b→a bounds a→b only after rescaling.
    """
    if not fingerprints:
        return pl.DataFrame(schema=SEMANTIC_INDEX_SCHEMA)
    models, lower, upper, asymmetric, linked = directed_entries(pairs, fingerprints)
    paths, hops = all_path_bounds(upper, asymmetric)
    hop_lower = one_hop_lower(lower, upper, asymmetric, linked)
    measured = _tightest_measurements(pairs)
    kinds = {a: p.kind for (a, _), p in measured.items()} | {b: p.kind for (_, b), p in measured.items()}
    records = []
    for i, a in enumerate(models):
        for j, b in enumerate(models):
            if i == j or not np.isfinite(paths[i, j]):
                continue
            direct = measured.get((a, b))
            if direct is None and (b, a) in measured and not bound_rules.is_asymmetric(measured[(b, a)].kind):
                direct = measured[(b, a)]
            if fingerprints[a] == fingerprints[b]:
                provenance, hop, up, lo = "identical", 1, 0.0, 0.0
            elif linked[i, j] and upper[i, j] <= paths[i, j] + TIE:
                provenance, hop, up = "measured", 1, float(upper[i, j])
                lo = min(max(float(lower[i, j]), float(hop_lower[i, j])), up)
            else:
                provenance, hop, up = "transitive", int(hops[i, j]), float(paths[i, j])
                lo = min(float(hop_lower[i, j]), up)
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
                    "hops": hop,
                    "n": direct.n if direct is not None else None,
                }
            )
    frame = pl.DataFrame(records, schema=SEMANTIC_INDEX_SCHEMA)
    return frame.sort(["reference_id", "upper", "candidate_id"])


def graph_bounds_from(graph: MeasuredGraph, reference: int, bound: float) -> dict[int, float]:
    """Upper bounds from `reference` to every model within `bound`, as the index reports them, by brute force.

    Label-correcting relaxation of every entry out of the models whose bound improved (a Bellman–Ford by
    rounds, in numpy) instead of the index's Dijkstra; then the same provenance rule: a measured entry
    within `TIE` of the path keeps its own bound, an identical one is 0.
    """
    n = len(graph.ids)
    dist = np.full(n, np.inf)
    dist[reference] = 0.0
    frontier = np.array([reference])
    upper = decode(graph.upper, graph.bound_scale)
    asymmetric = (graph.flags & ASYMMETRIC_FLAG) != 0
    while len(frontier):
        starts, stops = graph.offsets[frontier], graph.offsets[frontier + 1]
        entries = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops, strict=True)] or [np.empty(0, int)])
        src = np.repeat(frontier, stops - starts)
        dst = graph.neighbours[entries].astype(np.int64)
        d = dist[src]
        candidate = np.where(asymmetric[entries], d + upper[entries] * (1.0 + d), d + upper[entries])
        candidate[candidate > bound] = np.inf
        before = dist.copy()
        np.minimum.at(dist, dst, candidate)
        frontier = np.flatnonzero(dist < before)
    found: dict[int, float] = {}
    start, stop = int(graph.offsets[reference]), int(graph.offsets[reference + 1])
    direct = dict(zip(graph.neighbours[start:stop].tolist(), range(start, stop), strict=True))
    for z in np.flatnonzero(np.isfinite(dist)).tolist():
        if z == reference:
            continue
        k = direct.get(z)
        if k is not None and graph.flags[k] & IDENTICAL_FLAG:
            found[z] = 0.0
        elif k is not None and upper[k] <= dist[z] + TIE:
            found[z] = float(upper[k])
        else:
            found[z] = float(graph.as_stored(np.array([dist[z]]), up=True)[0])  # as the index reports a path
    return found


def brute_force(plan: QueryPlan, engine: QueryEngine, graph: MeasuredGraph | None = None) -> list[str]:
    """The ids a plan must return, by scanning every model and every candidate record (for checks).

    No sorted columns, no early cut: every model is tested against every predicate, and the
    semantic predicate against the whole packed candidate table, not the reference's row. `graph` is the
    measured graph to relax instead of the engine's: an engine's graph keeps no entries for the models whose
    rows it precomputed, so pass the same store frozen with `precompute=0` to check those rows too.
    """
    resource, semantic = engine.resource, graph if graph is not None else engine.semantic
    if isinstance(semantic, MeasuredGraph) and plan.within is not None and semantic.precomputed[plan.reference_pos]:
        raise ValueError("the engine's graph stores this reference's row, not its entries: pass graph=")
    n = len(engine.ids)
    every = np.arange(n)
    ok = candidates_under_exec_spec(plan, resource)
    if plan.predicate is not None:
        ok &= satisfies(plan.predicate, every, resource)
    upper = np.ones(n)
    if plan.within is not None and isinstance(semantic, MeasuredGraph):
        in_list = np.zeros(n, dtype=bool)
        for z, up in graph_bounds_from(semantic, plan.reference_pos, plan.within).items():
            if up <= plan.within:
                in_list[z], upper[z] = True, up
        ok &= in_list
    elif plan.within is not None:
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
