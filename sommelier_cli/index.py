"""`sommelier index`: materialize every asset in process."""

from __future__ import annotations

import argparse
import subprocess
import sys


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `index`."""
    index = sub.add_parser("index", help="materialize every asset in process, with progress")
    index.add_argument("--full", action="store_true", help="re-run every model, not only new or changed ones")
    index.set_defaults(func=cmd_index)


def cmd_index(args: argparse.Namespace) -> int:
    """Materialize every asset in process (runs the pipelines' driver in its own interpreter)."""
    return subprocess.call([sys.executable, "-m", "pipelines.index_run", *(["--full"] if args.full else [])])
