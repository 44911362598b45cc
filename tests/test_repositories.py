"""Repository connectors: listing with metadata and versions, fetching, and clear failures.

Fixtures are built in temporary directories: a local Torch Hub repository (hubconf.py, weight
files, sommelier.json), Keras SavedModels, and a folder of hand-made ONNX graphs. Nothing here
touches the network: unreachable hubs use hosts that cannot resolve or route.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sommelier_core.errors import RepositoryError
from sommelier_core.ingest.repositories import (
    OnnxFolderRepository,
    Repository,
    TFHubRepository,
    TorchHubRepository,
    network,
    repository_from_config,
    torchhub,
)

LABELS = [str(i) for i in range(10)]

HUBCONF = textwrap.dedent(
    """
    dependencies = ["torch"]
    import os
    import torch
    from torch import nn

    _HERE = os.path.dirname(os.path.abspath(__file__))

    def _build(model, name, pretrained):
        if pretrained:
            model.load_state_dict(torch.load(os.path.join(_HERE, name + ".pt"), weights_only=True))
        return model.eval()

    def mlp_tiny(pretrained=True):
        return _build(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), "mlp_tiny", pretrained)

    def linear_tiny(pretrained=True):
        return _build(nn.Sequential(nn.Flatten(), nn.Linear(40, 10)), "linear_tiny", pretrained)
    """
)


def write_torch_hub(hub: Path, metadata: dict | None) -> Path:
    """A local Torch Hub repository with two entry points and seeded weight files."""
    import torch

    hub.mkdir(parents=True)
    (hub / "hubconf.py").write_text(HUBCONF)
    for seed, name in enumerate(["mlp_tiny", "linear_tiny"]):
        torch.manual_seed(seed)
        model = torch.hub.load(str(hub), name, source="local", pretrained=False, verbose=False)
        torch.save(model.state_dict(), hub / f"{name}.pt")
    if metadata is not None:
        (hub / "sommelier.json").write_text(json.dumps(metadata))
    return hub


@pytest.fixture(scope="module")
def torch_hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    metadata = {
        "mlp_tiny": {
            "input_shape": [1, 8, 8],
            "task": "classification",
            "labels": LABELS,
            "family": "mlp",
            "parent": None,
            "transformation": "base",
        },
        "linear_tiny": {"input_shape": [40], "task": "image-classification", "version": "2.1", "width": 10},
    }
    return write_torch_hub(tmp_path_factory.mktemp("torch") / "hub", metadata)


@pytest.fixture(scope="module")
def keras_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of two Keras SavedModels (NCHW input permuted to NHWC) and their sommelier.json."""
    import keras

    root = tmp_path_factory.mktemp("keras") / "savedmodels"
    for name, units in [("keras_cnn", 10), ("keras_embed", 16)]:
        inputs = keras.Input(shape=(1, 8, 8), name="x")
        h = keras.layers.Permute((2, 3, 1))(inputs)
        h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(h)
        h = keras.layers.GlobalAveragePooling2D()(h)
        keras.Model(inputs, keras.layers.Dense(units)(h)).export(str(root / name), verbose=False)
    (root / "sommelier.json").write_text(json.dumps({"keras_cnn": {"family": "cnn", "labels": LABELS}}))
    return root


def gemm_model(n_in: int, n_out: int, seed: int) -> onnx.ModelProto:
    """A one-layer ONNX classifier (N, n_in) -> (N, n_out)."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((n_in, n_out)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"])],
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_out])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def relu_image_model() -> onnx.ModelProto:
    """An ONNX image-to-image model (N, 1, 8, 8) -> (N, 1, 8, 8)."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, 8, 8])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture()
def onnx_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "onnx"
    folder.mkdir()
    onnx.save_model(gemm_model(4, 3, seed=0), str(folder / "gemm.onnx"))
    onnx.save_model(relu_image_model(), str(folder / "relu.onnx"))
    return folder


