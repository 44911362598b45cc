"""The in-process driver behind `sommelier index`, on inputs that need no models."""

from __future__ import annotations

from dagster import DagsterInstance

from pipelines.definitions import build_resources
from pipelines.index_run import run_index
from resources.repositories import RepositoriesResource, RepositoryConfig
from resources.store import ModelStoreResource, StoreIOManager


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
        store.save_record(stage, "r/m", object())
    assert is_current(store, entry)
    store.record_path("model_cushions", "r/m").unlink()  # e.g. a stage added by an upgrade
    assert stages_to_run(store, entry, _stage_parents()) == ("model_cushions", "pair_bounds")
    assert not is_current(store, entry)
    changed = ModelEntry("r/m", "r", "m", "v2", "onnx", "classification")
    assert stages_to_run(store, changed, _stage_parents()) == PER_MODEL_STAGES


def test_a_device_profile_of_another_onnx_file_is_stale_and_a_missing_one_is_too(tmp_path):
    from types import SimpleNamespace

    from pipelines.stages import stale_devices
    from sommelier_core.operator_latency import DeviceProfile
    from sommelier_core.store import ModelStore

    store = ModelStore(tmp_path)
    assert stale_devices(store, "r/m", ["cpu"]) == []  # not converted yet: nothing to profile
    store.save_record("onnx_model", "r/m", SimpleNamespace(fingerprint="v1-file"))
    store.save_record("device_profile@cpu", "r/m", DeviceProfile("r/m", "cpu", (), (), 0.0, "v1-file"))
    assert stale_devices(store, "r/m", ["cpu", "cuda"]) == ["cuda"]
    store.save_record("onnx_model", "r/m", SimpleNamespace(fingerprint="v2-file"))  # republished, other weights
    assert stale_devices(store, "r/m", ["cpu", "cuda"]) == ["cpu", "cuda"]
    store.save_record("device_profile@cpu", "r/m", DeviceProfile("r/m", "cpu", (), (), 0.0))  # before fingerprints
    assert stale_devices(store, "r/m", ["cpu"]) == ["cpu"]
