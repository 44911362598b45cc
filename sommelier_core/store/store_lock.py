"""The store lock: one `sommelier index` at a time on a store, so two never do the same work (issue 14).

An exclusive POSIX record lock (`fcntl.lockf`) on `<store>/index.lock`, which the kernel releases when the
holder exits however it exits (even SIGKILL), so a killed run never leaves the store locked; on a shared
filesystem (NFS v4, the cluster's store root) the lock is shared by every machine that mounts it. The file says
who holds it (host, pid, since when) for the message the second run prints.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sommelier_core.errors import SommelierError

STORE_LOCK_FILE = "index.lock"
"""The lock file's name under the store root."""
_POLL_S = 0.5


class StoreLocked(SommelierError):
    """Another process holds the store lock; the message names it and since when."""


def owner_label(pid: int | None = None) -> str:
    """`<host>:<pid>` of this process (or of `pid` on this host): who owns a lock or a run."""
    return f"{socket.gethostname()}:{pid or os.getpid()}"


def owner_alive(label: str) -> bool:
    """Whether the process `label` (`owner_label`) may still run: True for another host's (it cannot be checked
    from here), False for an empty or malformed label and for a pid of this host that no longer exists."""
    host, _, pid = label.rpartition(":")
    if not host or not pid.isdigit():
        return False
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


class StoreLock:
    """`with StoreLock(root):` holds the store lock for the block; `wait=False` raises `StoreLocked` at once when
    another process holds it, `wait=True` waits for it (up to `timeout_s`, None = for ever), telling `on_wait` once
    who holds it."""

    def __init__(
        self,
        root: Path,
        wait: bool = False,
        timeout_s: float | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(root) / STORE_LOCK_FILE
        self.wait = wait
        self.timeout_s = timeout_s
        self.on_wait = on_wait
        self._handle = None

    def holder(self) -> dict:
        """Who holds (or last held) the lock, as written in the file: host, pid, since (ISO 8601 UTC)."""
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def describe_holder(self) -> str:
        """One line for the run that finds the store locked."""
        held = self.holder()
        return (
            f"another index run holds the store lock on {self.path.parent} since {held.get('since', '?')}, "
            f"pid {held.get('pid', '?')} on {held.get('host', '?')}; wait for it, stop it, or pass --wait"
        )

    def acquire(self) -> None:
        """Take the lock (or raise `StoreLocked`; with `wait`, poll until it is free or the timeout passes)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 — held open for as long as the lock is
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        while True:
            try:
                fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if not self.wait or (deadline is not None and time.monotonic() >= deadline):
                    message = self.describe_holder()
                    handle.close()
                    raise StoreLocked(message) from None
                if self.on_wait is not None:
                    self.on_wait(f"waiting: {self.describe_holder().split('; ')[0]}")
                    self.on_wait = None
                time.sleep(_POLL_S)
        since = datetime.now(UTC).isoformat(timespec="seconds")
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": since}))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        """Give the lock back (the file stays, naming its last holder)."""
        if self._handle is not None:
            fcntl.lockf(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
