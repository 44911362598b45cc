"""Asset checks — what the Checks tab shows: conversion parity, sane pair bounds, consistent indexes.

Each check reads what its asset wrote (through the IO manager, or the model store by id, as the index does),
so it runs in the same run right after the asset and again on its own from the UI. The rules are small
functions over plain values (`bound_order_violations`, `index_inconsistencies`, …) that tests call directly.
"""

from collections.abc import Iterable, Mapping, Sequence

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    asset_check,
)

from assets.metadata import count, significant, table
from assets.partitions import models_partitions
from resources.store import ModelStoreResource
from sommelier_core.equivalence.bound import PairBound
from sommelier_core.ingest.convert import Conversion
from sommelier_core.stages import MODEL_PROFILE, ONNX_MODEL, PAIR_BOUNDS, RESOURCE_INDEX, SEMANTIC_INDEX

SLACK = 1e-12
"""Rounding slack when comparing bounds (they are sums of floats)."""
LISTED = 20
"""Offending rows a failed check lists in its metadata (the count says how many in all)."""


def parity_holds(conversion: Conversion) -> bool:
    """The conversion's parity rule, as `sommelier_core.ingest.convert` defines it."""
    return conversion.parity_holds


def bound_order_violations(bounds: Iterable[PairBound]) -> list[PairBound]:
    """Pairs whose lower bound exceeds their upper bound."""
    return [b for b in bounds if b.lower > b.upper + SLACK]


def uncovered_differences(bounds: Iterable[PairBound]) -> list[PairBound]:
    """Pairs whose upper bound is below the difference measured on the validation set (a bound must cover it),
    or whose lower bound is above it."""
    return [b for b in bounds if b.upper + SLACK < b.empirical or b.lower > b.empirical + SLACK]


def index_inconsistencies(
    indexed: Iterable[str], registered: Iterable[str], with_records: Mapping[str, Iterable[str]]
) -> dict[str, list[str]]:
    """What is wrong between an index and the store: ids the index holds that are not registered models
    (`dangling`), and indexed models lacking a stage's record (`missing <stage>`), each sorted; empty when
    consistent."""
    indexed, registered = set(indexed), set(registered)
    problems = {"dangling": sorted(indexed - registered)}
    for stage, models in with_records.items():
        problems[f"missing {stage}"] = sorted(indexed - set(models))
    return {k: v for k, v in problems.items() if v}


def _pair_rows(bounds: Sequence[PairBound]) -> list[dict]:
    return [
        {
            "reference": b.reference_id,
            "candidate": b.candidate_id,
            "lower": b.lower,
            "measured": b.empirical,
            "upper": b.upper,
        }
        for b in bounds[:LISTED]
    ]


PARITY = AssetCheckSpec(
    "conversion_parity",
    asset=ONNX_MODEL.name,
    description="Original and ONNX Runtime agree within the parity tolerance.",
)
LOWER_WITHIN_UPPER = AssetCheckSpec(
    "lower_within_upper", asset=PAIR_BOUNDS.name, description="Every measured pair's lower bound ≤ its upper bound."
)
BOUND_COVERS_MEASURED = AssetCheckSpec(
    "bound_covers_measured",
    asset=PAIR_BOUNDS.name,
    description="Every measured pair's bounds contain the difference measured on the validation set.",
)
"""Checks of partitioned assets are evaluated inside the asset's own step (`check_specs`: one evaluation per
model partition, Dagster's stable path; separately defined partitioned checks are a preview feature)."""


def conversion_parity(c: Conversion) -> AssetCheckResult:
    """ONNX Runtime's outputs match the original framework's on the parity inputs (design §2)."""
    return AssetCheckResult(
        check_name=PARITY.name,
        passed=parity_holds(c),
        metadata={
            "Converter": c.converter,
            "Max abs error": significant(c.max_abs_error),
            "Max rel error": significant(c.max_rel_error),
            "Tolerance": c.tolerance,
            "Parity samples": c.parity_samples,
        },
    )


def parity_mismatch(message: str, tolerance: float) -> AssetCheckResult:
    """The parity check of a conversion that disagreed beyond tolerance (its step then fails): the errors, as the
    converter's message gives them."""
    return AssetCheckResult(
        check_name=PARITY.name, passed=False, metadata={"Mismatch": message, "Tolerance": tolerance}
    )


