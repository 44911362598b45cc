"""Real models of real size (issue 19): index real pretrained models shipped inside PyPI packages and their int8
dynamic, int8 QDQ and fp16 variants with default settings; print peak memory of `sommelier index`, seconds per
model, each variant's bound against its measured difference, weight bytes against the stored tensors, and MACs and
params next to onnx-tool's.

    nice -n 10 python benchmarks/real_models.py                 # 256 validation samples per family
    nice -n 10 python benchmarks/real_models.py --samples 1000

Needs the packages of requirements/real-models.txt (installed by scripts/bootstrap). Works in a temporary
directory (its own store root); `--out` keeps the figures as JSON. Logic: `sommelier_bench/real_models.py`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from sommelier_bench.real_models import print_report, report_json, run_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=256, help="validation samples per family")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--keep", type=Path, help="work here instead of a temporary directory (kept)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sommelier-real-") as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        report = run_benchmark(work, samples=args.samples)
    print_report(report)
    if args.out:
        args.out.write_text(json.dumps(report_json(report), indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
