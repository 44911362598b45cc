"""CPU seconds per kind of process on this machine while a block of code runs (Linux `/proc`): where a cluster
index run's CPU goes — its Celery workers, MLflow's tracking server, the driver and its run processes, Dagster's
daemon and code servers, PostgreSQL, RabbitMQ — so a wall-time ratio can be read against what the two cores did.

A process is counted under the first of `KINDS` its command line matches, or else under its nearest ancestor's
(MLflow's server workers are spawned children of `uvicorn`, the driver's run processes forks of the driver); what
matches none is `other`. Processes are sampled every `SAMPLE_S`: one that starts and ends between two samples is
missed, and a process that ends is counted up to its last sample.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

SAMPLE_S = 0.2
KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("celery workers", ("celery", "worker")),
    ("mlflow server", ("mlflow", "server")),
    ("mlflow server", ("uvicorn",)),
    ("mlflow server", ("huey",)),
    ("dagster daemon", ("dagster._daemon",)),
    ("dagster code servers", ("dagster", "grpc")),
    ("sommelier index (driver and run processes)", ("sommelier_cli",)),
    ("sommelier index (driver and run processes)", ("pipelines.index_run",)),
    ("postgresql", ("postgres",)),
    ("rabbitmq", ("beam",)),
    ("rabbitmq", ("rabbitmq",)),
)
"""(kind, words its command line holds), first match wins."""
OTHER = "other"


def kind_of(command: str) -> str | None:
    """The kind of process a command line is, or None when it matches none of `KINDS`."""
    for kind, words in KINDS:
        if all(word in command for word in words):
            return kind
    return None


@dataclass
class _Seen:
    kind: str | None
    parent: int
    first_ticks: int
    ticks: int


@dataclass
class ProcessCpu:
    """`with ProcessCpu() as cpu: ...`, then `cpu.seconds()`: CPU seconds per kind used while the block ran."""

    sample_s: float = SAMPLE_S
    _seen: dict[tuple[int, int], _Seen] = field(default_factory=dict)
    _before: set[tuple[int, int]] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> ProcessCpu:
        self._sample()
        self._before = set(self._seen)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.sample_s):
            self._sample()

    def _sample(self) -> None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                fields = stat[stat.rfind(")") + 2 :].split()
                key = (int(entry.name), int(fields[19]))  # pid and start time: a reused pid is another process
                ticks = int(fields[11]) + int(fields[12])  # user and system time
                if key not in self._seen:
                    command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    self._seen[key] = _Seen(kind_of(command), int(fields[1]), ticks, ticks)
                self._seen[key].ticks = ticks
            except (OSError, IndexError, ValueError):  # the process ended while being read
                continue

    def seconds(self) -> dict[str, float]:
        """CPU seconds per kind while the block ran, largest first (kinds under 0.05 s left out)."""
        by_pid = {pid: seen for (pid, _start), seen in self._seen.items()}
        per_second = os.sysconf("SC_CLK_TCK")
        totals: dict[str, float] = {}
        for key, seen in self._seen.items():
            used = seen.ticks - seen.first_ticks if key in self._before else seen.ticks
            kind = self._kind(seen, by_pid)
            totals[kind] = totals.get(kind, 0.0) + used / per_second
        return {k: round(v, 1) for k, v in sorted(totals.items(), key=lambda kv: -kv[1]) if v >= 0.05}

    @staticmethod
    def _kind(seen: _Seen, by_pid: dict[int, _Seen]) -> str:
        hops = 0
        while seen.kind is None and seen.parent in by_pid and hops < 16:
            seen, hops = by_pid[seen.parent], hops + 1
        return seen.kind or OTHER
