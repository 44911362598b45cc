"""The project configuration, `sommelier.yaml`: the repositories to index, validation datasets, index settings.

It lives at the store root (`<SOMMELIER_HOME>/sommelier.yaml`) unless `$SOMMELIER_CONFIG` (set by the CLI's
global `--config PATH`) names another file. `sommelier index`, the Dagster definitions (sensor, schedule,
launchpad) and `sommelier ui` read it through their resources; `sommelier repo …` and `sommelier data …` edit it.
A missing file is an empty configuration (the built-in zoo is indexed). The format, version 1:

```yaml
version: 1
repositories:
  - name: lab                 # the first segment of its models' ids
    kind: onnx                # torchhub | tfhub | onnx | mlflow
    location: models/lab      # dir, GitHub owner/repo[:ref], TF-Hub handles (a list), or an MLflow tracking URI
    trusted: false            # true lets models that run code when loaded be indexed (hubconf, pickles, SavedModels)
  - name: registry
    kind: mlflow
    location: sqlite:///mlflow.db
    filter: "name LIKE 'digits%'"   # optional MLflow filter over registered models
datasets:
  - name: faces
    path: data/faces.npz      # an .npz with `x` (and optional `y`), or a folder of images / .npy arrays
    for: "float32[?,3,32,32]" # optional: an input signature, a shape (3x32x32) or a task (classification)
    preprocessing: {size: [32, 32], channels: 3, scale: 0.00392156862745098, layout: NCHW}  # folders only
settings:                     # index settings (fields of resources.settings.IndexSettings)
  peers: 5
```

Relative paths (repository folders, dataset paths, `sqlite:///` URIs) are relative to the file's folder. Every
error names the file, the key (`repositories[1].kind`) and what was expected (`ProjectConfigError`). Edits are
written to a temporary file and renamed; PyYAML does not keep comments, so an edited file loses them (the
header comment Sommelier writes says so).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sommelier_core.errors import SommelierError
from sommelier_core.ingest.repositories import REPOSITORY_KINDS, Repository, repository_from_config
from sommelier_core.ingest.repositories.trust import PROJECT_CONFIG_FILE
from sommelier_core.ingest.validation import ConfiguredDataset, check_dataset_target
from sommelier_core.settings import store_root

CONFIG_FILE = PROJECT_CONFIG_FILE
"""The file name at the store root."""
CONFIG_ENV = "SOMMELIER_CONFIG"
"""The environment variable naming another configuration file (what the CLI's `--config` sets)."""
CONFIG_VERSION = 1
REPOSITORY_OPTIONS = ("filter", "input_shapes", "metadata", "entries", "timeout_s")
"""Connector options a repository entry may carry besides name, kind, location and trusted."""
_REPOSITORY_KEYS = ("name", "kind", "location", "trusted", *REPOSITORY_OPTIONS)
_DATASET_KEYS = ("name", "path", "for", "preprocessing")
_TOP_KEYS = ("version", "repositories", "datasets", "settings")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HEADER = (
    "# Sommelier project configuration (docs/repositories.md). Written by `sommelier repo` / `sommelier data`:\n"
    "# comments other than this header are not kept when they edit it.\n"
)


class ProjectConfigError(SommelierError):
    """The project configuration cannot be read, or a key holds something other than what is expected."""


@dataclass(frozen=True)
class RepositorySpec:
    """One configured repository, as written (locations relative to the configuration's folder allowed)."""

    name: str
    kind: str
    location: tuple[str, ...]
    trusted: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)

    def connector(self, base_dir: Path) -> Repository:
        """The repository connector, with relative locations resolved against `base_dir`."""
        locations = [resolve_location(self.kind, loc, base_dir) for loc in self.location]
        location: str | list[str] = locations if self.kind == "tfhub" else locations[0]
        return repository_from_config(self.kind, self.name, location, trusted=self.trusted, **dict(self.options))

    def as_yaml(self) -> dict[str, Any]:
        """The entry as the file holds it."""
        location: str | list[str] = self.location[0] if len(self.location) == 1 else list(self.location)
        return {"name": self.name, "kind": self.kind, "location": location, "trusted": self.trusted, **self.options}


