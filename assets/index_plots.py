"""The plots of an index build: the equivalence heat map and, per reference, bound against cost (Pareto).

The Pareto plots put each reference's candidates from the semantic index against their costs, read from the
models' profile records through the store (as the index reads its records), so they need no second index.
"""

import polars as pl
from dagster import MetadataValue

from assets.metadata import plot
from sommelier_core.index.resource import build_resource_index
from sommelier_core.plots import COSTS, equivalence_heatmap, pareto_plot, pareto_points, png_bytes
from sommelier_core.stages import DEVICE_PROFILE, MODEL_PROFILE, device_record
from sommelier_core.store import ModelStore

HEATMAP_MAX_MODELS = 300
"""Above this many models a heat map cell is under a pixel: it is left out (the MLflow run keeps the pairs)."""
PARETO_INLINE = 4
"""Pareto plots shown in Dagster's metadata (those of the references with the most candidates)."""
PARETO_LOGGED = 20
"""Pareto plots logged to the index build's MLflow run; `sommelier plot pareto --like MODEL` draws any other."""


def heatmap_png(frame: pl.DataFrame, models: list[str]) -> bytes | None:
    """The heat map of the semantic index (upper bounds), or None when there are too many models to draw."""
    if not 0 < len(models) <= HEATMAP_MAX_MODELS:
        return None
    return png_bytes(equivalence_heatmap(frame, value="upper", models=models))


def pareto_pngs(frame: pl.DataFrame, store: ModelStore, models: list[str], devices: list[str]) -> dict[str, bytes]:
    """Pareto plots (bound against FLOPs, memory and latency on the first device) of the references with the
    most candidates, by reference id, at most `PARETO_LOGGED`."""
    if frame.is_empty():
        return {}
    profiles = store.records(MODEL_PROFILE.name, models)
    measured = [
        record
        for device in devices
        for record in store.records(device_record(DEVICE_PROFILE.name, device), list(profiles)).values()
    ]
    resource = build_resource_index(list(profiles.values()), measured)
    device = devices[0] if devices else "cpu"
    ranked = frame.group_by("reference_id").len().sort(["len", "reference_id"], descending=[True, False])
    pngs = {}
    for reference in ranked["reference_id"].head(PARETO_LOGGED):
        panels = {cost: pareto_points(frame, resource, reference, cost, device=device) for cost in COSTS}
        pngs[reference] = png_bytes(pareto_plot(reference, panels, title=f"Candidates for {reference} ({device})"))
    return pngs


def plot_metadata(heatmap: bytes | None, pareto: dict[str, bytes], models: int) -> dict[str, MetadataValue]:
    """The plots as metadata entries: the heat map and the first `PARETO_INLINE` Pareto plots inline."""
    entries = {}
    if heatmap is not None:
        entries["Equivalence heat map"] = plot(heatmap, f"Upper bound on the difference, {models} models")
    else:
        entries["Equivalence heat map"] = MetadataValue.text(
            f"not drawn: {models} models (drawn for 1 to {HEATMAP_MAX_MODELS})"
        )
    for reference, png in list(pareto.items())[:PARETO_INLINE]:
        entries[f"Pareto: {reference}"] = plot(png, f"Bound against cost for {reference}")
    return entries


def figure_files(heatmap: bytes | None, pareto: dict[str, bytes]) -> dict[str, bytes]:
    """The plots as file names for the MLflow run (`plots/…`)."""
    files = {"equivalence_heatmap.png": heatmap} if heatmap is not None else {}
    return files | {f"pareto_{reference.replace('/', '__')}.png": png for reference, png in pareto.items()}
