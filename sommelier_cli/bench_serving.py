"""`sommelier bench serving`: bursty load on a fixed model, a standby replica, switching, and both (paper Fig. 9c)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from sommelier_cli.arguments import parse_fraction, positive_ms, positive_number
from sommelier_cli.output import print_json

DEFAULT_STORE = Path(tempfile.gettempdir()) / "sommelier-bench-serving"


def add_bench_serving(bench: argparse._SubParsersAction) -> None:
    """Add `bench serving` to the `bench` subcommands."""
    parser = bench.add_parser(
        "serving", help="p50/p90/p99 latency under bursty load: fixed model, standby replica, switching, both"
    )
    parser.add_argument(
        "--store",
        type=Path,
        default=DEFAULT_STORE,
        help=f"store of the benchmark's model family, built and indexed on first use (default {DEFAULT_STORE})",
    )
    parser.add_argument("--within", type=parse_fraction, default=0.05, help="accuracy budget (default 5%%)")
    parser.add_argument(
        "--slo-ms", type=positive_ms, default=50.0, help="the switching policy's latency target (default 50)"
    )
    parser.add_argument(
        "--duration-scale",
        type=positive_number,
        default=1.0,
        help="stretch every phase of the trace (default 1: ≈ 28 s each)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=cmd_bench_serving)


def cmd_bench_serving(args: argparse.Namespace) -> int:
    """Run the serving benchmark (paper §7.1, Fig. 9c) and print its figures."""
    from sommelier_bench.serving import format_serving_report, run_serving_benchmark

    if args.duration_scale <= 0:
        raise SystemExit(f"error: --duration-scale must be positive, got {args.duration_scale}")
    report = run_serving_benchmark(
        args.store,
        within=args.within,
        slo_ms=args.slo_ms,
        duration_scale=args.duration_scale,
        seed=args.seed,
        echo=None if args.json else print,
    )
    if args.json:
        print_json(report)
    else:
        print(format_serving_report(report))
    return 0
