"""2 Celery workers vs 1 on the local cluster, as a ratio measured in one run (issue 14; target ≥ 1.5× on 2 cores).

    python benchmarks/cluster_scaling.py                 # 24 generated models, no calibration sweep
    python benchmarks/cluster_scaling.py --models 100

Needs PostgreSQL and RabbitMQ (as `deploy/local-cluster up` does). Brings up a fresh cluster per worker count
(`sommelier_bench.cluster_scaling`), times `sommelier index` on it, and prints wall seconds per worker count and
the ratio; figures also go to `benchmarks/results/cluster_scaling.json`.
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
    args = parser.parse_args()

    from sommelier_bench.cluster_scaling import measure_cluster_scaling, speedup

    base = Path(args.dir or tempfile.mkdtemp(prefix="sommelier-cluster-scaling-"))
    settings = {"operator_sweep": False}
    runs = measure_cluster_scaling(base, args.models, settings=settings, echo=print)
    ratio = speedup(runs)
    print(f"2 workers vs 1: {ratio:.2f}x (target >= 1.5x); 1-min load average {os.getloadavg()[0]:.1f}")
    out = Path(__file__).parent / "results" / "cluster_scaling.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"runs": [asdict(r) for r in runs], "speedup": ratio, "settings": settings}, indent=2))


if __name__ == "__main__":
    main()
