"""A small MLflow resource of our own (not dagster-mlflow): one run per model version, one per index build.

A model's run is keyed by its id and ONNX fingerprint (its version): every stage that records something about the
model adds to that one run, so a re-materialization updates it instead of starting another. Its ONNX file is a
logged model, registered in the Model Registry under the model's id (as far as MLflow's naming allows), with the
accuracy, the peers and the bounds as tags. Runs are found by a digest of the id, never by the id in a filter
string: MLflow's filter syntax cannot quote a value holding both kinds of quote.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlparse

import polars as pl
from dagster import ConfigurableResource

from sommelier_core.settings import (
    MLFLOW_ARTIFACTS_DIR_ENV,
    MLFLOW_UI_ENV,
    mlflow_artifact_root,
    mlflow_tracking_uri,
    store_root,
)
from sommelier_core.store.store_lock import owner_alive, owner_label

if TYPE_CHECKING:
    from mlflow import MlflowClient

EXPERIMENT = "sommelier"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
ML_EXPERIMENT_KIND = "custom_model_development"
"""The experiment kind of classic ML work (runs, metrics, models), not GenAI (traces, tokens)."""
ML_WORKFLOW_QUERY = "workflowType=machine_learning"
"""MLflow 3's UI takes its mode from a global GenAI / Model training switch (remembered by the browser, GenAI at
first) rather than from the experiment's kind: links carry this query so they open in Model training mode."""
DEFAULT_UI_URL = "http://127.0.0.1:5000"
"""Where `sommelier ui` serves MLflow's UI by default (for the links in Dagster metadata)."""
KIND_TAG = "sommelier.kind"
MODEL_ID_TAG = "sommelier.model_id"
MODEL_KEY_TAG = "sommelier.model_key"
FINGERPRINT_TAG = "sommelier.fingerprint"
OWNER_TAG = "sommelier.owner"
"""`<host>:<pid>` of the process that started a run it terminates itself (an index build, an operator table): a
run still RUNNING whose owner process is gone was killed, and `terminate_abandoned_runs` marks it so."""
ONNX_ARTIFACT = "model.onnx"
"""The logged model's file name (a hard link to the model store's file where both are local)."""
REGISTRY_TAGS = ("accuracy", "peers", "bounds")
"""Run tags mirrored onto the registered model and its version, where the Model Registry shows them."""
ARTIFACT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
    ("model_versions", "source"),
)
"""The columns of MLflow's SQL tracking store that hold artifact locations (those of its tables that exist)."""


_MODEL_RUNS: dict[tuple[str, str, str, str], str] = {}
"""(tracking URI, experiment, model id, fingerprint) → run id, for this process: a model version's run is found in
MLflow once per process, not on every stage's call (each search is a query of the runs' tags)."""
_CLIENTS: dict[str, MlflowClient] = {}
"""Tracking URI → its client, for this process: a client is made once, not on every call of every stage."""
_EXPERIMENT_IDS: dict[tuple[str, str], str] = {}
"""(tracking URI, experiment name) → its id, for this process: looked up (or created) once."""
_RUN_VERSIONS: dict[tuple[str, str, str], list] = {}
"""(tracking URI, registered name, run id) → the Model Registry versions made from that run, for this process:
the stages that tag a model's registry entry after it is registered find its version without a search."""


def _registry(client: MlflowClient):
    """The client's Model Registry client, for tags on registered models and versions. `MlflowClient` asks the
    registry whether the name is a prompt before setting each such tag (one request more per tag, a fifth of a
    model's requests on a tracking server); these names are models `MlflowTracker` registered itself."""
    return client._get_registry_client()


def model_key(model_id: str) -> str:
    """A digest of a model id (hex only): what runs are searched by, so no id needs quoting in a filter string."""
    return hashlib.sha256(model_id.encode()).hexdigest()[:32]


