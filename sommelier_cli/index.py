"""`sommelier index`: materialize every asset in process."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys

from sommelier_core.defaults import INDEX_PARENT_PID_ENV

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Signals `sommelier index` passes on to its indexing process, so stopping the command stops the work."""


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `index`."""
    index = sub.add_parser("index", help="materialize every asset in process, with progress")
    index.add_argument("--full", action="store_true", help="re-run every model, not only new or changed ones")
    index.add_argument(
        "--wait", action="store_true", help="wait for another index run on this store to finish instead of exiting 3"
    )
    index.set_defaults(func=cmd_index)


def cmd_index(args: argparse.Namespace) -> int:
    """Materialize every asset (runs the pipelines' driver in its own interpreter, which holds the store lock).

    SIGINT, SIGTERM and SIGHUP are passed on to it, and its exit status is this command's (128 + the signal's
    number when a signal stopped it). The child runs in its own session, so a Ctrl-C in the terminal reaches it
    once, through this process."""
    command = [sys.executable, "-m", "pipelines.index_run"]
    command += ["--full"] if args.full else []
    command += ["--wait"] if args.wait else []
    child = subprocess.Popen(
        command, env={**os.environ, INDEX_PARENT_PID_ENV: str(os.getpid())}, start_new_session=True
    )

    def forward(signum: int, _frame) -> None:
        child.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED_SIGNALS}
    try:
        code = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 128 - code if code < 0 else code