def test_torchhub_lists_declared_entries_with_metadata_and_version(torch_hub: Path) -> None:
    repo = TorchHubRepository("zoo", torch_hub)
    entries = {e.name: e for e in repo.list_models()}

    assert list(entries) == ["linear_tiny", "mlp_tiny"]
    mlp = entries["mlp_tiny"]
    assert mlp.model_id == "zoo/mlp_tiny"
    assert (mlp.framework, mlp.task, mlp.input_shape, mlp.input_dtype) == (
        "torch",
        "classification",
        (1, 8, 8),
        "float32",
    )
    assert mlp.labels == tuple(LABELS)
    assert mlp.meta()["family"] == "mlp" and mlp.meta()["transformation"] == "base"
    assert "parent" not in mlp.meta(), "null metadata is dropped, not written as 'None'"
    assert list(mlp.metadata) == sorted(mlp.metadata)
    assert len(mlp.version) == 12 and int(mlp.version, 16) >= 0
    linear = entries["linear_tiny"]
    assert (linear.version, linear.task, linear.input_shape, linear.labels) == ("2.1", "classification", (40,), None)
    assert isinstance(repo, Repository)


def test_torchhub_version_follows_the_weight_file(torch_hub: Path, tmp_path: Path) -> None:
    import torch

    copy = Path(shutil.copytree(torch_hub, tmp_path / "hub"))
    before = {e.name: e.version for e in TorchHubRepository("zoo", copy).list_models()}
    state = torch.load(copy / "mlp_tiny.pt", weights_only=True)
    torch.save({k: v + 1 for k, v in state.items()}, copy / "mlp_tiny.pt")
    after = {e.name: e.version for e in TorchHubRepository("zoo", copy).list_models()}

    assert after["mlp_tiny"] != before["mlp_tiny"]
    assert after["linear_tiny"] == before["linear_tiny"] == "2.1"


def test_torchhub_fetch_points_at_the_hub_dir_and_entry_point(torch_hub: Path, tmp_path: Path) -> None:
    repo = TorchHubRepository("zoo", torch_hub, trusted=True)
    entry = next(e for e in repo.list_models() if e.name == "mlp_tiny")

    fetched = repo.fetch(entry, tmp_path)

    assert (fetched.loader, fetched.source_path, fetched.entry_point) == ("torchhub", torch_hub.resolve(), "mlp_tiny")
    assert fetched.entry == entry


def test_torchhub_without_input_shape_names_the_entries_and_the_fix(tmp_path: Path) -> None:
    hub = write_torch_hub(tmp_path / "bare", metadata=None)

    with pytest.raises(RepositoryError) as caught:
        TorchHubRepository("bare", hub).list_models()
    message = str(caught.value)
    assert "linear_tiny" in message and "mlp_tiny" in message
    assert "input_shapes" in message and "sommelier.json" in message

    repo = TorchHubRepository("bare", hub, input_shapes={"mlp_tiny": [1, 8, 8]}, entries=["mlp_tiny"])
    [entry] = repo.list_models()
    assert (entry.name, entry.input_shape, entry.task) == ("mlp_tiny", (1, 8, 8), "classification")


def test_torchhub_declared_entry_missing_from_hubconf_is_an_error(torch_hub: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(torch_hub, tmp_path / "hub"))
    (copy / "sommelier.json").write_text(json.dumps({"ghost": {"input_shape": [3]}}))

    with pytest.raises(RepositoryError, match="ghost.*not an entry point"):
        TorchHubRepository("zoo", copy).list_models()


def test_torchhub_rejects_a_source_that_is_neither_hub_dir_nor_github_ref(tmp_path: Path) -> None:
    repo = TorchHubRepository("zoo", str(tmp_path / "missing dir"))

    with pytest.raises(RepositoryError, match="not a directory with hubconf.py .nor a GitHub reference"):
        repo.list_models()


