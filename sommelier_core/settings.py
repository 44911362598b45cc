"""Where Sommelier keeps things: one store root for Dagster, MLflow, models and indexes (design §8)."""

from __future__ import annotations

import os
from pathlib import Path

STORE_ROOT_ENV = "SOMMELIER_HOME"
MLFLOW_UI_ENV = "SOMMELIER_MLFLOW_UI"
"""The MLflow UI's base URL when not the default: `sommelier ui` sets it, the MLflow resource links to it."""
DEFAULT_STORE_DIR = ".sommelier"


def store_root() -> Path:
    """The store root: `$SOMMELIER_HOME`, else `.sommelier/` in the working directory (absolute)."""
    return Path(os.environ.get(STORE_ROOT_ENV) or Path.cwd() / DEFAULT_STORE_DIR).resolve()


def dagster_home(root: Path | None = None) -> Path:
    """The Dagster instance directory under the store root."""
    return (root or store_root()) / "dagster"


def mlflow_tracking_uri(root: Path | None = None) -> str:
    """`$MLFLOW_TRACKING_URI` if set, else a SQLite tracking store under the store root."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{(root or store_root()) / 'mlflow' / 'mlflow.db'}"


def mlflow_artifact_root(root: Path | None = None) -> Path:
    """Where MLflow stores artifacts for experiments Sommelier creates."""
    return (root or store_root()) / "mlflow" / "artifacts"


def zoo_dir(root: Path | None = None) -> Path:
    """Where `sommelier zoo build` writes the built-in model zoo by default."""
    return (root or store_root()) / "zoo"


def index_dir(root: Path | None = None) -> Path:
    """Where the materialized index assets (parquet) live; the query module reads them from here."""
    return (root or store_root()) / "index"
