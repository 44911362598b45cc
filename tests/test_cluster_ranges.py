"""The cluster driver's partition-key ranges (issue 14), without a cluster: how many models a run covers for a
wave on N workers, how a wave's models are cut into runs, and that a failed range is run again one model per run
from the stages it did not finish. The cluster itself runs them in `tests/test_cluster.py`."""

from __future__ import annotations

import math
import multiprocessing

import pytest

from pipelines import cluster_run
from pipelines.cluster_run import ClusterRun, drive_wave, in_ranges, pool_size, range_size

ORDER = [f"lab/m{i:02d}" for i in range(60)]


def _single(stages: tuple[str, ...], key: str) -> ClusterRun:
    return ClusterRun(stages, key, key, key)


@pytest.mark.parametrize(
    ("partitions", "workers", "per_run", "expected"),
    [
        (48, 2, 25, 16),  # 3 runs: one per worker and one more, whose next step waits queued
        (48, 1, 25, 24),  # 2 runs
        (1000, 2, 25, 25),  # never more than the setting: 40 runs, `pool_size` of them in flight at once
        (4, 2, 25, 2),
        (7, 2, 25, 3),  # rounded up: 3 runs, not 4
        (2, 2, 25, 1),  # fewer models than runs wanted: one model per run
        (48, 2, 1, 1),  # partitions_per_run 1: one model per run, as before ranges
        (0, 2, 25, 1),  # an empty wave still gets a valid size
    ],
)
def test_the_range_size_cuts_a_wave_into_one_run_per_worker_and_one_more(partitions, workers, per_run, expected):
    assert range_size(partitions, workers, per_run) == expected


def test_ranges_of_that_size_cover_every_model_once_in_as_few_runs_as_keep_the_workers_busy():
    for models in (7, 13, 48, 49, 60):
        for workers in (1, 2, 3):
            keys = ORDER[:models]
            size = range_size(len(keys), workers, 25)
            runs = in_ranges(lambda _k: ("fetched_model",), keys, ORDER, size, _single)
            covered = [m.partition_key for r in runs for m in (r.members or (r,))]
            assert covered == keys
            if size < 25:  # not capped by partitions_per_run: one run per worker and one more, all in flight
                assert len(runs) <= workers + 1 <= pool_size(workers)
                # and the runs are as large as that allows: one model fewer per run would need more runs
                assert size == 1 or math.ceil(len(keys) / (size - 1)) > workers + 1
            else:
                assert len(runs) == math.ceil(len(keys) / 25)


def test_a_wave_is_cut_into_range_runs_of_models_that_need_the_same_stages():
    plan = {key: ("fetched_model", "onnx_model") for key in ORDER[:6]} | {ORDER[3]: ("onnx_model",)}
    runs = in_ranges(plan.__getitem__, ORDER[:6], ORDER, 2, _single)
    # lab/m03 needs only onnx_model: a run of its own, and it splits the others' consecutive ranges around it
    assert [(r.stages, r.partition_range or r.partition_key) for r in runs] == [
        (("fetched_model", "onnx_model"), (ORDER[0], ORDER[1])),
        (("fetched_model", "onnx_model"), ORDER[2]),
        (("fetched_model", "onnx_model"), (ORDER[4], ORDER[5])),
        (("onnx_model",), ORDER[3]),
    ]
    assert runs[0].size == 2 and runs[1].size == 1 and runs[0].label == f"{ORDER[0]} … {ORDER[1]}"
    assert runs[0].job_name == "index_models"


def test_a_failed_range_splits_into_its_models_from_the_stages_it_did_not_finish():
    (run,) = in_ranges(lambda _k: ("fetched_model", "onnx_model", "model_outputs"), ORDER[:3], ORDER, 3, _single)
    split = run.split(("onnx_model", "model_outputs"))
    assert [(r.partition_key, r.failure_key, r.stages, r.members) for r in split] == [
        (key, key, ("onnx_model", "model_outputs"), ()) for key in ORDER[:3]
    ]


