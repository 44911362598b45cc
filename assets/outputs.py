"""Each model's outputs on its validation set, computed once and stored."""

from dagster import AssetExecutionContext

from assets.metadata import count, link, percent, size
from assets.stage_asset import stage_asset
from resources.mlflow_tracker import MlflowTracker
from resources.store import ModelStoreResource
from resources.validation import ValidationDataResource
from sommelier_core.equivalence.outputs import ModelOutputs, store_outputs
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
    """The model's outputs on the shared validation set, run in fixed batches and stored compactly as they come
    (top-1 labels for a classifier, float16 vectors with their error bound otherwise; every output of a multi-output
    model); every pair comparison reuses them. The accuracy (on a labelled set) goes to the model's MLflow run and
    registered model."""
    entry = fetched_model.entry
    dataset = validation.dataset_for(entry.model_id, onnx_model.signature)
    models = store.store()
    stored, accuracy, batch_size = store_outputs(models, entry.model_id, onnx_model.onnx_path, dataset, entry.task)
    models.outputs_path(entry.model_id).unlink(missing_ok=True)  # full outputs of an earlier version, now replaced
    result = ModelOutputs(
        model_id=entry.model_id,
        dataset=dataset.name,
        n=len(dataset.x),
        path=str(models.outputs_dir(entry.model_id)),
        signature_key=onnx_model.signature.at_input_shape(dataset.x.shape[1:]).key(),
        task=entry.task,
        labels=entry.labels,
        accuracy=accuracy,
        stored=stored,
        batch_size=batch_size,
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
            "Outputs compared": ", ".join(f"{o.name} ({o.kind}, {o.dtype})" for o in stored),
            "Batch size": batch_size,
            "Stored bytes": size(
                sum(o.path.stat().st_size + (o.error_path.stat().st_size if o.error_path else 0) for o in stored)
            ),
            "Accuracy": percent(accuracy) if accuracy is not None else "n/a (no labels)",
            "MLflow run": link(mlflow.run_url(run_id)),
        }
    )
    return result
