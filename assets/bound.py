"""Stage 7: bound each measured difference (empirical + statistical confidence term)."""

from dagster import AssetExecutionContext, asset

from assets.partitions import models_partitions
from resources.settings import IndexSettings
from sommelier_core.bound import PairBounds, bound_comparison
from sommelier_core.equivalence import PairScores


@asset(partitions_def=models_partitions, group_name="analysis")
def pair_bounds(context: AssetExecutionContext, pair_scores: PairScores, settings: IndexSettings) -> PairBounds:
    """An upper (and lower) bound on the true difference behind each measured pair, at confidence 1 − δ."""
    mode = settings.checked_bound_mode()
    bounds = tuple(bound_comparison(c, mode=mode, delta=settings.delta) for c in pair_scores.comparisons)
    context.add_output_metadata(
        {
            "Bound mode": mode,
            "Delta": settings.delta,
            **{f"Upper bound to {b.candidate_id}": round(b.upper, 5) for b in bounds[::2]},
        }
    )
    return PairBounds(pair_scores.model_id, bounds)