def _fail_ranges_holding_m01(run: ClusterRun, owner: str):
    """Stands in for `execute_on_cluster` in the driver's pool processes: a run fails when it covers lab/m01,
    having finished its first stage."""
    keys = [m.partition_key for m in run.members] or [run.partition_key]
    if "lab/m01" in keys:
        return False, f"fetched_model: ValueError: {keys} broken", "run-id", frozenset(run.stages[:1])
    return True, "", "run-id", frozenset(run.stages)


def test_the_runs_a_failed_range_is_split_into_are_driven_in_the_same_wave(monkeypatch):
    monkeypatch.setattr(cluster_run, "execute_on_cluster", _fail_ranges_holding_m01)  # forked processes see it
    runs = in_ranges(lambda _k: ("fetched_model", "onnx_model"), ORDER[:6], ORDER, 3, _single)
    outcomes: list[tuple[str, bool, tuple[str, ...]]] = []

    def on_result(run: ClusterRun, ok: bool, message: str, finished: frozenset[str]):
        outcomes.append((run.label, ok, run.stages))
        if not ok and run.members:
            return run.split(tuple(s for s in run.stages if s not in finished))
        return []

    drive_wave(runs, workers=1, on_result=on_result, on_stop=lambda in_flight: None)
    assert sorted(outcomes) == sorted(
        [
            (f"{ORDER[0]} … {ORDER[2]}", False, ("fetched_model", "onnx_model")),
            (f"{ORDER[3]} … {ORDER[5]}", True, ("fetched_model", "onnx_model")),
            (ORDER[0], True, ("onnx_model",)),
            (ORDER[1], False, ("onnx_model",)),
            (ORDER[2], True, ("onnx_model",)),
        ]
    )
    assert multiprocessing.active_children() == []


def _executor_tick() -> float:
    import dagster_celery.core_execution_loop

    return dagster_celery.core_execution_loop.TICK_SECONDS


def test_the_runs_celery_executors_look_at_their_steps_four_times_a_second():
    pool = cluster_run.run_pool(1)
    try:
        assert pool.submit(_executor_tick).result(timeout=60) == cluster_run.EXECUTOR_TICK_S == 0.25
    finally:
        pool.shutdown()


class _EventLog:
    """An event log storage's `has_table`, counting what it asks of its database."""

    def __init__(self) -> None:
        self.tables = {"event_logs"}
        self.asked: list[str] = []

    def has_table(self, table_name: str) -> bool:
        self.asked.append(table_name)
        return table_name in self.tables


def test_an_event_log_asks_its_database_about_a_table_until_the_table_is_there():
    log = _EventLog()
    cluster_run.remember_tables(log)
    cluster_run.remember_tables(log)  # a worker's instance is pooled once, but twice must not wrap it twice
    assert [log.has_table("event_logs") for _ in range(3)] == [True, True, True]
    assert log.has_table("asset_event_tags") is False
    log.tables.add("asset_event_tags")  # created meanwhile (a migration)
    assert log.has_table("asset_event_tags") is True
    assert log.has_table("asset_event_tags") is True
    assert log.asked == ["event_logs", "asset_event_tags", "asset_event_tags"]


def test_a_worker_imports_what_its_steps_import_before_it_is_ready():
    import subprocess
    import sys

    check = (
        "import sys; import deploy.celery_app as app; from celery.signals import worker_init;"
        "before = [m for m in app.STEP_MODULES if m in sys.modules]; worker_init.send(sender=None);"
        "print(before, all(m in sys.modules for m in app.STEP_MODULES))"
    )
    out = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True, cwd=cluster_run.REPO_ROOT
    )
    before, all_imported = out.stdout.rsplit(" ", 1)
    assert all_imported.strip() == "True"
    assert "mlflow" not in before and "sklearn.datasets" not in before
