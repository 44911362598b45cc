"""Argument types shared by the command groups: fractions, batch-size lists, positive sizes."""

from __future__ import annotations

import argparse


def parse_fraction(text: str) -> float:
    """`5%` or `0.05` → 0.05 (a bare number above 1 is refused as ambiguous)."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a percentage like 5% or a fraction like 0.05") from None
    if value < 0 or (value > 1 and not raw.endswith("%")):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a percentage like 5% or a fraction like 0.05")
    return value


def parse_batch_sizes(text: str) -> list[int]:
    """`1,8,32` → [1, 8, 32]: batch sizes for `sommelier profile --memory`, each a whole number ≥ 1."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected batch sizes ≥ 1 separated by commas, like 1,8,32")
    return sizes


def positive_int(text: str) -> int:
    """A whole number ≥ 1 (a batch size or a resolution given as a flag)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number ≥ 1")
    return value


def percent(fraction: float) -> str:
    """A default fraction as an argparse help text shows it: 0.05 → `5%%` (argparse reads `%%` as `%`)."""
    return f"{fraction:.0%}".replace("%", "%%")
