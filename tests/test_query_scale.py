"""The semantic index at scale (incremental insertion, ceiling, deletion) and exact resource filtering.

Property tests (hypothesis) build random repositories and check: the incremental store equals the
full rebuild of `build_semantic_index`; a ceiling keeps exactly the full index's records at or
under it; deleting a model equals never having inserted it; every bound contains the true
difference; and the query engine's answers equal a brute-force scan.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sommelier_bench.oracles import brute_force, build_semantic_index
from sommelier_bench.query_quality import run_quality_benchmark
from sommelier_bench.query_scale import hub_group_sizes, hub_repository, run_scale_benchmark, synthetic_repository
from sommelier_cli.main import main as cli_main
from sommelier_core.equivalence.bound import PairBound
from sommelier_core.equivalence.peers import sample_peers
from sommelier_core.index.measured_graph import MeasuredGraph
from sommelier_core.index.resource import ResourceStore
from sommelier_core.index.semantic import SemanticStore
from sommelier_core.querying.engine import QueryEngine
from sommelier_core.querying.execution import execute
from sommelier_core.querying.language import AllOf, AnyOf, Condition, OrderBy, QuerySpec
from sommelier_core.querying.plan import compile_query

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _metric_repository(seed: int, n_models: int, margin: float, peers: int = 3):
    """Models as label vectors (disagreement is a metric); peers sampled among earlier models."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 10, size=300)
    labels = {}
    for i in range(n_models):
        flips = rng.random(300) < rng.uniform(0, 0.2)
        labels[f"m{i:02d}"] = np.where(flips, rng.integers(0, 10, size=300), base)
    models = sorted(labels)
    true = {(a, b): float(np.mean(labels[a] != labels[b])) for a in models for b in models}
    pairs, inserted = [], []
    for m in rng.permutation(models):
        for p in sample_peers(str(m), inserted, k=peers, seed=seed):
            d = true[m, p]
            pairs.append(PairBound(str(m), p, "disagreement", d, max(d - margin, 0), d + margin, 300, "t", 0.05))
        inserted.append(str(m))
    return models, true, pairs, [str(m) for m in inserted]


def _records(frame) -> dict:
    return {(r["reference_id"], r["candidate_id"]): (r["upper"], r["lower"], r["provenance"]) for r in frame.to_dicts()}


def _assert_same(a: dict, b: dict, ceiling: float = math.inf) -> None:
    """Same records and bounds; a record whose upper bound rounds to the ceiling may be on one side only."""
    at_ceiling = {k for k, v in (a | b).items() if abs(v[0] - ceiling) <= 1e-12}
    assert a.keys() - at_ceiling == b.keys() - at_ceiling
    for key in a.keys() & b.keys():
        assert a[key][0] == pytest.approx(b[key][0], abs=1e-9), key
        assert a[key][1] == pytest.approx(b[key][1], abs=1e-9), key
        assert a[key][2] == b[key][2], key


@FAST
@given(seed=st.integers(0, 10_000), n_models=st.integers(2, 14), margin=st.sampled_from([0.0, 0.01, 0.03]))
def test_incremental_insertion_equals_the_full_rebuild(seed, n_models, margin):
    models, true, pairs, order = _metric_repository(seed, n_models, margin)
    full = build_semantic_index(pairs, {m: m for m in models})
    store = SemanticStore()
    for m in order:
        store.insert(m, m, [p for p in pairs if p.reference_id == m])
    _assert_same(_records(store.to_frame()), _records(full))
    for (a, b), (up, lo, _) in _records(full).items():
        assert lo - 1e-12 <= true[a, b] <= up + 1e-12


@FAST
@given(seed=st.integers(0, 10_000), n_models=st.integers(2, 14), ceiling=st.sampled_from([0.05, 0.1, 0.2]))
def test_a_ceiling_keeps_exactly_the_full_records_under_it(seed, n_models, ceiling):
    models, _, pairs, order = _metric_repository(seed, n_models, 0.01)
    full = _records(build_semantic_index(pairs, {m: m for m in models}))
    store = SemanticStore(ceiling=ceiling)
    for m in order:
        store.insert(m, m, [p for p in pairs if p.reference_id == m])
    kept = _records(store.to_frame())
    # A path sum that equals the ceiling may land a rounding error either side of it (0.2 vs 0.2 + 4e-17
    # when added in another order): such a record may be kept or not; every other one must match.
    must = {k for k, v in full.items() if v[0] <= ceiling - 1e-12}
    may = {k for k, v in full.items() if v[0] <= ceiling + 1e-12}
    assert must <= kept.keys() <= may
    for key in kept:  # upper bounds identical; lower bounds never looser than sound
        assert kept[key][0] == pytest.approx(full[key][0], abs=1e-9)


