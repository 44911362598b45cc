"""Wall time of indexing the built-in zoo, per stage, on a fresh store.

    python benchmarks/index_stages.py            # default zoo (≥ 40 models)
    python benchmarks/index_stages.py --small    # the 8-model test zoo

Prints the zoo build time, the wall seconds each stage (Dagster asset) took summed over models and
per model, Dagster's own per-run overhead (everything outside the steps), and the total. Figures go
to stdout and to `benchmarks/results/index_stages.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="the small test zoo instead of the default")
    parser.add_argument("--store", help="store root to use (default: a fresh temporary directory)")
    args = parser.parse_args()

    root = Path(args.store or tempfile.mkdtemp(prefix="sommelier-bench-"))
    os.environ["SOMMELIER_HOME"] = str(root)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from pipelines.index_run import run_index
    from sommelier_core.settings import zoo_dir
    from sommelier_core.zoo import build_zoo

    t0 = time.perf_counter()
    manifest = build_zoo(zoo_dir(), small=args.small)
    zoo_seconds = time.perf_counter() - t0
    summary = run_index(echo=lambda line: None)
    n = max(len(summary.models), 1)

    print(f"store: {root}")
    print(f"zoo build: {len(manifest.models)} models in {zoo_seconds:.1f} s")
    print(f"{'stage':<16}{'total s':>10}{'per model s':>14}")
    for stage, seconds in summary.stage_seconds.items():
        per_model = seconds if stage in ("semantic_index", "resource_index") else seconds / n
        print(f"{stage:<16}{seconds:>10.2f}{per_model:>14.3f}")
    print(f"{'dagster overhead':<16}{summary.run_overhead_seconds:>10.2f}{summary.run_overhead_seconds / n:>14.3f}")
    print(f"{'index total':<16}{summary.total_seconds:>10.2f}{summary.total_seconds / n:>14.3f}")
    print(f"failures: {len(summary.failures)}")
    results = {
        "models": len(summary.models),
        "zoo_build_seconds": zoo_seconds,
        "stage_seconds": dict(summary.stage_seconds),
        "dagster_overhead_seconds": summary.run_overhead_seconds,
        "index_total_seconds": summary.total_seconds,
        "failures": summary.failures,
    }
    out = Path(__file__).parent / "results" / ("index_stages_small.json" if args.small else "index_stages.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
