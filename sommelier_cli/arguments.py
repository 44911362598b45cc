"""Argument types shared by the command groups: fractions, batch-size lists, sizes, device names and output paths.

Each refuses a bad value with one line naming it and what was expected (argparse exits with status 2); what a
value means is checked where it is used (the query API refuses a budget of 0, the language a WITHIN of 200 %), so
the command line and the Python API refuse the same values with the same words.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sommelier_core.errors import InvalidValue
from sommelier_core.querying.language import check_device_name


def parse_fraction(text: str) -> float:
    """`5%` or `0.05` → 0.05 (a bare number above 1 is refused as ambiguous; NaN and ±inf are refused)."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value > 1 and not raw.endswith("%")):
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
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """A whole number ≥ 0 (a count where 0 means none, such as `--operators`)."""
    return _whole_number(text, 0)


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number ≥ {least}")
    return value


def positive_number(text: str, expected: str = "a finite number > 0") -> float:
    """A finite number > 0 (a scale factor); `expected` says what the flag wants when the text is not one."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (0 < value < math.inf):
        raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}")
    return value


def positive_ms(text: str) -> float:
    """A finite, positive number of milliseconds (`50` or `50ms`)."""
    try:
        return positive_number(text.strip().removesuffix("ms").strip(), "a positive number of milliseconds, like 50")
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number of milliseconds, like 50") from None


def device_name(text: str) -> str:
    """A device name a query can use (`querying.language.check_device_name`): also a safe file name."""
    try:
        return check_device_name(text)
    except InvalidValue as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def output_file(text: str) -> Path:
    """A file to write: refused when it is an existing directory or its parent is a file (nothing written)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; expected a file path to write")
    if any(parent.exists() and not parent.is_dir() for parent in path.parents):
        raise argparse.ArgumentTypeError(f"{text!r}: a parent of it is a file; expected a path inside a directory")
    return path


def output_dir(text: str) -> Path:
    """A directory to write into (created if missing): refused when it, or a parent of it, is a file."""
    path = Path(text)
    if any(p.exists() and not p.is_dir() for p in (path, *path.parents)):
        raise argparse.ArgumentTypeError(f"{text!r}: it or a parent of it is a file; expected a directory")
    return path


@contextmanager
def writing(path: Path, flag: str) -> Iterator[None]:
    """Turn an `OSError` while writing a path the user gave (no permission, a full disk) into one line naming
    the flag and the path; other errors pass through as they are."""
    try:
        yield
    except OSError as exc:
        raise InvalidValue(
            f"{flag} {path}: cannot write there ({exc.strerror or exc}); expected a writable path"
        ) from exc


def percent(fraction: float) -> str:
    """A default fraction as an argparse help text shows it: 0.05 → `5%%` (argparse reads `%%` as `%`)."""
    return f"{fraction:.0%}".replace("%", "%%")