def pair_bound_checks(bounds: Sequence[PairBound]) -> list[AssetCheckResult]:
    """Each measured pair's interval is an interval (lower ≤ upper), and it contains the measured difference."""
    inverted = bound_order_violations(bounds)
    uncovered = uncovered_differences(bounds)
    tightest = min((b.upper - b.empirical for b in bounds), default=0.0)
    return [
        AssetCheckResult(
            check_name=LOWER_WITHIN_UPPER.name,
            passed=not inverted,
            metadata={"Pairs": len(bounds), "Lower above upper": len(inverted)}
            | ({"Offending pairs": table(_pair_rows(inverted))} if inverted else {}),
        ),
        AssetCheckResult(
            check_name=BOUND_COVERS_MEASURED.name,
            passed=not uncovered,
            metadata={
                "Pairs": len(bounds),
                "Bounds not covering the measured difference": len(uncovered),
                "Smallest margin upper − measured": significant(tightest),
            }
            | ({"Offending pairs": table(_pair_rows(uncovered))} if uncovered else {}),
        ),
    ]


def _registered(context: AssetCheckExecutionContext) -> list[str]:
    return sorted(context.instance.get_dynamic_partitions(models_partitions.name))


def _consistency_result(problems: dict[str, list[str]], indexed: int) -> AssetCheckResult:
    return AssetCheckResult(
        passed=not problems,
        severity=AssetCheckSeverity.ERROR,
        metadata={"Models indexed": count(indexed)}
        | {f"{kind.capitalize()} ({len(ids)})": ", ".join(ids[:LISTED]) for kind, ids in problems.items()},
    )


@asset_check(
    asset=SEMANTIC_INDEX.name, description="Every indexed model is registered and has its records; no dangling ids."
)
def semantic_index_consistency(
    context: AssetCheckExecutionContext, semantic_index: pl.DataFrame, store: ModelStoreResource
) -> AssetCheckResult:
    """Every id in the semantic index (reference or candidate) is a registered model with a conversion and pair
    bounds in the store, at the fingerprint the index holds for it."""
    models = store.store()
    indexed = set(semantic_index["reference_id"]) | set(semantic_index["candidate_id"])
    conversions = models.records(ONNX_MODEL.name, sorted(indexed))
    problems = index_inconsistencies(
        indexed,
        _registered(context),
        {
            ONNX_MODEL.name: conversions,
            PAIR_BOUNDS.name: [m for m in indexed if models.has_record(PAIR_BOUNDS.name, m)],
        },
    )
    held = dict(semantic_index.select("reference_id", "reference_fingerprint").unique().iter_rows())
    stale = sorted(m for m, f in held.items() if m in conversions and conversions[m].fingerprint != f)
    if stale:
        problems["fingerprint differs from the stored conversion"] = stale
    return _consistency_result(problems, len(indexed))


@asset_check(
    asset=SEMANTIC_INDEX.name,
    description="Every record's lower bound ≤ upper bound, and measured ones cover their difference.",
)
def semantic_index_bounds(semantic_index: pl.DataFrame) -> AssetCheckResult:
    """Over every candidate record (measured, transitive or identical): lower ≤ upper; over measured records:
    lower ≤ measured difference ≤ upper."""
    inverted = semantic_index.filter(pl.col("lower") > pl.col("upper") + SLACK)
    measured = semantic_index.filter(pl.col("empirical").is_not_null())
    uncovered = measured.filter(
        (pl.col("upper") + SLACK < pl.col("empirical")) | (pl.col("lower") > pl.col("empirical") + SLACK)
    )
    columns = ["reference_id", "candidate_id", "provenance", "lower", "empirical", "upper"]
    offending = pl.concat([inverted, uncovered]).select(columns).head(LISTED)
    return AssetCheckResult(
        passed=inverted.is_empty() and uncovered.is_empty(),
        metadata={
            "Records": count(semantic_index.height),
            "Lower above upper": inverted.height,
            "Measured records": count(measured.height),
            "Measured difference outside its bounds": uncovered.height,
        }
        | ({"Offending records": table(offending.to_dicts())} if not offending.is_empty() else {}),
    )


@asset_check(asset=RESOURCE_INDEX.name, description="Every indexed model is registered and profiled; no dangling ids.")
def resource_index_consistency(
    context: AssetCheckExecutionContext, resource_index: pl.DataFrame, store: ModelStoreResource
) -> AssetCheckResult:
    """Every model in the resource index is registered and has its profile record, and every registered model
    with a profile is in the index."""
    models = store.store()
    registered = _registered(context)
    indexed = set(resource_index["model_id"])
    profiled = [m for m in registered if models.has_record(MODEL_PROFILE.name, m)]
    problems = index_inconsistencies(indexed, registered, {MODEL_PROFILE.name: profiled})
    left_out = sorted(set(profiled) - indexed)
    if left_out:
        problems["profiled but not indexed"] = left_out
    return _consistency_result(problems, len(indexed))


CHECKS: list[AssetChecksDefinition] = [
    semantic_index_consistency,
    semantic_index_bounds,
    resource_index_consistency,
]
"""The checks defined apart from their asset (those of the unpartitioned indexes), for `pipelines.definitions`."""
