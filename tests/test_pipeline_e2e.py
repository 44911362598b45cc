"""End to end on the small zoo: real Dagster, MLflow and ONNX Runtime, from repositories to a query."""

from __future__ import annotations

import mlflow
import polars as pl
import pytest
from dagster import AssetKey

import sommelier_core
from sommelier_core.errors import UnknownModel
from sommelier_core.querying.api import load_index
from sommelier_core.querying.language import QueryError
from sommelier_core.zoo import load_manifest
from tests.conftest import mlflow_client

STAGES = ("fetched_model", "onnx_model", "model_outputs", "model_profile", "peers", "pair_scores", "pair_bounds")


def _zoo_ids(store) -> list[str]:
    manifest = load_manifest(store.zoo)
    return sorted(("zoo-torch/" if m.framework == "torch" else "zoo-tf/") + m.name for m in manifest.models)


def test_every_zoo_model_goes_through_every_stage(indexed_store):
    assert not indexed_store.first_run.failures
    assert indexed_store.first_run.up_to_date == []
    resource = pl.read_parquet(indexed_store.root / "index" / "resource_index.parquet")
    semantic = pl.read_parquet(indexed_store.root / "index" / "semantic_index.parquet")
    zoo_ids = _zoo_ids(indexed_store)
    assert set(zoo_ids) <= set(resource["model_id"].to_list())
    digits_models = [m for m in zoo_ids if "1d" not in m]  # the lone mnist1d model has no compatible peer
    assert set(digits_models) <= set(semantic["reference_id"].to_list())
    partitions = set(indexed_store.instance.get_dynamic_partitions("models"))
    assert set(zoo_ids) | {"extra/two_class"} <= partitions
    for stage in STAGES:
        materialized = indexed_store.instance.get_materialized_partitions(AssetKey(stage))
        assert set(zoo_ids) <= materialized, stage


def test_torch_and_keras_models_are_converted_with_recorded_parity(indexed_store):
    from sommelier_core.store import ModelStore

    store = ModelStore(indexed_store.root)
    converters = set()
    for model_id in _zoo_ids(indexed_store):
        conversion = store.load_record("onnx_model", model_id)
        assert conversion.max_abs_error <= conversion.tolerance * 10
        converters.add(conversion.converter)
    assert {"torch.onnx.export", "tf2onnx"} <= converters


def test_each_model_is_compared_with_up_to_five_compatible_peers(indexed_store):
    from sommelier_core.store import ModelStore

    store = ModelStore(indexed_store.root)
    zoo_ids = _zoo_ids(indexed_store)
    for model_id in [m for m in zoo_ids if "1d" not in m]:  # the lone mnist1d model has no compatible peer
        peers = store.load_record("peers", model_id)
        assert 0 < len(peers.peers) <= 5
        assert "extra/two_class" not in peers.peers
    assert store.load_record("peers", "extra/two_class").peers == ()


def test_noise_and_pruned_variants_are_found_with_bounds_that_contain_their_difference(indexed_store):
    manifest = load_manifest(indexed_store.zoo)
    variants = [m for m in manifest.models if m.transformation in ("noise", "prune")]
    assert {m.transformation for m in variants} == {"noise", "prune"}
    for variant in variants:
        prefix = "zoo-torch/" if variant.framework == "torch" else "zoo-tf/"
        hits = sommelier_core.query(ref=prefix + variant.parent, within=1.0, index_dir=indexed_store.root / "index")
        hit = {h.model_id: h for h in hits}[prefix + variant.name]
        # measured or transitive, the bounds contain the difference measured on the same validation data
        assert hit.lower_bound - 1e-9 <= variant.disagreement_from_parent <= hit.upper_bound + 1e-9, variant.name
        assert hit.onnx_path.endswith(".onnx") and hit.profile.macs > 0


def test_query_applies_relative_budgets_against_the_reference(indexed_store):
    index = load_index(indexed_store.root / "index")
    ref = _zoo_ids(indexed_store)[0]
    reference = index.resource.filter(pl.col("model_id") == ref).row(0, named=True)
    hits = sommelier_core.query(ref=ref, within=1.0, flops=0.5, memory=0.8, index=index)
    for h in hits:
        assert h.profile.flops <= 0.5 * reference["flops"]
        assert h.profile.memory_bytes <= 0.8 * reference["memory_bytes"]
    everything = sommelier_core.query(ref=ref, within=1.0, index=index)
    assert len(hits) <= len(everything)
    assert [h.upper_bound for h in everything] == sorted(h.upper_bound for h in everything)


def test_unknown_reference_is_a_clear_error_naming_it(indexed_store):
    with pytest.raises(UnknownModel, match="'zoo-torch/no_such_model' is not in the index"):
        sommelier_core.query(ref="zoo-torch/no_such_model", index_dir=indexed_store.root / "index")


def test_incompatible_model_is_indexed_for_resources_but_has_no_equivalents(indexed_store):
    hits = sommelier_core.query(ref="extra/two_class", within=1.0, index_dir=indexed_store.root / "index")
    assert hits == []


def test_corrupt_onnx_fails_only_its_own_partition_and_keeps_the_index(indexed_store):
    failures = indexed_store.second_run.failures
    assert set(failures) == {"extra/broken"}
    assert "broken.onnx" in failures["extra/broken"]
    before = indexed_store.index_after_first_run
    after = pl.read_parquet(indexed_store.root / "index" / "resource_index.parquet")
    assert set(before["resource_index"]["model_id"].to_list()) == set(after["model_id"].to_list())
    assert not indexed_store.first_run.failures
    assert indexed_store.first_run.up_to_date == []


