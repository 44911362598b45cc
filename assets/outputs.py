"""Each model's outputs on its validation set, computed once and stored."""

from dagster import AssetExecutionContext

from assets.metadata import count, link, percent
from assets.stage_asset import stage_asset
from resources.mlflow_tracker import MlflowTracker
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
    mlflow: MlflowTracker,
) -> ModelOutputs:
    """The model's outputs on the shared validation set; every pair comparison reuses them. The accuracy (on a
    labelled set) goes to the model's MLflow run and registered model."""
    entry = fetched_model.entry
    dataset = validation.dataset_for(entry.model_id, onnx_model.signature)
    outputs, accuracy = compute_outputs(onnx_model.onnx_path, dataset, entry.task, model_id=entry.model_id)
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
    run_id = mlflow.log_to_model_run(
        entry.model_id,
        onnx_model.fingerprint,
        metrics={"accuracy": accuracy} if accuracy is not None else {},
        tags={"accuracy": f"{accuracy:.4f}" if accuracy is not None else "n/a (no labels)", "dataset": dataset.name},
    )
    context.add_output_metadata(
        {
            "Dataset": dataset.name,
            "Samples": count(result.n),
            "Accuracy": percent(accuracy) if accuracy is not None else "n/a (no labels)",
            "MLflow run": link(mlflow.run_url(run_id)),
        }
    )
    return result
