"""Asset checks: the rules (by hand-checkable values) and the checks evaluated by Dagster on real runs."""

from __future__ import annotations

import dataclasses

import polars as pl
from dagster import AssetKey, DagsterInstance, Definitions, asset

from assets.checks import (
    CHECKS,
    bound_order_violations,
    index_inconsistencies,
    pair_bound_checks,
    parity_holds,
    resource_index_consistency,
    semantic_index_bounds,
    uncovered_differences,
)
from resources.store import ModelStoreResource
from sommelier_core.equivalence.bound import PairBound
from sommelier_core.store import ModelStore
from tests.store_records import onnx_model, small_record


def _bound(candidate: str, lower: float, empirical: float, upper: float) -> PairBound:
    return PairBound("lab/a", candidate, "disagreement", empirical, lower, upper, 360, "statistical", 0.05)


def test_parity_holds_when_the_smaller_of_absolute_and_relative_error_is_within_tolerance(tmp_path):
    converted = onnx_model("lab/a", tmp_path)  # passthrough, tolerance 1e-4, 16 parity samples
    assert parity_holds(dataclasses.replace(converted, max_abs_error=5e-4, max_rel_error=5e-5))
    assert not parity_holds(dataclasses.replace(converted, max_abs_error=5e-4, max_rel_error=2e-4))
    assert parity_holds(dataclasses.replace(converted, max_abs_error=1.0, max_rel_error=1.0, parity_samples=0))


def test_pair_bound_checks_name_inverted_intervals_and_bounds_below_the_measured_difference():
    good = _bound("lab/b", 0.01, 0.04, 0.09)
    inverted = _bound("lab/c", 0.10, 0.05, 0.08)  # lower above upper
    below = _bound("lab/d", 0.00, 0.20, 0.15)  # upper below the measured 0.20
    assert bound_order_violations([good, inverted, below]) == [inverted]
    # an inverted interval contains no value at all, so it cannot contain the measured one either
    assert uncovered_differences([good, inverted, below]) == [inverted, below]
    order, cover = pair_bound_checks([good, inverted, below])
    assert (order.check_name, order.passed, order.metadata["Lower above upper"].value) == (
        "lower_within_upper",
        False,
        1,
    )
    assert (cover.check_name, cover.passed) == ("bound_covers_measured", False)
    assert cover.metadata["Smallest margin upper − measured"].value == -0.05
    assert all(r.passed for r in pair_bound_checks([good]))


def test_index_inconsistencies_name_dangling_ids_and_models_missing_records():
    problems = index_inconsistencies(
        indexed=["a", "b", "ghost"],
        registered=["a", "b", "c"],
        with_records={"onnx_model": ["a"], "pair_bounds": ["a", "b"]},
    )
    assert problems == {"dangling": ["ghost"], "missing onnx_model": ["b", "ghost"], "missing pair_bounds": ["ghost"]}
    assert index_inconsistencies(["a"], ["a", "b"], {"onnx_model": ["a"]}) == {}


def _evaluate(index_asset, checks, tmp_path, registered):
    """Materialize a stand-in of an index asset with the real checks on a real instance; check evaluations."""
    definitions = Definitions(
        assets=[index_asset], asset_checks=checks, resources={"store": ModelStoreResource(root=str(tmp_path))}
    )
    with DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("models", registered)
        result = definitions.resolve_implicit_global_asset_job_def().execute_in_process(instance=instance)
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_the_resource_index_check_fails_on_a_dangling_id_and_a_profiled_model_left_out(tmp_path):
    store = ModelStore(tmp_path)
    for model in ("lab/a", "lab/b"):
        store.save_record("model_profile", model, small_record("model_profile", model, tmp_path))

    @asset(name="resource_index")
    def stand_in() -> pl.DataFrame:
        return pl.DataFrame({"model_id": ["lab/a", "lab/ghost"]})

    (evaluation,) = _evaluate(stand_in, [resource_index_consistency], tmp_path, ["lab/a", "lab/b"]).values()
    assert evaluation.asset_key == AssetKey("resource_index") and not evaluation.passed
    metadata = {k: v.value for k, v in evaluation.metadata.items()}
    assert metadata["Dangling (1)"] == "lab/ghost"
    assert metadata["Missing model_profile (1)"] == "lab/ghost"
    assert metadata["Profiled but not indexed (1)"] == "lab/b"


def test_the_semantic_index_bounds_check_passes_sane_records_and_lists_the_others(tmp_path):
    @asset(name="semantic_index")
    def stand_in() -> pl.DataFrame:
        return pl.DataFrame(
            {
                "reference_id": ["a", "a", "b"],
                "candidate_id": ["b", "c", "c"],
                "provenance": ["measured", "transitive", "measured"],
                "lower": [0.01, 0.02, 0.30],
                "empirical": [0.05, None, 0.10],
                "upper": [0.09, 0.20, 0.25],
            }
        )

    (evaluation,) = _evaluate(stand_in, [semantic_index_bounds], tmp_path, ["a", "b", "c"]).values()
    metadata = {k: v.value for k, v in evaluation.metadata.items()}
    assert not evaluation.passed
    assert (metadata["Lower above upper"], metadata["Measured difference outside its bounds"]) == (1, 1)
    assert [r.data["reference_id"] + r.data["candidate_id"] for r in metadata["Offending records"].records] == [
        "bc",
        "bc",
    ]


def test_every_asset_check_is_in_the_definitions_with_its_asset():
    from pipelines.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().asset_check_keys}
    assert keys == {
        "onnx_model:conversion_parity",
        "pair_bounds:lower_within_upper",
        "pair_bounds:bound_covers_measured",
        "semantic_index:semantic_index_consistency",
        "semantic_index:semantic_index_bounds",
        "resource_index:resource_index_consistency",
    }
    assert len(CHECKS) == 3  # the others are evaluated in their asset's step (partitioned assets)


def test_a_parity_mismatch_fails_the_check_with_the_converters_message():
    from assets.checks import parity_mismatch

    result = parity_mismatch("lab/a: max abs error 0.2, max rel error 0.1, tolerance 0.0001", 1e-4)
    assert (result.check_name, result.passed) == ("conversion_parity", False)
    assert result.metadata["Mismatch"].value.startswith("lab/a: max abs error 0.2")
