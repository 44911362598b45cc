"""The project configuration (`sommelier.yaml`): parsing with errors that name file and key, editing from the CLI,
the resources reading it, and validation datasets matched to each model's signature."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sommelier_cli.main import main
from sommelier_core.ingest.project_config import (
    CONFIG_ENV,
    ProjectConfigError,
    config_path,
    load_project_config,
    save_project_config,
)
from sommelier_core.ingest.repositories import MlflowRegistryRepository, OnnxFolderRepository, TFHubRepository
from sommelier_core.ingest.validation import (
    ConfiguredDataset,
    DatasetError,
    validation_input_shape,
    validation_set_for,
)
from sommelier_core.models import Signature, TensorSpec
from tests.digits_models import fixed_digits_classifier

EXAMPLE = """
version: 1
repositories:
  - name: lab
    kind: onnx
    location: models/lab
  - name: hub
    kind: tfhub
    location: [saved/a, https://tfhub.dev/google/x/1]
    trusted: true
  - name: registry
    kind: mlflow
    location: sqlite:///mlflow.db
    filter: "name LIKE 'digits%'"
datasets:
  - name: faces
    path: data/faces.npz
    for: float32[?,3,4,4]
settings:
  peers: 3
"""


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A store root with no configuration, and no `$SOMMELIER_CONFIG`."""
    monkeypatch.setenv("SOMMELIER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    return tmp_path / "home"


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def signature(input_shape: tuple, output_shape: tuple = ("N", 10), dtype: str = "float32") -> Signature:
    return Signature((TensorSpec("x", dtype, input_shape),), (TensorSpec("y", "float32", output_shape),))


def npz(path: Path, shape: tuple, n: int = 6, labelled: bool = True) -> Path:
    rng = np.random.default_rng(0)
    arrays = {"x": rng.normal(size=(n, *shape)).astype(np.float32)}
    if labelled:
        arrays["y"] = np.arange(n) % 3
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def test_the_example_parses_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path / "proj" / "sommelier.yaml", EXAMPLE)

    config = load_project_config(path)

    assert [r.name for r in config.repositories] == ["lab", "hub", "registry"]
    lab, hub, registry = config.connectors()
    assert isinstance(lab, OnnxFolderRepository) and lab.folder == tmp_path / "proj" / "models" / "lab"
    assert isinstance(hub, TFHubRepository) and hub.trusted and not lab.trusted
    assert hub.handles == [str(tmp_path / "proj" / "saved" / "a"), "https://tfhub.dev/google/x/1"]
    assert isinstance(registry, MlflowRegistryRepository)
    assert registry.tracking_uri == f"sqlite:///{tmp_path / 'proj' / 'mlflow.db'}"
    assert registry.filter == "name LIKE 'digits%'"
    [faces] = config.resolved_datasets()
    assert faces.path == tmp_path / "proj" / "data" / "faces.npz" and faces.target == "float32[?,3,4,4]"
    assert config.settings_overrides({"peers", "seed"}) == {"peers": 3}


@pytest.mark.parametrize(
    "text, key, expected",
    [
        ("version: 2\n", "version", "expected 1"),
        ("repos: []\n", "repos", "one of the keys version, repositories, datasets, settings"),
        ("repositories:\n  - {name: a, kind: onnx, location: x}\n  - {name: b, kind: zip, location: y}\n",
         "repositories[1].kind", "one of torchhub, tfhub, onnx, mlflow"),
        ("repositories:\n  - {name: a, kind: onnx}\n", "repositories[0].location", "a path, GitHub reference"),
        ("repositories:\n  - {name: a, kind: onnx, location: x, trusted: yes please}\n",
         "repositories[0].trusted", "true or false"),
        ("repositories:\n  - {name: a, kind: onnx, location: x}\n  - {name: a, kind: onnx, location: y}\n",
         "repositories[1].name", "a name not used by another repository"),
        ("repositories:\n  - {name: a, kind: onnx, location: [x, y]}\n", "repositories[0].location",
         "one location for kind 'onnx'"),
        ("repositories:\n  - {name: a, kind: onnx, location: x, filter: f}\n", "repositories[0].filter",
         "only mlflow repositories"),
        ("repositories:\n  - {name: 'a/b', kind: onnx, location: x}\n", "repositories[0].name", "a name of letters"),
        ("datasets:\n  - {name: d, path: d.npz, for: 'three by four'}\n", "datasets[0].for", "an input signature"),
        ("datasets:\n  - {name: d}\n", "datasets[0].path", "a non-empty string"),
        ("settings: [1]\n", "settings", "a mapping of index setting names"),
        ("repositories: {\n", "", "not valid YAML"),
    ],
)
def test_errors_name_the_file_the_key_and_what_was_expected(tmp_path: Path, text: str, key: str, expected: str) -> None:
    path = write_config(tmp_path / "sommelier.yaml", text)
    with pytest.raises((ProjectConfigError, DatasetError)) as error:
        load_project_config(path)
    message = str(error.value)
    assert str(path) in message and f"{key}" in message and expected in message


def test_unknown_index_settings_are_named_with_the_known_ones(tmp_path: Path) -> None:
    config = load_project_config(write_config(tmp_path / "sommelier.yaml", "settings: {peers: 3, peer: 4}\n"))
    with pytest.raises(ProjectConfigError, match=r"settings\.peer: unknown index setting; expected one of peers, seed"):
        config.settings_overrides({"peers", "seed"})


def test_the_file_is_found_at_the_store_root_or_where_the_environment_says(home: Path, monkeypatch) -> None:
    assert config_path() == home / "sommelier.yaml"
    assert load_project_config().repositories == ()  # no file: an empty configuration
    monkeypatch.setenv(CONFIG_ENV, str(home.parent / "elsewhere.yaml"))
    assert config_path() == home.parent / "elsewhere.yaml"


def test_saving_round_trips_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = write_config(tmp_path / "sommelier.yaml", EXAMPLE)
    config = load_project_config(path)

    save_project_config(config.without_repository("hub"))

    again = load_project_config(path)
    assert [r.name for r in again.repositories] == ["lab", "registry"]
    assert again.datasets == config.datasets and again.settings == {"peers": 3}
    assert again.repository("registry").options == {"filter": "name LIKE 'digits%'"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sommelier.yaml"]
    assert path.read_text().startswith("# Sommelier project configuration")


def test_cli_repo_add_list_remove_edit_the_configuration(home: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    folder = home / "models"
    folder.mkdir(parents=True)
    monkeypatch.chdir(home)

    assert main(["repo", "add", "onnx", "lab", "models"]) == 0
    assert main(["repo", "add", "mlflow", "reg", "sqlite:///reg.db", "--filter", "name = 'x'", "--trust"]) == 0
    assert main(["repo", "list", "--json"]) == 0

    listed = json.loads(capsys.readouterr().out.split("\n", 2)[-1])
    assert listed["config"] == str(home / "sommelier.yaml")
    assert listed["repositories"] == [
        {"name": "lab", "kind": "onnx", "location": ["models"], "trusted": False},
        {"name": "reg", "kind": "mlflow", "location": ["sqlite:///reg.db"], "trusted": True, "filter": "name = 'x'"},
    ]
    assert main(["repo", "add", "onnx", "lab", "models"]) == 2  # already there
    assert "already configured; remove it first" in capsys.readouterr().err
    assert main(["repo", "remove", "lab"]) == 0
    assert [r.name for r in load_project_config().repositories] == ["reg"]
    assert main(["repo", "remove", "lab"]) == 2
    assert "no repository named 'lab' (configured: reg)" in capsys.readouterr().err


def test_cli_config_option_points_every_command_at_another_file(home: Path, tmp_path: Path, monkeypatch) -> None:
    other = tmp_path / "elsewhere" / "project.yaml"
    (tmp_path / "models").mkdir()
    try:
        assert main(["--config", str(other), "repo", "add", "onnx", "lab", str(tmp_path / "models")]) == 0
        assert load_project_config(other).repository("lab").location == (str(tmp_path / "models"),)
        assert not (home / "sommelier.yaml").exists()
    finally:
        monkeypatch.delenv(CONFIG_ENV, raising=False)  # `--config` sets it for subprocesses


def test_cli_data_add_checks_the_file_and_records_what_it_is_for(home: Path, capsys) -> None:
    data = npz(home / "data" / "small.npz", (3, 4, 4))

    assert main(["data", "add", "small", str(data), "--for", "float32[?,3,4,4]"]) == 0
    assert "samples (3, 4, 4)" in capsys.readouterr().out
    [dataset] = load_project_config().datasets
    assert dataset.path == Path("data/small.npz") and dataset.target == "float32[?,3,4,4]"
    assert main(["data", "add", "bad", str(home / "missing.npz")]) == 2
    assert main(["data", "add", "bad", str(data), "--for", "RGB pictures"]) == 2
    assert "expected an input signature" in capsys.readouterr().err


def test_repositories_resource_reads_the_configuration_else_the_builtin_zoo(home: Path) -> None:
    from resources.repositories import RepositoriesResource, RepositoryConfig

    assert [r.name for r in RepositoriesResource().connectors()] == ["zoo-torch", "zoo-tf"]
    folder = home / "lab"
    folder.mkdir(parents=True)
    fixed_digits_classifier(folder / "m.onnx")
    write_config(home / "sommelier.yaml", "repositories:\n  - {name: lab, kind: onnx, location: lab}\n")

    assert [e.model_id for e in RepositoriesResource().list_models().entries] == ["lab/m"]
    given = RepositoriesResource(repositories=[RepositoryConfig(kind="onnx", name="x", location=[str(folder)])])
    assert [e.model_id for e in given.list_models().entries] == ["x/m"]  # given in code: wins over the file


def test_each_model_gets_the_configured_dataset_of_its_signature(tmp_path: Path) -> None:
    small = ConfiguredDataset("small", npz(tmp_path / "small.npz", (3, 4, 4)), "float32[?,3,4,4]")
    wide = ConfiguredDataset("wide", npz(tmp_path / "wide.npz", (12,), n=4), "12")
    regression = ConfiguredDataset("vectors", npz(tmp_path / "vectors.npz", (5,), n=3), "regression")
    anything = ConfiguredDataset("anything", npz(tmp_path / "any.npz", (5,), n=2))
    datasets = [small, wide, regression, anything]

    def chosen(sig: Signature) -> tuple[str, int]:
        data = validation_set_for("r/m", sig, configured=datasets)
        return data.name, len(data.x)

    assert chosen(signature(("N", 3, 4, 4))) == ("small", 6)
    assert chosen(signature(("N", 3, "H", "W"))) == ("small", 6)  # symbolic dims take the declared set
    assert chosen(signature(("N", 12))) == ("wide", 4)
    assert chosen(signature(("N", 5), ("N", 2, 3))) == ("vectors", 3)  # a regression model: its task's set
    assert chosen(signature(("N", 5))) == ("anything", 2)  # a classifier: the set declared for nothing
    assert chosen(signature(("N", 1, 8, 8))) == ("digits", 597)  # nothing configured fits: the built-in set
    assert validation_input_shape("r/m", signature(("N", 3, "H", "W")), configured=datasets) == (3, 4, 4)


def test_a_model_no_dataset_fits_fails_naming_its_signature_and_the_command(tmp_path: Path) -> None:
    datasets = [ConfiguredDataset("small", npz(tmp_path / "small.npz", (3, 4, 4)), "float32[?,3,4,4]")]
    with pytest.raises(DatasetError) as error:
        validation_set_for("lab/odd", signature(("N", 3, 5)), configured=datasets)
    message = str(error.value)
    assert "lab/odd" in message and "(N, 3, 5)" in message
    assert "sommelier data add NAME PATH --for float32[?,3,5]" in message


def test_a_folder_of_images_becomes_inputs_as_its_preprocessing_states(tmp_path: Path) -> None:
    from PIL import Image

    for label, value in (("cat", 255), ("dog", 0)):
        (tmp_path / "pics" / label).mkdir(parents=True)
        Image.new("RGB", (6, 4), (value, value // 2, 0)).save(tmp_path / "pics" / label / "1.png")
    pics = ConfiguredDataset(
        "pics", tmp_path / "pics", "", (("size", [2, 3]), ("channels", 3), ("mean", [0.5, 0.0, 0.0]))
    )

    data = pics.load()

    assert data.x.shape == (2, 3, 2, 3) and pics.sample_shape() == (3, 2, 3)
    assert data.y.tolist() == [0, 1]  # cat, dog: class folders in sorted order
    assert data.x[0, 0, 0, 0] == pytest.approx(0.5) and data.x[1, 0, 0, 0] == pytest.approx(-0.5)
    assert data.x[0, 1, 0, 0] == pytest.approx(127 / 255)
    no_size = ConfiguredDataset("pics", tmp_path / "pics")
    with pytest.raises(DatasetError, match=r"preprocessing\.size: expected \[height, width\]"):
        no_size.load()


def test_index_settings_come_from_the_configuration_with_the_environment_on_top(home: Path) -> None:
    from pipelines.definitions import build_resources
    from resources.settings import IndexSettings

    write_config(home / "sommelier.yaml", "version: 1\nsettings:\n  peers: 7\n  bound_mode: arora\n")
    assert IndexSettings.from_project_config().peers == 7
    assert IndexSettings.from_project_config(peers=3).peers == 3
    assert build_resources("local")["settings"].bound_mode == "arora"

    write_config(home / "sommelier.yaml", "version: 1\nsettings:\n  peers: many\n")
    with pytest.raises(ProjectConfigError, match=r"sommelier\.yaml: settings\.peers: .*'many'"):
        IndexSettings.from_project_config()
