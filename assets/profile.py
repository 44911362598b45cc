"""Stage 4: the model's resource profile (static costs + measured CPU latency), recorded in MLflow."""

from dagster import AssetExecutionContext, asset

from assets.partitions import models_partitions
from resources.mlflow_tracker import MlflowTracker
from resources.settings import IndexSettings
from sommelier_core.convert import Conversion, load_onnx
from sommelier_core.profile import available_devices, measure_latency, static_profile
from sommelier_core.resource_index import ModelProfile


@asset(partitions_def=models_partitions, group_name="analysis")
def model_profile(
    context: AssetExecutionContext, onnx_model: Conversion, settings: IndexSettings, mlflow: MlflowTracker
) -> ModelProfile:
    """Params, MACs, weight and peak activation bytes from ONNX shape inference; latency per present device."""
    static = static_profile(load_onnx(onnx_model.onnx_path), batch_size=settings.batch_size)
    latency = tuple(
        measure_latency(
            onnx_model.onnx_path,
            device=device,
            batch_size=settings.batch_size,
            repeats=settings.latency_repeats,
            seed=settings.seed,
        )
        for device in available_devices()
    )
    profile = ModelProfile(
        model_id=onnx_model.model_id,
        fingerprint=onnx_model.fingerprint,
        onnx_path=str(onnx_model.onnx_path),
        static=static,
        latency=latency,
    )
    metrics = {
        "params": float(static.params),
        "macs": float(static.macs),
        "flops": float(static.flops),
        "weight_bytes": float(static.weight_bytes),
        "peak_activation_bytes": float(static.peak_activation_bytes),
        "conversion_max_abs_error": onnx_model.max_abs_error,
        "conversion_max_rel_error": onnx_model.max_rel_error,
        **{f"latency_ms_{lat.device}": lat.median_ms for lat in latency},
        **{f"latency_p90_ms_{lat.device}": lat.p90_ms for lat in latency},
    }
    run_id = mlflow.log_model_run(
        onnx_model.model_id,
        onnx_model.onnx_path,
        params={
            "fingerprint": onnx_model.fingerprint,
            "converter": onnx_model.converter,
            "batch_size": str(settings.batch_size),
        },
        metrics=metrics,
    )
    context.add_output_metadata(
        {
            "Params": static.params,
            "MACs": static.macs,
            "FLOPs": static.flops,
            "Weight bytes": static.weight_bytes,
            "Peak activation bytes": static.peak_activation_bytes,
            **{f"Latency p50 {lat.device} (ms)": lat.median_ms for lat in latency},
            **{f"Latency p90 {lat.device} (ms)": lat.p90_ms for lat in latency},
            "Uncosted ops": ", ".join(static.uncosted_ops) or "none",
            "MLflow run": run_id,
        }
    )
    return profile
