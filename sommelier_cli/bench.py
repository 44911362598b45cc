"""`sommelier bench query`: query latency, index memory and build time on a synthetic repository."""

from __future__ import annotations

import argparse

from sommelier_cli.arguments import non_negative_int, positive_int
from sommelier_cli.bench_serving import add_bench_serving
from sommelier_cli.output import print_json

SHAPES = ("hub", "line")  # sommelier_bench.query_scale.SHAPES, spelled here so `--help` needs no benchmark import


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `bench query` and `bench serving`."""
    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench_command", required=True)
    bq = bench.add_parser("query", help="query latency, index memory, build time vs MLflow and a brute force")
    bq.add_argument("--models", type=positive_int, default=10_000, help="synthetic repository size (default 10000)")
    bq.add_argument("--queries", type=positive_int, default=200, help="queries per predicate kind (default 200)")
    bq.add_argument(
        "--shape",
        choices=SHAPES,
        default="hub",
        help="hub: heavy-tailed compatibility groups, high-dimensional differences (default); "
        "line: groups of 16 with models on a line (the earlier benchmark)",
    )
    bq.add_argument(
        "--largest-group",
        type=positive_int,
        help="hub: size of the largest compatible group (default a tenth of --models); line: the group size (16)",
    )
    bq.add_argument(
        "--mlflow-models",
        type=non_negative_int,
        default=1000,
        help="models logged to MLflow for the comparison (0: skip)",
    )
    bq.add_argument("--seed", type=int, default=0)
    bq.add_argument("--json", action="store_true")
    bq.set_defaults(func=cmd_bench)
    add_bench_serving(bench)


def cmd_bench(args: argparse.Namespace) -> int:
    """Query latency, index memory and build time on a synthetic repository (paper Tables 3–4)."""
    from sommelier_bench.query_scale import format_scale_report, run_scale_benchmark

    report = run_scale_benchmark(
        args.models,
        queries=args.queries,
        mlflow_models=args.mlflow_models,
        seed=args.seed,
        echo=None if args.json else print,
        shape=args.shape,
        largest_group=args.largest_group,
    )
    if args.json:
        print_json(report)
    else:
        print(format_scale_report([report]))
    return 0
