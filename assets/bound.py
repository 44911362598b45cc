"""Stage 7: bound each measured difference (empirical + statistical term [+ the reference's architecture term])."""

from dagster import AssetExecutionContext, asset

from assets.partitions import models_partitions
from resources.settings import IndexSettings
from resources.store import ModelStoreResource
from sommelier_core.bound import ARCHITECTURE_MODES, PairBound, PairBounds, bound_with_reference_cushions
from sommelier_core.cushions import ModelCushions
from sommelier_core.equivalence import Comparison, PairScores, compare_outputs
from sommelier_core.outputs import outputs_on
from sommelier_core.store import ModelStore
from sommelier_core.validation import resolve_dataset


@asset(partitions_def=models_partitions, group_name="analysis")
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
    configured dataset, on which the cushions were measured.
    """
    mode = settings.checked_bound_mode()
    models = store.store()
    notes: list[str] = []
    bounds = tuple(
        _bound_pair(c, mode, settings, models, pair_scores.model_id, model_cushions, notes)
        for c in pair_scores.comparisons
    )
    context.add_output_metadata(
        {
            "Bound mode": mode,
            "Delta": settings.delta,
            **({"Constant C": settings.bound_constant} if mode in ARCHITECTURE_MODES else {}),
            **{f"Upper bound to {b.candidate_id}": round(b.upper, 5) for b in bounds[::2]},
            **({"Notes": "; ".join(sorted(set(notes)))} if notes else {}),
        }
    )
    return PairBounds(pair_scores.model_id, bounds)


def _bound_pair(
    comparison: Comparison,
    mode: str,
    settings: IndexSettings,
    models: ModelStore,
    model_id: str,
    own: ModelCushions,
    notes: list[str],
) -> PairBound:
    reference = comparison.reference_id
    record = None
    if mode in ARCHITECTURE_MODES:
        record = own if reference == model_id else models.load_record("model_cushions", reference)
    if mode == "custom" and record is not None and record.cushions is not None:
        data = resolve_dataset(settings.bound_data)
        if record.dataset == data.name:
            task = "classification" if comparison.kind == "disagreement" else "regression"
            ref_out = outputs_on(models, reference, data)
            cand_out = outputs_on(models, comparison.candidate_id, data)
            comparison = compare_outputs(reference, ref_out, comparison.candidate_id, cand_out, task)
        else:
            notes.append(f"custom data does not fit {reference}: bounded on its validation set (arora)")
            mode = "arora"
    bound, note = bound_with_reference_cushions(comparison, mode, settings.delta, settings.bound_constant, record)
    if note:
        notes.append(note)
    return bound
