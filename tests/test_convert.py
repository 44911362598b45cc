"""Conversion to ONNX: numerical parity with the original framework, fingerprints, failures.

Fixtures are built in temporary directories: a local Torch Hub repository with a residual CNN
(Add + grouped conv), an MLP and a model that changes behaviour while being exported; a Keras
SavedModel taking NCHW input through a Permute layer; hand-made ONNX files.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sommelier_core.errors import ConversionError, ConversionMismatch
from sommelier_core.inference import run_onnx
from sommelier_core.ingest.convert import (
    Conversion,
    convert_model,
    fingerprint,
    load_native,
    load_onnx,
    onnx_signature,
    parity_errors,
)
from sommelier_core.ingest.repositories import OnnxFolderRepository, TFHubRepository, TorchHubRepository
from sommelier_core.models import FetchedModel, ModelEntry

HUBCONF = textwrap.dedent(
    """
    dependencies = ["torch"]
    import os
    import torch
    from torch import nn

    _HERE = os.path.dirname(os.path.abspath(__file__))

    class _Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 4, 3, padding=1)
            self.grouped = nn.Conv2d(4, 4, 3, padding=1, groups=2)
            self.head = nn.Linear(4, 10)

        def forward(self, x):
            h = torch.relu(self.stem(x))
            h = h + torch.relu(self.grouped(h))
            return self.head(h.mean(dim=(2, 3)))

    class _ExportSensitive(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            y = self.fc(x.flatten(1))
            return y + 1.0 if torch.onnx.is_in_onnx_export() else y

    def _build(model, name, pretrained):
        if pretrained:
            model.load_state_dict(torch.load(os.path.join(_HERE, name + ".pt"), weights_only=True))
        return model.eval()

    def resnet_tiny(pretrained=True):
        return _build(_Residual(), "resnet_tiny", pretrained)

    def mlp_tiny(pretrained=True):
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 10))
        return _build(model, "mlp_tiny", pretrained)

    def export_sensitive(pretrained=True):
        return _build(_ExportSensitive(), "export_sensitive", pretrained)
    """
)
ENTRIES = ["resnet_tiny", "mlp_tiny", "export_sensitive"]
TOLERANCE = 1e-4


def write_weights(hub: Path, name: str, seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    model = torch.hub.load(str(hub), name, source="local", pretrained=False, verbose=False)
    torch.save(model.state_dict(), hub / f"{name}.pt")


@pytest.fixture(scope="module")
def torch_hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    hub = tmp_path_factory.mktemp("torch") / "hub"
    hub.mkdir()
    (hub / "hubconf.py").write_text(HUBCONF)
    for seed, name in enumerate(ENTRIES):
        write_weights(hub, name, seed)
    metadata = {n: {"input_shape": [1, 8, 8], "task": "classification"} for n in ["resnet_tiny", "mlp_tiny"]}
    (hub / "sommelier.json").write_text(json.dumps(metadata))
    return hub


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store")


def fetch(repo: TorchHubRepository | TFHubRepository | OnnxFolderRepository, name: str, dest: Path) -> FetchedModel:
    entry = next(e for e in repo.list_models() if e.name == name)
    return repo.fetch(entry, dest)


@pytest.fixture(scope="module")
def torch_conversions(torch_hub: Path, store: Path) -> dict[str, Conversion]:
    repo = TorchHubRepository("zoo", torch_hub, trusted=True)
    return {e.name: convert_model(repo.fetch(e, store), store / f"{e.name}.onnx") for e in repo.list_models()}


@pytest.fixture(scope="module")
def keras_savedmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import keras

    root = tmp_path_factory.mktemp("keras")
    inputs = keras.Input(shape=(1, 8, 8), name="x")
    h = keras.layers.Permute((2, 3, 1))(inputs)
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(10, bias_initializer="random_normal")(h)
    keras.Model(inputs, outputs).export(str(root / "keras_cnn"), verbose=False)
    return root / "keras_cnn"


def test_torch_models_convert_within_tolerance_and_record_the_errors(torch_conversions: dict[str, Conversion]) -> None:
    for name, conversion in torch_conversions.items():
        assert conversion.model_id == f"zoo/{name}"
        assert conversion.converter == "torch.onnx.export"
        assert conversion.onnx_path.is_file()
        assert 0 <= conversion.max_abs_error <= TOLERANCE and 0 <= conversion.max_rel_error <= TOLERANCE
        assert (conversion.parity_samples, conversion.tolerance) == (16, TOLERANCE)
        assert [(t.name, t.dtype, t.shape) for t in conversion.signature.inputs] == [
            ("input", "float32", ("batch", 1, 8, 8))
        ]
        assert [(t.name, t.shape) for t in conversion.signature.outputs] == [("output", ("batch", 10))]


def test_residual_conversion_keeps_the_add_and_the_grouped_conv(torch_conversions: dict[str, Conversion]) -> None:
    model = onnx.load(str(torch_conversions["resnet_tiny"].onnx_path))
    ops = [node.op_type for node in model.graph.node]
    groups = [a.i for n in model.graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group"]

    assert "Add" in ops and 2 in groups
    assert model.opset_import[0].version >= 17


def test_converted_model_accepts_any_batch_size(torch_conversions: dict[str, Conversion], torch_hub: Path) -> None:
    import torch

    x = np.random.default_rng(1).standard_normal((5, 1, 8, 8)).astype(np.float32)
    native = load_native(FetchedModel(_entry("resnet_tiny"), "torchhub", torch_hub, "resnet_tiny"))
    with torch.no_grad():
        expected = native(torch.from_numpy(x)).numpy()

    np.testing.assert_allclose(run_onnx(torch_conversions["resnet_tiny"].onnx_path, x), expected, atol=1e-5)


def test_dropout_is_off_in_the_exported_and_the_reference_model(torch_conversions: dict[str, Conversion]) -> None:
    assert torch_conversions["mlp_tiny"].max_abs_error <= TOLERANCE


def test_torch_export_falls_back_to_the_dynamo_exporter(
    torch_hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    real_export = torch.onnx.export

    def torchscript_unavailable(*args: object, **kwargs: object) -> object:
        if kwargs.get("dynamo") is False:
            raise RuntimeError("TorchScript exporter removed")
        return real_export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", torchscript_unavailable)
    fetched = fetch(TorchHubRepository("zoo", torch_hub, trusted=True), "resnet_tiny", tmp_path)

    conversion = convert_model(fetched, tmp_path / "dynamo.onnx")

    assert conversion.max_abs_error <= TOLERANCE and conversion.converter == "torch.onnx.export"
    assert [(t.name, t.shape) for t in conversion.signature.inputs] == [("input", ("batch", 1, 8, 8))]
    assert [(t.name, t.shape) for t in conversion.signature.outputs] == [("output", ("batch", 10))]


def test_keras_savedmodel_converts_with_sane_names_and_parity(keras_savedmodel: Path, store: Path) -> None:
    fetched = fetch(TFHubRepository("tf", [keras_savedmodel], trusted=True), "keras_cnn", store)

    conversion = convert_model(fetched, store / "keras_cnn.onnx")

    assert conversion.converter == "tf2onnx" and conversion.model_id == "tf/keras_cnn"
    assert 0 <= conversion.max_abs_error <= TOLERANCE and 0 <= conversion.max_rel_error <= TOLERANCE
    assert conversion.parity_samples == 16
    assert [(t.name, t.shape) for t in conversion.signature.inputs] == [("input", ("batch", 1, 8, 8))]
    assert [(t.name, t.shape) for t in conversion.signature.outputs] == [("output", ("batch", 10))]
    x = np.random.default_rng(3).standard_normal((3, 1, 8, 8)).astype(np.float32)
    assert run_onnx(conversion.onnx_path, x).shape == (3, 10)

    mirror = Path(shutil.copytree(keras_savedmodel, store / "mirror" / "keras_cnn"))
    mirrored = fetch(TFHubRepository("mirror", [mirror], trusted=True), "keras_cnn", store)
    again = convert_model(mirrored, store / "again.onnx")
    assert again.fingerprint == conversion.fingerprint


def test_given_parity_inputs_are_used(torch_hub: Path, store: Path) -> None:
    fetched = fetch(TorchHubRepository("zoo", torch_hub, trusted=True), "mlp_tiny", store)
    x = np.random.default_rng(7).uniform(size=(40, 1, 8, 8))

    conversion = convert_model(fetched, store / "mlp_given.onnx", parity_inputs=x)

    assert conversion.parity_samples == 40 and conversion.max_abs_error <= TOLERANCE


def test_same_network_published_twice_has_one_fingerprint(
    torch_hub: Path, torch_conversions: dict[str, Conversion], tmp_path: Path
) -> None:
    mirror = Path(shutil.copytree(torch_hub, tmp_path / "mirror"))
    fetched = fetch(TorchHubRepository("mirror", mirror, trusted=True), "resnet_tiny", tmp_path)

    again = convert_model(fetched, tmp_path / "again.onnx")

    assert again.model_id == "mirror/resnet_tiny"
    assert again.fingerprint == torch_conversions["resnet_tiny"].fingerprint
    assert torch_conversions["resnet_tiny"].fingerprint != torch_conversions["mlp_tiny"].fingerprint


def test_different_weights_give_a_different_fingerprint(
    torch_hub: Path, torch_conversions: dict[str, Conversion], tmp_path: Path
) -> None:
    retrained = Path(shutil.copytree(torch_hub, tmp_path / "retrained"))
    write_weights(retrained, "resnet_tiny", seed=99)
    fetched = fetch(TorchHubRepository("retrained", retrained, trusted=True), "resnet_tiny", tmp_path)

    other = convert_model(fetched, tmp_path / "other.onnx")

    assert other.fingerprint != torch_conversions["resnet_tiny"].fingerprint


def test_fingerprint_ignores_names_doc_strings_and_producer() -> None:
    model = _gemm_model(seed=0)
    renamed = onnx.ModelProto()
    renamed.CopyFrom(model)
    renamed.producer_name, renamed.doc_string = "someone else", "published again"
    renamed.graph.name = "other"
    for node in renamed.graph.node:
        node.name, node.doc_string = "renamed", "a note"
    renamed.graph.initializer[0].name = "weight_2"
    renamed.graph.node[0].input[1] = "weight_2"
    renamed.graph.input[0].name = "pixels"
    renamed.graph.node[0].input[0] = "pixels"

    assert fingerprint(renamed) == fingerprint(model)
    assert fingerprint(_gemm_model(seed=1)) != fingerprint(model)


def test_export_that_differs_from_the_original_is_a_mismatch(torch_hub: Path, tmp_path: Path) -> None:
    repo = TorchHubRepository(
        "zoo", torch_hub, input_shapes={"export_sensitive": (1, 8, 8)}, entries=ENTRIES, trusted=True
    )
    fetched = fetch(repo, "export_sensitive", tmp_path)
    out = tmp_path / "sensitive.onnx"

    with pytest.raises(ConversionMismatch) as caught:
        convert_model(fetched, out)

    message = str(caught.value)
    assert "zoo/export_sensitive" in message and "max abs error 1" in message and "tolerance 0.0001" in message
    assert list(tmp_path.glob("*.onnx")) == [] and list(tmp_path.glob(".*.tmp")) == []


def test_parity_rule_is_absolute_for_small_outputs_and_relative_for_large() -> None:
    small = parity_errors([np.array([[0.5, 0.001]])], [np.array([[0.5, 0.002]])], "m")
    large = parity_errors([np.array([[1000.0, 1.0]])], [np.array([[1000.1, 1.0]])], "m")

    assert small == pytest.approx((0.001, 0.002))
    assert large == pytest.approx((0.1, 1e-4))


def test_parity_counts_nan_as_infinite_error_and_checks_shapes() -> None:
    assert parity_errors([np.array([1.0, np.nan])], [np.array([1.0, np.nan])], "m") == (0.0, 0.0)
    assert parity_errors([np.array([1.0, 2.0])], [np.array([1.0, np.nan])], "m")[0] == np.inf
    with pytest.raises(ConversionMismatch, match="m: output shape"):
        parity_errors([np.zeros((2, 3))], [np.zeros((2, 4))], "m")


def test_onnx_passes_through_checked_and_run(tmp_path: Path) -> None:
    folder = tmp_path / "onnx"
    folder.mkdir()
    onnx.save_model(_gemm_model(seed=0), str(folder / "gemm.onnx"))
    fetched = fetch(OnnxFolderRepository("files", folder), "gemm", tmp_path)

    conversion = convert_model(fetched, tmp_path / "out" / "gemm.onnx")

    assert conversion.converter == "passthrough" and conversion.max_abs_error == 0.0
    assert (tmp_path / "out" / "gemm.onnx").read_bytes() == (folder / "gemm.onnx").read_bytes()
    assert conversion.fingerprint == fingerprint(_gemm_model(seed=0))
    assert onnx_signature(load_onnx(conversion.onnx_path)).inputs[0].shape == ("N", 4)


def test_corrupt_onnx_is_a_conversion_error_naming_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "onnx"
    folder.mkdir()
    corrupt = folder / "broken.onnx"
    corrupt.write_bytes(b"\x08\x07garbage that is not an ONNX model" * 3)

    with pytest.raises(ConversionError, match=r"broken\.onnx.*expected"):
        load_onnx(corrupt)
    fetched = fetch(OnnxFolderRepository("files", folder), "broken", tmp_path)
    with pytest.raises(ConversionError, match=r"files/broken.*broken\.onnx"):
        convert_model(fetched, tmp_path / "out.onnx", parity_inputs=np.zeros((2, 4), np.float32))
    assert not (tmp_path / "out.onnx").exists()


def test_missing_input_shape_is_a_clear_error(torch_hub: Path, tmp_path: Path) -> None:
    entry = ModelEntry("zoo/mlp_tiny", "zoo", "mlp_tiny", "1", "torch", "classification")

    with pytest.raises(ConversionError, match="zoo/mlp_tiny: no input shape known"):
        convert_model(FetchedModel(entry, "torchhub", torch_hub, "mlp_tiny"), tmp_path / "x.onnx")


def _entry(name: str) -> ModelEntry:
    return ModelEntry(f"zoo/{name}", "zoo", name, "1", "torch", "classification", input_shape=(1, 8, 8))


def _gemm_model(seed: int) -> onnx.ModelProto:
    weight = np.random.default_rng(seed).standard_normal((4, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", doc_string="dense")],
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="test")
