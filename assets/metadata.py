"""Metadata people can read in Dagster's UI: a few significant digits, thousands separators, units, tables,
links to MLflow, and plots shown inline.

Dagster shows an integer as it is (`96848`) and a float with every digit (`0.028558499934661086`), so counts
and sizes are written as text with separators and units, and measured figures keep three significant digits
under a key that names their unit (`Latency p50 (ms)`), staying numbers Dagster can plot across runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

from sommelier_core.plots import markdown_image

SIGNIFICANT_DIGITS = 3


def significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """`value` rounded to `digits` significant digits (0.028558 → 0.0286, 1234.5 → 1230.0)."""
    if value == 0 or not math.isfinite(value):
        return float(value)
    return round(float(value), digits - 1 - math.floor(math.log10(abs(value))))


def count(value: int, unit: str = "") -> MetadataValue:
    """An integer with thousands separators and its unit: `96,848 MACs`."""
    return MetadataValue.text(f"{value:,}" + (f" {unit}" if unit else ""))


BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def byte_size(value: int) -> str:
    """A byte count in the largest binary unit under 1024 of it, three significant digits: `1.47 MiB`."""
    size, unit = float(value), 0
    while abs(size) >= 1024 and unit < len(BYTE_UNITS) - 1:
        size, unit = size / 1024, unit + 1
    return f"{value:,} B" if unit == 0 else f"{significant(size):g} {BYTE_UNITS[unit]}"


def size(value: int) -> MetadataValue:
    """A byte count as `1.47 MiB (1,541,120 bytes)`."""
    text = byte_size(value)
    return MetadataValue.text(text if text.endswith(" B") else f"{text} ({value:,} bytes)")


def percent(value: float) -> str:
    """A fraction as a percentage with three significant digits: 0.01234 → `1.23 %`."""
    return f"{significant(100 * value):g} %"


def table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str] | None = None) -> MetadataValue:
    """Rows as Dagster table metadata (a real table in the UI, not a text dump). `columns` maps each key to
    the type Dagster shows (`string`, `int`, `float`, `bool`), default: the keys of the first row, typed by their
    first value that is not None. A missing value is an empty cell; integers are written with separators."""
    if columns is None:
        keys = list(rows[0]) if rows else []
        columns = {k: _column_type(next((r[k] for r in rows if r.get(k) is not None), "")) for k in keys}
    schema = TableSchema(columns=[TableColumn(name, kind) for name, kind in columns.items()])
    records = [TableRecord({k: _cell(r.get(k)) for k in columns}) for r in rows]
    return MetadataValue.table(records, schema=schema)


def _column_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "string"


def _cell(value: Any) -> Any:
    """A table cell as people read it: floats to three significant digits, integers with separators (Dagster
    shows a table's integers bare: `108544`)."""
    if isinstance(value, float):
        return significant(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return value


def link(url: str) -> MetadataValue:
    """A URL the UI renders as a link (an MLflow run or registered model)."""
    return MetadataValue.url(url)


def plot(image: bytes, title: str) -> MetadataValue:
    """A plot shown inline: markdown whose image (PNG or SVG) is a data URI, under a title."""
    return MetadataValue.md(f"**{title}**\n\n{markdown_image(image, title)}")
