"""How commands write `--json`: strict JSON whose keys tooling depends on."""

from __future__ import annotations

import json


def print_json(payload: object) -> None:
    """Strict JSON on stdout: an unknown figure (NaN, e.g. a latency not measured at the query's resolution)
    is `null`, which every JSON reader takes, not the `NaN` token Python would write."""
    print(json.dumps(strict_json(payload), indent=2, sort_keys=True, allow_nan=False))


def strict_json(value: object) -> object:
    """`value` with every non-finite float (NaN, ±inf) replaced by None, in nested dicts, lists and tuples."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value
