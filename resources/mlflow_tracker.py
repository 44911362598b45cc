"""A small MLflow resource of our own (not dagster-mlflow): one run per model, one per index build."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import polars as pl
from dagster import ConfigurableResource

from sommelier_core.settings import mlflow_artifact_root, mlflow_tracking_uri, store_root

EXPERIMENT = "sommelier"
ARTIFACT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
    ("model_versions", "source"),
)
"""The columns of MLflow's SQL tracking store that hold artifact locations (those of its tables that exist)."""


class MlflowTracker(ConfigurableResource):
    """Records model artifacts and scores in MLflow (empty URI = SQLite under the store root)."""

    tracking_uri: str = ""
    experiment: str = EXPERIMENT

    def _experiment_id(self) -> str:
        import mlflow

        uri = self.tracking_uri or mlflow_tracking_uri()
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        exported = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(uri)
        # MLflow exports the URI to the environment (for subprocesses), where `mlflow_tracking_uri` would take
        # it for the user's: a later store in this process would log into this one's tracking store
        if exported is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = exported
        found = mlflow.get_experiment_by_name(self.experiment)
        own_database = store_root() / "mlflow" / "mlflow.db"
        if found is not None and uri == f"sqlite:///{own_database}":  # the store's own tracking store
            if relocate_artifacts(own_database, found.artifact_location, store_root()):
                found = mlflow.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        location = mlflow_artifact_root().as_uri() if not self.tracking_uri else None
        try:
            return mlflow.create_experiment(self.experiment, artifact_location=location)
        except Exception:  # another process created it first
            return mlflow.get_experiment_by_name(self.experiment).experiment_id

    def log_model_run(self, model_id: str, onnx_path: Path, params: dict[str, str], metrics: dict[str, float]) -> str:
        """A run for one model: its ONNX artifact (`mlflow.onnx`), profile metrics and conversion error."""
        import mlflow
        import onnx

        experiment_id = self._experiment_id()
        with mlflow.start_run(experiment_id=experiment_id, run_name=model_id) as run:
            mlflow.set_tags({"sommelier.kind": "model", "sommelier.model_id": model_id})
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            mlflow.onnx.log_model(onnx.load(str(onnx_path)), name="model")
            return run.info.run_id

    def log_index_run(self, pairs: pl.DataFrame, statistics: dict[str, float]) -> str:
        """A run for one index build: the pair-scores table and index statistics."""
        import mlflow

        experiment_id = self._experiment_id()
        with mlflow.start_run(experiment_id=experiment_id, run_name="index-build") as run:
            mlflow.set_tags({"sommelier.kind": "index"})
            mlflow.log_metrics(statistics)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "pair_scores.csv"
                pairs.write_csv(path)
                mlflow.log_artifact(str(path))
            return run.info.run_id

    def log_to_model_run(self, model_id: str, metrics: dict[str, float]) -> str | None:
        """Add metrics (e.g. latency on a device) to the model's latest run; None when it has no run yet."""
        import mlflow
        from mlflow.entities import Metric

        experiment_id = self._experiment_id()
        runs = mlflow.search_runs(
            [experiment_id],
            filter_string=f"tags.`sommelier.kind` = 'model' and tags.`sommelier.model_id` = '{model_id}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
            output_format="list",
        )
        if not runs:
            return None
        run_id = runs[0].info.run_id
        now = int(time.time() * 1000)
        mlflow.MlflowClient().log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
        return run_id

    def log_operator_table_run(self, device: str, table: pl.DataFrame, latency: pl.DataFrame, statistics: dict) -> str:
        """A run for one device's per-operator latency table: the table (parquet, importable elsewhere),
        the measured latency per model and batch size (CSV), and the table's overheads and size."""
        import mlflow

        experiment_id = self._experiment_id()
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"operator-table-{device}") as run:
            mlflow.set_tags({"sommelier.kind": "operator_table", "sommelier.device": device})
            mlflow.log_metrics(statistics)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"operator_table_{device}.parquet"
                table.write_parquet(path)
                mlflow.log_artifact(str(path))
                csv = Path(tmp) / f"latency_{device}.csv"
                latency.write_csv(csv)
                mlflow.log_artifact(str(csv))
            return run.info.run_id


def relocate_artifacts(database: Path, artifact_location: str, root: Path) -> bool:
    """Point a copied (or moved) store's MLflow tracking store at its own artifacts; True if it had to.

    The experiment Sommelier creates stores artifacts under `<store>/mlflow/artifacts`, and MLflow keeps
    that location absolute in the SQLite tracking store (for the experiment and every run and logged model),
    so in a `cp -a` copy new runs would write into the original store and old artifacts be read from it.
    When the experiment's location is another store's artifact root, every location under it is rewritten
    to this store's (`cp -a` copied the files along). A location that is no store's artifact root (set by
    the user) is left alone. MLflow has no call to change an experiment's location, hence the SQL.
    """
    target = mlflow_artifact_root(root).as_uri()
    parsed = urlparse(artifact_location)
    if artifact_location == target or parsed.scheme != "file":
        return False
    source_dir = Path(unquote(parsed.path))
    if source_dir.parts[-2:] != ("mlflow", "artifacts"):
        return False
    connection = sqlite3.connect(database, timeout=60)
    try:
        with connection:  # one transaction
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table, column in ARTIFACT_COLUMNS:
                if table not in tables:
                    continue
                connection.execute(
                    f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                    f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                    (
                        target,
                        len(artifact_location) + 1,
                        artifact_location,
                        len(artifact_location) + 1,
                        artifact_location + "/",
                    ),
                )
    finally:
        connection.close()
    return True
