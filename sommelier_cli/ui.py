"""`sommelier ui`: the Dagster UI on the workspace, and how to open MLflow's."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from sommelier_core.settings import dagster_home, mlflow_tracking_uri


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `ui`."""
    ui = sub.add_parser("ui", help="start dagster dev on the workspace and say how to open MLflow's UI")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)


def cmd_ui(args: argparse.Namespace) -> int:
    """Start `dagster dev` on the workspace, with the Dagster instance under the store root."""
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    workspace = Path(__file__).resolve().parent.parent / "workspace.yaml"
    print(f"Dagster UI on http://127.0.0.1:{args.port} (instance in {home})")
    print(f"MLflow UI: mlflow ui --backend-store-uri {mlflow_tracking_uri()}")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    dagster = Path(sys.executable).with_name("dagster")  # the venv's dagster, whether or not it is on PATH
    cmd = [str(dagster) if dagster.exists() else "dagster", "dev", "-w", str(workspace), "-p", str(args.port)]
    return subprocess.call(cmd, env=env, cwd=workspace.parent)
