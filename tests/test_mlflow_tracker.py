"""The MLflow tracker: an ML experiment, one run per model version (a re-run updates it), the Model Registry
entry named after the model with its accuracy, peers and bounds, and ids that need quoting in filter strings."""

from __future__ import annotations

import mlflow
import pytest

from resources.mlflow_tracker import (
    EXPERIMENT_KIND_TAG,
    ML_EXPERIMENT_KIND,
    MlflowTracker,
    filter_literal,
    link_artifact,
    model_key,
    registered_name,
)
from sommelier_core.settings import MLFLOW_ARTIFACTS_DIR_ENV
from tests.conftest import two_class_onnx


@pytest.fixture
def tracker(tmp_path, monkeypatch) -> MlflowTracker:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("SOMMELIER_MLFLOW_UI", raising=False)
    monkeypatch.setenv("SOMMELIER_HOME", str(tmp_path))
    return MlflowTracker()


def _client(tmp_path) -> mlflow.MlflowClient:
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    return mlflow.MlflowClient(uri, registry_uri=uri)


def _model_runs(client, model_id):
    experiment = client.get_experiment_by_name("sommelier")
    runs = client.search_runs([experiment.experiment_id])
    return [r for r in runs if r.data.tags.get("sommelier.model_id") == model_id]


def _experiment_id(client) -> str:
    return client.get_experiment_by_name("sommelier").experiment_id


def test_the_experiment_is_of_the_ml_kind_not_genai(tracker, tmp_path):
    tracker.model_run("lab/a", "f1")
    experiment = _client(tmp_path).get_experiment_by_name("sommelier")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == ML_EXPERIMENT_KIND == "custom_model_development"