@FAST
@given(
    seed=st.integers(0, 10_000),
    n_models=st.integers(3, 12),
    victim=st.integers(0, 11),
    ceiling=st.sampled_from([0.1, math.inf]),
)
def test_deleting_a_model_equals_never_inserting_it(seed, n_models, victim, ceiling):
    models, _, pairs, order = _metric_repository(seed, n_models, 0.01)
    gone = models[victim % n_models]
    store = SemanticStore(ceiling=ceiling)
    for m in order:
        store.insert(m, m, [p for p in pairs if p.reference_id == m])
    store.delete(gone)
    rest = [p for p in pairs if gone not in (p.reference_id, p.candidate_id)]
    expected = _records(build_semantic_index(rest, {m: m for m in models if m != gone}))
    expected = {k: v for k, v in expected.items() if v[0] <= ceiling + 1e-12}
    _assert_same(_records(store.to_frame()), expected, ceiling)
    assert gone not in store


def test_identical_fingerprints_are_linked_and_reinsertion_is_refused():
    store = SemanticStore()
    store.insert("hub/a", "same")
    store.insert("mirror/a", "same")
    (record,) = store.candidates("hub/a")
    assert (record.candidate_id, record.upper, record.provenance) == ("mirror/a", 0.0, "identical")
    with pytest.raises(ValueError, match="already indexed"):
        store.insert("hub/a", "same")


def test_packed_bounds_are_rounded_outward():
    store = SemanticStore(ceiling=0.1)
    store.insert("a", "a")
    store.insert("b", "b", [PairBound("b", "a", "disagreement", 0.0333, 0.0123456789, 0.0345678912, 1, "t", 0.05)])
    graph = store.freeze()
    assert graph.upper.dtype == np.uint16
    row = graph.search(store.pos["a"], 0.1)
    assert 0.0345678912 <= row.upper[0] <= 0.0345678912 + 2e-6
    assert 0.0123456789 - 2e-6 <= row.lower[0] <= 0.0123456789


# -- exact resource filtering on random repositories --------------------------------------------

METRICS = ["params", "macs", "flops", "memory_bytes", "weight_bytes", "peak_activation_bytes", "latency_ms"]


@st.composite
def predicates(draw, depth: int = 0):
    if depth >= 2 or draw(st.booleans()):
        metric = draw(st.sampled_from(METRICS))
        relative = draw(st.booleans())
        value = draw(st.floats(0.05, 2.0)) if relative else draw(st.floats(0, 2e6 if metric != "latency_ms" else 5))
        return Condition(metric, draw(st.sampled_from(["<", "<=", ">", ">=", "="])), value, relative=relative)
    terms = tuple(draw(st.lists(predicates(depth + 1), min_size=1, max_size=3)))
    return AllOf(terms) if draw(st.booleans()) else AnyOf(terms)


def _random_engine(seed: int, n_models: int) -> tuple[QueryEngine, MeasuredGraph]:
    """An engine over a random line-shaped repository (its rows precomputed: groups of 8), and the same store's
    graph with every model's entries, which brute force relaxes."""
    repo, _ = synthetic_repository(n_models, seed=seed, group_size=8)
    rng = np.random.default_rng(seed)
    n = len(repo.resource)
    # Small value ranges make ties and exact equalities common; some latencies are missing.
    params = rng.integers(0, 2_000_000, size=n) // rng.choice([1, 1000], size=n) * rng.choice([1, 1000], size=n)
    macs = rng.integers(0, 2_000_000, size=n)
    weight = 4 * params
    peak = rng.integers(0, 1000, size=n)
    static = {
        "params": params,
        "macs": macs,
        "flops": 2 * macs,
        "weight_bytes": weight,
        "peak_activation_bytes": peak,
        "memory_bytes": weight + peak,
    }
    latency = np.round(rng.uniform(0, 5, size=n), 1)
    latency[rng.random(n) < 0.1] = np.nan
    resource = ResourceStore(repo.resource.model_ids, repo.resource.onnx_paths, static, {"cpu": latency})
    return QueryEngine.from_store(repo.semantic, resource), repo.semantic.freeze(precompute=0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 50),
    where=st.one_of(st.none(), predicates()),
    within=st.sampled_from([None, 0.0, 0.02, 0.05, 0.1]),
    ref=st.integers(0, 10_000),
    order=st.sampled_from(["similarity", "flops", "params", "latency", "memory"]),
    descending=st.booleans(),
    limit=st.sampled_from([None, 1, 5]),
)
def test_engine_answers_equal_a_brute_force_scan(seed, where, within, ref, order, descending, limit):
    engine, graph = _random_engine(seed, 60)
    reference = engine.ids[ref % len(engine.ids)]
    use_ref = within is not None or "relative=True" in repr(where)  # relative budgets need a reference
    spec = QuerySpec(
        reference=reference if use_ref else None,
        within=within,
        where=where,
        order=OrderBy(order, None, descending),
        limit=limit,
    )
    try:
        plan = compile_query(spec, engine)
    except Exception as exc:  # relative latency against a reference without a latency profile
        assert "no latency_ms profile" in str(exc)
        return
    assert [h.model_id for h in execute(plan, engine).hits] == brute_force(plan, engine, graph)