@dataclass(frozen=True)
class ProjectConfig:
    """The parsed configuration; `path` is where it was read from (it may not exist yet)."""

    path: Path
    repositories: tuple[RepositorySpec, ...] = ()
    datasets: tuple[ConfiguredDataset, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        """The folder relative paths are read from: the configuration file's."""
        return self.path.parent

    def repository(self, name: str) -> RepositorySpec:
        """The repository called `name`; a `ProjectConfigError` naming the configured ones otherwise."""
        for spec in self.repositories:
            if spec.name == name:
                return spec
        known = ", ".join(s.name for s in self.repositories) or "none"
        raise ProjectConfigError(f"{self.path}: no repository named {name!r} (configured: {known})")

    def connectors(self) -> list[Repository]:
        """A connector per configured repository, in file order."""
        return [spec.connector(self.base_dir) for spec in self.repositories]

    def resolved_datasets(self) -> tuple[ConfiguredDataset, ...]:
        """The datasets with their paths resolved against the configuration's folder."""
        return tuple(replace(d, path=(self.base_dir / d.path).resolve()) for d in self.datasets)

    def settings_overrides(self, known: Collection[str]) -> dict[str, Any]:
        """The `settings:` mapping, its keys checked against `known` (the index settings' field names)."""
        unknown = sorted(set(self.settings) - set(known))
        if unknown:
            raise ProjectConfigError(
                f"{self.path}: settings.{unknown[0]}: unknown index setting; expected one of {', '.join(sorted(known))}"
            )
        return dict(self.settings)

    def with_repository(self, spec: RepositorySpec, replace_existing: bool = False) -> ProjectConfig:
        """This configuration with `spec` added (or replacing the one of its name when `replace_existing`)."""
        _check_name(spec.name, self.path, "repositories[].name")
        if spec.kind not in REPOSITORY_KINDS:
            raise ProjectConfigError(
                f"{self.path}: repository {spec.name!r}: kind {spec.kind!r}; "
                f"expected one of {', '.join(REPOSITORY_KINDS)}"
            )
        names = [s.name for s in self.repositories]
        if spec.name in names and not replace_existing:
            raise ProjectConfigError(
                f"{self.path}: a repository named {spec.name!r} is already configured; remove it first "
                f"(`sommelier repo remove {spec.name}`)"
            )
        kept = tuple(s for s in self.repositories if s.name != spec.name)
        return replace(self, repositories=(*kept, spec))

    def without_repository(self, name: str) -> ProjectConfig:
        """This configuration without the repository `name` (which must be configured)."""
        self.repository(name)
        return replace(self, repositories=tuple(s for s in self.repositories if s.name != name))

    def with_dataset(self, dataset: ConfiguredDataset) -> ProjectConfig:
        """This configuration with `dataset` added, replacing one of the same name."""
        _check_name(dataset.name, self.path, "datasets[].name")
        check_dataset_target(dataset.target, f"{self.path}: datasets[{dataset.name}].for")
        kept = tuple(d for d in self.datasets if d.name != dataset.name)
        return replace(self, datasets=(*kept, dataset))

    def without_dataset(self, name: str) -> ProjectConfig:
        """This configuration without the dataset `name` (which must be configured)."""
        if name not in {d.name for d in self.datasets}:
            known = ", ".join(d.name for d in self.datasets) or "none"
            raise ProjectConfigError(f"{self.path}: no dataset named {name!r} (configured: {known})")
        return replace(self, datasets=tuple(d for d in self.datasets if d.name != name))

    def as_yaml(self) -> dict[str, Any]:
        """The configuration as the file holds it."""
        data: dict[str, Any] = {"version": CONFIG_VERSION, "repositories": [s.as_yaml() for s in self.repositories]}
        data["datasets"] = [_dataset_yaml(d) for d in self.datasets]
        if self.settings:
            data["settings"] = dict(self.settings)
        return data


def config_path() -> Path:
    """Where the project configuration is: `$SOMMELIER_CONFIG`, else `sommelier.yaml` at the store root."""
    configured = os.environ.get(CONFIG_ENV, "").strip()
    return Path(configured).expanduser().resolve() if configured else store_root() / CONFIG_FILE


def load_project_config(path: Path | str | None = None) -> ProjectConfig:
    """The configuration at `path` (default `config_path()`); an absent file is an empty configuration."""
    import yaml

    path = Path(path) if path is not None else config_path()
    if not path.exists():
        return ProjectConfig(path=path.resolve())
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectConfigError(f"{path}: cannot read the project configuration: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ProjectConfigError(f"{path}: not valid YAML: {_one_line(str(exc))}") from exc
    return parse_project_config(raw if raw is not None else {}, path.resolve())


def parse_project_config(raw: object, path: Path) -> ProjectConfig:
    """A `ProjectConfig` from the file's parsed YAML; every error names `path`, the key and what was expected."""
    where = _Where(path)
    mapping = where.mapping(raw, "(top level)", _TOP_KEYS)
    version = mapping.get("version", CONFIG_VERSION)
    if version != CONFIG_VERSION:
        where.fail("version", f"{CONFIG_VERSION} (the only version this Sommelier reads)", version)
    repositories = tuple(
        _repository(where, item, f"repositories[{i}]") for i, item in enumerate(where.sequence(mapping, "repositories"))
    )
    names = [r.name for r in repositories]
    for i, name in enumerate(names):
        if name in names[:i]:
            where.fail(f"repositories[{i}].name", "a name not used by another repository", name)
    datasets = tuple(
        _dataset(where, item, f"datasets[{i}]") for i, item in enumerate(where.sequence(mapping, "datasets"))
    )
    settings = mapping.get("settings") or {}
    if not isinstance(settings, dict) or not all(isinstance(k, str) for k in settings):
        where.fail("settings", "a mapping of index setting names to values", settings)
    return ProjectConfig(path=path, repositories=repositories, datasets=datasets, settings=settings)


def save_project_config(config: ProjectConfig) -> Path:
    """Write `config` to its path atomically (a temporary file in the same folder, renamed over it)."""
    import yaml

    config.path.parent.mkdir(parents=True, exist_ok=True)
    text = _HEADER + yaml.safe_dump(config.as_yaml(), sort_keys=False, default_flow_style=False)
    handle, temporary = tempfile.mkstemp(prefix=f".{config.path.name}.", dir=config.path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(temporary, config.path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return config.path


def resolve_location(kind: str, location: str, base_dir: Path) -> str:
    """A location with a relative path made absolute against `base_dir`: folders and SavedModel directories,
    `sqlite:///relative.db` tracking URIs. GitHub references, URLs and absolute paths stay as they are."""
    if kind == "mlflow":
        prefix = "sqlite:///"
        if location.startswith(prefix) and not location.startswith(prefix + "/"):
            return prefix + str((base_dir / location[len(prefix) :]).resolve())
        return location
    if "://" in location or Path(location).expanduser().is_absolute():
        return str(Path(location).expanduser()) if "://" not in location else location
    candidate = base_dir / location
    if kind == "torchhub" and not candidate.exists() and re.match(r"^[\w.-]+/[\w.-]+(:[\w./-]+)?$", location):
        return location  # a GitHub reference, not a folder next to the configuration
    return str(candidate.resolve())


def written_location(kind: str, location: str, base_dir: Path) -> str:
    """A location typed on the command line (relative to the working directory) as the file should hold it:
    relative to the configuration's folder when inside it, else absolute. URLs, URIs and GitHub refs are kept."""
    if kind == "mlflow":
        prefix = "sqlite:///"
        if location.startswith(prefix) and not location.startswith(prefix + "/"):
            return prefix + _relative_or_absolute(Path(location[len(prefix) :]), base_dir)
        return location
    if "://" in location:
        return location
    path = Path(location).expanduser()
    if kind == "torchhub" and not path.exists() and re.match(r"^[\w.-]+/[\w.-]+(:[\w./-]+)?$", location):
        return location
    return _relative_or_absolute(path, base_dir)


def _relative_or_absolute(path: Path, base_dir: Path) -> str:
    resolved = path.resolve()
    base = base_dir.resolve()
    return str(resolved.relative_to(base)) if resolved.is_relative_to(base) else str(resolved)


class _Where:
    """Error messages that name the file and the key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, expected: str, got: object) -> None:
        raise ProjectConfigError(f"{self.path}: {key}: expected {expected}, got {got!r}")

    def mapping(self, value: object, key: str, allowed: Sequence[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(key, "a mapping", value)
        unknown = [k for k in value if k not in allowed]  # type: ignore[union-attr]
        if unknown:
            prefix = "" if key == "(top level)" else f"{key}."
            self.fail(f"{prefix}{unknown[0]}", f"one of the keys {', '.join(allowed)}", unknown[0])
        return value  # type: ignore[return-value]

    def sequence(self, mapping: Mapping[str, Any], key: str) -> list[Any]:
        value = mapping.get(key) or []
        if not isinstance(value, list):
            self.fail(key, "a list", value)
        return value

    def text(self, mapping: Mapping[str, Any], key: str, where: str, required: bool = True) -> str:
        value = mapping.get(key)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{where}.{key}", "a non-empty string", value)
        return value.strip()  # type: ignore[union-attr]


def _repository(where: _Where, item: object, key: str) -> RepositorySpec:
    mapping = where.mapping(item, key, _REPOSITORY_KEYS)
    name = where.text(mapping, "name", key)
    _check_name(name, where.path, f"{key}.name")
    kind = where.text(mapping, "kind", key)
    if kind not in REPOSITORY_KINDS:
        where.fail(f"{key}.kind", f"one of {', '.join(REPOSITORY_KINDS)}", kind)
    location = mapping.get("location")
    locations = location if isinstance(location, list) else [location]
    if not locations or not all(isinstance(loc, str) and loc.strip() for loc in locations):
        where.fail(f"{key}.location", "a path, GitHub reference, URL or tracking URI (or a list of them)", location)
    if len(locations) > 1 and kind != "tfhub":
        where.fail(f"{key}.location", f"one location for kind {kind!r} (only tfhub takes a list)", location)
    trusted = mapping.get("trusted", False)
    if not isinstance(trusted, bool):
        where.fail(f"{key}.trusted", "true or false", trusted)
    options = {k: mapping[k] for k in REPOSITORY_OPTIONS if k in mapping}
    if "filter" in options and kind != "mlflow":
        where.fail(f"{key}.filter", "no filter: only mlflow repositories take one", options["filter"])
    for option, expected_type, text in (
        ("filter", str, "an MLflow search filter string"),
        ("input_shapes", dict, "a mapping of model names to shapes"),
        ("metadata", dict, "a mapping of model names to metadata mappings"),
        ("entries", list, "a list of entry point names"),
        ("timeout_s", (int, float), "a number of seconds"),
    ):
        if option in options and not isinstance(options[option], expected_type):
            where.fail(f"{key}.{option}", text, options[option])
    return RepositorySpec(name, kind, tuple(s.strip() for s in locations), trusted, options)


def _dataset(where: _Where, item: object, key: str) -> ConfiguredDataset:
    mapping = where.mapping(item, key, _DATASET_KEYS)
    name = where.text(mapping, "name", key)
    _check_name(name, where.path, f"{key}.name")
    path = where.text(mapping, "path", key)
    target = where.text(mapping, "for", key, required=False)
    check_dataset_target(target, f"{where.path}: {key}.for")
    preprocessing = mapping.get("preprocessing") or {}
    if not isinstance(preprocessing, dict):
        where.fail(f"{key}.preprocessing", "a mapping (size, channels, scale, mean, std, layout)", preprocessing)
    return ConfiguredDataset(name, Path(path), target, tuple(sorted(preprocessing.items())))


def _dataset_yaml(dataset: ConfiguredDataset) -> dict[str, Any]:
    data: dict[str, Any] = {"name": dataset.name, "path": str(dataset.path)}
    if dataset.target:
        data["for"] = dataset.target
    if dataset.preprocessing:
        data["preprocessing"] = dict(dataset.preprocessing)
    return data


def _check_name(name: str, path: Path, key: str) -> None:
    if not _NAME.match(name):
        raise ProjectConfigError(
            f"{path}: {key}: expected a name of letters, digits, '.', '_' and '-' (not starting with a "
            f"punctuation mark), got {name!r}"
        )


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())
