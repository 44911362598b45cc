"""The store lock: one `sommelier index` at a time on a store, so two never do the same work (issue 14).

An exclusive POSIX record lock (`fcntl.lockf`) on `<store>/index.lock`, which the kernel releases when the
holder exits however it exits (even SIGKILL), so a killed run never leaves the store locked; on a shared
filesystem (NFS v4, the cluster's store root) the lock is shared by every machine that mounts it. The file says
who holds it (host, pid, since when) for the message the second run prints. `lock_holder` tells whether the lock
is held, and by whom, without taking it: the repository sensor skips its tick while an index run holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import struct
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sommelier_core.errors import SommelierError

STORE_LOCK_FILE = "index.lock"
"""The lock file's name under the store root."""
_POLL_S = 0.5
_FLOCK = "hhqqi4x"
"""`struct flock` on 64-bit Linux (glibc): l_type, l_whence, l_start, l_len, l_pid, padding."""
_GETLK = getattr(fcntl, "F_OFD_GETLK", fcntl.F_GETLK)
"""The lock test: Linux's open-file-description form also reports a lock held by this very process (through
another file descriptor), which the POSIX form does not."""
_HELD: dict[Path, dict] = {}
"""Lock files this process holds, and what it wrote in them: a probe must not open (and close) them, not even to
read them, since closing any descriptor of a file drops the process's POSIX locks on it."""


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


def lock_holder(root: Path) -> dict | None:
    """Who holds the store lock of `root` now (host, pid, since, as the holder wrote them), or None when no process
    holds it. Only tests the lock (`F_GETLK`), never takes it, so a probe cannot make a starting index run find
    the store locked. A lock file that does not exist is not held."""
    path = (Path(root) / STORE_LOCK_FILE).absolute()
    if path in _HELD:
        return dict(_HELD[path])
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        probe = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        lock_type, _, _, _, pid = struct.unpack(_FLOCK, fcntl.fcntl(descriptor, _GETLK, probe))
    finally:
        os.close(descriptor)
    if lock_type == fcntl.F_UNLCK:
        return None
    held = _read_holder(path)
    if pid > 0 and held.get("pid") != pid and held.get("host") in (None, socket.gethostname()):
        held = {"host": socket.gethostname(), "pid": pid, "since": "?"}  # taken, its line not written yet
    return held or {"host": "?", "pid": "?", "since": "?"}


def holder_line(root: Path, held: dict) -> str:
    """`the store lock on <root> since <time>, pid <pid> on <host>`: which lock, and who holds it, in words."""
    return (
        f"the store lock on {Path(root)} since {held.get('since', '?')}, "
        f"pid {held.get('pid', '?')} on {held.get('host', '?')}"
    )


def _read_holder(path: Path) -> dict:
    try:
        held = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return held if isinstance(held, dict) else {}


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
        return _read_holder(self.path)

    def describe_holder(self) -> str:
        """One line for the run that finds the store locked."""
        held = self.holder()
        return f"another index run holds {holder_line(self.path.parent, held)}; wait for it, stop it, or pass --wait"

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
        held = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(held))
        handle.flush()
        self._handle = handle
        _HELD[self.path.absolute()] = held

    def release(self) -> None:
        """Give the lock back (the file stays, naming its last holder)."""
        if self._handle is not None:
            _HELD.pop(self.path.absolute(), None)
            fcntl.lockf(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> StoreLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
