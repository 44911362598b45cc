"""Sample five I/O-compatible peers to compare the model with (paper §5.2)."""

from dagster import AssetExecutionContext

from assets.metadata import count
from assets.partitions import models_partitions
from assets.stage_asset import stage_asset
from resources.mlflow_tracker import MlflowTracker
from resources.settings import IndexSettings
from resources.store import ModelStoreResource
from sommelier_core.equivalence.outputs import ModelOutputs
from sommelier_core.equivalence.peers import PeerSample, sample_peers
from sommelier_core.stages import MODEL_OUTPUTS, ONNX_MODEL, PEERS


@stage_asset(PEERS)
def peers(
    context: AssetExecutionContext,
    model_outputs: ModelOutputs,
    settings: IndexSettings,
    store: ModelStoreResource,
    mlflow: MlflowTracker,
) -> PeerSample:
    """Peers drawn (seeded by the model id) among registered models whose stored outputs are comparable.

    Pairs that are not sampled get transitive bounds in the semantic index. The peers are tagged on the model's
    MLflow run and registered model.
    """
    registered = set(context.instance.get_dynamic_partitions(models_partitions.name))
    stored = store.store().records(MODEL_OUTPUTS.name, sorted(registered))
    pool = [m for m, other in stored.items() if m != model_outputs.model_id and model_outputs.comparable_with(other)]
    chosen = sample_peers(model_outputs.model_id, pool, k=settings.peers, seed=settings.seed)
    fingerprint = store.store().load_record(ONNX_MODEL.name, model_outputs.model_id).fingerprint
    mlflow.log_to_model_run(model_outputs.model_id, fingerprint, tags={"peers": ", ".join(chosen) or "none"})
    context.add_output_metadata(
        {"Peers": ", ".join(chosen) or "none", "Compatible pool": count(len(pool), "models"), "Seed": settings.seed}
    )
    return PeerSample(model_outputs.model_id, chosen, len(pool), settings.seed)
