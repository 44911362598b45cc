"""Query quality (paper Fig. 9a): how often the top answer is the one exhaustive comparison gives.

    python benchmarks/query_quality.py
    python benchmarks/query_quality.py --group-sizes 10 20 --repositories 5
    python benchmarks/query_quality.py --store-index .sommelier/index   # also on a real indexed store
    python benchmarks/query_quality.py --models 1000 --group-sizes 1000 --repositories 1 --simulations independent

Simulated repositories of label-vector models (top-1 disagreement, a true metric) with pairwise
differences over 0–10 %: `graded` (variants of one parent at graded distances) and `independent`
(independent relabelling noise). Each is indexed with five sampled peers per insertion (Sommelier)
and with every compatible pair measured (exhaustive); see `sommelier_bench.query_quality`. `index` is
the share answered ideally from the sampled index alone, `refined` with the query-time refine stage
(it measures at most --refine-budget uncertain pairs per query; `pairs/q` is how many it did).
Figures go to stdout and `benchmarks/results/query_quality.json`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sommelier_bench.query_quality import run_quality_benchmark, run_store_refine_benchmark
from sommelier_core.defaults import PEERS as DEFAULT_PEERS
from sommelier_core.equivalence.peers import DEFAULT_PIVOTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repositories", type=int, default=5)
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--group-sizes", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument(
        "--simulations", nargs="+", choices=["graded", "independent"], default=["graded", "independent"]
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peers", type=int, default=DEFAULT_PEERS, help="models compared per insertion")
    parser.add_argument(
        "--pivots", type=int, default=DEFAULT_PIVOTS, help="of the peers, how many are the group's pivots"
    )
    parser.add_argument("--references", type=int, help="query this many drawn models per repository (default: all)")
    parser.add_argument("--refine-budget", type=int, default=64, help="pairs the refine stage may measure per query")
    parser.add_argument(
        "--store-index", help="also measure refinement on a real indexed store (its index dir, e.g. .sommelier/index)"
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "query_quality.json"))
    args = parser.parse_args()

    rows = []
    print(
        f"{'simulation':<12} {'group':>5} {'queries':>8} {'index':>7} {'refined':>8} {'by flops':>9} {'by sim.':>8} "
        f"{'pairs/q':>8} {'max':>4} {'ms/q':>6}"
    )
    for graded in [s == "graded" for s in args.simulations]:
        for group in args.group_sizes:
            r = run_quality_benchmark(
                repositories=args.repositories,
                models=args.models,
                graded=graded,
                group_size=group,
                seed=args.seed,
                refine_budget=args.refine_budget,
                peers=args.peers,
                pivots=args.pivots,
                references=args.references,
            )
            rows.append(r)
            ref = r["refined"]
            pairs = ref["measured_pairs_per_query"]
            print(
                f"{r['simulation']:<12} {group:>5} {r['queries']:>8} {r['top_answer_is_ideal']:>7.1%} "
                f"{ref['top_answer_is_ideal']:>8.1%} {ref['per_ordering']['flops']:>9.1%} "
                f"{ref['per_ordering']['similarity']:>8.1%} {pairs['mean']:>8.1f} {pairs['max']:>4} "
                f"{ref['median_query_ms']:>6.2f}"
            )
    if args.store_index:
        real = run_store_refine_benchmark(Path(args.store_index), refine_budget=args.refine_budget)
        rows.append({"simulation": "store", **real})
        pairs, ms = real["measured_pairs_per_query"], real["median_query_ms"]
        changed = real["top_answers_changed_by_refinement"]
        print(
            f"store {args.store_index}: {real['models']} models, {real['queries']} queries, refinement measured "
            f"{pairs['mean']:.1f} pairs per query (max {pairs['max']}), changed {changed} top answers; "
            f"median {ms['alone']:.2f} ms alone, {ms['refined']:.2f} ms refined"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
