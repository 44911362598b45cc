"""The embedded Dagster instance: its `dagster.yaml` (written once, upgraded from an earlier version's, a user's own
kept) and its event log storage, which keeps connections open yet stores what Dagster's own does, where another
process (the Dagster UI) reads it."""

from __future__ import annotations

import sqlite3

import pytest
import yaml
from dagster import AssetKey, DagsterInstance, StaticPartitionsDefinition, asset, materialize

from resources.dagster_instance import KeptOpenSqliteEventLogStorage
from sommelier_core.settings import write_instance_config


@asset(partitions_def=StaticPartitionsDefinition(["m1", "m2"]))
def scored(context) -> int:
    return len(context.partition_key)


@pytest.fixture
def instance(tmp_path):
    write_instance_config(tmp_path)
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        yield instance


def _event_log_dir(config) -> str:
    return yaml.safe_load(config.read_text())["event_log_storage"]["config"]["base_dir"]


def test_a_fresh_instance_directory_gets_the_embedded_config_with_its_own_event_log_path(tmp_path):
    config = write_instance_config(tmp_path / "home")
    assert yaml.safe_load(config.read_text())["event_log_storage"]["class"] == "KeptOpenSqliteEventLogStorage"
    assert _event_log_dir(config) == str((tmp_path / "home" / "history" / "runs").resolve())


def test_an_earlier_versions_config_is_upgraded_and_a_users_own_is_kept(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    assert "KeptOpenSqliteEventLogStorage" in write_instance_config(tmp_path / "old").read_text()
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "dagster.yaml").write_text("telemetry:\n  enabled: true\n")
    assert write_instance_config(tmp_path / "own").read_text() == "telemetry:\n  enabled: true\n"


def test_a_moved_store_gets_its_event_log_path_rewritten(tmp_path):
    write_instance_config(tmp_path / "before" / "dagster")
    (tmp_path / "before").rename(tmp_path / "after")
    config = write_instance_config(tmp_path / "after" / "dagster")
    assert _event_log_dir(config) == str((tmp_path / "after" / "dagster" / "history" / "runs").resolve())


def test_an_instance_opens_from_its_directory_without_dagster_home(tmp_path, monkeypatch):
    """As tools and tests open a store's instance: `DagsterInstance.local_temp(<store>/dagster)`, no environment."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    write_instance_config(tmp_path)
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        assert isinstance(instance.event_log_storage, KeptOpenSqliteEventLogStorage)
        assert materialize([scored], instance=instance, partition_key="m1").success


def test_the_instance_stores_events_through_the_kept_open_storage(instance):
    assert isinstance(instance.event_log_storage, KeptOpenSqliteEventLogStorage)
    for key in ("m1", "m2"):
        assert materialize([scored], instance=instance, partition_key=key).success
    materialized = instance.get_materialized_partitions(AssetKey("scored"))
    assert materialized == {"m1", "m2"}


def test_another_process_sees_every_event_and_the_run_file_holds_them(instance, tmp_path):
    """A second instance on the same directory stands for another process (the Dagster UI). The run's database
    file read while ignoring its write-ahead log holds the run's events: the file changed with each event, as the
    UI's watcher of that file needs."""
    result = materialize([scored], instance=instance, partition_key="m1")
    with DagsterInstance.from_config(str(tmp_path)) as other:
        assert other.get_materialized_partitions(AssetKey("scored")) == {"m1"}
        assert len(other.all_logs(result.run_id)) == len(instance.all_logs(result.run_id))
    run_file = tmp_path / "history" / "runs" / f"{result.run_id}.db"
    with sqlite3.connect(f"file:{run_file}?immutable=1", uri=True) as conn:
        (stored,) = conn.execute("select count(*) from event_logs").fetchone()
    assert stored == len(instance.all_logs(result.run_id))


def test_connections_are_kept_per_database_and_closed_on_dispose(instance):
    materialize([scored], instance=instance, partition_key="m2")
    storage = instance.event_log_storage
    assert "index" in storage._engines and len(storage._engines) >= 2  # the index and the run's database
    storage.close_connections()
    assert not storage._engines
    assert instance.get_materialized_partitions(AssetKey("scored")) == {"m2"}  # reopened on use