def test_mlflow_holds_a_run_per_model_with_its_onnx_artifact_and_an_index_run(indexed_store):
    mlflow.set_tracking_uri(f"sqlite:///{indexed_store.root / 'mlflow' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["sommelier"], output_format="list")
    model_runs = [r for r in runs if r.data.tags.get("sommelier.kind") == "model"]
    index_runs = [r for r in runs if r.data.tags.get("sommelier.kind") == "index"]
    assert {r.data.tags["sommelier.model_id"] for r in model_runs} >= set(_zoo_ids(indexed_store))
    assert len(index_runs) == 2
    sample = model_runs[0]
    assert sample.data.metrics["macs"] > 0 and "latency_ms_cpu" in sample.data.metrics
    logged = mlflow.search_logged_models(experiment_ids=[sample.info.experiment_id], output_format="list")
    assert any(m.source_run_id == sample.info.run_id for m in logged)
    artifacts = [a.path for a in mlflow.MlflowClient().list_artifacts(index_runs[0].info.run_id)]
    assert "pair_scores.csv" in artifacts


def test_each_models_onnx_file_is_kept_once_across_the_store_and_mlflow(indexed_store):
    import os
    from urllib.parse import unquote, urlparse

    from sommelier_core.store import ModelStore

    client = mlflow_client(indexed_store.root / 'mlflow' / 'mlflow.db')
    store = ModelStore(indexed_store.root)
    experiment = client.get_experiment_by_name("sommelier")
    logged = {m.tags.get("sommelier.model_id"): m for m in client.search_logged_models([experiment.experiment_id])}
    for model_id in _zoo_ids(indexed_store):
        onnx_file = store.load_record("onnx_model", model_id).onnx_path
        mlflow_file = unquote(urlparse(logged[model_id].artifact_location).path) + "/model.onnx"
        assert os.path.samefile(onnx_file, mlflow_file), model_id  # one file under two names, not a copy


def test_second_run_only_runs_the_new_model(indexed_store):
    assert set(indexed_store.second_run.up_to_date) == set(indexed_store.first_run.models)
    assert set(indexed_store.second_run.models) - set(indexed_store.second_run.up_to_date) == {"extra/broken"}


def test_sensor_requests_no_run_for_models_already_indexed(indexed_store):
    from dagster import build_sensor_context

    from pipelines.sensors import make_repository_sensor

    sensor = make_repository_sensor("index_models")
    resources = {"repositories": indexed_store.resources["repositories"], "store": indexed_store.resources["store"]}
    result = sensor(build_sensor_context(instance=indexed_store.instance, resources=resources))
    assert [r.partition_key for r in result.run_requests] == ["extra/broken"]
    assert result.dynamic_partitions_requests == []


def test_queries_measure_transitive_candidates_from_stored_outputs_as_the_index_would(indexed_store):
    from sommelier_core.equivalence.compare import compare_outputs
    from sommelier_core.equivalence.pair_measure import BoundSettings, bound_stored_pair
    from sommelier_core.store import ModelStore

    index_dir = indexed_store.root / "index"
    settings = BoundSettings.load(index_dir)
    assert settings is not None and settings.mode == "statistical"
    store = ModelStore(indexed_store.root)
    transitive = 0
    for ref in _zoo_ids(indexed_store):
        alone = {h.model_id: h for h in sommelier_core.query(ref=ref, within=1.0, index_dir=index_dir, refine=0)}
        refined = sommelier_core.query(ref=ref, within=1.0, index_dir=index_dir)
        assert {h.model_id for h in refined} == set(alone)
        task = store.load_record("model_outputs", ref).task
        for hit in refined:
            assert hit.provenance in ("measured", "identical"), (ref, hit.model_id)
            transitive += alone[hit.model_id].provenance == "transitive"
            assert hit.upper_bound <= alone[hit.model_id].upper_bound + 1e-12
            direct = compare_outputs(ref, store.load_outputs(ref), hit.model_id, store.load_outputs(hit.model_id), task)
            expected, _ = bound_stored_pair(direct, settings, store)
            assert hit.upper_bound <= expected.upper + 1e-6
            assert hit.lower_bound - 1e-6 <= direct.difference <= hit.upper_bound + 1e-6
    assert transitive > 0  # the small zoo leaves some pairs to transitivity, so refinement had work to do


def test_the_index_records_input_resolutions_and_a_query_at_one_keeps_the_models_that_run_there(indexed_store):
    index = load_index(indexed_store.root / "index")
    resolution = dict(index.resource.select("model_id", "resolution").unique().iter_rows())
    # digits models take (N, 1, 8, 8): resolution 8; MNIST-1D models take (N, 40) vectors: no spatial size
    assert set(resolution.values()) <= {8, None} and 8 in resolution.values()
    assert not index.resource["dynamic_resolution"].any()
    ref = next(m for m in _zoo_ids(indexed_store) if resolution[m] == 8)
    plain = sommelier_core.query(ref=ref, within=1.0, memory=0.8, index=index, refine=0)
    at_8 = sommelier_core.query(ref=ref, within=1.0, memory=0.8, resolution=8, index=index, refine=0)
    assert [h.model_id for h in at_8] == [h.model_id for h in plain]
    with pytest.raises(QueryError, match=f"'{ref}' cannot run at resolution 16: fixed input resolution 8"):
        sommelier_core.run_query(f"FIND MODELS LIKE '{ref}' RESOLUTION 16", index=index)