def test_scale_benchmark_small_run_is_identical_to_brute_force():
    report = run_scale_benchmark(300, queries=15, mlflow_models=0)
    assert report["results_identical_to_brute_force"] and report["mismatches"] == 0
    assert report["semantic_index_bytes"] > 0 and report["insert_ms_per_model"] > 0
    assert set(report["latency"]) == {"resource", "semantic", "both"}


def test_quality_benchmark_answers_are_sound():
    report = run_quality_benchmark(repositories=1, models=30, group_size=10, inputs=2000)
    assert report["answers_beyond_threshold_empirically"] == 0
    assert 0 < report["top_answer_is_ideal"] <= 1


def test_cli_bench_query_prints_the_figures_as_json(capsys):
    assert cli_main(["bench", "query", "--models", "200", "--queries", "10", "--mlflow-models", "0", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["models"] == 200 and payload["results_identical_to_brute_force"]
    assert {"median_ms", "p99_ms"} <= set(payload["latency"]["both"]["engine"])
    assert payload["build_seconds"] > 0 and payload["index_bytes"] > 0 and payload["violations"] == 0


def test_cli_bench_query_builds_the_hub_shape_with_the_largest_group_asked(capsys):
    args = ["bench", "query", "--models", "400", "--largest-group", "150", "--queries", "10", "--mlflow-models", "0"]
    assert cli_main([*args, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["shape"] == "hub" and payload["largest_group"] == 150
    assert payload["results_identical_to_brute_force"] and payload["violations"] == 0


@pytest.mark.parametrize(
    ("flag", "value"), [("--models", "0"), ("--queries", "-1"), ("--largest-group", "0"), ("--models", "ten")]
)
def test_cli_bench_query_refuses_a_size_below_one_with_a_usage_error(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["bench", "query", flag, value, "--json"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}:" in err and "Traceback" not in err


def test_hub_groups_are_heavy_tailed_and_sum_to_the_models():
    sizes = hub_group_sizes(100_000, 10_000, np.random.default_rng(0))
    assert sum(sizes) == 100_000
    assert sizes[:6] == [10_000] + [1_000] * 5
    assert max(sizes[6:]) <= 1_000 and np.median(sizes) <= 5  # the rest small


def test_hub_repository_differences_come_from_output_vectors_and_every_hit_is_sound():
    repo, engine = hub_repository(600, largest_group=200, seed=1)
    # A measured pair's bounds contain the disagreement of the two models' output vectors.
    store = repo.semantic
    a = next(i for i, row in enumerate(store._out) if row)
    b, measured = next(iter(store._out[a].items()))
    assert measured.lower <= repo.true_difference(a, b) <= measured.upper
    report = run_scale_benchmark(600, queries=20, mlflow_models=0, shape="hub", largest_group=200, seed=1)
    assert report["results_identical_to_brute_force"] and report["violations"] == 0


@FAST
@given(seed=st.integers(0, 10_000), n_models=st.integers(3, 12), ceiling=st.sampled_from([0.1, math.inf]))
def test_sync_touches_only_changes_and_equals_a_fresh_build(seed, n_models, ceiling):
    models, _, pairs, _ = _metric_repository(seed, n_models, 0.01)
    rng = np.random.default_rng(seed)
    store = SemanticStore(ceiling=ceiling)
    before = [m for m in models if rng.random() < 0.7]
    store.sync(pairs, {m: m for m in before})
    after = [m for m in models if m in before[: len(before) // 2] or rng.random() < 0.8]
    changed = [  # re-measured pairs: a model re-indexed with new bounds
        PairBound(p.reference_id, p.candidate_id, p.kind, p.empirical, p.lower, p.upper * 0.9, p.n, p.mode, p.delta)
        if rng.random() < 0.2
        else p
        for p in pairs
    ]
    inserted, deleted = store.sync(changed, {m: m for m in after})
    assert set(deleted) == set(before) - set(after)
    assert set(after) - set(before) <= set(inserted)
    fresh = SemanticStore.from_pairs(changed, {m: m for m in after}, ceiling=ceiling)
    _assert_same(_records(store.to_frame()), _records(fresh.to_frame()), ceiling)
    assert store.sync(changed, {m: m for m in after}) == ([], [])  # nothing changed: nothing touched


def test_the_library_never_imports_the_benchmark_oracles():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "sommelier_core"
    importers = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] == "sommelier_bench" for n in names):
                importers.append(str(path.relative_to(root)))
    assert importers == []