def filter_literal(value: str) -> str:
    """`value` as a string literal of an MLflow filter: single-quoted, or double-quoted when it holds a `'`.

    MLflow's filter grammar has no escape inside a literal, so a value holding both quotes cannot be written:
    a `ValueError` says so (search by `model_key` instead)."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"{value!r} holds both quote characters: MLflow's filter syntax cannot express it")


def registered_name(model_id: str) -> str:
    """The model's name in MLflow's Model Registry and for its logged model: the id with `/` written `__` (as
    the model store names its folders) and the characters MLflow refuses in names (`: . % " '`) as `_`."""
    return re.sub(r"[:.%\"']", "_", model_id.replace("/", "__"))


class MlflowTracker(ConfigurableResource):
    """Records model artifacts and scores in MLflow (empty URI = SQLite under the store root)."""

    tracking_uri: str = ""
    experiment: str = EXPERIMENT
    ui_url: str = ""
    """Base URL of the MLflow UI the links in Dagster's metadata point at; empty = `$SOMMELIER_MLFLOW_UI`, else the
    tracking server when the URI is http(s), else `DEFAULT_UI_URL` (where `sommelier ui` starts it)."""

    def _uri(self) -> str:
        uri = self.tracking_uri or mlflow_tracking_uri()
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return uri

    def client(self) -> MlflowClient:
        """A client on this tracker's tracking store (it leaves MLflow's process-wide tracking URI alone)."""
        from mlflow import MlflowClient

        uri = self._uri()
        if uri not in _CLIENTS:
            _CLIENTS[uri] = MlflowClient(tracking_uri=uri, registry_uri=uri)  # the registry mirror lives with the runs
        return _CLIENTS[uri]

    def _experiment_id(self, client: MlflowClient | None = None) -> str:
        """The experiment's id, created (of the ML kind, artifacts under the store root) on first use."""
        uri = self._uri()
        if (uri, self.experiment) not in _EXPERIMENT_IDS:
            _EXPERIMENT_IDS[uri, self.experiment] = self._find_or_create_experiment(client or self.client(), uri)
        return _EXPERIMENT_IDS[uri, self.experiment]

    def _find_or_create_experiment(self, client: MlflowClient, uri: str) -> str:
        found = client.get_experiment_by_name(self.experiment)
        own_database = store_root() / "mlflow" / "mlflow.db"
        if found is not None and uri == f"sqlite:///{own_database}":  # the store's own tracking store
            if relocate_artifacts(own_database, found.artifact_location, store_root()):
                found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            if found.tags.get(EXPERIMENT_KIND_TAG) != ML_EXPERIMENT_KIND:  # made by an older version
                client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, ML_EXPERIMENT_KIND)
            return found.experiment_id
        location = mlflow_artifact_root().as_uri() if not self.tracking_uri else None
        try:
            return client.create_experiment(
                self.experiment, artifact_location=location, tags={EXPERIMENT_KIND_TAG: ML_EXPERIMENT_KIND}
            )
        except Exception:  # another process created it first
            return client.get_experiment_by_name(self.experiment).experiment_id

    # -- links ------------------------------------------------------------------------------------------------

    def _ui_base(self) -> str:
        configured = self.ui_url or os.environ.get(MLFLOW_UI_ENV, "")
        if configured:
            return configured.rstrip("/")
        uri = self._uri()
        return uri.rstrip("/") if uri.startswith(("http://", "https://")) else DEFAULT_UI_URL

    def run_url(self, run_id: str, experiment_id: str | None = None) -> str:
        """The MLflow UI's page of a run (in Model training mode)."""
        experiment_id = experiment_id or self._experiment_id()
        return f"{self._ui_base()}/#/experiments/{experiment_id}/runs/{run_id}?{ML_WORKFLOW_QUERY}"

    def experiment_url(self) -> str:
        """The MLflow UI's list of the experiment's runs (in Model training mode)."""
        return f"{self._ui_base()}/#/experiments/{self._experiment_id()}/runs?{ML_WORKFLOW_QUERY}"

    def registered_model_url(self, model_id: str) -> str:
        """The MLflow UI's Model Registry page of a model (in Model training mode)."""
        return f"{self._ui_base()}/#/models/{quote(registered_name(model_id), safe='')}?{ML_WORKFLOW_QUERY}"

    # -- one run per model version ----------------------------------------------------------------------------

    def _model_runs(self, client: MlflowClient, experiment_id: str, model_id: str, fingerprint: str) -> list:
        return client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{MODEL_KEY_TAG}` = '{model_key(model_id)}' and tags.`{FINGERPRINT_TAG}` = "
            + filter_literal(fingerprint),
            order_by=["attributes.start_time ASC"],
        )

    def model_run(self, model_id: str, fingerprint: str) -> tuple[str, bool]:
        """The run of this model version (id, fingerprint), created on first use; and whether it was created now.

        Two stages of one model running at once may both create one: the earliest stays, the other is deleted,
        so a version keeps one run."""
        cache_key = (self._uri(), self.experiment, model_id, fingerprint)
        if cache_key in _MODEL_RUNS:
            return _MODEL_RUNS[cache_key], False
        client = self.client()
        experiment_id = self._experiment_id(client)
        found = sorted(
            self._model_runs(client, experiment_id, model_id, fingerprint),
            key=lambda r: (r.info.start_time, r.info.run_id),
        )
        if found:
            _MODEL_RUNS[cache_key] = found[0].info.run_id
            return found[0].info.run_id, False
        created = client.create_run(
            experiment_id,
            run_name=model_id,
            tags={
                KIND_TAG: "model",
                MODEL_ID_TAG: model_id,
                MODEL_KEY_TAG: model_key(model_id),
                FINGERPRINT_TAG: fingerprint,
                OWNER_TAG: owner_label(),
            },
        )
        client.set_terminated(created.info.run_id)
        runs = sorted(
            self._model_runs(client, experiment_id, model_id, fingerprint),
            key=lambda r: (r.info.start_time, r.info.run_id),
        )
        first = runs[0].info.run_id if runs else created.info.run_id
        if first != created.info.run_id:
            client.delete_run(created.info.run_id)
        _MODEL_RUNS[cache_key] = first
        return first, first == created.info.run_id

    def log_model_run(
        self, model_id: str, fingerprint: str, onnx_path: Path, params: dict[str, str], metrics: dict[str, float]
    ) -> str:
        """Record a model version: its run's params (on creation; MLflow keeps params immutable) and metrics, its
        ONNX file as a logged model named after it, and a Model Registry version of it — each once per version,
        so a re-run updates the same run."""
        run_id, _ = self.model_run(model_id, fingerprint)
        client = self.client()
        run = client.get_run(run_id)
        new_params = {k: str(v) for k, v in params.items() if k not in run.data.params}
        changed = {k: str(v) for k, v in params.items() if k in run.data.params and run.data.params[k] != str(v)}
        self._log(
            client, run_id, metrics=metrics, params=new_params, tags={f"sommelier.{k}": v for k, v in changed.items()}
        )
        self._register(client, run, model_id, onnx_path)
        return run_id

    def log_to_model_run(
        self,
        model_id: str,
        fingerprint: str,
        metrics: dict[str, float] | None = None,
        tags: dict[str, str] | None = None,
    ) -> str:
        """Add metrics (e.g. latency on a device) and tags (accuracy, peers, bounds) to the model version's run,
        creating it if no stage recorded it yet; the registry tags are mirrored onto its registered model."""
        run_id, _ = self.model_run(model_id, fingerprint)
        client = self.client()
        self._log(client, run_id, metrics=metrics or {}, tags=tags or {})
        shown = {k: v for k, v in (tags or {}).items() if k in REGISTRY_TAGS}
        if shown:
            self._tag_registered(client, model_id, run_id, shown)
        return run_id

    def _log(
        self, client: MlflowClient, run_id: str, metrics: dict, params: dict | None = None, tags: dict | None = None
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            params=[Param(k, v) for k, v in (params or {}).items()],
            tags=[RunTag(k, str(v)[:5000]) for k, v in (tags or {}).items()],
        )

    def _register(self, client: MlflowClient, run, model_id: str, onnx_path: Path) -> None:
        """Make the ONNX file the run's logged model and register it, unless this run already has both.

        One copy of the file: where MLflow's artifacts are a local path (the store's own `mlflow/artifacts`, or a
        shared path every cluster worker mounts), the logged model's `model.onnx` is a hard link to the store's file
        — one file on disk under two names, which `cp -a` keeps as one — and a copy only where the two sit on
        different filesystems or MLflow's artifacts are remote (then MLflow's copy is the one the registry serves).
        A logged model left unfinished by a killed run is completed, not duplicated."""
        from mlflow.entities import LoggedModelStatus
        from mlflow.exceptions import MlflowException

        name = registered_name(model_id)
        logged = client.search_logged_models(
            [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
        )
        if logged:
            model = logged[0]
        else:
            model = client.create_logged_model(
                run.info.experiment_id,
                name=name,
                source_run_id=run.info.run_id,
                model_type="onnx",
                tags={MODEL_ID_TAG: model_id},
            )
        if model.status != LoggedModelStatus.READY:
            if not link_artifact(onnx_path, model.artifact_location, ONNX_ARTIFACT):
                with tempfile.TemporaryDirectory() as tmp:
                    shutil.copyfile(onnx_path, Path(tmp) / ONNX_ARTIFACT)
                    client.log_model_artifacts(model.model_id, tmp)
            client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        try:
            client.create_registered_model(name, tags={MODEL_ID_TAG: model_id})
        except MlflowException:  # registered by an earlier version (or a concurrent stage)
            pass
        versions = client.search_model_versions(f"name = {filter_literal(name)} and run_id = '{run.info.run_id}'")
        if not versions:
            version = client.create_model_version(
                name,
                source=model.artifact_location,
                run_id=run.info.run_id,
                model_id=model.model_id,
                tags={MODEL_ID_TAG: model_id, FINGERPRINT_TAG: run.data.tags.get(FINGERPRINT_TAG, "")},
            )
            versions = [version]
        _RUN_VERSIONS[self._uri(), name, run.info.run_id] = versions
        tags = {k: v for k, v in run.data.tags.items() if k in REGISTRY_TAGS}
        if tags:
            self._tag_registered(client, model_id, run.info.run_id, tags, versions)

    def _tag_registered(self, client: MlflowClient, model_id: str, run_id: str, tags: dict, versions=None) -> None:
        """Set `tags` on the registered model and on the version made from `run_id` (when it is registered)."""
        from mlflow.exceptions import MlflowException

        name = registered_name(model_id)
        registry = _registry(client)
        try:
            for key, value in tags.items():
                registry.set_registered_model_tag(name, key, str(value)[:5000])
        except MlflowException:  # not registered yet: `_register` copies the run's tags when it is
            return
        if versions is None:
            versions = _RUN_VERSIONS.get((self._uri(), name, run_id)) or client.search_model_versions(
                f"name = {filter_literal(name)} and run_id = '{run_id}'"
            )
        for version in versions:
            for key, value in tags.items():
                registry.set_model_version_tag(name, version.version, key, str(value)[:5000])

    def terminate_abandoned_runs(self) -> list[str]:
        """Mark KILLED every run of the experiment still RUNNING whose owner process is gone (killed while it
        logged); the ids of those marked. A run of a live process, or of another host, is left alone."""
        return self._terminate_running(lambda owner: not owner_alive(owner))

    def terminate_runs_of(self, owner: str) -> list[str]:
        """Mark KILLED the runs still RUNNING that `owner` (`owner_label()`) started: it is stopping."""
        return self._terminate_running(lambda run_owner: run_owner == owner)

    def _terminate_running(self, chosen) -> list[str]:
        client = self.client()
        experiment = client.get_experiment_by_name(self.experiment)
        if experiment is None:
            return []
        running = client.search_runs([experiment.experiment_id], filter_string="attributes.status = 'RUNNING'")
        ids = [r.info.run_id for r in running if chosen(r.data.tags.get(OWNER_TAG, ""))]
        for run_id in ids:
            client.set_terminated(run_id, status="KILLED")
        return ids

    # -- index builds and operator tables -------------------------------------------------------------------

    def log_index_run(
        self, pairs: pl.DataFrame, statistics: dict[str, float], figures: dict[str, bytes] | None = None
    ) -> str:
        """A run for one index build: the pair-scores table, index statistics and the build's plots (PNG)."""
        client = self.client()
        experiment_id = self._experiment_id(client)
        run = client.create_run(
            experiment_id, run_name="index-build", tags={KIND_TAG: "index", OWNER_TAG: owner_label()}
        )
        self._log(client, run.info.run_id, metrics=statistics)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pair_scores.csv"
            pairs.write_csv(path)
            client.log_artifact(run.info.run_id, str(path))
            for name, png in (figures or {}).items():
                (Path(tmp) / name).write_bytes(png)
                client.log_artifact(run.info.run_id, str(Path(tmp) / name), artifact_path="plots")
        client.set_terminated(run.info.run_id)
        return run.info.run_id

    def log_figures(self, run_id: str, figures: dict[str, bytes]) -> None:
        """Add plots (PNG or SVG bytes by file name) to a run, under `plots/`; a re-run replaces files of the same
        name."""
        client = self.client()
        with tempfile.TemporaryDirectory() as tmp:
            for name, png in figures.items():
                (Path(tmp) / name).write_bytes(png)
                client.log_artifact(run_id, str(Path(tmp) / name), artifact_path="plots")

    def log_operator_table_run(self, device: str, table: pl.DataFrame, latency: pl.DataFrame, statistics: dict) -> str:
        """A run for one device's per-operator latency table: the table (parquet, importable elsewhere),
        the measured latency per model and batch size (CSV), and the table's overheads and size."""
        client = self.client()
        experiment_id = self._experiment_id(client)
        run = client.create_run(
            experiment_id,
            run_name=f"operator-table-{device}",
            tags={KIND_TAG: "operator_table", "sommelier.device": device, OWNER_TAG: owner_label()},
        )
        self._log(client, run.info.run_id, metrics=statistics)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"operator_table_{device}.parquet"
            table.write_parquet(path)
            client.log_artifact(run.info.run_id, str(path))
            csv = Path(tmp) / f"latency_{device}.csv"
            latency.write_csv(csv)
            client.log_artifact(run.info.run_id, str(csv))
        client.set_terminated(run.info.run_id)
        return run.info.run_id


def link_artifact(source: Path, artifact_location: str, name: str) -> bool:
    """Put `source` at `<artifact_location>/<name>` as a hard link (one file, two names) when the location is a
    local path on the same filesystem — or an MLflow server's served location (`mlflow-artifacts:/…`) whose
    destination directory `$SOMMELIER_MLFLOW_ARTIFACTS_DIR` names; False when it is not (remote artifacts, another
    filesystem), and the caller uploads a copy."""
    parsed = urlparse(artifact_location)
    served_dir = os.environ.get(MLFLOW_ARTIFACTS_DIR_ENV)
    if parsed.scheme == "mlflow-artifacts" and served_dir:
        target = Path(served_dir) / unquote(parsed.path).lstrip("/") / name
    elif parsed.scheme in ("", "file"):
        target = Path(unquote(parsed.path)) / name
    else:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if target.exists():
            if os.path.samefile(target, source):
                return True
            target.unlink()
        os.link(source, target)
    except OSError:  # another filesystem (EXDEV), or one without hard links
        return False
    return True


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
