"""Compare the model with its peers from stored outputs (no second inference pass)."""

from dagster import AssetExecutionContext

from assets.metadata import table
from assets.stage_asset import stage_asset
from resources.store import ModelStoreResource
from sommelier_core.equivalence.compare import PairScores, compare_outputs
from sommelier_core.equivalence.outputs import ModelOutputs
from sommelier_core.equivalence.peers import PeerSample
from sommelier_core.stages import PAIR_SCORES


@stage_asset(PAIR_SCORES)
def pair_scores(
    context: AssetExecutionContext, model_outputs: ModelOutputs, peers: PeerSample, store: ModelStoreResource
) -> PairScores:
    """Disagreement (classifiers) or relative l2 (vector outputs) with each peer, both directions.

    Peers' outputs are read through the model store by id (design §8), not loaded for every partition.
    """
    models = store.store()
    mine = models.load_outputs(model_outputs.model_id)
    comparisons = []
    for peer in peers.peers:
        theirs = models.load_outputs(peer)
        comparisons.append(compare_outputs(model_outputs.model_id, mine, peer, theirs, model_outputs.task))
        comparisons.append(compare_outputs(peer, theirs, model_outputs.model_id, mine, model_outputs.task))
    context.add_output_metadata(
        {
            "Peers compared": len(peers.peers),
            "Differences": table(
                [
                    {
                        "peer": there.candidate_id,
                        "measure": there.kind,
                        "this → peer": there.difference,
                        "peer → this": back.difference,
                        "samples": there.n,
                    }
                    for there, back in zip(comparisons[::2], comparisons[1::2], strict=True)
                ],
                {
                    "peer": "string",
                    "measure": "string",
                    "this → peer": "float",
                    "peer → this": "float",
                    "samples": "int",
                },
            ),
        }
    )
    return PairScores(model_outputs.model_id, tuple(comparisons))
