"""The in-process driver behind `sommelier index`, on inputs that need no models."""

from __future__ import annotations

from dagster import DagsterInstance

from pipelines.definitions import build_resources
from pipelines.index_run import run_index
from resources.repositories import RepositoriesResource, RepositoryConfig
from resources.settings import IndexSettings
from resources.store import ModelStoreResource, StoreIOManager
from tests.conftest import mlflow_client
from tests.digits_models import fixed_digits_classifier
from tests.store_records import onnx_model, small_record


def test_no_listed_models_leaves_the_index_untouched_and_says_why(tmp_path):
    (tmp_path / "empty").mkdir()
    index_file = tmp_path / "index" / "semantic_index.parquet"
    index_file.parent.mkdir()
    index_file.write_bytes(b"previous index")
    resources = build_resources("local") | {
        "store": ModelStoreResource(root=str(tmp_path)),
        "io_manager": StoreIOManager(root=str(tmp_path)),
        "repositories": RepositoriesResource(
            repositories=[
                RepositoryConfig(kind="onnx", name="empty", location=[str(tmp_path / "empty")]),
                RepositoryConfig(kind="torchhub", name="gone", location=[str(tmp_path / "missing-hub")]),
            ]
        ),
    }
    lines: list[str] = []
    with DagsterInstance.ephemeral() as instance:
        summary = run_index(echo=lines.append, instance=instance, resources=resources)
    assert "<repositories>" in summary.failures and "missing-hub" in summary.failures["<repositories>"]
    assert any("gone" in line and "missing-hub" in line for line in lines)
    assert any("The index is left as it was" in line for line in lines)
    assert index_file.read_bytes() == b"previous index"


def test_a_model_lacking_only_a_new_stage_reruns_that_stage_and_what_reads_it(tmp_path):
    from pathlib import Path

    from pipelines.index_run import _stage_parents
    from pipelines.stages import PER_MODEL_STAGES, is_current, stages_to_run
    from sommelier_core.models import FetchedModel, ModelEntry
    from sommelier_core.store import ModelStore

    store = ModelStore(tmp_path)
    entry = ModelEntry("r/m", "r", "m", "v1", "onnx", "classification")
    assert stages_to_run(store, entry, _stage_parents()) == PER_MODEL_STAGES  # never fetched
    store.save_record("fetched_model", "r/m", FetchedModel(entry, "onnx", Path("m.onnx")))
    for stage in PER_MODEL_STAGES[1:]:
        store.save_record(stage, "r/m", small_record(stage, "r/m", tmp_path))
    assert is_current(store, entry)
    store.record_path("model_cushions", "r/m").unlink()  # e.g. a stage added by an upgrade
    assert stages_to_run(store, entry, _stage_parents()) == ("model_cushions", "pair_bounds")
    assert not is_current(store, entry)
    changed = ModelEntry("r/m", "r", "m", "v2", "onnx", "classification")
    assert stages_to_run(store, changed, _stage_parents()) == PER_MODEL_STAGES


def test_a_device_profile_of_another_onnx_file_is_stale_and_a_missing_one_is_too(tmp_path):
    from pipelines.stages import stale_devices
    from sommelier_core.profiling import DeviceProfile
    from sommelier_core.store import ModelStore

    store = ModelStore(tmp_path)
    assert stale_devices(store, "r/m", ["cpu"]) == []  # not converted yet: nothing to profile
    store.save_record("onnx_model", "r/m", onnx_model("r/m", tmp_path, fingerprint="v1-file"))
    store.save_record("device_profile@cpu", "r/m", DeviceProfile("r/m", "cpu", (), (), 0.0, "v1-file"))
    assert stale_devices(store, "r/m", ["cpu", "cuda"]) == ["cuda"]
    republished = onnx_model("r/m", tmp_path, fingerprint="v2-file")  # other weights
    store.save_record("onnx_model", "r/m", republished)
    assert stale_devices(store, "r/m", ["cpu", "cuda"]) == ["cpu", "cuda"]
    store.save_record("device_profile@cpu", "r/m", DeviceProfile("r/m", "cpu", (), (), 0.0))  # before fingerprints
    assert stale_devices(store, "r/m", ["cpu"]) == ["cpu"]


def test_a_model_no_longer_listed_leaves_the_indexes_and_a_failed_repository_keeps_its_models(tmp_path, monkeypatch):
    import polars as pl

    from sommelier_core.ingest.repositories.listing import Listing

    monkeypatch.setenv("SOMMELIER_HOME", str(tmp_path))
    folder = tmp_path / "onnx"
    folder.mkdir()
    for seed, name in enumerate(("a", "b", "c")):
        fixed_digits_classifier(folder / f"{name}.onnx", seed)
    resources = build_resources("local") | {
        "repositories": RepositoriesResource(
            repositories=[RepositoryConfig(kind="onnx", name="lab", location=[str(folder)])]
        ),
        "settings": IndexSettings(operator_sweep=False, latency_repeats=5, profile_runs=2),  # removal is the point
    }
    (tmp_path / "dagster").mkdir()
    instance = DagsterInstance.local_temp(str(tmp_path / "dagster"))
    first = run_index(echo=print, instance=instance, resources=resources)
    assert first.failures == {} and first.removed == []
    (folder / "c.onnx").unlink()
    lines: list[str] = []
    second = run_index(echo=lines.append, instance=instance, resources=resources)
    assert second.removed == ["lab/c"] and any("lab/c" in line for line in lines)
    assert sorted(instance.get_dynamic_partitions("models")) == ["lab/a", "lab/b"]
    semantic = pl.read_parquet(tmp_path / "index" / "semantic_index.parquet")
    resource = pl.read_parquet(tmp_path / "index" / "resource_index.parquet")
    assert set(semantic["reference_id"]) | set(semantic["candidate_id"]) == {"lab/a", "lab/b"}
    assert set(resource["model_id"]) == {"lab/a", "lab/b"}
    assert (tmp_path / "models" / "lab__c").exists()  # its records stay: listed again, it is not re-run
    # a repository that cannot be listed keeps its models; one no longer configured loses them
    listing = Listing([], ["lab: unreachable"], frozenset({"lab"}))
    assert listing.removed(["lab/a", "old/x"]) == ["old/x"]


def test_each_store_indexed_in_one_process_logs_to_its_own_mlflow(tmp_path, monkeypatch):
    import polars as pl

    from resources.mlflow_tracker import MlflowTracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for store in ("first", "second"):
        monkeypatch.setenv("SOMMELIER_HOME", str(tmp_path / store))
        MlflowTracker().log_index_run(pl.DataFrame({"pair": [store]}), {"models": 1.0})
    for store in ("first", "second"):
        client = mlflow_client(tmp_path / store / 'mlflow' / 'mlflow.db')
        experiment = client.get_experiment_by_name("sommelier")
        assert len(client.search_runs([experiment.experiment_id])) == 1, store
