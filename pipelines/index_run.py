"""`sommelier index`: materialize every asset in process, model by model, with visible progress.

`dagster asset materialize --select '*'` refuses partitioned assets without a partition, so this
driver registers a `models` partition per listed model and a `devices` partition per device present,
and runs the per-model stages in waves — first fetch/convert/outputs/cushions/profile for every
model, then each model's latency profile on each device (model × device partitions) and each
device's operator table, then peers/compare/bound (peers need the other models' stored outputs) —
and finally the two index assets. A model that fails a stage is reported and skipped; the others
go on, and the index is built from whatever succeeded. Every run is one of the named jobs of
`pipelines.jobs` (the stages a model needs selected from it) with its asset checks, labelled with the
workspace's code location, so the Dagster UI lists these runs under their jobs and on the Overview timeline.

Crash consistency (issue 14): `main` holds the store lock (`sommelier_core.store.store_lock`) for the whole run, so
two `sommelier index` on one store never do the same work; it first marks the runs a killed index run left open
(Dagster runs STARTED, MLflow runs RUNNING, whose owner process is gone) as canceled / killed; SIGINT and SIGTERM
stop it between steps (the step running is canceled, its own runs are closed) and nothing stored is lost: stage
records are written atomically, so the next run redoes only the stages that have no record.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial as bind

from pipelines.jobs import CODE_LOCATION, JOB_BY_PARTITIONING, JOBS, REPOSITORY_NAME
from pipelines.stages import (
    DEVICE_WAVE,
    FIRST_WAVE,
    INDEX_WAVE,
    PER_MODEL_STAGES,
    SECOND_WAVE,
    TABLE_WAVE,
    stages_left,
    stages_to_run,
    stale_devices,
    wave_chunks,
)
from sommelier_core.defaults import INDEX_PARENT_PID_ENV
from sommelier_core.errors import SommelierError
from sommelier_core.profiling import available_devices
from sommelier_core.settings import dagster_home, store_root, write_instance_config, zoo_dir
from sommelier_core.stages import BY_NAME, reads
from sommelier_core.store import FileCheck
from sommelier_core.store.store_lock import StoreLock, StoreLocked, owner_alive, owner_label

# Dagster's console logger prints every step event at DEBUG; the progress lines are ours.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
OWNER_RUN_TAG = "sommelier/owner"
"""Dagster run tag: `<host>:<pid>` of the `sommelier index` process that executes the run in process, so a run left
STARTED by a killed one is recognised (its owner is gone) and marked canceled by the next."""
IN_PROGRESS_STATUSES = ("STARTING", "STARTED", "CANCELING", "NOT_STARTED", "QUEUED")
"""Dagster run statuses that a killed process leaves for ever."""


class Interrupted(BaseException):  # noqa: N818 — a stop request, like KeyboardInterrupt, not an error
    """SIGINT or SIGTERM reached the index run: it stops between steps. `signum` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class StopRequests:
    """SIGINT / SIGTERM / SIGHUP handling of an index run: the first signal interrupts the step running (Dagster
    cancels its run) and is remembered, so the driver stops before the next step; later ones are ignored while it
    closes its runs."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._wakeup: int | None = None

    def install(self) -> None:
        """Handle the signals in this (main) thread. Dagster swaps in handlers of its own while a step runs (it
        cancels the run and forgets the signal), so every signal's number is also written to a wake-up pipe by the
        interpreter, whoever handles it, and `check` reads it there."""
        for signum in self.SIGNALS:
            signal.signal(signum, self._handle)
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        self._wakeup = read_end

    def _handle(self, signum: int, _frame) -> None:
        if self.signum is not None:
            return
        self.signum = signum
        raise KeyboardInterrupt  # what Dagster catches to cancel the run in progress

    def check(self) -> None:
        """Raise `Interrupted` if a stop was requested (also one that reached a handler of Dagster's)."""
        if self.signum is None and self._wakeup is not None:
            try:
                received = os.read(self._wakeup, 512)
            except BlockingIOError:
                received = b""
            stops = [signum for signum in received if signum in self.SIGNALS]
            if stops:
                self.signum = stops[0]
        if self.signum is not None:
            raise Interrupted(self.signum)


STOP = StopRequests()
"""This process's stop requests (signals reach the main thread only)."""


def watch_parent(parent_pid: int, interval_s: float = 1.0) -> None:
    """Stop this process (SIGTERM to itself) when `parent_pid` is no longer its parent: `sommelier index` was killed
    outright, and its child must not index on alone."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval_s)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def close_abandoned_runs(instance, tracker, echo=print) -> None:
    """Mark canceled the Dagster runs, and KILLED the MLflow runs, that a killed index run left in progress: those
    whose owner process (tag `OWNER_RUN_TAG` / `sommelier.owner`) is gone. Runs of live processes stay."""
    from dagster import DagsterRunStatus, RunsFilter

    runs = instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus(s) for s in IN_PROGRESS_STATUSES]))
    for run in runs:
        owner = run.tags.get(OWNER_RUN_TAG)
        if owner is not None and not owner_alive(owner):
            instance.report_run_canceled(
                run, message=f"its process {owner} is gone (killed); marked by {owner_label()}"
            )
            echo(f"Run {run.run_id} of {run.job_name} was left {run.status.value} by a killed index run: canceled")
    for run_id in tracker.terminate_abandoned_runs():
        echo(f"MLflow run {run_id} was left RUNNING by a killed index run: KILLED")


def close_own_runs(instance, tracker) -> None:
    """On a stop request: mark this process's Dagster runs still in progress canceled, its MLflow runs KILLED."""
    from dagster import DagsterRunStatus, RunsFilter

    statuses = [DagsterRunStatus(s) for s in IN_PROGRESS_STATUSES]
    for run in instance.get_runs(filters=RunsFilter(statuses=statuses, tags={OWNER_RUN_TAG: owner_label()})):
        instance.report_run_canceled(run, message="sommelier index was stopped")
    tracker.terminate_runs_of(owner_label())


@dataclass
class IndexRunSummary:
    """What an index run did: models indexed, failures by model, and wall time per stage."""

    models: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    """Models indexed before that no repository lists any more: dropped from the indexes."""
    failures: dict[str, str] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    run_overhead_seconds: float = 0.0
    total_seconds: float = 0.0


def write_ahead_sqlite() -> None:
    """Open every SQLite database this process reaches through SQLAlchemy (Dagster's instance, MLflow's tracking
    store) in write-ahead-log mode with `synchronous=NORMAL`: a commit then costs a write, not several fsyncs (an
    MLflow `set_terminated` here: 31 → 5 ms), and Dagster commits every event of every run, MLflow every logged
    value. Still safe against a killed process (a torn write rolls back); the last commits may be lost only on
    power loss.
    Readers in other processes (`sommelier ui`) read WAL databases as before. Installed once per process."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if event.contains(Engine, "connect", _write_ahead):
        return
    event.listen(Engine, "connect", _write_ahead)


def _write_ahead(dbapi_connection, _record) -> None:
    if type(dbapi_connection).__module__.startswith(("sqlite3", "pysqlite")):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def prepare_instance():
    """The Dagster instance under the store root (SQLite storage), created on first use."""
    from dagster import DagsterInstance

    home = dagster_home()
    write_instance_config(home)
    os.environ["DAGSTER_HOME"] = str(home)
    return DagsterInstance.get()


def failure_message(result) -> str:
    for event in result.all_events:
        if event.is_step_failure:
            error = event.event_specific_data.error
            while error.cause is not None and error.cls_name.startswith("Dagster"):
                error = error.cause  # Dagster wraps the stage's own exception; report that one
            message = error.message.strip().splitlines()[0]
            qualified = message.split(": ", 1)  # Dagster's message starts with the qualified class name
            if len(qualified) == 2 and qualified[0].rsplit(".", 1)[-1] == error.cls_name:
                message = qualified[1]
            return f"{event.step_key}: {error.cls_name}: {message}"
    return "run failed"


def finished_steps(result) -> frozenset[str]:
    """The keys of the steps of a run's result that succeeded (a stage's step key is its name)."""
    return frozenset(event.step_key for event in result.all_events if event.is_step_success)


def range_tags(start: str, end: str) -> dict[str, str]:
    """The tags of a run over the partition-key range `start`…`end` (its steps target every partition between)."""
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    return {ASSET_PARTITION_RANGE_START_TAG: str(start), ASSET_PARTITION_RANGE_END_TAG: str(end)}


def wave_selection(plan: dict[str, tuple[str, ...]], stages: tuple[str, ...], planned: bool, key: str):
    """The stages of a wave (`stages`) a model runs: those of its `plan`, or all of them if not `planned`."""
    return tuple(s for s in plan[key] if s in stages) if planned else stages


def _record_stage_times(instance, run_id: str, summary: IndexRunSummary) -> None:
    starts: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in starts:
            summary.stage_seconds[event.step_key] += entry.timestamp - starts[event.step_key]


def register_listed_models(
    instance, listing, summary: IndexRunSummary, echo: Callable[[str], None]
) -> tuple[list, list[str]]:
    """Register the listed models and the present devices as partitions and drop the models no repository lists
    any more; the listed entries (none: the reason is in `summary.failures` and echoed) and the devices. Shared by
    the embedded and the cluster drivers, so both plan from the same partitions."""
    from assets.partitions import devices_partitions, models_partitions

    for error in listing.errors:
        echo(f"! repository not listed: {error}")
    if not listing.entries:
        hint = (
            ""
            if zoo_dir().joinpath("manifest.json").exists()
            else "; build the built-in zoo with `sommelier zoo build`"
        )
        echo(f"No models listed by the configured repositories{hint}. The index is left as it was.")
        summary.failures["<repositories>"] = "; ".join(listing.errors) or "no models listed"
        return [], []
    model_ids = sorted(e.model_id for e in listing.entries)
    known = set(instance.get_dynamic_partitions(models_partitions.name))
    instance.add_dynamic_partitions(models_partitions.name, [m for m in model_ids if m not in known])
    # a model no repository lists any more leaves the indexes; its stored records stay (it may come back)
    summary.removed = listing.removed(known)
    for model_id in summary.removed:
        instance.delete_dynamic_partition(models_partitions.name, model_id)
    if summary.removed:
        echo(f"No longer listed, dropped from the indexes: {', '.join(summary.removed)}")
    devices = available_devices()
    known_devices = set(instance.get_dynamic_partitions(devices_partitions.name))
    instance.add_dynamic_partitions(devices_partitions.name, [d for d in devices if d not in known_devices])
    summary.models = model_ids
    return list(listing.entries), devices


def run_index(echo=print, instance=None, resources: dict | None = None, full: bool = False) -> IndexRunSummary:
    """Register every listed model, materialize the per-model stages of new or changed models, then both indexes.

    Models whose stages already ran for their current version are not re-run (insertion does not
    rebuild from scratch); `full=True` re-runs every model.
    """
    from dagster import AssetKey

    from assets.partitions import models_partitions
    from pipelines.definitions import build_resources

    started = time.perf_counter()
    write_ahead_sqlite()
    instance = instance or prepare_instance()
    resources = resources or build_resources("local")
    summary = IndexRunSummary()

    entries, devices = register_listed_models(instance, resources["repositories"].list_models(), summary, echo)
    if not entries:
        return summary
    model_ids = summary.models
    store = resources["store"].store()
    parents = _stage_parents()

    def damaged(check: FileCheck) -> None:
        echo(f"! damaged, its stage runs again: {check.problem}")

    plan = {e.model_id: PER_MODEL_STAGES if full else stages_to_run(store, e, parents, damaged) for e in entries}
    summary.up_to_date = sorted(m for m, stages in plan.items() if not stages)
    pending = [m for m in model_ids if plan[m]]
    partial = [m for m in pending if plan[m] != PER_MODEL_STAGES]
    echo(
        f"Indexing {len(model_ids)} models from {store.root}"
        + (f" ({len(summary.up_to_date)} up to date, {len(pending)} to run)" if summary.up_to_date else "")
        + (f"; {len(partial)} need only stages they lack" if partial else "")
    )

    jobs = named_jobs(resources)
    filed_under_location(instance)
    remember_partitions(instance)
    per_run = max(1, resources["settings"].partitions_per_run)

    def execute(stages: tuple[str, ...], partition_key=None, partition_range: tuple[str, str] | None = None):
        """One run of `stages`' job (over one partition, a range of them, or none); None if there is nothing to
        run. A stop request during the run raises `Interrupted` (the run was canceled)."""
        if not stages:  # a model that needs none of this wave's stages
            return None
        STOP.check()
        tags = {OWNER_RUN_TAG: owner_label()} | ({} if partition_range is None else range_tags(*partition_range))
        result = jobs[JOB_BY_PARTITIONING[BY_NAME[stages[0]].partitioning]].execute_in_process(
            run_config=QUIET_RUN_CONFIG,
            instance=instance,
            partition_key=partition_key,
            raise_on_error=False,
            asset_selection=[AssetKey(stage) for stage in stages],
            tags=tags,
        )
        STOP.check()  # a stop during the run canceled it: report nothing about the model, stop here
        _record_stage_times(instance, result.run_id, summary)
        return result

    def run(stages: tuple[str, ...], partition_key=None, failure_key: str | None = None) -> bool:
        result = execute(stages, partition_key)
        if result is not None and not result.success:
            summary.failures[failure_key or partition_key or "<index>"] = failure_message(result)
        return result is None or result.success

    def in_chunks(
        stages: tuple[str, ...],
        keys: list[str],
        label: str,
        key_of: Callable[[str], object] = lambda k: k,
        on: str = "",
        planned: bool = True,
    ) -> list[str]:
        """Run each model's stages of this wave (those of its plan, or all of them if not `planned`), up to
        `per_run` consecutive partitions per run (models that need the same stages); a run that fails is run again
        one model per run, from the stages it did not finish, so only the model at fault fails. The models done."""
        done, counter = [], 0
        order = instance.get_dynamic_partitions(models_partitions.name)
        for selection, chunk in wave_chunks(keys, bind(wave_selection, plan, stages, planned), order, per_run):
            t0 = time.perf_counter()
            remaining = selection
            if len(chunk) > 1:
                result = execute(selection, partition_range=(str(key_of(chunk[0])), str(key_of(chunk[-1]))))
                took = time.perf_counter() - t0
                if result.success:
                    done += chunk
                    echo(
                        f"  [{label} {counter + 1}–{counter + len(chunk)}/{len(keys)}] {chunk[0]} … {chunk[-1]}{on}"
                        f"  ok ({took:.1f}s, {took / len(chunk):.2f}s per model)"
                    )
                    counter += len(chunk)
                    continue
                remaining = stages_left(selection, finished_steps(result))
                echo(
                    f"  [{label}] {chunk[0]} … {chunk[-1]}{on} in one run FAILED ({failure_message(result)});"
                    " running them one model per run"
                )
            for key in chunk:
                counter += 1
                t0 = time.perf_counter()
                if run(remaining, key_of(key), failure_key=key):
                    done.append(key)
                    echo(f"  [{label} {counter}/{len(keys)}] {key}{on}  ok ({time.perf_counter() - t0:.1f}s)")
                else:
                    echo(f"  [{label} {counter}/{len(keys)}] {key}{on}  FAILED: {summary.failures[key]}")
        return done

    echo("Stage wave 1: fetch → convert → outputs → cushions → profile")
    ingest = [m for m in pending if set(plan[m]) & set(FIRST_WAVE)]
    converted = in_chunks(FIRST_WAVE, ingest, "ingest")
    analysed = sorted([*converted, *(m for m in pending if m not in set(ingest))])
    echo(f"Stage wave 2: latency and operator profile per device ({', '.join(devices)}), operator tables")
    profiled_any = False
    for device in devices:
        to_profile = [m for m in [*summary.up_to_date, *analysed] if stale_devices(store, m, [device])]
        profiled_any |= bool(to_profile)
        on_device = bind(_on_device, device=device)
        in_chunks(DEVICE_WAVE, to_profile, "device", on_device, f" on {device}", planned=False)
    if profiled_any:
        for device in devices:
            if not run(TABLE_WAVE, device, failure_key=f"<operator table {device}>"):
                echo(f"  operator table {device} FAILED: {summary.failures[f'<operator table {device}>']}")
    echo("Stage wave 3: peers → compare → bound")
    in_chunks(SECOND_WAVE, [m for m in analysed if set(plan[m]) & set(SECOND_WAVE)], "analysis")
    echo("Stage wave 4: semantic index, resource index")
    if not run(INDEX_WAVE):
        echo(f"  index build FAILED: {summary.failures['<index>']}")
    summary.total_seconds = time.perf_counter() - started
    summary.run_overhead_seconds = summary.total_seconds - sum(summary.stage_seconds.values())
    ok = len(model_ids) - len([m for m in summary.failures if not m.startswith("<")])
    echo(
        f"Indexed {ok}/{len(model_ids)} models in {summary.total_seconds:.1f}s"
        + (f"; {len(summary.failures)} failed (see above)" if summary.failures else "")
    )
    return summary


def _on_device(model_id: str, device: str):
    from assets.partitions import model_device_key

    return model_device_key(model_id, device)


def named_jobs(resources: dict) -> dict:
    """The jobs of `pipelines.jobs` by name, bound to `resources`, with every asset check."""
    from dagster import Definitions

    from pipelines.definitions import all_assets, all_checks

    definitions = Definitions(assets=all_assets, asset_checks=all_checks, jobs=list(JOBS), resources=resources)
    return {job.name: definitions.resolve_job_def(job.name) for job in JOBS}


def filed_under_location(instance) -> None:
    """Make the runs this instance creates runs of the workspace's code location (`pipelines.jobs.CODE_LOCATION`).

    Dagster's Overview timeline (and a job's run list) only shows runs that carry the origin of a job in a loaded
    code location, which a run launched from the UI gets and one executed in process does not;
    `execute_in_process` has no parameter for it, but creates its run through the instance's public
    `create_run_for_job`, which takes one. So this instance's `create_run_for_job` adds the origin of the job it
    is given (the label tag `.dagster/repository` follows from it)."""
    from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteRepositoryOrigin

    if getattr(instance, "_sommelier_files_runs", False):
        return
    repository = RemoteRepositoryOrigin(RegisteredCodeLocationOrigin(CODE_LOCATION), REPOSITORY_NAME)
    create_run_for_job = instance.create_run_for_job

    def create_run_of_location_job(job_def, **kwargs):
        kwargs.setdefault("remote_job_origin", repository.get_job_origin(job_def.name))
        return create_run_for_job(job_def=job_def, **kwargs)

    instance.create_run_for_job = create_run_of_location_job
    instance._sommelier_files_runs = True


def remember_partitions(instance) -> None:
    """Answer Dagster's "does this partition exist" from memory in this process: every step asks it of each of its
    partitions and their upstream ones (about 30 queries per model), while the partitions an index run executes are
    the ones it registered itself. The set is read once per partitions definition and read again after this instance
    adds or deletes one; a key it does not hold is still asked of the instance (one another process added)."""
    if getattr(instance, "_sommelier_remembers_partitions", None) is not None:
        return
    known: dict[str, frozenset[str]] = {}
    ask, add = instance.has_dynamic_partition, instance.add_dynamic_partitions
    delete = instance.delete_dynamic_partition

    def has_dynamic_partition(partitions_def_name: str, partition_key: str) -> bool:
        if partitions_def_name not in known:
            known[partitions_def_name] = frozenset(instance.get_dynamic_partitions(partitions_def_name))
        return partition_key in known[partitions_def_name] or ask(partitions_def_name, partition_key)

    def add_dynamic_partitions(partitions_def_name: str, partition_keys):
        known.pop(partitions_def_name, None)
        return add(partitions_def_name, partition_keys)

    def delete_dynamic_partition(partitions_def_name: str, partition_key: str):
        known.pop(partitions_def_name, None)
        return delete(partitions_def_name, partition_key)

    instance.has_dynamic_partition = has_dynamic_partition
    instance.add_dynamic_partitions = add_dynamic_partitions
    instance.delete_dynamic_partition = delete_dynamic_partition
    instance._sommelier_remembers_partitions = known


def forget_partitions(instance) -> None:
    """Make an instance `remember_partitions` patched read its partition sets again on next use (a cluster worker
    keeps one instance for many steps, and another process may have deleted a partition meanwhile)."""
    known = getattr(instance, "_sommelier_remembers_partitions", None)
    if isinstance(known, dict):
        known.clear()


def _stage_parents() -> dict[str, tuple[str, ...]]:
    """Each stage's upstream stages, by name: the stage table's edges, which `tests/test_definitions.py` pins
    equal to the asset graph's."""
    return reads()


