"""The built-in zoo: offline datasets, hubs loadable by their own frameworks, truthful manifest.

Uses the session's small zoo (`small_zoo` in conftest), built once with seed 0.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sommelier_core.zoo import BUILTIN_DATASETS, build_zoo, dataset_for_input_shape, load_dataset, load_manifest
from sommelier_core.zoo.torch_architectures import ARCHITECTURES, INPUT_SHAPES, build_architecture
from sommelier_core.zoo.torchhub import list_entry_points
from sommelier_core.zoo.training import TrainConfig, deterministic_torch, seeded_init, top1, train_classifier
from sommelier_core.zoo.variants import add_weight_noise, magnitude_prune

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _hub_load(zoo: Path, name: str, **kwargs) -> torch.nn.Module:
    return torch.hub.load(str(zoo / "torchhub"), name, source="local", **kwargs)


def _state_bytes(model: torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


# --- datasets -----------------------------------------------------------------------------------


def test_image_datasets_are_nchw_float32_in_unit_range_with_int64_labels():
    for name, val_size in (("digits", 597), ("mnist8", 1000)):
        val, train = load_dataset(name, "val"), load_dataset(name, "train")
        assert val.x.shape == (val_size, 1, 8, 8) and val.x.dtype == np.float32
        assert val.y.dtype == np.int64 and set(np.unique(val.y)) == set(range(10))
        assert 0.0 <= val.x.min() and val.x.max() <= 1.0
        assert len(train.x) > len(val.x)


def test_digits_train_and_val_splits_are_disjoint_and_fixed():
    train, val = load_dataset("digits", "train"), load_dataset("digits", "val")
    assert len(train.x) + len(val.x) == 1797
    train_rows = {row.tobytes() for row in train.x}
    assert sum(row.tobytes() in train_rows for row in val.x) < 20  # only duplicate images collide
    assert np.array_equal(load_dataset("digits", "val", seed=0).y, val.y)
    assert not np.array_equal(load_dataset("digits", "val", seed=1).y, val.y)


def test_mnist1d_generates_any_number_of_seeded_signals_offline():
    small = load_dataset("mnist1d", "val", n=50, seed=3)
    assert small.x.shape == (50, 40) and small.x.dtype == np.float32 and small.y.dtype == np.int64
    assert np.array_equal(small.x, load_dataset("mnist1d", "val", n=50, seed=3).x)
    assert not np.array_equal(small.x, load_dataset("mnist1d", "train", n=50, seed=3).x)
    assert load_dataset("mnist1d", "val").x.shape == (1000, 40)
    assert np.array_equal(load_dataset("mnist1d", "val", n=25).x, load_dataset("mnist1d", "val").x[:25])
    assert abs(float(load_dataset("mnist1d", "train").x.std()) - 1.0) < 0.1


def test_mnist1d_generation_leaves_the_global_numpy_rng_alone():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    load_dataset("mnist1d", "val", n=20, seed=11)
    assert np.random.rand() == expected


def test_n_takes_the_first_samples_and_arrays_are_read_only():
    head = load_dataset("digits", "val", n=10)
    assert np.array_equal(head.x, load_dataset("digits", "val").x[:10])
    with pytest.raises(ValueError):
        head.x[0, 0, 0, 0] = 1.0


def test_unknown_dataset_name_is_a_value_error_listing_the_known_ones():
    with pytest.raises(ValueError, match="imagenet") as excinfo:
        load_dataset("imagenet")
    assert all(name in str(excinfo.value) for name in BUILTIN_DATASETS)
    with pytest.raises(ValueError, match="test"):
        load_dataset("digits", "test")


def test_dataset_for_input_shape_maps_signatures_to_validation_sets():
    assert dataset_for_input_shape((1, 8, 8)) == "digits"
    assert dataset_for_input_shape((40,)) == "mnist1d"
    assert dataset_for_input_shape((3, 224, 224)) is None


# --- architectures, training, variants ----------------------------------------------------------


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_every_torch_architecture_outputs_ten_logits(architecture):
    model = build_architecture(architecture, 8).eval()
    assert model(torch.zeros(3, *INPUT_SHAPES[architecture])).shape == (3, 10)


def test_training_is_byte_deterministic_for_a_seed():
    data = load_dataset("digits", "train", n=200)
    config = TrainConfig(epochs=2)

    def train(seed: int) -> bytes:
        with deterministic_torch(threads=2):
            model = seeded_init(lambda: build_architecture("cnn", 4), seed)
            return _state_bytes(train_classifier(model, data, seed, config))

    assert train(5) == train(5)
    assert train(5) != train(6)


def test_frozen_stages_keep_their_pretrained_weights():
    data = load_dataset("digits", "train", n=200)
    model = seeded_init(lambda: build_architecture("mlp", 16), 0)
    before = [p.detach().clone() for p in model.parameters()]
    train_classifier(model, data, 0, TrainConfig(epochs=1), frozen_stages=2)
    after = list(model.parameters())
    frozen_count = sum(1 for stage in model.stages[:2] for _ in stage.parameters())
    assert all(torch.equal(b, a) for b, a in zip(before[:frozen_count], after[:frozen_count], strict=True))
    assert not torch.equal(before[-1], after[-1])


def test_weight_noise_is_seeded_and_leaves_the_parent_untouched():
    parent = seeded_init(lambda: build_architecture("cnn", 4), 0)
    original = _state_bytes(parent)
    assert _state_bytes(add_weight_noise(parent, 0.1, 7)) == _state_bytes(add_weight_noise(parent, 0.1, 7))
    assert _state_bytes(add_weight_noise(parent, 0.1, 7)) != _state_bytes(add_weight_noise(parent, 0.1, 8))
    assert _state_bytes(parent) == original


def test_magnitude_prune_zeroes_the_requested_fraction_of_each_weight_matrix():
    parent = seeded_init(lambda: build_architecture("mlp", 16), 0)
    pruned = magnitude_prune(parent, 0.25)
    for name, weight in pruned.named_parameters():
        if name.endswith("weight") and weight.dim() >= 2:
            assert int((weight == 0).sum()) == round(0.25 * weight.numel())


# --- the built zoo ------------------------------------------------------------------------------


def test_small_zoo_holds_about_eight_models_of_every_kind_and_both_frameworks(small_zoo):
    manifest = load_manifest(small_zoo)
    assert 6 <= len(manifest.models) <= 10
    assert {m.framework for m in manifest.models} == {"torch", "tensorflow"}
    assert {"base", "noise", "prune", "transfer"} <= {m.transformation for m in manifest.models}


def test_torch_hub_dir_lists_exactly_the_model_entry_points(small_zoo):
    torch_names = sorted(m.name for m in load_manifest(small_zoo).for_framework("torch"))
    assert list_entry_points(small_zoo / "torchhub") == torch_names
    assert sorted(json.loads((small_zoo / "torchhub" / "sommelier.json").read_text())) == torch_names


def test_torch_hub_load_gives_the_pretrained_model_the_manifest_measured(small_zoo):
    for model in load_manifest(small_zoo).for_framework("torch"):
        network = _hub_load(small_zoo, model.name)
        val = load_dataset(model.dataset, "val")
        assert not network.training
        assert float(np.mean(top1(network, val.x) == val.y)) == pytest.approx(model.accuracy, abs=1e-9)


def test_torch_hub_load_without_pretrained_gives_fresh_weights(small_zoo):
    pretrained = _hub_load(small_zoo, "cnn_w16")
    fresh = _hub_load(small_zoo, "cnn_w16", pretrained=False)
    assert _state_bytes(pretrained) != _state_bytes(fresh)


def test_tensorflow_hub_savedmodel_serves_logits_with_the_manifest_accuracy(small_zoo):
    import tensorflow as tf
    import tensorflow_hub as hub

    for model in load_manifest(small_zoo).for_framework("tensorflow"):
        loaded = hub.load(str(small_zoo / model.artifact))
        serve = loaded.signatures["serving_default"]
        assert list(serve.structured_input_signature[1]) == ["x"]
        val = load_dataset(model.dataset, "val")
        logits = serve(x=tf.constant(val.x))["output_0"].numpy()
        assert logits.shape == (len(val.x), 10)
        assert float(np.mean(logits.argmax(axis=1) == val.y)) == pytest.approx(model.accuracy, abs=1e-9)


def test_manifest_lineage_is_consistent(small_zoo):
    manifest = load_manifest(small_zoo)
    seen: dict[str, object] = {}
    for model in manifest.models:
        assert model.labels == [str(d) for d in range(10)] and model.task == "classification"
        assert tuple(model.input_shape) in {(1, 8, 8), (40,)}
        assert dataset_for_input_shape(tuple(model.input_shape)) is not None
        if model.transformation == "base":
            assert model.parent is None and model.disagreement_from_parent is None and model.family == model.name
        else:
            parent = seen[model.parent]  # parents are listed before their children
            assert model.family == parent.family and model.architecture == parent.architecture
            assert model.disagreement_from_parent is not None
        assert (model.frozen_layers is not None) == (model.transformation == "transfer")
        assert (model.noise_scale is not None) == (model.transformation == "noise")
        assert (model.prune_fraction is not None) == (model.transformation == "prune")
        assert (small_zoo / model.artifact).exists()
        seen[model.name] = model


def test_hub_metadata_files_repeat_the_manifest_records(small_zoo):
    manifest = load_manifest(small_zoo)
    for hub_dir, framework in (("torchhub", "torch"), ("tfhub", "tensorflow")):
        declared = json.loads((small_zoo / hub_dir / "sommelier.json").read_text())
        assert declared == {m.name: m.metadata() for m in manifest.for_framework(framework)}


def test_noise_and_prune_variants_have_graded_small_measured_disagreement(small_zoo):
    manifest = load_manifest(small_zoo)
    derived = [m for m in manifest.models if m.transformation in ("noise", "prune")]
    assert derived
    for model in derived:
        assert 0.0 < model.disagreement_from_parent <= 0.15
        child, parent = _hub_load(small_zoo, model.name), _hub_load(small_zoo, model.parent)
        x = load_dataset(model.dataset, "val").x
        measured = float(np.mean(top1(child, x) != top1(parent, x)))
        assert measured == pytest.approx(model.disagreement_from_parent, abs=1e-9)


def test_build_refuses_a_directory_that_is_not_a_zoo(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="notes.txt"):
        build_zoo(tmp_path, small=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_importing_the_zoo_does_not_import_tensorflow():
    code = "import sys, sommelier_core.zoo; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])