def test_tfhub_directory_lists_savedmodels_with_signature_shape_and_metadata(keras_dir: Path, tmp_path: Path) -> None:
    repo = TFHubRepository("tf", keras_dir, trusted=True)
    entries = {e.name: e for e in repo.list_models()}

    assert list(entries) == ["keras_cnn", "keras_embed"]
    cnn = entries["keras_cnn"]
    assert (cnn.model_id, cnn.framework, cnn.input_shape, cnn.input_dtype) == (
        "tf/keras_cnn",
        "tensorflow",
        (1, 8, 8),
        "float32",
    )
    assert cnn.labels == tuple(LABELS) and cnn.meta()["family"] == "cnn"
    assert cnn.task == "classification" and len(cnn.version) == 12
    fetched = repo.fetch(cnn, tmp_path)
    assert (fetched.loader, fetched.source_path) == ("savedmodel", (keras_dir / "keras_cnn").resolve())


def test_tfhub_accepts_a_list_of_savedmodel_dirs_with_configured_metadata(keras_dir: Path) -> None:
    repo = TFHubRepository("tf", [keras_dir / "keras_embed"], metadata={"keras_embed": {"task": "embedding"}})

    [entry] = repo.list_models()

    assert (entry.name, entry.task, entry.input_shape) == ("keras_embed", "regression", (1, 8, 8))


def test_onnx_folder_lists_files_with_hash_version_and_guessed_task(onnx_dir: Path, tmp_path: Path) -> None:
    entries = {e.name: e for e in OnnxFolderRepository("files", onnx_dir).list_models()}

    assert list(entries) == ["gemm", "relu"]
    gemm, relu = entries["gemm"], entries["relu"]
    assert (gemm.model_id, gemm.framework, gemm.input_shape, gemm.task) == (
        "files/gemm",
        "onnx",
        (4,),
        "classification",
    )
    assert (relu.input_shape, relu.task) == ((1, 8, 8), "regression")
    assert len(gemm.version) == 12 and gemm.version != relu.version
    fetched = OnnxFolderRepository("files", onnx_dir).fetch(gemm, tmp_path)
    assert (fetched.loader, fetched.source_path) == ("onnx", (onnx_dir / "gemm.onnx").resolve())


def test_onnx_folder_version_changes_with_the_file_and_sidecar_sets_task(onnx_dir: Path) -> None:
    repo = OnnxFolderRepository("files", onnx_dir)
    before = {e.name: e.version for e in repo.list_models()}
    onnx.save_model(gemm_model(4, 3, seed=1), str(onnx_dir / "gemm.onnx"))
    (onnx_dir / "sommelier.json").write_text(json.dumps({"gemm": {"task": "regression", "family": "linear"}}))

    after = {e.name: e for e in repo.list_models()}

    assert after["gemm"].version != before["gemm"] and after["relu"].version == before["relu"]
    assert after["gemm"].task == "regression" and after["gemm"].meta()["family"] == "linear"


def test_onnx_folder_still_lists_an_unreadable_file(onnx_dir: Path) -> None:
    (onnx_dir / "broken.onnx").write_bytes(b"this is not a protobuf")

    entries = {e.name: e for e in OnnxFolderRepository("files", onnx_dir).list_models()}

    assert entries["broken"].input_shape is None
    assert "broken.onnx" in entries["broken"].meta()["listing_note"]


def test_an_undeclared_task_is_classification_for_a_rank_2_output_and_regression_otherwise() -> None:
    from sommelier_core.models import task_for_output_rank

    # (N, classes) is a classifier; (N,), (N, C, L), (N, C, H, W) and an unknown rank are compared as vectors
    assert [task_for_output_rank(rank) for rank in (2, 1, 3, 4, None)] == ["classification"] + ["regression"] * 4


