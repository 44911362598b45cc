"""Bound each measured difference (empirical + statistical term [+ the reference's architecture term])."""

from collections.abc import Iterator

from dagster import AssetCheckResult, AssetExecutionContext, Output

from assets.checks import BOUND_COVERS_MEASURED, LOWER_WITHIN_UPPER, pair_bound_checks
from assets.metadata import link, percent, table
from assets.stage_asset import stage_asset
from resources.mlflow_tracker import MlflowTracker
from resources.settings import IndexSettings
from resources.store import ModelStoreResource
from sommelier_core.equivalence.bound import ARCHITECTURE_MODES, PairBound, PairBounds
from sommelier_core.equivalence.compare import PairScores
from sommelier_core.equivalence.cushions import ModelCushions
from sommelier_core.equivalence.pair_measure import bound_stored_pair
from sommelier_core.stages import ONNX_MODEL, PAIR_BOUNDS


@stage_asset(PAIR_BOUNDS, check_specs=[LOWER_WITHIN_UPPER, BOUND_COVERS_MEASURED])
def pair_bounds(
    context: AssetExecutionContext,
    pair_scores: PairScores,
    model_cushions: ModelCushions,
    settings: IndexSettings,
    store: ModelStoreResource,
    mlflow: MlflowTracker,
) -> Iterator[Output[PairBounds] | AssetCheckResult]:
    """An upper (and lower) bound on the true difference behind each measured pair, at confidence 1 − δ.

    In the `arora` and `custom` modes each pair adds the architecture term of its *reference* (the
    measure is asymmetric, paper §4.3): this model's cushions when it is the reference, the peer's
    (read through the store by id, design §8) otherwise. `custom` measures the difference again on the
    configured dataset, on which the cushions were measured. The rules live in
    `sommelier_core.equivalence.pair_measure.bound_stored_pair`, which queries use too. The bounds are tagged
    on the model's MLflow run and registered model; two checks test each interval and that it covers the
    measured difference.
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
    own = [b for b in bounds if b.reference_id == pair_scores.model_id]
    fingerprint = models.load_record(ONNX_MODEL.name, pair_scores.model_id).fingerprint
    run_id = mlflow.log_to_model_run(
        pair_scores.model_id,
        fingerprint,
        metrics={"bound_upper_min": min((b.upper for b in own), default=1.0)},
        tags={"bounds": "; ".join(f"{b.candidate_id}: {_interval(b)}" for b in own) or "no compatible peers"},
    )
    record = PairBounds(pair_scores.model_id, tuple(bounds))
    yield Output(
        record,
        metadata={
            "Bound mode": mode,
            "Delta": settings.delta,
            **({"Constant C": settings.bound_constant} if mode in ARCHITECTURE_MODES else {}),
            "Pairs bounded": len(bounds),
            "Bounds (this model as reference)": table(
                [
                    {"candidate": b.candidate_id, "lower": b.lower, "measured": b.empirical, "upper": b.upper}
                    for b in own
                ],
                {"candidate": "string", "lower": "float", "measured": "float", "upper": "float"},
            ),
            **({"Notes": "; ".join(sorted(set(notes)))} if notes else {}),
            "MLflow run": link(mlflow.run_url(run_id)),
        },
    )
    yield from pair_bound_checks(bounds)


def _interval(bound: PairBound) -> str:
    """`1.2 % ≤ d ≤ 8.4 % (measured 4.1 %)`: a bound as people read it."""
    return f"{percent(bound.lower)} ≤ d ≤ {percent(bound.upper)} (measured {percent(bound.empirical)})"
