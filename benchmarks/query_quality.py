"""Query quality (paper Fig. 9a): how often the top answer is the one exhaustive comparison gives.

    python benchmarks/query_quality.py
    python benchmarks/query_quality.py --group-sizes 10 20 --repositories 5

Simulated repositories of label-vector models (top-1 disagreement, a true metric) with pairwise
differences over 0–10 %: `graded` (variants of one parent at graded distances) and `independent`
(independent relabelling noise). Each is indexed with five sampled peers per insertion (Sommelier)
and with every compatible pair measured (exhaustive); see `sommelier_core.query_bench`.
Figures go to stdout and `benchmarks/results/query_quality.json`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sommelier_core.query_bench import run_quality_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repositories", type=int, default=5)
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--group-sizes", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "query_quality.json"))
    args = parser.parse_args()

    rows = []
    print(f"{'simulation':<12} {'group':>5} {'queries':>8} {'ideal':>7} {'by flops':>9} {'by sim.':>8}")
    for graded in (True, False):
        for group in args.group_sizes:
            r = run_quality_benchmark(
                repositories=args.repositories, models=args.models, graded=graded, group_size=group, seed=args.seed
            )
            rows.append(r)
            print(
                f"{r['simulation']:<12} {group:>5} {r['queries']:>8} {r['top_answer_is_ideal']:>7.1%} "
                f"{r['per_ordering']['flops']:>9.1%} {r['per_ordering']['similarity']:>8.1%}"
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
