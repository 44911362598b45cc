"""The testing use case: N equivalent variants from a query flag corrupted and out-of-distribution inputs (AUROC).

    python benchmarks/variant_testing.py                    # the store's indexed default zoo (scripts/demo)
    python benchmarks/variant_testing.py --store DIR --n 5 --within 5%

`sommelier_bench.variant_testing`: for every digits base model of the zoo with N equivalents within ε, a
`DisagreementTester` (`sommelier_core.model_testing`) scores 597 clean digits and as many of each kind of
suspicious input (Gaussian noise, salt and pepper, occlusion, inversion, MNIST digits, uniform noise); the
AUROC of its scores against the model's own confidence (1 − max softmax), averaged over the models, for
variants spread over the equivalent range and for the N closest. ≈ 1 min on the default zoo. Figures go to
stdout and `benchmarks/results/variant_testing.json`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sommelier_bench.variant_testing import (
    format_variant_testing_report,
    run_variant_testing_benchmark,
    write_report,
)
from sommelier_core.settings import store_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=None, help="store root (default: SOMMELIER_HOME's)")
    parser.add_argument("--n", type=int, default=5, help="variants per model under test (default 5)")
    parser.add_argument("--within", type=float, default=0.05, help="equivalence threshold as a fraction (0.05)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    report = run_variant_testing_benchmark(args.store or store_root(), n=args.n, within=args.within, seed=args.seed)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    print(format_variant_testing_report(report))
    out = Path(__file__).parent / "results" / "variant_testing.json"
    write_report(report, out)
    print(f"Wrote {out} ({report['wall_s']} s)")


if __name__ == "__main__":
    main()
