"""Query latency, index memory and build time at 1K / 10K / 100K models on two shapes (paper Tables 3–4).

    python benchmarks/query_scale.py                       # both shapes at 1K, 10K, 100K; MLflow on ≤ 1000 models
    python benchmarks/query_scale.py --sizes 1000 --queries 50 --shapes line
    python benchmarks/query_scale.py --mlflow-models 0     # skip MLflow
    python benchmarks/query_scale.py --shapes hub --largest-group 1000

Shapes (`sommelier_bench.query_scale`): `hub` — heavy-tailed compatibility groups (the largest a tenth of
the models unless --largest-group), differences from 1 024-dimensional output vectors; `line` — groups of
16 (or --largest-group) with models on a line, the earlier benchmark. Each size and shape: a synthetic
index built through `SemanticStore.insert` (five peers: the group's two pivots and three random ones), then
resource-only, semantic-only and combined queries timed on compiled plans, every answer checked against a
brute-force computation and every hit against its true difference, and the same queries run through MLflow
`search_runs` on a SQLite tracking store. Figures go to stdout and `benchmarks/results/query_scale.json`.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from sommelier_bench.query_scale import SHAPES, format_scale_report, run_scale_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--largest-group", type=int, help="hub: largest group (default a tenth); line: group size")
    parser.add_argument("--queries", type=int, default=200, help="queries per kind (default 200)")
    parser.add_argument("--mlflow-models", type=int, default=1000, help="model runs logged to MLflow at most")
    parser.add_argument("--mlflow-queries", type=int, default=50, help="queries per kind sent to MLflow")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "query_scale.json"))
    args = parser.parse_args()

    t0 = time.perf_counter()
    reports = [
        run_scale_benchmark(
            n,
            queries=args.queries,
            mlflow_models=args.mlflow_models,
            mlflow_queries=args.mlflow_queries,
            seed=args.seed,
            echo=print,
            shape=shape,
            largest_group=args.largest_group,
        )
        for shape in args.shapes
        for n in args.sizes
    ]
    print(format_scale_report(reports))
    print(f"total {time.perf_counter() - t0:.0f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": platform.platform(), "python": platform.python_version(), "reports": reports}
    out.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
