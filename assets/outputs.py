"""Each model's outputs on its validation set, computed once and stored."""

from dagster import AssetExecutionContext

from assets.stage_asset import stage_asset
from resources.store import ModelStoreResource
from resources.validation import ValidationDataResource
from sommelier_core.equivalence.outputs import ModelOutputs, compute_outputs
from sommelier_core.ingest.convert import Conversion
from sommelier_core.models import FetchedModel
from sommelier_core.stages import MODEL_OUTPUTS


@stage_asset(MODEL_OUTPUTS)
def model_outputs(
    context: AssetExecutionContext,
    fetched_model: FetchedModel,
    onnx_model: Conversion,
    validation: ValidationDataResource,
    store: ModelStoreResource,
) -> ModelOutputs:
    """The model's outputs on the shared validation set; every pair comparison reuses them."""
    entry = fetched_model.entry
    dataset = validation.dataset_for(entry.model_id, onnx_model.signature)
    outputs, accuracy = compute_outputs(onnx_model.onnx_path, dataset, entry.task)
    path = store.store().save_outputs(entry.model_id, outputs)
    result = ModelOutputs(
        model_id=entry.model_id,
        dataset=dataset.name,
        n=len(dataset.x),
        path=str(path),
        signature_key=onnx_model.signature.at_input_shape(dataset.x.shape[1:]).key(),
        task=entry.task,
        labels=entry.labels,
        accuracy=accuracy,
    )
    context.add_output_metadata(
        {"Dataset": dataset.name, "Samples": result.n, "Accuracy": accuracy if accuracy is not None else "n/a"}
    )
    return result
