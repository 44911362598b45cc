"""Models exported with symbolic spatial dims (dynamic H, W): validation data matched on their concrete dims,
profiled at the exec-spec's resolution (default: their validation inputs'), indexed and queryable there.

The pipeline test indexes a folder of ONNX files with the real Dagster, ONNX Runtime and MLflow: a fixed
(N, 1, 8, 8) linear classifier and a (N, 1, H, W) one (conv 1→4, 3×3, pad 1, no bias → global average pool
→ flatten → Gemm 4→10). At 8×8 the dynamic model's MACs are 8·8·4·9 = 2 304 (conv) + 4·10 = 40 (Gemm).
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest

from sommelier_core.ingest.validation import (
    DatasetError,
    builtin_dataset_for,
    validation_input_shape,
    validation_set_for,
)
from sommelier_core.models import Signature, TensorSpec
from sommelier_core.profiling import UnprofilableModel, profiled_shapes, static_profile
from tests.digits_models import dynamic_digits_classifier, fixed_digits_classifier

DYNAMIC_MACS_AT_8 = 8 * 8 * 4 * 9 + 4 * 10


def _signature(*dims: int | str) -> Signature:
    return Signature((TensorSpec("x", "float32", dims),), (TensorSpec("y", "float32", ("N", 10)),))


def test_symbolic_spatial_dims_accept_the_builtin_or_configured_dataset_whose_concrete_dims_agree(tmp_path):
    dynamic = _signature("N", 1, "H", "W")
    assert validation_set_for("lab/dyn", dynamic).name == "digits"
    assert validation_input_shape("lab/dyn", dynamic) == (1, 8, 8)

    images = tmp_path / "images12.npz"
    np.savez(images, x=np.zeros((5, 1, 12, 12), dtype=np.float32), y=np.arange(5))
    assert validation_set_for("lab/dyn", dynamic, str(images)).x.shape == (5, 1, 12, 12)
    assert validation_input_shape("lab/dyn", dynamic, str(images)) == (1, 12, 12)  # from the header only

    rgb = tmp_path / "rgb.npz"
    np.savez(rgb, x=np.zeros((5, 3, 12, 12), dtype=np.float32))
    for check in (validation_set_for, validation_input_shape):
        with pytest.raises(DatasetError, match=r"lab/dyn takes inputs \(1, H, W\); dataset rgb has \(3, 12, 12\)"):
            check("lab/dyn", dynamic, str(rgb))


def test_a_builtin_choice_that_is_ambiguous_or_missing_is_an_error_naming_model_shape_and_candidates():
    candidates = {(1, 8, 8): "digits", (1, 16, 16): "digits16", (40,): "mnist1d"}
    with pytest.raises(DatasetError) as ambiguous:
        builtin_dataset_for("lab/dyn", ("N", 1, "H", "W"), candidates)
    message = str(ambiguous.value)
    assert "lab/dyn" in message and "(N, 1, H, W)" in message and "several built-in validation sets fit" in message
    assert "digits (1, 8, 8)" in message and "digits16 (1, 16, 16)" in message and "mnist1d" not in message
    assert "configure a dataset" in message
    assert builtin_dataset_for("lab/dyn", ("N", 1, 16, "W"), candidates) == "digits16"  # concrete dims decide

    with pytest.raises(DatasetError, match=r"lab/rgb: input shape \(N, 3, H, W\): no built-in validation set fits"):
        validation_set_for("lab/rgb", _signature("N", 3, "H", "W"))


def test_profiled_shapes_are_the_validation_inputs_or_the_configured_resolution_and_fixed_models_keep_theirs(
    tmp_path,
):
    dynamic_digits_classifier(tmp_path / "dyn.onnx")
    fixed_digits_classifier(tmp_path / "fixed.onnx")
    dynamic, fixed = onnx.load(tmp_path / "dyn.onnx"), onnx.load(tmp_path / "fixed.onnx")

    at_validation = profiled_shapes(dynamic, 0, lambda: (1, 8, 8))
    assert (at_validation.resolution, at_validation.dynamic) == (8, True)
    assert at_validation.at_batch(4) == {"x": (4, 1, 8, 8)}
    assert static_profile(dynamic, 1, at_validation.at_batch(1)).macs == DYNAMIC_MACS_AT_8

    at_16 = profiled_shapes(dynamic, 16, lambda: pytest.fail("a configured resolution needs no validation shape"))
    assert (at_16.resolution, at_16.at_batch(1)) == (16, {"x": (1, 1, 16, 16)})

    own = profiled_shapes(fixed, 16, lambda: pytest.fail("a fixed model needs no validation shape"))
    assert (own.resolution, own.dynamic, own.at_batch(8)) == (8, False, None)

    with pytest.raises(UnprofilableModel, match=r"lab/dyn: input 'x' declares \[1, 'H', 'W'\].*validation inputs are"):
        profiled_shapes(dynamic, 0, lambda: (3, 8, 8), model_id="lab/dyn")
    with pytest.raises(UnprofilableModel, match="lab/dyn: .*set the exec-spec's resolution"):
        profiled_shapes(dynamic, 0, None, model_id="lab/dyn")


def test_a_folder_with_a_dynamic_resolution_model_indexes_profiles_it_at_the_validation_size_and_answers_resolution(
    tmp_path, monkeypatch
):
    import polars as pl
    from dagster import DagsterInstance

    from pipelines.definitions import build_resources
    from pipelines.index_run import run_index
    from resources.repositories import RepositoriesResource, RepositoryConfig
    from resources.settings import IndexSettings
    from sommelier_core.index.resource import InputResolution
    from sommelier_core.querying.api import run_query
    from sommelier_core.store import ModelStore

    monkeypatch.setenv("SOMMELIER_HOME", str(tmp_path))
    folder = tmp_path / "onnx"
    folder.mkdir()
    fixed_digits_classifier(folder / "fixed.onnx")
    dynamic_digits_classifier(folder / "dynamic.onnx")
    resources = build_resources("local") | {
        "repositories": RepositoriesResource(
            repositories=[RepositoryConfig(kind="onnx", name="lab", location=[str(folder)])]
        ),
        "settings": IndexSettings(
            operator_sweep=False, memory_resolutions=[16], latency_repeats=5, profile_runs=2, batch_sizes=[2]
        ),
    }
    (tmp_path / "dagster").mkdir()
    instance = DagsterInstance.local_temp(str(tmp_path / "dagster"))
    summary = run_index(echo=print, instance=instance, resources=resources)
    assert summary.failures == {}

    store = ModelStore(tmp_path)
    profile = store.load_record("model_profile", "lab/dynamic")
    assert profile.input_resolution == InputResolution(size=8, dynamic=True)
    assert [s.batch_size for s in profile.static_by_batch] == [1, 2]
    assert [s.macs for s in profile.static_by_batch] == [DYNAMIC_MACS_AT_8, 2 * DYNAMIC_MACS_AT_8]
    assert {(p.batch_size, p.resolution) for p in profile.memory} >= {(1, 8), (1, 16), (2, 8), (2, 16)}
    at_16 = next(p for p in profile.memory if (p.batch_size, p.resolution) == (1, 16))
    assert at_16.macs == 16 * 16 * 4 * 9 + 4 * 10
    fixed = store.load_record("model_profile", "lab/fixed")
    assert fixed.input_resolution == InputResolution(size=8, dynamic=False)
    # memory_resolutions does not cost a fixed model its memory-by-batch table (it runs at 8 only)
    assert {(p.batch_size, p.resolution) for p in fixed.memory} == {(1, None), (2, None), (8, None), (32, None)}

    device = store.load_record("device_profile@cpu", "lab/dynamic")
    assert [lat.batch_size for lat in device.latency] == [1, 2]
    assert all(lat.median_ms > 0 for lat in device.latency)
    convs = [node for node in device.operators[0].graph.nodes if "Conv" in node.key]
    assert convs and all("1x1x8x8" in node.key for node in convs)  # profiled on 8×8 inputs

    assert store.load_record("model_outputs", "lab/dynamic").dataset == "digits"
    assert store.load_record("peers", "lab/dynamic").peers == ("lab/fixed",)  # same inputs, so comparable

    rows = pl.read_parquet(tmp_path / "index" / "resource_index.parquet").filter(pl.col("model_id") == "lab/dynamic")
    assert set(rows["resolution"]) == {8} and rows["dynamic_resolution"].all()

    index_dir = tmp_path / "index"
    at_8 = run_query("FIND MODELS ON cpu RESOLUTION 8 ORDER BY latency", index_dir=index_dir, refine=0)
    hits = {hit.model_id: hit for hit in at_8.hits}
    assert set(hits) == {"lab/dynamic", "lab/fixed"}
    assert hits["lab/dynamic"].profile.latency_ms == pytest.approx(device.latency[0].median_ms)
    assert hits["lab/dynamic"].profile.macs == DYNAMIC_MACS_AT_8

    at_16_query = run_query("FIND MODELS ON cpu RESOLUTION 16", index_dir=index_dir, refine=0)
    hits = {hit.model_id: hit for hit in at_16_query.hits}
    assert set(hits) == {"lab/dynamic"}  # the fixed 8×8 model does not run at 16
    assert hits["lab/dynamic"].profile.macs == at_16.macs
    assert math.isnan(hits["lab/dynamic"].profile.latency_ms)  # measured at 8 only


def test_compare_takes_a_dynamic_model_at_the_validation_shape_in_either_role(tmp_path, capsys):
    import json

    from sommelier_cli import main as cli

    dynamic_digits_classifier(tmp_path / "dyn.onnx")
    fixed_digits_classifier(tmp_path / "fixed.onnx")
    for ref, cand in (("fixed", "dyn"), ("dyn", "fixed")):
        code = cli.main(["compare", str(tmp_path / f"{ref}.onnx"), str(tmp_path / f"{cand}.onnx"), "--json"])
        payload = json.loads(capsys.readouterr().out)
        assert code == 0 and payload["compatible"] is True, (ref, payload)
        assert payload["dataset"] == "digits" and 0 <= payload["disagreement"] <= payload["bound"] <= 1


def test_compare_of_a_dynamic_model_whose_channels_do_not_fit_stays_incompatible(tmp_path, capsys):
    fixed_digits_classifier(tmp_path / "fixed.onnx")
    dynamic_digits_classifier(tmp_path / "dyn.onnx")
    model = onnx.load(tmp_path / "dyn.onnx")
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 3  # (N, 3, H, W): not the digits' one channel
    onnx.save(model, tmp_path / "rgb.onnx")
    from sommelier_cli import main as cli

    assert cli.main(["compare", str(tmp_path / "fixed.onnx"), str(tmp_path / "rgb.onnx")]) == 1
    assert "incompatible models" in capsys.readouterr().err