def test_a_model_version_has_one_run_that_a_rerun_updates_and_a_new_version_gets_its_own(tracker, tmp_path):
    onnx_path = two_class_onnx(tmp_path / "a.onnx")
    first = tracker.log_model_run("lab/a", "f1", onnx_path, {"converter": "onnx"}, {"macs": 128.0})
    again = tracker.log_model_run("lab/a", "f1", onnx_path, {"converter": "onnx"}, {"macs": 130.0})
    latency = tracker.log_to_model_run("lab/a", "f1", metrics={"latency_ms_cpu": 0.5})
    assert first == again == latency
    client = _client(tmp_path)
    (run,) = _model_runs(client, "lab/a")
    assert run.data.metrics == {"macs": 130.0, "latency_ms_cpu": 0.5}
    assert run.data.params == {"converter": "onnx"}
    republished = tracker.log_model_run("lab/a", "f2", onnx_path, {"converter": "onnx"}, {"macs": 128.0})
    assert republished != first and len(_model_runs(client, "lab/a")) == 2
    versions = client.search_model_versions("name = 'lab__a'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert {v.run_id for v in versions} == {first, republished}


def test_the_registered_model_is_named_after_the_id_and_carries_accuracy_peers_and_bounds(tracker, tmp_path):
    onnx_path = two_class_onnx(tmp_path / "a.onnx")
    tracker.log_to_model_run("zoo/cnn-w32", "f1", tags={"accuracy": "0.91"})  # outputs run before the profile
    run_id = tracker.log_model_run("zoo/cnn-w32", "f1", onnx_path, {}, {"macs": 1.0})
    tracker.log_to_model_run("zoo/cnn-w32", "f1", tags={"peers": "zoo/mlp-w64", "bounds": "zoo/mlp-w64 ≤ 0.12"})
    client = _client(tmp_path)
    registered = client.get_registered_model("zoo__cnn-w32")
    assert registered.tags["sommelier.model_id"] == "zoo/cnn-w32"
    assert {k: registered.tags[k] for k in ("accuracy", "peers", "bounds")} == {
        "accuracy": "0.91",
        "peers": "zoo/mlp-w64",
        "bounds": "zoo/mlp-w64 ≤ 0.12",
    }
    (version,) = client.search_model_versions("name = 'zoo__cnn-w32'")
    assert version.run_id == run_id and version.tags["accuracy"] == "0.91" and version.tags["bounds"]
    (logged,) = client.search_logged_models([_experiment_id(client)], filter_string=f"source_run_id = '{run_id}'")
    assert logged.name == "zoo__cnn-w32"
    assert [a.path for a in client.list_logged_model_artifacts(logged.model_id)] == ["model.onnx"]


@pytest.mark.parametrize("model_id", ["lab/it's", 'lab/say "hi"', 'lab/it\'s "both"'])
def test_a_model_id_with_quotes_finds_its_run_and_registers(tracker, tmp_path, model_id):
    onnx_path = two_class_onnx(tmp_path / "q.onnx")
    first = tracker.log_model_run(model_id, "f1", onnx_path, {}, {"macs": 1.0})
    assert tracker.log_to_model_run(model_id, "f1", metrics={"latency_ms_cpu": 1.0}) == first
    client = _client(tmp_path)
    assert len(_model_runs(client, model_id)) == 1
    assert client.get_registered_model(registered_name(model_id)).tags["sommelier.model_id"] == model_id


def test_filter_literals_quote_what_mlflow_can_express_and_refuse_what_it_cannot():
    assert filter_literal("zoo/a") == "'zoo/a'"
    assert filter_literal("it's") == '"it\'s"'
    with pytest.raises(ValueError, match="both quote"):
        filter_literal('it\'s "x"')
    assert model_key("lab/it's") == model_key("lab/it's") != model_key("lab/its")
    assert set(model_key("lab/it's")) <= set("0123456789abcdef")


def test_registered_names_keep_the_id_readable_within_mlflows_naming_rules():
    assert registered_name("zoo-torch/cnn-w32") == "zoo-torch__cnn-w32"
    assert registered_name("lab/it's.v2:1") == "lab__it_s_v2_1"


def test_links_point_at_the_mlflow_ui(tracker):
    run_id, created = tracker.model_run("lab/a", "f1")
    assert created and tracker.model_run("lab/a", "f1") == (run_id, False)
    assert tracker.run_url(run_id).startswith("http://127.0.0.1:5000/#/experiments/")
    assert tracker.run_url(run_id).endswith(f"/runs/{run_id}?workflowType=machine_learning")
    assert MlflowTracker(ui_url="http://mlflow.lab:80/").registered_model_url("zoo/a") == (
        "http://mlflow.lab:80/#/models/zoo__a?workflowType=machine_learning"
    )


def test_sommelier_ui_starts_mlflows_ui_with_this_python_not_a_bare_mlflow_on_path():
    import sys

    from sommelier_cli.ui import dagster_command, mlflow_command

    command = mlflow_command(5001, tracking_uri="sqlite:////store/mlflow/mlflow.db")
    assert command[:4] == [sys.executable, "-m", "mlflow", "ui"]
    assert command[command.index("--backend-store-uri") + 1] == "sqlite:////store/mlflow/mlflow.db"
    assert command[command.index("--port") + 1] == "5001"
    assert dagster_command(3001)[:4] == [sys.executable, "-m", "dagster", "dev"]


def test_the_logged_onnx_file_is_the_store_file_itself_not_a_second_copy(tracker, tmp_path):
    import os
    from urllib.parse import unquote, urlparse

    (tmp_path / "models" / "lab__a").mkdir(parents=True)
    store_file = two_class_onnx(tmp_path / "models" / "lab__a" / "model.onnx")
    run_id = tracker.log_model_run("lab/a", "f1", store_file, {}, {"macs": 1.0})
    client = _client(tmp_path)
    (logged,) = client.search_logged_models([_experiment_id(client)], filter_string=f"source_run_id = '{run_id}'")
    logged_file = unquote(urlparse(logged.artifact_location).path) + "/model.onnx"
    assert os.path.samefile(logged_file, store_file) and os.stat(store_file).st_nlink == 2  # one file, two names
    (version,) = client.search_model_versions("name = 'lab__a'")
    assert version.source == logged.artifact_location  # what the registry serves is that file
    tracker.log_model_run("lab/a", "f1", store_file, {}, {"macs": 1.0})
    assert os.stat(store_file).st_nlink == 2  # a re-run links nothing more


def test_a_logged_model_left_unfinished_by_a_killed_run_is_completed_not_duplicated(tracker, tmp_path):
    from mlflow.entities import LoggedModelStatus

    onnx_path = two_class_onnx(tmp_path / "a.onnx")
    run_id, _ = tracker.model_run("lab/a", "f1")
    client = _client(tmp_path)
    client.create_logged_model(_experiment_id(client), name="lab__a", source_run_id=run_id)  # killed right after
    assert tracker.log_model_run("lab/a", "f1", onnx_path, {}, {"macs": 1.0}) == run_id
    (logged,) = client.search_logged_models([_experiment_id(client)], filter_string=f"source_run_id = '{run_id}'")
    assert logged.status == LoggedModelStatus.READY
    assert [a.path for a in client.list_logged_model_artifacts(logged.model_id)] == ["model.onnx"]
    assert len(client.search_model_versions("name = 'lab__a'")) == 1


def test_runs_left_running_by_a_gone_process_are_killed_and_a_live_ones_kept(tracker, tmp_path):
    from resources.mlflow_tracker import KIND_TAG, OWNER_TAG
    from sommelier_core.store.store_lock import owner_label

    client = _client(tmp_path)
    experiment_id = tracker._experiment_id(client)
    gone = subprocess_pid_that_exited()
    abandoned = client.create_run(experiment_id, tags={KIND_TAG: "index", OWNER_TAG: owner_label(gone)})
    live = client.create_run(experiment_id, tags={KIND_TAG: "index", OWNER_TAG: owner_label()})
    assert tracker.terminate_abandoned_runs() == [abandoned.info.run_id]
    assert client.get_run(abandoned.info.run_id).info.status == "KILLED"
    assert client.get_run(live.info.run_id).info.status == "RUNNING"


def subprocess_pid_that_exited() -> int:
    """The pid of a process that ran and is gone (reaped)."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_served_artifact_location_on_the_shared_store_gets_a_hard_link_not_an_upload(tmp_path, monkeypatch):
    source = tmp_path / "store" / "models" / "lab__m" / "model.onnx"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"onnx")
    served = tmp_path / "store" / "mlflow-artifacts"
    location = "mlflow-artifacts:/1/models/m-abc/artifacts"

    monkeypatch.delenv(MLFLOW_ARTIFACTS_DIR_ENV, raising=False)
    assert not link_artifact(source, location, "model.onnx")  # where the server keeps it is unknown: upload

    monkeypatch.setenv(MLFLOW_ARTIFACTS_DIR_ENV, str(served))
    assert link_artifact(source, location, "model.onnx")
    target = served / "1" / "models" / "m-abc" / "artifacts" / "model.onnx"
    assert target.samefile(source)
    assert link_artifact(source, location, "model.onnx")  # again: the same link, nothing more
    assert source.stat().st_nlink == 2
