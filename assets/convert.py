"""Convert a fetched model to ONNX, checking numerical parity with the original."""

from collections.abc import Iterator

import numpy as np
from dagster import AssetCheckResult, AssetExecutionContext, Output

from assets.checks import PARITY, conversion_parity, parity_mismatch
from assets.metadata import significant
from assets.stage_asset import stage_asset
from resources.settings import IndexSettings
from resources.store import ModelStoreResource
from resources.validation import ValidationDataResource
from sommelier_core.errors import ConversionError, ConversionMismatch
from sommelier_core.ingest.convert import (
    Conversion,
    ExportFailed,
    convert_model,
    load_onnx,
    onnx_signature,
    record_export_failure,
    recorded_export_failure,
)
from sommelier_core.models import FetchedModel
from sommelier_core.stages import ONNX_MODEL
from sommelier_core.zoo.datasets import dataset_for_input_shape, load_dataset

PARITY_SAMPLES = 32


@stage_asset(ONNX_MODEL, check_specs=[PARITY])
def onnx_model(
    context: AssetExecutionContext,
    fetched_model: FetchedModel,
    settings: IndexSettings,
    store: ModelStoreResource,
    validation: ValidationDataResource,
) -> Iterator[Output[Conversion] | AssetCheckResult]:
    """The model as ONNX; original and ONNX Runtime outputs agree within the parity tolerance.

    A mismatch beyond tolerance fails this partition (design §2): a wrong conversion is an error,
    never a silent index entry. The `conversion_parity` check records the errors against the tolerance (and
    fails, with the step, on a mismatch).
    """
    entry = fetched_model.entry
    model_dir = store.store().model_dir(entry.model_id)
    recorded = recorded_export_failure(model_dir, entry.version) if fetched_model.loader != "onnx" else None
    if recorded is not None:  # exporting is deterministic: the same version fails the same way, so not again
        raise ExportFailed(f"{recorded} (recorded for version {entry.version}; a new version is exported again)")
    parity_inputs = None
    builtin = dataset_for_input_shape(entry.input_shape) if entry.input_shape else None
    if builtin is not None:
        parity_inputs = load_dataset(builtin, split="val", n=PARITY_SAMPLES).x[:PARITY_SAMPLES]
    elif fetched_model.loader == "onnx" and not entry.input_shape:
        parity_inputs = _validation_inputs(fetched_model, validation)
    try:
        conversion = convert_model(
            fetched_model,
            store.store().onnx_path(entry.model_id),
            parity_inputs=parity_inputs,
            tolerance=settings.parity_tolerance,
            seed=settings.seed,
        )
    except ConversionMismatch as mismatch:  # the check fails, saying by how much, and so does the partition
        yield parity_mismatch(str(mismatch), settings.parity_tolerance)
        raise
    except ExportFailed as failure:
        record_export_failure(model_dir, entry.version, str(failure))
        raise
    yield Output(
        conversion,
        metadata={
            "Converter": conversion.converter,
            "Fingerprint": conversion.fingerprint[:16],
            "Max abs error": significant(conversion.max_abs_error),
            "Max rel error": significant(conversion.max_rel_error),
            "Parity tolerance": conversion.tolerance,
            "Parity samples": conversion.parity_samples,
            **({"Notes": "; ".join(conversion.notes)} if conversion.notes else {}),
            "Signature": conversion.signature.key(),
        },
    )
    yield conversion_parity(conversion)


def _validation_inputs(fetched_model: FetchedModel, validation: ValidationDataResource) -> np.ndarray | None:
    """The first validation inputs of an ONNX file whose graph has symbolic spatial dims (dynamic H, W): it
    declares no shape to draw random inputs of, so it is run once on what it will be compared on. None when
    the file does not parse (the conversion then fails naming it)."""
    try:
        signature = onnx_signature(load_onnx(fetched_model.source_path))
    except ConversionError:
        return None
    return validation.dataset_for(fetched_model.entry.model_id, signature).x[:PARITY_SAMPLES]
