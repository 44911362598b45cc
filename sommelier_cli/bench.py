"""`sommelier bench query`: query latency, index memory and insertion time on a synthetic repository."""

from __future__ import annotations

import argparse

from sommelier_cli.output import print_json


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `bench query`."""
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench_command", required=True)
    bq = bench.add_parser("query", help="query latency, index memory, insertion time vs MLflow and a scan")
    bq.add_argument("--models", type=int, default=10_000, help="synthetic repository size (default 10000)")
    bq.add_argument("--queries", type=int, default=200, help="queries per predicate kind (default 200)")
    bq.add_argument(
        "--mlflow-models", type=int, default=1000, help="models logged to MLflow for the comparison (0: skip)"
    )
    bq.add_argument("--seed", type=int, default=0)
    bq.add_argument("--json", action="store_true")
    bq.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    """Query latency, index memory and insertion time on a synthetic repository (paper Tables 3–4)."""
    from sommelier_bench.query_scale import format_scale_report, run_scale_benchmark

    report = run_scale_benchmark(
        args.models,
        queries=args.queries,
        mlflow_models=args.mlflow_models,
        seed=args.seed,
        echo=None if args.json else print,
    )
    if args.json:
        print_json(report)
    else:
        print(format_scale_report([report]))
    return 0