def test_unreachable_github_ref_fails_fast_naming_the_ref(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torchhub, "GITHUB_URL", "https://github.invalid")
    repo = TorchHubRepository("gh", "someone/models:v1", timeout_s=2, trusted=True)

    start = time.monotonic()
    with pytest.raises(RepositoryError, match="someone/models:v1"):
        repo.list_models()
    assert time.monotonic() - start < 5


def test_unreachable_tfhub_url_fails_fast_naming_the_handle() -> None:
    handle = "https://tfhub.invalid/google/imagenet/mobilenet_v2/classification/5"
    repo = TFHubRepository("hub", [handle], timeout_s=2)

    start = time.monotonic()
    with pytest.raises(RepositoryError, match="tfhub.invalid"):
        repo.list_models()
    assert time.monotonic() - start < 5


def test_github_ref_already_in_the_torch_hub_cache_lists_offline(
    torch_hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch.hub

    monkeypatch.setattr(torchhub, "GITHUB_URL", "https://github.invalid")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    cached = Path(shutil.copytree(torch_hub, tmp_path / "someone_models_release_v1"))
    repo = TorchHubRepository("gh", "someone/models:release/v1", trusted=True)

    entries = {e.name: e for e in repo.list_models()}

    assert entries["mlp_tiny"].version == "release/v1" and entries["linear_tiny"].version == "2.1"
    assert repo.fetch(entries["mlp_tiny"], tmp_path).source_path == cached


def test_tfhub_handle_already_in_the_cache_lists_offline(
    keras_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = "https://tfhub.invalid/sommelier/keras/cnn/3"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
    shutil.copytree(keras_dir / "keras_cnn", tmp_path / hashlib.sha1(handle.encode()).hexdigest())

    [entry] = TFHubRepository("hub", [handle], timeout_s=1).list_models()

    assert (entry.model_id, entry.version, entry.input_shape) == ("hub/sommelier-keras-cnn", "3", (1, 8, 8))


def test_a_host_that_drops_packets_times_out_quickly() -> None:
    start = time.monotonic()
    with pytest.raises(RepositoryError, match="cannot reach 192.0.2.1"):
        network.check_reachable("https://192.0.2.1/repo", "test hub", timeout_s=1)
    assert time.monotonic() - start < 4


def test_repository_from_config_builds_each_kind(torch_hub: Path, keras_dir: Path, onnx_dir: Path) -> None:
    assert isinstance(repository_from_config("torchhub", "zoo", str(torch_hub)), TorchHubRepository)
    assert isinstance(repository_from_config("tfhub", "tf", [str(keras_dir / "keras_cnn")]), TFHubRepository)
    repo = repository_from_config("onnx", "files", str(onnx_dir), metadata={"gemm": {"family": "x"}})
    assert isinstance(repo, OnnxFolderRepository) and repo.name == "files"


def test_repository_from_config_rejects_unknown_kind_and_options(onnx_dir: Path) -> None:
    with pytest.raises(RepositoryError, match="unknown kind 'hdf5'.*torchhub.*mlflow"):
        repository_from_config("hdf5", "m", "x")
    with pytest.raises(RepositoryError, match="bad configuration options"):
        repository_from_config("onnx", "files", str(onnx_dir), input_shapez={})


def test_an_onnx_folder_finds_one_model_by_reading_only_its_file(tmp_path, monkeypatch):
    from sommelier_bench.index_cost import generate_onnx_repository
    from sommelier_core.ingest.repositories import onnx_folder

    generate_onnx_repository(tmp_path, 4)
    repository = onnx_folder.OnnxFolderRepository("gen", tmp_path)
    listed = {e.model_id: e for e in repository.list_models()}
    read: list[Path] = []
    interface = onnx_folder._graph_interface
    monkeypatch.setattr(onnx_folder, "_graph_interface", lambda path: read.append(path) or interface(path))
    assert repository.find("gen/cnn_00002") == listed["gen/cnn_00002"]
    assert read == [tmp_path / "cnn_00002.onnx"]  # not the other three
    assert repository.find("gen/absent") is None
