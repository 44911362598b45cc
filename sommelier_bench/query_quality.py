"""Benchmark of query quality (paper Fig. 9a): how often the top answer is exhaustive comparison's.

`run_quality_benchmark()` simulates repositories whose models are label vectors with graded flips from a
common base (top-1 disagreement, a true metric), pairwise differences spread over 0–10 %; it indexes them
with the peers `choose_peers` gives (five: two group pivots and three random peers) and, separately, with
every pair measured (exhaustive comparison), and reports the share of queries whose top answer is the
exhaustive index's top answer — from the sampled index alone, and with the query-time refine stage
measuring the uncertain candidates from the simulated outputs (with how many pairs it measured per query).

The exhaustive index's answers come from `exhaustive_bounds`: every compatible pair's Clopper–Pearson
bounds, then shortest paths over all of them (Floyd–Warshall in numpy) and the index's provenance rule —
the bounds `SemanticStore` would hold with every pair inserted, computed densely so that groups of 1 000
(half a million pairs) take seconds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sommelier_core.equivalence.bound import PairBound, clopper_pearson
from sommelier_core.equivalence.peers import DEFAULT_PIVOTS, choose_peers
from sommelier_core.index.measured_graph import TIE
from sommelier_core.index.resource import STATIC_METRICS, ResourceStore
from sommelier_core.index.semantic import SemanticStore
from sommelier_core.querying.engine import DEFAULT_REFINE_BUDGET, PairMeasurer, QueryEngine
from sommelier_core.querying.execution import execute
from sommelier_core.querying.language import OrderBy, QuerySpec
from sommelier_core.querying.plan import compile_query


def _disagreement_counts(
    n_models: int, n_inputs: int, max_level: float, rng: np.random.Generator, graded: bool
) -> np.ndarray:
    """Pairwise top-1 disagreement counts of simulated models (label vectors over `n_inputs`).

    `graded`: every model relabels a prefix of one fixed random order of the inputs, of length
    k_i ~ U(0, max_level·n), each input always to the same wrong label — variants of one parent at
    graded distances, so two models disagree on exactly |k_i − k_j| inputs (pairwise differences
    over 0 – max_level). Otherwise each model relabels its own random subset of fraction
    f_i ~ U(0, max_level/2) (independent noise: differences ≈ f_i + f_j, computed from the vectors).
    """
    if graded:
        k = rng.integers(0, int(max_level * n_inputs) + 1, size=n_models)
        return np.abs(k[:, None] - k[None, :])
    base = rng.integers(0, 10, size=n_inputs)
    labels = np.empty((n_models, n_inputs), dtype=np.int8)
    for i in range(n_models):
        flip = rng.random(n_inputs) < rng.uniform(0, max_level / 2)
        labels[i] = np.where(flip, (base + rng.integers(1, 10, size=n_inputs)) % 10, base)
    counts = np.empty((n_models, n_models), dtype=np.int64)
    for i in range(n_models):  # row by row: n² × inputs at once would not fit for a thousand models
        counts[i] = (labels[i][None, :] != labels).sum(axis=1)
    return counts


def exhaustive_bounds(diff: np.ndarray, compatible: np.ndarray, n_inputs: int, delta: float) -> np.ndarray:
    """Upper bounds of every pair with every compatible pair measured: the exhaustively compared index.

    Each measured pair has its Clopper–Pearson upper bound; a pair keeps it unless a path of measured
    bounds is shorter by more than `TIE` (then the path's length), as `SemanticStore` does. Returns an
    n × n matrix, +inf where no path exists and on the diagonal.
    """
    counts = np.unique(diff[compatible])
    upper_of = {int(k): clopper_pearson(int(k), n_inputs, delta)[1] for k in counts}
    direct = np.full(diff.shape, np.inf)
    rows, cols = np.nonzero(compatible)
    direct[rows, cols] = [upper_of[int(k)] for k in diff[rows, cols]]
    np.fill_diagonal(direct, np.inf)
    paths = direct.copy()
    for k in range(len(paths)):
        np.minimum(paths, paths[:, k, None] + paths[None, k, :], out=paths)
    np.fill_diagonal(paths, np.inf)
    return np.where(direct <= paths + TIE, direct, paths)


def _exhaustive_top(
    bounds: np.ndarray, ref: int, within: float, ordering: str, flops: np.ndarray, rank: np.ndarray
) -> int | None:
    """The exhaustive index's answer to `FIND 1 MODEL LIKE ref WITHIN within ORDER BY ordering`."""
    found = np.flatnonzero(bounds[ref] <= within)
    if len(found) == 0:
        return None
    keys = bounds[ref, found] if ordering == "similarity" else flops[found].astype(np.float64)
    return int(found[np.lexsort((rank[found], bounds[ref, found], keys))[0]])


def _pair_bound(a: str, b: str, disagreements: int, n: int, delta: float) -> PairBound:
    lo, up = clopper_pearson(disagreements, n, delta)
    return PairBound(a, b, "disagreement", disagreements / n, lo, up, n, "statistical", delta)


def run_quality_benchmark(
    repositories: int = 20,
    models: int = 100,
    inputs: int = 10_000,
    max_level: float = 0.10,
    graded: bool = True,
    group_size: int = 20,
    peers: int = 5,
    pivots: int = DEFAULT_PIVOTS,
    thresholds: tuple[float, ...] = (0.03, 0.05, 0.08),
    orderings: tuple[str, ...] = ("flops", "similarity"),
    delta: float = 0.05,
    seed: int = 0,
    refine_budget: int = DEFAULT_REFINE_BUDGET,
    references: int | None = None,
) -> dict:
    """Share of queries whose top answer equals the top answer of an exhaustively compared index.

    Each query is `FIND 1 MODEL LIKE R WITHIN ε ORDER BY flops` (the cheapest model certified
    equivalent) or `… ORDER BY similarity` (the most similar), for every model R of every
    repository (or `references` of them, drawn), every ε and every ordering. Peers are chosen within
    compatibility groups of `group_size` models (a task's compatible models), as the type check does: the
    group's first `pivots` models and `peers − pivots` random ones (`peers.choose_peers`; models arrive in a
    random order). The exhaustive index measures all pairs with the same bound (Clopper–Pearson at 1 − δ);
    Sommelier's measures the chosen peers per insertion and derives the rest transitively. Queries with no
    answer in both count as agreeing; `sound` checks every returned model's true difference is ≤ ε.
    """
    rng = np.random.default_rng(seed)
    agree = total = unsound = empty_both = 0
    spread: list[float] = []
    per_threshold = {t: [0, 0] for t in thresholds}
    per_ordering = {o: [0, 0] for o in orderings}
    refined_agree = refined_unsound = 0
    refined_per_ordering = {o: [0, 0] for o in orderings}
    measured_per_query: list[int] = []
    refine_seconds: list[float] = []
    for repo in range(repositories):
        diff = _disagreement_counts(models, inputs, max_level, rng, graded)
        ids = [f"q{repo:02d}/m{i:04d}" for i in range(models)]
        index_of = {m: i for i, m in enumerate(ids)}
        flops = rng.integers(10**5, 10**8, size=models)
        same_group = (np.arange(models)[:, None] // group_size) == (np.arange(models)[None, :] // group_size)
        spread.extend((diff[np.triu(same_group, 1)] / inputs).tolist())
        group = np.arange(models) // group_size  # compatibility groups: peers are sampled within one
        sampled = SemanticStore()
        inserted: dict[int, list[str]] = {}
        for i in rng.permutation(models):
            pool = inserted.setdefault(int(group[i]), [])
            pairs = [
                _pair_bound(ids[i], p, int(diff[i, index_of[p]]), inputs, delta)
                for p in choose_peers(ids[i], pool, k=peers, pivots=pivots, seed=seed + repo)
            ]
            sampled.insert(ids[i], ids[i], pairs)
            pool.append(ids[i])
        compatible = same_group & ~np.eye(models, dtype=bool)
        exhaustive = exhaustive_bounds(diff, compatible, inputs, delta)
        rank = np.argsort(np.argsort(np.array(ids, dtype=object)))

        def measure(
            ref: str, candidates: Sequence[str], diff: np.ndarray = diff, index_of: dict = index_of
        ) -> list[PairBound]:
            return [_pair_bound(ref, c, int(diff[index_of[ref], index_of[c]]), inputs, delta) for c in candidates]

        engines = [
            _quality_engine(sampled, ids, flops),
            _quality_engine(sampled, ids, flops, measure, refine_budget),
        ]
        queried = ids  # every model as the reference, or a seeded sample of `references` of them
        if references is not None and references < models:
            drawn = np.random.default_rng([seed, repo]).choice(models, size=references, replace=False)
            queried = [ids[i] for i in sorted(drawn)]
        for ref in queried:
            r = index_of[ref]
            for within, ordering in ((w, o) for w in thresholds for o in orderings):
                spec = QuerySpec(reference=ref, within=within, limit=1, where=None, order=OrderBy(ordering))
                answers = []
                for engine in engines:
                    start = time.perf_counter()
                    result = execute(compile_query(spec, engine), engine)
                    if engine.measurer is not None:
                        refine_seconds.append(time.perf_counter() - start)
                        measured_per_query.append(result.measured_pairs)
                    answers.append(result.hits[0].model_id if result.hits else None)
                top = _exhaustive_top(exhaustive, r, within, ordering, flops, rank)
                ideal = ids[top] if top is not None else None
                same = answers[0] == ideal
                refined_agree += answers[1] == ideal
                refined_per_ordering[ordering][0] += answers[1] == ideal
                refined_per_ordering[ordering][1] += 1
                if answers[1] is not None:
                    refined_unsound += int(diff[r, index_of[answers[1]]] / inputs > within)
                agree += same
                total += 1
                per_threshold[within][0] += same
                per_threshold[within][1] += 1
                per_ordering[ordering][0] += same
                per_ordering[ordering][1] += 1
                empty_both += answers[0] is None and ideal is None
                if answers[0] is not None:
                    true = diff[r, index_of[answers[0]]] / inputs
                    unsound += int(true > within)  # empirical here stands for the truth (it is what bounds bound)
    return {
        "repositories": repositories,
        "models_per_repository": models,
        "inputs": inputs,
        "peers": peers,
        "pivots": pivots,
        "references_per_repository": references or models,
        "group_size": group_size,
        "simulation": "graded" if graded else "independent",
        "pairwise_difference": {
            "min": float(np.min(spread)),
            "median": float(np.median(spread)),
            "max": float(np.max(spread)),
            "share_per_2pct_bin": np.histogram(spread, bins=[0, 0.02, 0.04, 0.06, 0.08, 0.10, 1.0])[0].tolist(),
        },
        "queries": total,
        "top_answer_is_ideal": agree / total if total else 0.0,
        "per_threshold": {f"{t:.0%}": a / n for t, (a, n) in per_threshold.items()},
        "per_ordering": {o: a / n for o, (a, n) in per_ordering.items()},
        "queries_empty_in_both": empty_both,
        "answers_beyond_threshold_empirically": int(unsound),
        "refined": {
            "budget": refine_budget,
            "top_answer_is_ideal": refined_agree / total if total else 0.0,
            "per_ordering": {o: a / n for o, (a, n) in refined_per_ordering.items()},
            "measured_pairs_per_query": {
                "mean": float(np.mean(measured_per_query)) if measured_per_query else 0.0,
                "p99": float(np.quantile(measured_per_query, 0.99)) if measured_per_query else 0.0,
                "max": int(max(measured_per_query, default=0)),
            },
            "median_query_ms": 1e3 * statistics.median(refine_seconds) if refine_seconds else 0.0,
            "answers_beyond_threshold_empirically": int(refined_unsound),
        },
    }


def _quality_engine(
    store: SemanticStore,
    ids: list[str],
    flops: np.ndarray,
    measurer: PairMeasurer | None = None,
    refine_budget: int = DEFAULT_REFINE_BUDGET,
) -> QueryEngine:
    pos = {m: i for i, m in enumerate(ids)}
    perm = np.array([pos[m] for m in store.ids])
    f = flops[perm].astype(np.int64)
    static = {m: f for m in STATIC_METRICS}
    resource = ResourceStore(store.ids, ["" for _ in store.ids], static, {"cpu": np.ones(len(ids))})
    return QueryEngine.from_store(store, resource, measurer, refine_budget)


def run_store_refine_benchmark(
    index_dir: Path, thresholds: tuple[float, ...] = (0.03, 0.05, 0.08), refine_budget: int = DEFAULT_REFINE_BUDGET
) -> dict:
    """On a real indexed store: what the refine stage costs and changes, every model as the reference.

    Runs `FIND 1 MODEL LIKE R WITHIN ε ORDER BY flops | similarity` from the index alone and with
    refinement (pairs measured from the store's outputs), and reports how many pairs a query
    measured, its median time, and how many top answers changed (every changed answer is certified
    by a direct measurement, so a change is the index alone missing or misranking a model).
    """
    from sommelier_core.querying.api import load_engine

    alone = load_engine(index_dir, refine=0)
    refined = load_engine(index_dir, refine=refine_budget)
    if refined.measurer is None:
        raise ValueError(f"{index_dir} records no bound settings: re-run `sommelier index` to enable refinement")
    times = {"alone": [], "refined": []}
    pairs: list[int] = []
    changed = total = 0
    for ref in alone.ids:
        if alone.semantic.row(alone.pos[ref]).stop == alone.semantic.row(alone.pos[ref]).start:
            continue  # no compatible model: nothing to refine
        for within in thresholds:
            for ordering in ("flops", "similarity"):
                spec = QuerySpec(reference=ref, within=within, limit=1, where=None, order=OrderBy(ordering))
                answers = []
                for name, engine in (("alone", alone), ("refined", refined)):
                    start = time.perf_counter()
                    result = execute(compile_query(spec, engine), engine)
                    times[name].append(time.perf_counter() - start)
                    answers.append(result.hits[0].model_id if result.hits else None)
                    if name == "refined":
                        pairs.append(result.measured_pairs)
                changed += answers[0] != answers[1]
                total += 1
    return {
        "models": len(alone.ids),
        "queries": total,
        "top_answers_changed_by_refinement": changed,
        "measured_pairs_per_query": {"mean": float(np.mean(pairs)) if pairs else 0.0, "max": max(pairs, default=0)},
        "median_query_ms": {k: 1e3 * statistics.median(v) for k, v in times.items() if v},
        "p99_query_ms": {k: 1e3 * float(np.quantile(v, 0.99)) for k, v in times.items() if v},
    }


__all__ = ["run_quality_benchmark", "run_store_refine_benchmark"]
