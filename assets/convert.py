"""Stage 2: convert a fetched model to ONNX, checking numerical parity with the original."""

from dagster import AssetExecutionContext, asset

from assets.partitions import models_partitions
from resources.settings import IndexSettings
from resources.store import ModelStoreResource
from sommelier_core.convert import Conversion, convert_model
from sommelier_core.models import FetchedModel
from sommelier_core.zoo.datasets import dataset_for_input_shape, load_dataset

PARITY_SAMPLES = 32


@asset(partitions_def=models_partitions, group_name="ingest")
def onnx_model(
    context: AssetExecutionContext, fetched_model: FetchedModel, settings: IndexSettings, store: ModelStoreResource
) -> Conversion:
    """The model as ONNX; original and ONNX Runtime outputs agree within the parity tolerance.

    A mismatch beyond tolerance fails this partition (design §2): a wrong conversion is an error,
    never a silent index entry.
    """
    entry = fetched_model.entry
    parity_inputs = None
    builtin = dataset_for_input_shape(entry.input_shape) if entry.input_shape else None
    if builtin is not None:
        parity_inputs = load_dataset(builtin, split="val", n=PARITY_SAMPLES).x[:PARITY_SAMPLES]
    conversion = convert_model(
        fetched_model,
        store.store().onnx_path(entry.model_id),
        parity_inputs=parity_inputs,
        tolerance=settings.parity_tolerance,
        seed=settings.seed,
    )
    context.add_output_metadata(
        {
            "Converter": conversion.converter,
            "Fingerprint": conversion.fingerprint[:16],
            "Max abs error": conversion.max_abs_error,
            "Max rel error": conversion.max_rel_error,
            "Parity samples": conversion.parity_samples,
            "Signature": conversion.signature.key(),
        }
    )
    return conversion