def main(argv: list[str] | None = None, resources: dict | None = None) -> int:
    """Entry point of `python -m pipelines.index_run` (what `sommelier index` runs): exit 0 done, 1 failed, 2 an
    error before indexing (e.g. a store that cannot be migrated), 3 the store is locked by another index run,
    128 + the signal number when stopped by a signal. `resources` replaces the local deployment's (tests)."""
    parser = argparse.ArgumentParser(prog="sommelier index", description=__doc__)
    parser.add_argument("--full", action="store_true", help="re-run every model, not only new or changed ones")
    parser.add_argument("--wait", action="store_true", help="wait for another index run on the store to finish")
    args = parser.parse_args(argv)
    deployment = os.environ.get("SOMMELIER_DEPLOYMENT", "local")
    if deployment == "cluster":
        from pipelines import cluster_run

        return cluster_run.run_index_on_cluster(full=args.full, wait=args.wait)
    STOP.install()
    if os.environ.get(INDEX_PARENT_PID_ENV, "").isdigit():
        watch_parent(int(os.environ[INDEX_PARENT_PID_ENV]))
    try:
        with StoreLock(store_root(), wait=args.wait, on_wait=lambda line: print(line, flush=True)):
            summary = _run_locked(args.full, resources)
    except StoreLocked as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except SommelierError as exc:  # e.g. a store of pickled records that cannot be migrated: say so, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (Interrupted, KeyboardInterrupt):
        signum = STOP.signum or signal.SIGINT
        print(
            f"Stopped by {signal.Signals(signum).name}: what was stored is kept; the next `sommelier index` resumes.",
            file=sys.stderr,
        )
        return 128 + signum
    failed = {m for m in summary.failures if not m.startswith("<")}
    every_model_failed = bool(summary.models) and set(summary.models) <= failed
    return 1 if {"<index>", "<repositories>"} & set(summary.failures) or every_model_failed else 0


def _run_locked(full: bool, resources: dict | None = None) -> IndexRunSummary:
    """One index run under the store lock: close what a killed run left open, index, and on a stop request close
    this run's own runs before the stop propagates."""
    from pipelines.definitions import build_resources

    write_ahead_sqlite()
    instance = prepare_instance()
    resources = resources or build_resources("local")
    close_abandoned_runs(instance, resources["mlflow"])
    try:
        return run_index(instance=instance, resources=resources, full=full)
    except (Interrupted, KeyboardInterrupt):
        close_own_runs(instance, resources["mlflow"])
        raise


if __name__ == "__main__":
    sys.exit(main())
