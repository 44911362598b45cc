"""The model's static resource profile per exec-spec setting, recorded in MLflow.

Latency is per device: `assets/device_profile.py` (partitioned by model × device).
"""

import warnings

from dagster import AssetExecutionContext

from assets.metadata import count, link, plot, size, table
from assets.stage_asset import stage_asset
from resources.mlflow_tracker import MlflowTracker
from resources.settings import IndexSettings
from resources.validation import ValidationDataResource
from sommelier_core.index.resource import InputResolution, ModelProfile
from sommelier_core.ingest.convert import Conversion, load_onnx
from sommelier_core.plots import memory_by_batch_svg
from sommelier_core.profiling import UncostedOpsWarning, memory_profile, static_profile
from sommelier_core.stages import MODEL_PROFILE


@stage_asset(MODEL_PROFILE)
def model_profile(
    context: AssetExecutionContext,
    onnx_model: Conversion,
    settings: IndexSettings,
    validation: ValidationDataResource,
    mlflow: MlflowTracker,
) -> ModelProfile:
    """Params, MACs, weight and peak activation bytes from ONNX shape inference, at every exec-spec batch size,
    and how memory moves with batch size (and resolution, for models with symbolic spatial dims), and the input
    resolution it is all at (what a query's `RESOLUTION` is matched against): a model's own, or for one exported
    with symbolic H, W the exec-spec's `resolution` (default: its validation inputs'). The model version's MLflow
    run gets the figures, the ONNX file (registered under the model's id) and the memory-by-batch plot."""
    model = load_onnx(onnx_model.onnx_path)
    shapes = settings.profiled_shapes(
        model,
        lambda: validation.input_shape_for(onnx_model.model_id, onnx_model.signature),
        onnx_model.model_id,
    )
    batch_sizes = settings.exec_batch_sizes()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UncostedOpsWarning)
        by_batch = tuple(static_profile(model, batch_size=b, input_shapes=shapes.at_batch(b)) for b in batch_sizes)
    for warning in caught:
        context.log.warning(str(warning.message))
    own = shapes.resolution if shapes.dynamic else None  # the resolution `by_batch` is at, as memory points name it
    memory_batches = sorted({*batch_sizes, *settings.memory_batch_sizes})
    # other resolutions only for a model that takes them: a fixed one keeps its memory-by-batch table
    resolutions = list(dict.fromkeys([own, *settings.memory_resolutions])) if shapes.dynamic else [None]
    try:
        memory = tuple(memory_profile(model, memory_batches, resolutions, known=by_batch, known_resolution=own))
    except ValueError as error:  # no symbolic batch or spatial dim: the model's own setting only
        context.log.info(f"memory at other settings not computed: {error}")
        memory = tuple(memory_profile(model, [settings.batch_size], [own], known=by_batch, known_resolution=own))
    static = by_batch[0]
    profile = ModelProfile(
        model_id=onnx_model.model_id,
        fingerprint=onnx_model.fingerprint,
        onnx_path=str(onnx_model.onnx_path),
        static=static,
        static_by_batch=by_batch,
        memory=memory,
        input_resolution=InputResolution(shapes.resolution, shapes.dynamic),
    )
    metrics = {
        "params": float(static.params),
        "macs": float(static.macs),
        "flops": float(static.flops),
        "weight_bytes": float(static.weight_bytes),
        "peak_activation_bytes": float(static.peak_activation_bytes),
        "conversion_max_abs_error": onnx_model.max_abs_error,
        "conversion_max_rel_error": onnx_model.max_rel_error,
        **{f"memory_bytes_batch{p.batch_size}": float(p.memory_bytes) for p in memory if p.resolution == own},
    }
    run_id = mlflow.log_model_run(
        onnx_model.model_id,
        onnx_model.fingerprint,
        onnx_model.onnx_path,
        params={
            "fingerprint": onnx_model.fingerprint,
            "converter": onnx_model.converter,
            "batch_size": str(settings.batch_size),
            "resolution": str(shapes.resolution),
        },
        metrics=metrics,
    )
    memory_svg = memory_by_batch_svg(onnx_model.model_id, memory)
    mlflow.log_figures(run_id, {"memory_by_batch.svg": memory_svg})
    context.add_output_metadata(
        {
            "Params": count(static.params),
            "MACs": count(static.macs),
            "FLOPs": count(static.flops),
            "Weight memory": size(static.weight_bytes),
            "Peak activation memory": size(static.peak_activation_bytes),
            "Memory by batch size": table(
                [
                    {
                        "batch size": p.batch_size,
                        "resolution": "own" if p.resolution is None else f"{p.resolution}×{p.resolution}",
                        "weights (bytes)": p.weight_bytes,
                        "peak activations (bytes)": p.peak_activation_bytes,
                        "total (MiB)": p.memory_bytes / 2**20,
                        "MACs": p.macs,
                    }
                    for p in sorted(memory, key=lambda p: (p.resolution or 0, p.batch_size))
                ]
            ),
            "Memory vs batch size (plot)": plot(memory_svg, f"{onnx_model.model_id}: memory by batch size"),
            "Input resolution": _resolution_text(profile.input_resolution),
            "Uncosted ops": ", ".join(static.uncosted_ops) or "none",
            "MLflow run": link(mlflow.run_url(run_id)),
            "MLflow registered model": link(mlflow.registered_model_url(onnx_model.model_id)),
        }
    )
    return profile


def _resolution_text(resolution: InputResolution) -> str:
    size = f"{resolution.size}" if resolution.size is not None else "no square spatial size"
    return f"{size} (dynamic: any)" if resolution.dynamic else size
