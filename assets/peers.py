"""Choose the peers to compare the model with (paper §5.2): its group's pivots and five random compatible peers."""

import json
from collections.abc import Iterable

from dagster import AssetExecutionContext

from assets.metadata import count
from assets.partitions import models_partitions
from assets.stage_asset import stage_asset
from resources.mlflow_tracker import MlflowTracker
from resources.settings import IndexSettings
from resources.store import ModelStoreResource
from sommelier_core.equivalence.outputs import ModelOutputs
from sommelier_core.equivalence.peers import PeerSample, choose_peers
from sommelier_core.stages import MODEL_OUTPUTS, ONNX_MODEL, PEERS
from sommelier_core.store import ModelStore
from sommelier_core.store.signature_index import SignatureEntry, SignatureIndex


def signature_entry(outputs: ModelOutputs) -> SignatureEntry:
    """A model's entry in the index of I/O signatures: what `ModelOutputs.comparable_with` compares (dataset,
    sample count, signature, task) as one string, and the label vocabulary apart (unlabelled matches any)."""
    signature = json.dumps([outputs.dataset, outputs.n, outputs.signature_key, outputs.task])
    labels = None if outputs.labels is None else json.dumps(list(outputs.labels))
    return SignatureEntry(outputs.model_id, signature, labels)


def index_missing_signatures(store: ModelStore, index: SignatureIndex, registered: Iterable[str]) -> int:
    """Add to the index the registered models with stored outputs it does not hold yet (a store indexed before
    the signature index existed, or outputs stored by a process that did not add them); how many were added.
    Each model's record is read once, when it first appears, so drawing peers stays O(group), not O(N)."""
    missing = sorted(set(registered) - index.model_ids())
    found = store.records(MODEL_OUTPUTS.name, [m for m in missing if store.has_record(MODEL_OUTPUTS.name, m)])
    index.add(signature_entry(outputs) for _, outputs in sorted(found.items()))
    return len(found)


@stage_asset(PEERS)
def peers(
    context: AssetExecutionContext,
    model_outputs: ModelOutputs,
    settings: IndexSettings,
    store: ModelStoreResource,
    mlflow: MlflowTracker,
) -> PeerSample:
    """Peers among the registered models whose stored outputs compare with this one's: the compatible group's
    pivots (its first models) and random peers seeded by the model id.

    The group comes from the index of I/O signatures (`<store>/signatures/`), not from reading every model's
    record. Pairs that are not compared get transitive bounds in the semantic index. The peers are tagged on the
    model's MLflow run and registered model.
    """
    model_id = model_outputs.model_id
    models = store.store()
    index = SignatureIndex(models.root)
    entry = signature_entry(model_outputs)
    if index.entry(model_id) != entry:  # its own entry is current whatever stored its outputs (a write only if not)
        index.add([entry])
    registered = context.instance.get_dynamic_partitions(models_partitions.name)
    index_missing_signatures(models, index, registered)
    group = index.compatible(entry, registered)
    chosen = choose_peers(model_id, group, k=settings.peers, pivots=settings.pivots, seed=settings.seed)
    pool_size = len(group) - (model_id in group)
    fingerprint = models.load_record(ONNX_MODEL.name, model_id).fingerprint
    mlflow.log_to_model_run(model_id, fingerprint, tags={"peers": ", ".join(chosen) or "none"})
    context.add_output_metadata(
        {"Peers": ", ".join(chosen) or "none", "Compatible pool": count(pool_size, "models"), "Seed": settings.seed}
    )
    return PeerSample(model_id, chosen, pool_size, settings.seed)
