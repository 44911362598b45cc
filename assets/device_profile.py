"""Latency per device — measured per model × device, and each device's per-operator latency table."""

from dataclasses import replace

import polars as pl
from dagster import AssetExecutionContext

from assets.metadata import count, link, plot, significant, table
from assets.partitions import DEVICE_DIMENSION, models_partitions
from assets.stage_asset import stage_asset
from resources.mlflow_tracker import MlflowTracker
from resources.settings import IndexSettings
from resources.store import ModelStoreResource
from resources.validation import ValidationDataResource
from sommelier_core.ingest.convert import Conversion, load_onnx
from sommelier_core.plots import latency_svg
from sommelier_core.profiling import (
    DeviceProfile,
    ProfiledModel,
    build_operator_table,
    cached_calibration_profiles,
    profile_device,
)
from sommelier_core.stages import DEVICE_PROFILE, OPERATOR_TABLE, device_record


@stage_asset(DEVICE_PROFILE)
def device_profile(
    context: AssetExecutionContext,
    onnx_model: Conversion,
    settings: IndexSettings,
    validation: ValidationDataResource,
    mlflow: MlflowTracker,
) -> DeviceProfile:
    """Latency of the model on one device (warm-up, median and p90, threads) at every exec-spec batch size,
    and the kernel time of every node ONNX Runtime executes (its profiler), for the device's operator table;
    at the input shapes `model_profile` takes its static costs at (a model with symbolic H, W at the exec-spec
    resolution)."""
    device = context.partition_key.keys_by_dimension[DEVICE_DIMENSION]
    shapes = settings.profiled_shapes(
        load_onnx(onnx_model.onnx_path),
        lambda: validation.input_shape_for(onnx_model.model_id, onnx_model.signature),
        onnx_model.model_id,
    )
    profile = profile_device(
        onnx_model.onnx_path,
        onnx_model.model_id,
        device=device,
        batch_sizes=settings.exec_batch_sizes(),
        repeats=settings.latency_repeats,
        profile_runs=settings.profile_runs,
        threads=settings.latency_threads or None,
        seed=settings.seed,
        shapes=shapes,
    )
    profile = replace(profile, onnx_fingerprint=onnx_model.fingerprint)
    first = settings.batch_size
    suffix = {lat.batch_size: "" if lat.batch_size == first else f"_batch{lat.batch_size}" for lat in profile.latency}
    run_id = mlflow.log_to_model_run(
        onnx_model.model_id,
        onnx_model.fingerprint,
        metrics={
            **{f"latency_ms_{device}{suffix[lat.batch_size]}": lat.median_ms for lat in profile.latency},
            **{f"latency_p90_ms_{device}{suffix[lat.batch_size]}": lat.p90_ms for lat in profile.latency},
        },
    )
    latency_chart = latency_svg(profile)
    mlflow.log_figures(run_id, {f"latency_{device}.svg": latency_chart})
    context.add_output_metadata(
        {
            "Latency by batch size": table(
                [
                    {
                        "batch size": lat.batch_size,
                        "p50 (ms)": lat.median_ms,
                        "p90 (ms)": lat.p90_ms,
                        "timed runs": lat.repeats,
                    }
                    for lat in profile.latency
                ]
            ),
            **{f"Latency p50 batch {lat.batch_size} (ms)": significant(lat.median_ms) for lat in profile.latency},
            "Latency (plot)": plot(latency_chart, f"{onnx_model.model_id} on {device}: latency"),
            "Threads": profile.latency[0].threads,
            "Input resolution": shapes.resolution if shapes.resolution is not None else "no square spatial size",
            "Executed nodes": count(len(profile.operators[0].graph.nodes)),
            "Profiling time (s)": significant(profile.seconds),
            "MLflow run": link(mlflow.run_url(run_id)),
        }
    )
    return profile


@stage_asset(OPERATOR_TABLE)
def operator_table(
    context: AssetExecutionContext, store: ModelStoreResource, mlflow: MlflowTracker, settings: IndexSettings
) -> pl.DataFrame:
    """The device's per-operator latency table: mean kernel time per executed-node key (op type, shapes,
    attributes) over every registered model profiled on it, with the fitted run and node overheads, plus the
    calibration sweep's kernels (`operator_sweep`), on which the kernel-class predictors that estimate unseen
    operators are fitted together with the models' entries."""
    device = context.partition_key
    registered = sorted(context.instance.get_dynamic_partitions(models_partitions.name))
    profiles: dict[str, DeviceProfile] = store.store().records(device_record(DEVICE_PROFILE.name, device), registered)
    profiled = [
        ProfiledModel(m, ops, lat.median_ms)
        for m, p in profiles.items()
        for ops, lat in zip(p.operators, p.latency, strict=True)
    ]
    sweep, sweep_s = [], 0.0
    if settings.operator_sweep:  # profiled once per device (kept under <store>/calibration), then reused
        threads = settings.latency_threads or None
        sweep, sweep_s = cached_calibration_profiles(
            store.store().root / "calibration", device, settings.profile_runs, threads, settings.operator_sweep_rounds
        )
    built = build_operator_table(device, profiled, calibration=sweep)
    latency = pl.DataFrame(
        [
            {"model_id": m, "batch_size": lat.batch_size, "latency_ms": lat.median_ms, "latency_p90_ms": lat.p90_ms}
            for m, p in profiles.items()
            for lat in p.latency
        ]
    )
    frame = built.to_frame()
    statistics = {
        "models": float(len(profiles)),
        "keys": float(frame.height),
        "run_overhead_us": built.run_overhead_us,
        "node_overhead_us": built.node_overhead_us,
    }
    run_id = mlflow.log_operator_table_run(device, frame, latency, statistics)
    context.add_output_metadata(
        {
            "Models profiled": count(len(profiles)),
            "Operator keys": count(frame.height),
            "Run overhead (µs)": significant(built.run_overhead_us),
            "Node overhead (µs)": _overhead_text(built.node_overhead_us),
            "Calibration graphs": count(len(sweep)),
            "Calibration sweep profiled now (s)": significant(sweep_s),
            "Models left out (not profiled)": ", ".join(sorted(set(registered) - set(profiles))) or "none",
            "MLflow run": link(mlflow.run_url(run_id)),
        }
    )
    return frame


def _overhead_text(node_overhead_us: float) -> str:
    """The fitted per-node overhead; a fit below zero says the overhead is not separable from kernel time here
    (shown as such, not as a negative duration)."""
    if node_overhead_us >= 0:
        return f"{significant(node_overhead_us):g} µs"
    return f"not measurable (fit {significant(node_overhead_us):g} µs: within the kernels' noise)"
