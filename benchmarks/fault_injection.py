"""Fault injection: every record and artifact kind of an indexed store truncated, bit-flipped and replaced by the
wrong type, on copies of the store; counts of what was detected, tracebacks and silent wrong answers.

    python benchmarks/fault_injection.py --store DIR [--reindex subset --zoo DIR] [--json FILE]

The cases, the damage and the classification live in `sommelier_bench.fault_injection`
(`tests/test_fault_injection.py` runs the same cases on the test store).
"""

from __future__ import annotations

import sys

from sommelier_bench.fault_injection import main

if __name__ == "__main__":
    sys.exit(main())
