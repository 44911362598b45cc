"""Each model's cushions on its validation set (paper §4.1), computed once and stored.

Every pair the model is the reference of reuses them (the architecture term of the bound is the
reference's, paper §4.3), so they are a per-model asset, not recomputed per pair.
"""

from dagster import AssetExecutionContext

from assets.metadata import significant
from assets.stage_asset import stage_asset
from resources.settings import IndexSettings
from resources.validation import ValidationDataResource
from sommelier_core.equivalence.bound import ARCHITECTURE_MODES, bound_mode_spec
from sommelier_core.equivalence.cushions import (
    CushionError,
    CushionsNotApplicable,
    ModelCushions,
    compute_cushions,
)
from sommelier_core.ingest.convert import Conversion
from sommelier_core.ingest.validation import DatasetError, validation_set_for
from sommelier_core.models import FetchedModel
from sommelier_core.stages import MODEL_CUSHIONS


@stage_asset(MODEL_CUSHIONS)
def model_cushions(
    context: AssetExecutionContext,
    fetched_model: FetchedModel,
    onnx_model: Conversion,
    validation: ValidationDataResource,
    settings: IndexSettings,
) -> ModelCushions:
    """Layer and interlayer cushions, activation contraction, depth and output norms on the validation set.

    Measured only when the bound mode uses them (`arora`, `custom`); in the other modes the record says they
    were not needed, at no cost. In the `custom` bound mode they are measured on the configured `bound_data` when
    it fits the model's inputs. A model without a measurable linear layer gets a record that says why; one whose
    layers compute in integers or float16 gets a record saying the cushions do not apply (its bounds fall back
    to the statistical term, visibly). Memory is bounded by `stage_memory_bytes`.
    """
    model_id = fetched_model.entry.model_id
    mode = settings.checked_bound_mode()
    if mode not in ARCHITECTURE_MODES:
        why = f"not needed by bound mode {mode!r}"
        context.add_output_metadata({"Cushions": why})
        return ModelCushions(model_id, "", None, why)
    dataset = validation.dataset_for(model_id, onnx_model.signature)
    if bound_mode_spec(mode).custom_data:
        try:
            dataset = validation_set_for(model_id, onnx_model.signature, settings.bound_data)
        except DatasetError as exc:
            context.log.warning(f"custom bound data not used for {model_id}: {exc}")
    try:
        cushions = compute_cushions(
            onnx_model.onnx_path,
            dataset.x,
            model_id=model_id,
            dataset=dataset.name,
            jacobian_samples=settings.cushion_jacobian_samples,
            projections=settings.cushion_projections,
            seed=settings.seed,
            memory_bytes=settings.stage_memory_bytes,
        )
    except CushionsNotApplicable as exc:
        context.add_output_metadata({"Dataset": dataset.name, "Cushions": f"not applicable: {exc}"})
        return ModelCushions(model_id, dataset.name, None, f"not applicable: {exc}", fallback=True)
    except CushionError as exc:
        context.add_output_metadata({"Dataset": dataset.name, "Cushions": f"not measured: {exc}"})
        return ModelCushions(model_id, dataset.name, None, str(exc))
    context.add_output_metadata(
        {
            "Dataset": dataset.name,
            "Samples": cushions.samples,
            "Depth d": cushions.depth,
            "Activation contraction c": significant(cushions.activation_contraction),
            "Max output norm": significant(cushions.max_output_norm),
            "Median top-1 margin": significant(cushions.median_margin),
            "Min layer cushion": significant(min(layer.layer_cushion for layer in cushions.layers)),
            "Min interlayer cushion": significant(min(layer.interlayer_cushion for layer in cushions.layers)),
            "Σ 1/(μ_i² μ_i→²)": significant(cushions.cushion_sum()),
            "Seconds": significant(cushions.seconds),
        }
    )
    return ModelCushions(model_id, dataset.name, cushions)
