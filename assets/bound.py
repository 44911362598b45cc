"""Bound each measured difference (empirical + statistical term [+ the reference's architecture term])."""

from dagster import AssetExecutionContext

from assets.stage_asset import stage_asset
from resources.settings import IndexSettings
from resources.store import ModelStoreResource
from sommelier_core.equivalence.bound import ARCHITECTURE_MODES, PairBounds
from sommelier_core.equivalence.compare import PairScores
from sommelier_core.equivalence.cushions import ModelCushions
from sommelier_core.equivalence.pair_measure import bound_stored_pair
from sommelier_core.stages import PAIR_BOUNDS


@stage_asset(PAIR_BOUNDS)
def pair_bounds(
    context: AssetExecutionContext,
    pair_scores: PairScores,
    model_cushions: ModelCushions,
    settings: IndexSettings,
    store: ModelStoreResource,
) -> PairBounds:
    """An upper (and lower) bound on the true difference behind each measured pair, at confidence 1 − δ.

    In the `arora` and `custom` modes each pair adds the architecture term of its *reference* (the
    measure is asymmetric, paper §4.3): this model's cushions when it is the reference, the peer's
    (read through the store by id, design §8) otherwise. `custom` measures the difference again on the
    configured dataset, on which the cushions were measured. The rules live in
    `sommelier_core.equivalence.pair_measure.bound_stored_pair`, which queries use too.
    """
    mode = settings.checked_bound_mode()
    models = store.store()
    notes: list[str] = []
    bounds = []
    for comparison in pair_scores.comparisons:
        own = model_cushions if comparison.reference_id == pair_scores.model_id else None  # else read by id
        bound, note = bound_stored_pair(comparison, settings.bound_settings(), models, own)
        bounds.append(bound)
        if note:
            notes.append(note)
    context.add_output_metadata(
        {
            "Bound mode": mode,
            "Delta": settings.delta,
            **({"Constant C": settings.bound_constant} if mode in ARCHITECTURE_MODES else {}),
            **{f"Upper bound to {b.candidate_id}": round(b.upper, 5) for b in bounds[::2]},
            **({"Notes": "; ".join(sorted(set(notes)))} if notes else {}),
        }
    )
    return PairBounds(pair_scores.model_id, tuple(bounds))
