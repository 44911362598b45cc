"""Inference serving with model switching under bursty load (paper §7.1, Fig. 9c).

    python benchmarks/serving.py                      # ≈ 3 min once the family's store is built (≈ 3–4 min, once)
    python benchmarks/serving.py --duration-scale 0.5 # a shorter trace
    python benchmarks/serving.py --store DIR          # where the benchmark's model family is built and indexed

`sommelier_bench.serving`: a wide digits classifier (`mlp_w4096`, ≈ 4–9 ms a request on one thread) and four
variants distilled from it, published as a Torch Hub repository and indexed by the real pipeline into a
store of their own; then a server (`python -m sommelier_cli.serve`) per setting — (a) the fixed model,
(b) the fixed model with a standby replica sharing its queue, (c) switching, (d) both — receives the same
seeded open-loop trace (light 0.3 μ, heavy 1.2 μ, light, four bursts of 2 μ; μ the fixed model's measured
capacity) from a client on 127.0.0.1. Figures: p50/p90/p99 latency under heavy load and their ratios
(fixed ÷ setting), the relative accuracy change at the 90th percentile over the switching setting's
requests (accuracies on held-out labelled digits), the accuracy of the answers returned, and the switches
with the query behind each. Figures go to stdout and `benchmarks/results/serving.json`.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from sommelier_bench.serving import format_serving_report, run_serving_benchmark
from sommelier_cli.bench_serving import DEFAULT_STORE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE)
    parser.add_argument("--within", type=float, default=0.05)
    parser.add_argument("--slo-ms", type=float, default=50.0)
    parser.add_argument("--duration-scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    report = run_serving_benchmark(
        args.store, within=args.within, slo_ms=args.slo_ms, duration_scale=args.duration_scale, seed=args.seed
    )
    report["wall_s"] = round(time.perf_counter() - started, 1)
    report["machine"] = {"platform": platform.platform(), "python": platform.python_version()}
    print(format_serving_report(report))
    keys = [k for k in report if k.startswith(("p50_", "p90_", "p99_", "accuracy_"))]
    print(json.dumps({k: report[k] for k in keys}, indent=2))
    out = Path(__file__).parent / "results" / "serving.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Wrote {out} ({report['wall_s']} s)")


if __name__ == "__main__":
    main()
