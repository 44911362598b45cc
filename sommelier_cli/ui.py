"""`sommelier ui`: Dagster's UI (with its daemon: sensor and schedule) and MLflow's UI, both from this venv."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from sommelier_core.settings import (
    DAGSTER_UI_ENV,
    MLFLOW_UI_ENV,
    dagster_home,
    deployment,
    mlflow_tracking_uri,
    write_instance_config,
)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `ui`."""
    ui = sub.add_parser(
        "ui",
        help="start Dagster's UI and daemon (dagster dev) and MLflow's UI on the store",
        description="Start `dagster dev` on the workspace (the UI, and the daemon that runs the repository sensor "
        "and the nightly re-index schedule while it is up) and `mlflow ui` on the store's tracking store, both "
        "with this Python. Ctrl-C stops both. On the cluster (SOMMELIER_DEPLOYMENT=cluster, as `deploy/local-cluster "
        "env` exports) the UIs are already served: this prints their addresses and whether they answer.",
    )
    ui.add_argument("--port", type=int, default=3000, help="Dagster UI port (default 3000)")
    ui.add_argument("--mlflow-port", type=int, default=5000, help="MLflow UI port (default 5000)")
    ui.add_argument("--no-mlflow", action="store_true", help="start only Dagster's UI")
    ui.add_argument("--host", default="127.0.0.1", help="address both listen on (default 127.0.0.1)")
    ui.set_defaults(func=cmd_ui)


MLFLOW_WORKERS = 1
"""Worker processes of the MLflow UI: one person browsing needs one (MLflow's default, 4, quadruples start-up)."""


def mlflow_command(port: int, host: str = "127.0.0.1", tracking_uri: str | None = None) -> list[str]:
    """`mlflow ui` on the store's tracking store, run by this interpreter (`python -m mlflow`), so it works whether
    or not the venv's `bin/` is on PATH."""
    uri = tracking_uri or mlflow_tracking_uri()
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    return [*command, "--workers", str(MLFLOW_WORKERS)]


def dagster_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """`dagster dev` on the workspace, run by this interpreter."""
    workspace = Path(__file__).resolve().parent.parent / "workspace.yaml"
    return [sys.executable, "-m", "dagster", "dev", "-w", str(workspace), "-h", host, "-p", str(port)]


def cluster_ui() -> int:
    """The cluster's Dagster webserver and MLflow server (`deploy/local-cluster up` started them): print where they
    are and whether they answer; 1 if one does not."""
    import urllib.error
    import urllib.request

    status = 0
    for name, env, path in [("Dagster UI", DAGSTER_UI_ENV, "/server_info"), ("MLflow UI", MLFLOW_UI_ENV, "/health")]:
        url = os.environ.get(env, "")
        if not url:
            print(f'{name}: {env} is not set; export the cluster\'s variables: eval "$(deploy/local-cluster env)"')
            status = 1
            continue
        try:
            with urllib.request.urlopen(url + path, timeout=5):
                print(f"{name} on {url}")
        except (urllib.error.URLError, OSError) as exc:
            print(f"{name} on {url} does not answer ({exc}); see `deploy/local-cluster status`")
            status = 1
    return status


def cmd_ui(args: argparse.Namespace) -> int:
    """Start MLflow's UI in the background and `dagster dev` in the foreground, with the Dagster instance under
    the store root; stop MLflow's when Dagster's exits. On the cluster, point at the UIs it serves instead."""
    if deployment() == "cluster":
        return cluster_ui()
    home = dagster_home()
    write_instance_config(home)
    mlflow_url = f"http://{args.host}:{args.mlflow_port}"
    env = {**os.environ, "DAGSTER_HOME": str(home), MLFLOW_UI_ENV: mlflow_url}
    mlflow = None
    if not args.no_mlflow:
        mlflow = subprocess.Popen(mlflow_command(args.mlflow_port, args.host), env=env)
        # MLflow 3 opens in GenAI mode unless told otherwise; the query switches it to Model training
        print(f"MLflow UI on {mlflow_url}/#/?workflowType=machine_learning (tracking store {mlflow_tracking_uri()})")
    print(f"Dagster UI on http://{args.host}:{args.port} (instance in {home})")
    print("While this runs, the repository sensor indexes new models and the nightly schedule rebuilds the indexes.")
    workspace_dir = Path(__file__).resolve().parent.parent
    try:
        return subprocess.call(dagster_command(args.port, args.host), env=env, cwd=workspace_dir)
    except KeyboardInterrupt:
        return 130
    finally:
        if mlflow is not None:
            mlflow.terminate()
            try:
                mlflow.wait(timeout=10)
            except subprocess.TimeoutExpired:
                mlflow.kill()
