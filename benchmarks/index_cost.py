"""Per-model cost of indexing as the repository grows, in one run (issue 14): 100 generated models, then 1 000.

    python benchmarks/index_cost.py                    # 100 then 1 000 models on a fresh store (about 2 × 1 000 s)
    python benchmarks/index_cost.py --sizes 20,100     # a quicker look at the same ratio
    python benchmarks/index_cost.py --quick            # fewer latency repeats, no calibration sweep

Generates small ONNX classifiers straight into a folder repository (`sommelier_bench.index_cost`), indexes the first
size on a fresh store, grows the folder to each next size and indexes again (only the new models run), and prints
wall and CPU seconds per newly indexed model, per stage, with the last size's ratio to the first (target ≤ 1.2;
≤ 1 s per model all-in on 2 cores). Figures also go to `benchmarks/results/index_cost.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000", help="repository sizes, comma-separated, increasing")
    parser.add_argument("--store", help="store root (default: a fresh temporary directory)")
    parser.add_argument("--quick", action="store_true", help="5 latency repeats, 2 profiler runs, no sweep")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if sizes != sorted(set(sizes)) or sizes[0] < 1:
        parser.error(f"--sizes must be increasing positive counts, got {args.sizes}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from sommelier_bench.index_cost import cost_table, measure_index_cost

    root = Path(args.store or tempfile.mkdtemp(prefix="sommelier-index-cost-"))
    settings = {"latency_repeats": 5, "profile_runs": 2, "operator_sweep": False} if args.quick else {}
    load_before = os.getloadavg()[0]
    steps = measure_index_cost(root, sizes, settings=settings, echo=lambda line: None)
    print(f"store: {root}; 1-min load average before {load_before:.1f}, after {os.getloadavg()[0]:.1f}")
    print(cost_table(steps))
    for step in steps:
        if step.failures:
            example = next(iter(step.failures.items()))
            print(f"failures at {step.repository_models}: {len(step.failures)}, e.g. {example}")
    out = Path(__file__).parent / "results" / "index_cost.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps([asdict(step) for step in steps], indent=2))


if __name__ == "__main__":
    main()
