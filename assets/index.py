"""The semantic index and the resource index, built from every model's stored records.

Both are unpartitioned; they read the per-model records through the model store for the models
currently registered, so a model whose stages failed is left out (and named) instead of failing
the build, and a reader never sees half an index (parquet written to a temporary name, renamed).
The semantic index is kept as a `SemanticStore` (saved as data next to the parquet) and synced: only
models that are new, gone, or whose fingerprint or measured pairs changed are deleted/inserted.
"""

import warnings
from pathlib import Path

import polars as pl
from dagster import AssetExecutionContext, MetadataValue

from assets.index_plots import figure_files, heatmap_png, pareto_pngs, plot_metadata
from assets.metadata import count, link, size, table
from assets.partitions import devices_partitions, models_partitions
from assets.stage_asset import stage_asset
from resources.mlflow_tracker import MlflowTracker
from resources.settings import IndexSettings
from resources.store import ModelStoreResource
from sommelier_core.index.resource import build_resource_index
from sommelier_core.index.semantic import SEMANTIC_STORE_FILE, SemanticStore
from sommelier_core.profiling import imported_operator_tables
from sommelier_core.stages import (
    DEVICE_PROFILE,
    MODEL_PROFILE,
    ONNX_MODEL,
    PAIR_BOUNDS,
    RESOURCE_INDEX,
    SEMANTIC_INDEX,
    device_record,
)
from sommelier_core.store import StoreFormatError


def _load_semantic_store(path: Path) -> SemanticStore:
    """The store the last build left, or an empty one (first build, or an unreadable file)."""
    if path.exists():
        try:
            return SemanticStore.load(path)
        except StoreFormatError:  # a file from another version: rebuild rather than fail the index
            pass
    return SemanticStore()


PREVIEW_ROWS = 10


def _preview(frame: pl.DataFrame, columns: list[str]) -> MetadataValue:
    """The first rows as a Dagster table (every listed column whole, floats to three significant digits)."""
    return table(frame.select(columns).head(PREVIEW_ROWS).to_dicts())


def _registered(context: AssetExecutionContext) -> list[str]:
    return sorted(context.instance.get_dynamic_partitions(models_partitions.name))


@stage_asset(SEMANTIC_INDEX)
def semantic_index(
    context: AssetExecutionContext, store: ModelStoreResource, mlflow: MlflowTracker, settings: IndexSettings
) -> pl.DataFrame:
    """For every model, its candidates ordered by equivalence: measured, transitive or identical bounds.

    The bound settings are written beside it, so a query measuring a pair bounds it as the index did.
    """
    models = store.store()
    settings.bound_settings().save(models.index_dir, models)
    registered = _registered(context)
    bounds = models.records(PAIR_BOUNDS.name, registered)
    conversions = models.records(ONNX_MODEL.name, list(bounds))
    fingerprints = {m: c.fingerprint for m, c in conversions.items()}
    pairs = [b for record in bounds.values() for b in record.bounds]
    kinds = {p.candidate_id: p.kind for p in pairs} | {p.reference_id: p.kind for p in pairs}
    store_path = models.index_dir / SEMANTIC_STORE_FILE
    semantic = _load_semantic_store(store_path)
    inserted, deleted = semantic.sync(pairs, fingerprints, kinds)
    semantic.save(store_path)
    frame = semantic.to_frame()
    skipped = sorted(set(registered) - set(fingerprints))
    counts = frame.group_by("provenance").len().to_dict(as_series=False)
    by_provenance = dict(zip(counts["provenance"], counts["len"], strict=True))
    statistics = {
        "models": float(len(fingerprints)),
        "records": float(frame.height),
        "measured_records": float(by_provenance.get("measured", 0)),
        "transitive_records": float(by_provenance.get("transitive", 0)),
        "identical_records": float(by_provenance.get("identical", 0)),
        "index_bytes": float(frame.estimated_size()),
        "mean_upper_bound": float(frame["upper"].mean() or 0.0),
    }
    pair_table = pl.DataFrame(
        [
            {
                "reference_id": b.reference_id,
                "candidate_id": b.candidate_id,
                "kind": b.kind,
                "empirical": b.empirical,
                "lower": b.lower,
                "upper": b.upper,
                "n": b.n,
            }
            for b in pairs
        ]
    )
    models_now = sorted(fingerprints)
    devices = sorted(context.instance.get_dynamic_partitions(devices_partitions.name))
    heatmap = heatmap_png(frame, models_now)
    pareto = pareto_pngs(frame, models, models_now, devices)
    run_id = mlflow.log_index_run(pair_table, statistics, figures=figure_files(heatmap, pareto))
    context.add_output_metadata(
        {
            "Models indexed": count(len(fingerprints)),
            "Candidate records": count(frame.height),
            "Measured / transitive / identical": (
                f"{by_provenance.get('measured', 0):,} / {by_provenance.get('transitive', 0):,} / "
                f"{by_provenance.get('identical', 0):,}"
            ),
            "Index size": size(int(statistics["index_bytes"])),
            "Models (re)inserted / deleted": f"{len(inserted):,} / {len(deleted):,}",
            "Models left out (stages missing)": ", ".join(skipped) or "none",
            "MLflow run": link(mlflow.run_url(run_id)),
            "Preview": _preview(
                frame, ["reference_id", "candidate_id", "provenance", "lower", "empirical", "upper", "hops"]
            ),
            **plot_metadata(heatmap, pareto, len(fingerprints)),
        }
    )
    return frame


@stage_asset(RESOURCE_INDEX)
def resource_index(context: AssetExecutionContext, store: ModelStoreResource) -> pl.DataFrame:
    """One row per model per device per batch size: params, MACs, FLOPs, weight and activation bytes at that
    batch size, latency measured on profiled devices and estimated on devices known by an imported table."""
    registered = _registered(context)
    models = store.store()
    profiles = models.records(MODEL_PROFILE.name, registered)
    devices = sorted(context.instance.get_dynamic_partitions(devices_partitions.name))
    measured = [
        record
        for device in devices
        for record in models.records(device_record(DEVICE_PROFILE.name, device), list(profiles)).values()
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tables = imported_operator_tables(models.devices_dir)
    for warning in caught:
        context.log.warning(str(warning.message))
    frame = build_resource_index(list(profiles.values()), measured, tables, store_root=models.root)
    skipped = sorted(set(registered) - set(profiles))
    sources = frame.group_by("latency_source").len().to_dict(as_series=False)
    context.add_output_metadata(
        {
            "Models indexed": count(len(profiles)),
            "Latency rows measured / estimated": " / ".join(
                f"{dict(zip(sources['latency_source'], sources['len'], strict=True)).get(k, 0):,}"
                for k in ("measured", "estimated")
            ),
            "Devices": ", ".join(sorted(frame["device"].unique().to_list())),
            "Index size": size(int(frame.estimated_size())),
            "Models left out (stages missing)": ", ".join(skipped) or "none",
            "Preview": _preview(
                frame,
                ["model_id", "device", "batch_size", "flops", "memory_bytes", "latency_ms", "latency_source"],
            ),
        }
    )
    return frame
