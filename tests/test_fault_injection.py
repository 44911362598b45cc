"""Fault injection on copies of the store indexed end to end (`tests/conftest.py`): every record and artifact
kind truncated, bit-flipped and replaced by the wrong type (the cases of `sommelier_bench.fault_injection`).

Each case must be reported by `sommelier verify`, must never give a traceback or a changed answer without a
warning, and (on a representative subset, each re-index taking 20–40 s) `sommelier index` must repair it. All
83 cases run once per module (≈ 30 s on 2 cores); the counts are printed (`pytest -s`) and go to the README.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from sommelier_bench.fault_injection import (
    CASES,
    REINDEX_CASES,
    Outcome,
    answers,
    copy_store,
    counts,
    pick_models,
    reindexer,
    run_case,
)


def _repositories(zoo: Path):
    def listed(root: Path) -> list:
        from resources.repositories import RepositoryConfig

        return [
            RepositoryConfig(kind="torchhub", name="zoo-torch", location=[str(zoo / "torchhub")], trusted=True),
            RepositoryConfig(kind="tfhub", name="zoo-tf", location=[str(zoo / "tfhub")], trusted=True),
            RepositoryConfig(kind="onnx", name="extra", location=[str(root / "extra-onnx")]),
        ]

    return listed


@pytest.fixture(scope="module")
def setup(indexed_store, tmp_path_factory):
    """The indexed store (never changed: each case damages a copy), the models the cases use, the answers."""
    work = tmp_path_factory.mktemp("faults")
    models = pick_models(indexed_store.root)
    baseline = answers(copy_store(indexed_store.root, work / "baseline") / "index", models)
    return indexed_store, work, models, baseline


@pytest.fixture(scope="module")
def outcomes(setup) -> dict[str, Outcome]:
    """Every case run once (verify and queries; no re-index), by case id."""
    store, work, models, baseline = setup
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # each case records its own warnings
        return {case.id: run_case(case, store.root, work, models, baseline) for case in CASES}


def test_the_baseline_answers_are_answers(setup):
    _, _, models, baseline = setup
    assert all(a.hits and not a.error and not a.traceback for a in baseline), baseline
    assert models.reference != models.candidate != models.other


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_damage_is_reported_by_verify_naming_the_file(outcomes, case):
    outcome = outcomes[case.id]
    assert outcome.detected, f"{case.id}: `sommelier verify` found nothing wrong"
    assert outcome.verify_names_file, f"{case.id}: verify does not name {outcome.damaged_file}"


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_damage_never_gives_a_traceback_or_a_silently_changed_answer(outcomes, case):
    outcome = outcomes[case.id]
    assert "traceback" not in outcome.answers, outcome.details
    assert "silent" not in outcome.answers, outcome.details
    file_name = Path(outcome.damaged_file).name
    for verdict, detail in zip([a for a in outcome.answers if a != "same"], outcome.details, strict=True):
        assert file_name in detail or Path(outcome.damaged_file).parent.name in detail, (verdict, detail)


def test_the_counts_meet_the_targets(outcomes, capsys):
    figures = counts(list(outcomes.values()))
    with capsys.disabled():
        print("\nfault injection:", ", ".join(f"{k} {v}" for k, v in figures.items()))
    assert figures["cases tried"] == len(CASES) >= 80
    assert figures["tracebacks"] == 0 and figures["silent wrong answers"] == 0
    assert figures["cases detected"] == figures["cases tried"]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES if c.id in REINDEX_CASES])
def test_sommelier_index_repairs_the_damage(setup, case):
    store, work, models, baseline = setup
    reindex = reindexer(_repositories(store.zoo))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = run_case(case, store.root, work, models, baseline, reindex)
    assert outcome.repaired, outcome.details


def test_sommelier_index_repairs_a_damaged_record_no_later_stage_reads(setup):
    """`model_profile` is read by the index only: re-running it alone must not run an empty wave 3 (which once
    raised `TypeError` from `materialize([])`)."""
    store, work, models, baseline = setup
    case = next(c for c in CASES if c.id == "record_model_profile:_bit-flip")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = run_case(case, store.root, work, models, baseline, reindexer(_repositories(store.zoo)))
    assert outcome.repaired, outcome.details


def test_one_models_damaged_records_do_not_fail_the_index_build(setup, tmp_path, monkeypatch):
    """A truncated `pair_bounds` of one model and `model_profile` of another: the index assets build from the
    others, leave those two out and say so (the records are not repaired here: only the index wave runs)."""
    import polars as pl
    from dagster import DagsterInstance, materialize

    from pipelines.definitions import all_assets, build_resources
    from pipelines.stages import INDEX_WAVE
    from resources.repositories import RepositoriesResource
    from resources.settings import IndexSettings
    from sommelier_core.store import DamagedArtifactWarning, ModelStore

    store, _, models, _ = setup
    root = copy_store(store.root, tmp_path / "copy")
    copy = ModelStore(root)
    for stage, model_id in (("pair_bounds", models.reference), ("model_profile", models.other)):
        path = copy.record_path(stage, model_id)
        path.write_bytes(path.read_bytes()[:60])
    registered = sorted({*pl.read_parquet(root / "index" / "resource_index.parquet")["model_id"].to_list()})
    monkeypatch.setenv("SOMMELIER_HOME", str(root))
    resources = build_resources("local") | {
        "repositories": RepositoriesResource(repositories=_repositories(store.zoo)(root)),
        "settings": IndexSettings(operator_sweep_rounds=1),
    }
    with DagsterInstance.ephemeral() as instance, pytest.warns(DamagedArtifactWarning) as caught:
        instance.add_dynamic_partitions("models", registered)
        instance.add_dynamic_partitions("devices", ["cpu"])
        result = materialize(
            all_assets, selection=list(INDEX_WAVE), instance=instance, resources=resources, raise_on_error=False
        )
    assert result.success
    named = " ".join(str(w.message) for w in caught)
    assert "pair_bounds.json" in named and "model_profile.json" in named
    semantic = pl.read_parquet(root / "index" / "semantic_index.parquet")
    resource = pl.read_parquet(root / "index" / "resource_index.parquet")
    assert models.reference not in set(semantic["reference_id"])
    assert models.other in set(semantic["reference_id"])
    assert models.other not in set(resource["model_id"]) and models.reference in set(resource["model_id"])
