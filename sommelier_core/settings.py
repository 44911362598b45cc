"""Where Sommelier keeps things: one store root for Dagster, MLflow, models and indexes (design §8)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

STORE_ROOT_ENV = "SOMMELIER_HOME"
MLFLOW_UI_ENV = "SOMMELIER_MLFLOW_UI"
"""The MLflow UI's base URL when not the default: `sommelier ui` sets it, the MLflow resource links to it."""
DEFAULT_STORE_DIR = ".sommelier"

DEPLOYMENT_ENV = "SOMMELIER_DEPLOYMENT"
"""Which resource set and executor `pipelines.definitions` builds: one of `DEPLOYMENTS`."""
DEPLOYMENTS = ("local", "cluster")
"""`local`: SQLite instance under the store root, multiprocess executor. `cluster`: the instance `$DAGSTER_HOME`
names (PostgreSQL), steps as Celery tasks, MLflow tracking server — what `deploy/local-cluster up` starts."""
DAGSTER_UI_ENV = "SOMMELIER_DAGSTER_UI"
"""The cluster's Dagster webserver URL (set by `deploy/local-cluster env`); `sommelier ui` points at it."""
CELERY_BROKER_ENV = "SOMMELIER_CELERY_BROKER"
DEFAULT_CELERY_BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
"""The local RabbitMQ every project machine and CI runs."""
CELERY_QUEUE_ENV = "SOMMELIER_CELERY_QUEUE"
DEFAULT_CELERY_QUEUE = "sommelier"
"""The Celery queue steps are sent to and workers listen on (one per cluster, so two clusters on one broker
never take each other's steps)."""
REPOSITORIES_ENV = "SOMMELIER_REPOSITORIES"
"""The repositories a cluster indexes, as JSON `[{"kind": .., "name": .., "location": [..]}]` (empty = built-in zoo)."""
MLFLOW_ARTIFACTS_DIR_ENV = "SOMMELIER_MLFLOW_ARTIFACTS_DIR"
"""Where an MLflow server keeps the artifacts it serves (its `--artifacts-destination`), when every worker reaches that
path (the cluster's shared store): model files are then hard-linked there, one copy, instead of uploaded."""
INDEX_SETTINGS_ENV = "SOMMELIER_INDEX_SETTINGS"
"""A cluster's index settings (fields of `resources.settings.IndexSettings`) as a JSON object (empty = defaults)."""


def store_root() -> Path:
    """The store root: `$SOMMELIER_HOME`, else `.sommelier/` in the working directory (absolute)."""
    return Path(os.environ.get(STORE_ROOT_ENV) or Path.cwd() / DEFAULT_STORE_DIR).resolve()


def deployment() -> str:
    """`$SOMMELIER_DEPLOYMENT` (default `local`), checked against `DEPLOYMENTS`."""
    name = os.environ.get(DEPLOYMENT_ENV) or DEPLOYMENTS[0]
    if name not in DEPLOYMENTS:
        raise ValueError(f"{DEPLOYMENT_ENV}={name!r}: expected one of {', '.join(DEPLOYMENTS)}")
    return name


def dagster_home(root: Path | None = None) -> Path:
    """The Dagster instance directory: on the cluster `$DAGSTER_HOME` (its dagster.yaml names PostgreSQL),
    else `dagster/` under the store root."""
    if root is None and deployment() == "cluster" and os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"])
    return (root or store_root()) / "dagster"


EMBEDDED_EVENT_LOG_DIR = ("history", "runs")
"""Where, under the embedded instance's directory, its event logs are (Dagster's default: one database per run)."""
EMBEDDED_INSTANCE_CONFIG = """\
telemetry:
  enabled: false
event_log_storage:
  module: resources.dagster_instance
  class: KeptOpenSqliteEventLogStorage
  config:
    base_dir: {base_dir}
"""
"""The embedded instance's `dagster.yaml` (with `base_dir` filled in): runs and schedules in Dagster's default SQLite
storage, the event log in Dagster's SQLite files too, at Dagster's default path, opened by
`resources.dagster_instance.KeptOpenSqliteEventLogStorage`."""
EARLIER_INSTANCE_CONFIGS = ("telemetry:\n  enabled: false\n",)
"""`dagster.yaml` files earlier versions wrote; `write_instance_config` replaces them (a user's own is kept)."""


def write_instance_config(home: Path) -> Path:
    """Write the embedded instance's `dagster.yaml` into `home` if it has none, has one an earlier version of
    Sommelier wrote, or has one written for another directory (the store was moved: the event log's path in it is
    absolute, as Dagster needs it); a file the user edited is left alone. Its path."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    text = EMBEDDED_INSTANCE_CONFIG.format(base_dir=json.dumps(str(home.resolve().joinpath(*EMBEDDED_EVENT_LOG_DIR))))
    ours = re.compile(re.escape(EMBEDDED_INSTANCE_CONFIG).replace(re.escape("{base_dir}"), '".*"'))
    current = config.read_text() if config.exists() else None
    if current is None or current in EARLIER_INSTANCE_CONFIGS or (current != text and ours.fullmatch(current)):
        config.write_text(text)
    return config


def celery_broker() -> str:
    """The Celery broker URL: `$SOMMELIER_CELERY_BROKER`, else the local RabbitMQ."""
    return os.environ.get(CELERY_BROKER_ENV) or DEFAULT_CELERY_BROKER


def celery_settings() -> dict:
    """Celery settings the cluster's executor and its workers share (they must agree).

    Late acknowledgement with rejection on worker loss: a step whose worker dies is handed to another worker
    instead of being lost (the step is idempotent: records are written atomically, MLflow runs looked up by
    model version). Prefetch 1: a worker takes one step at a time, so steps spread over the workers. No AMQP
    heartbeat: a worker busy with a long step (the operator table's sweep) cannot send one, and the broker would
    drop its connection and hand the step to a second worker while the first still runs it; a worker that dies
    closes its connection, which is what hands its step on.
    """
    return {
        "task_default_queue": os.environ.get(CELERY_QUEUE_ENV) or DEFAULT_CELERY_QUEUE,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_heartbeat": 0,
        "broker_connection_retry_on_startup": True,
    }


def configured_repositories() -> list[dict]:
    """The repositories `$SOMMELIER_REPOSITORIES` lists (kind, name, location), or [] for the built-in zoo."""
    text = os.environ.get(REPOSITORIES_ENV, "").strip()
    if not text:
        return []
    try:
        listed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{REPOSITORIES_ENV}: not JSON ({exc})") from exc
    if not isinstance(listed, list) or not all(
        isinstance(r, dict) and {"kind", "name", "location"} <= set(r) for r in listed
    ):
        raise ValueError(f'{REPOSITORIES_ENV}: expected a JSON list of {{"kind", "name", "location"}} objects')
    return listed


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


def configured_index_settings() -> dict:
    """The index settings `$SOMMELIER_INDEX_SETTINGS` sets (a JSON object of `IndexSettings` fields), or {}."""
    text = os.environ.get(INDEX_SETTINGS_ENV, "").strip()
    try:
        settings = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{INDEX_SETTINGS_ENV}: not JSON ({exc})") from exc
    if not isinstance(settings, dict):
        raise ValueError(f"{INDEX_SETTINGS_ENV}: expected a JSON object of index settings, got {text!r}")
    return settings
