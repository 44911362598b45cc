"""Stage 5: sample five I/O-compatible peers to compare the model with (paper §5.2)."""

from dagster import AssetExecutionContext, asset

from assets.partitions import models_partitions
from resources.settings import IndexSettings
from resources.store import ModelStoreResource
from sommelier_core.equivalence.outputs import ModelOutputs
from sommelier_core.equivalence.peers import PeerSample, sample_peers


@asset(partitions_def=models_partitions, group_name="analysis")
def peers(
    context: AssetExecutionContext, model_outputs: ModelOutputs, settings: IndexSettings, store: ModelStoreResource
) -> PeerSample:
    """Peers drawn (seeded by the model id) among registered models whose stored outputs are comparable.

    Pairs that are not sampled get transitive bounds in the semantic index.
    """
    registered = set(context.instance.get_dynamic_partitions("models"))
    stored = store.store().records("model_outputs", sorted(registered))
    pool = [m for m, other in stored.items() if m != model_outputs.model_id and model_outputs.comparable_with(other)]
    chosen = sample_peers(model_outputs.model_id, pool, k=settings.peers, seed=settings.seed)
    context.add_output_metadata({"Peers": ", ".join(chosen) or "none", "Compatible pool": len(pool)})
    return PeerSample(model_outputs.model_id, chosen, len(pool), settings.seed)
