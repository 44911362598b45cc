"""The repository sensor skips its tick while an index run holds the store lock (issue 14, cluster leftovers).

The lock is a real one: `StoreLock` taken by a subprocess, or by this process through another file descriptor;
`lock_holder` must see it without taking it, and the sensor, evaluated as the daemon evaluates it, must request
nothing, name the holder, and pick the models up once the lock is free.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dagster import build_sensor_context, instance_for_test

from pipelines.definitions import defs
from pipelines.sensors import make_repository_sensor
from resources.repositories import RepositoriesResource, RepositoryConfig
from resources.store import ModelStoreResource
from sommelier_core.store.store_lock import STORE_LOCK_FILE, StoreLock, StoreLocked, lock_holder
from tests.conftest import two_class_onnx

REPO_ROOT = Path(__file__).resolve().parent.parent
HOLD_LOCK = (
    "import sys\n"
    "from sommelier_core.store.store_lock import StoreLock\n"
    "with StoreLock(sys.argv[1]):\n"
    "    print('held', flush=True)\n"
    "    sys.stdin.read()\n"
)
"""Take the store lock of argv[1], say so, and hold it until stdin closes."""


@contextmanager
def lock_held_by_subprocess(root: Path) -> Iterator[subprocess.Popen]:
    """A subprocess holding the store lock of `root` for the block (released, and the process gone, after it)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(root)],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held", "the subprocess did not take the store lock"
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def _lab_repository(tmp_path: Path) -> RepositoriesResource:
    folder = tmp_path / "onnx"
    folder.mkdir()
    two_class_onnx(folder / "first.onnx")
    return RepositoriesResource(repositories=[RepositoryConfig(kind="onnx", name="lab", location=[str(folder)])])


def test_lock_holder_is_none_without_a_lock_file_and_when_the_file_is_unlocked(tmp_path):
    assert lock_holder(tmp_path) is None
    assert not (tmp_path / STORE_LOCK_FILE).exists(), "the probe must not create the lock file"
    with StoreLock(tmp_path):
        pass
    assert (tmp_path / STORE_LOCK_FILE).exists()
    assert lock_holder(tmp_path) is None


def test_lock_holder_names_a_subprocess_holding_the_lock_without_taking_it(tmp_path):
    with lock_held_by_subprocess(tmp_path) as holder:
        held = lock_holder(tmp_path)
        assert held is not None and held["pid"] == holder.pid and held["host"] == socket.gethostname()
        assert held["since"] != "?"
        with pytest.raises(StoreLocked):  # still the subprocess's: the probe took nothing
            StoreLock(tmp_path).acquire()
    assert lock_holder(tmp_path) is None


def test_lock_holder_sees_this_process_hold_it_through_another_descriptor_and_keeps_it_held(tmp_path):
    with StoreLock(tmp_path):
        held = lock_holder(tmp_path)
        assert held is not None and held["pid"] == os.getpid()
        # probing did not close this process's descriptor of the file (which would drop its lock)
        other = subprocess.run(
            [sys.executable, "-c", "import sys; from sommelier_core.store.store_lock import StoreLock as L;"
             " sys.exit(0 if not L(sys.argv[1]).acquire() else 1)", str(tmp_path)],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert other.returncode == 1 and "StoreLocked" in other.stderr, other.stderr


def test_repository_sensor_skips_while_an_index_run_holds_the_lock_and_indexes_the_models_after(tmp_path):
    repositories = _lab_repository(tmp_path)
    store = ModelStoreResource(root=str(tmp_path / "store"))
    sensor = make_repository_sensor("index_models")
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        resources = {"repositories": repositories, "store": store}
        context = build_sensor_context(instance=instance, cursor="seen-before", resources=resources, definitions=defs)
        with lock_held_by_subprocess(tmp_path / "store") as holder:
            skipped = sensor.evaluate_tick(context)
        assert skipped.run_requests == [] and not skipped.dynamic_partitions_requests
        assert skipped.skip_message.startswith(f"an index run holds the store lock on {tmp_path / 'store'} since ")
        assert f"pid {holder.pid} on {socket.gethostname()}" in skipped.skip_message
        assert skipped.cursor == "seen-before", "a skipped tick must leave the cursor as it was"
        assert instance.get_dynamic_partitions("models") == []

        # the lock is free: the same tick requests the model (called as a function: the partition it adds is not
        # applied here, which `evaluate_tick` would need to validate the request)
        after = sensor(build_sensor_context(instance=instance, cursor=skipped.cursor, resources=resources))
        assert [r.partition_key for r in after.run_requests] == ["lab/first"]
        assert after.dynamic_partitions_requests[0].partition_keys == ["lab/first"]
