"""2 Celery workers vs 1 on the local cluster, as a ratio measured in one run (issue 14; target ≥ 1.5× on 2 cores).

    python benchmarks/cluster_scaling.py                 # 24 generated models, no calibration sweep
    python benchmarks/cluster_scaling.py --models 48     # docs/deployment.md reports 48 and 144
    python benchmarks/cluster_scaling.py --models 48 --rounds 3   # 1, 2, 1, 2, 1, 2 workers: the median ratio

Needs PostgreSQL and RabbitMQ (as `deploy/local-cluster up` does). Brings up a fresh cluster per worker count
(`sommelier_bench.cluster_scaling`), waits for the 1-minute load to fall below `--settle-load` (bringing a cluster up
loads the machine for a minute; at most 3 min), times `sommelier index` on it, and prints wall seconds per worker
count, the CPU seconds each kind of process used meanwhile (workers, MLflow's server, the driver, PostgreSQL, …;
`sommelier_bench.process_cpu`), the load before and after each run, and the ratio. Each run's output (its runs'
ranges, wall seconds per wave) is kept as `index.log` beside its store, and the figures go to
`benchmarks/results/cluster_scaling.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `deploy` is a folder of the checkout, not installed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=int, default=24, help="generated models to index (default 24)")
    parser.add_argument("--dir", help="where the clusters' stores and state go (default: a fresh temporary dir)")
    parser.add_argument(
        "--settle-load",
        type=float,
        default=1.0,
        help="before timing each run, wait (at most 3 min) for the 1-min load to fall below this (default 1.0;"
        " 0 or less: do not wait)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure each worker count this many times, in turn, and report the median ratio (default 1): on a"
        " shared machine one pair of runs can differ by 20 %% from the next",
    )
    args = parser.parse_args()

    from sommelier_bench.cluster_scaling import cpu_bound_speedup, measure_cluster_scaling, round_speedups, speedup

    base = Path(args.dir or tempfile.mkdtemp(prefix="sommelier-cluster-scaling-"))
    settings = {"operator_sweep": False}
    settle = args.settle_load if args.settle_load > 0 else None
    runs = measure_cluster_scaling(
        base, args.models, settings=settings, echo=print, settle_load=settle, rounds=max(1, args.rounds)
    )
    ratio = speedup(runs)
    cores = os.cpu_count() or 1
    ceiling = cpu_bound_speedup(runs, cores)
    rounds = ", ".join(f"{r:.2f}x" for r in round_speedups(runs))
    print(
        f"2 workers vs 1: {ratio:.2f}x (target >= 1.5x; rounds {rounds}); 1-min load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"  at most {ceiling:.2f}x on {cores} cores for the CPU the 2-worker run used (1-worker wall over the"
        " 2-worker run's CPU seconds / cores: every core busy from start to end)"
    )
    out = Path(__file__).parent / "results" / "cluster_scaling.json"
    out.parent.mkdir(exist_ok=True)
    figures = {
        "runs": [asdict(r) for r in runs],
        "speedup": ratio,
        "round_speedups": round_speedups(runs),
        "cpu_bound_speedup": ceiling,
        "cores": cores,
        "settings": settings,
    }
    out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
