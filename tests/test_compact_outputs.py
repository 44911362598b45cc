"""Compact validation outputs: top-1 labels for classifiers (exact disagreement, the same bounds), float16 vectors whose
stored error widens the bound so it stays sound, every output of a multi-output model, outputs that do not depend
on how the set is batched, and stores of full outputs read and compacted."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sommelier_core import defaults
from sommelier_core.equivalence.bound import bound_comparison
from sommelier_core.equivalence.compare import compare_outputs
from sommelier_core.equivalence.outputs import ModelOutputs, compute_outputs, output_batches, store_outputs
from sommelier_core.equivalence.pair_measure import (
    BoundSettings,
    StoredOutputsMeasurer,
    bound_stored_pair,
    compare_stored,
    relative_l2_interval,
)
from sommelier_core.errors import NonFiniteValues
from sommelier_core.stages import MODEL_OUTPUTS
from sommelier_core.store import DamagedArtifact, ModelStore, ensure_current_format
from sommelier_core.store.health import check_store
from sommelier_core.store.manifest import MANIFEST_FILE
from sommelier_core.zoo.datasets import Dataset

N = 300


def _linear_onnx(path: Path, seed: int, outputs: int = 10, extra_outputs: tuple[int, ...] = (), batch=None) -> Path:
    """A model of 8×8 digits-shaped inputs: `y = flatten(x) @ W` (+ further heads `z_k = flatten(x) @ V_k`)."""
    rng = np.random.default_rng(seed)
    batch_dim = batch if batch is not None else "N"
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["y"])]
    inits = [
        numpy_helper.from_array(rng.normal(size=(64, outputs)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([-1, 64], dtype=np.int64), "shape"),
    ]
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch_dim, outputs])]
    for k, width in enumerate(extra_outputs):
        inits.append(numpy_helper.from_array(rng.normal(size=(64, width)).astype(np.float32), f"v{k}"))
        nodes.append(helper.make_node("MatMul", ["flat", f"v{k}"], [f"z{k}"]))
        outs.append(helper.make_tensor_value_info(f"z{k}", TensorProto.FLOAT, [batch_dim, width]))
    graph = helper.make_graph(
        nodes, "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch_dim, 1, 8, 8])], outs, inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _data(n: int = N, seed: int = 0, labels: bool = True) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1, 8, 8)).astype(np.float32)
    return Dataset("digits", x, rng.integers(0, 10, n) if labels else None)


def _index_model(store: ModelStore, model_id: str, seed: int, task: str = "classification", **shape) -> ModelOutputs:
    """One model's ONNX file and compact `model_outputs` record, as the pipeline's stage writes them."""
    store.model_dir(model_id).mkdir(parents=True, exist_ok=True)
    onnx_path = _linear_onnx(store.onnx_path(model_id), seed, **shape)
    data = _data()
    stored, accuracy, batch_size = store_outputs(store, model_id, onnx_path, data, task)
    record = ModelOutputs(
        model_id, data.name, len(data.x), str(store.outputs_dir(model_id)), "key", task, None, accuracy,
        stored, batch_size,
    )  # fmt: skip
    store.save_record(MODEL_OUTPUTS.name, model_id, record)
    return record


def _index_full(store: ModelStore, model_id: str, seed: int, task: str = "classification") -> None:
    """The same model as a store from before compact records kept it: full outputs in `outputs.npy`."""
    store.model_dir(model_id).mkdir(parents=True, exist_ok=True)
    onnx_path = _linear_onnx(store.onnx_path(model_id), seed)
    data = _data()
    outputs, accuracy = compute_outputs(onnx_path, data, task)
    path = store.save_outputs(model_id, outputs)
    record = ModelOutputs(model_id, data.name, len(data.x), str(path), "key", task, None, accuracy)
    store.save_record(MODEL_OUTPUTS.name, model_id, record)


# -- classifiers: top-1 labels ------------------------------------------------------------------------------------


def test_a_classifier_stores_one_byte_per_sample_and_its_labels_are_the_argmax_of_its_outputs(tmp_path):
    store = ModelStore(tmp_path)
    record = _index_model(store, "lab/a", seed=1)
    (output,) = record.stored
    assert (output.name, output.kind, output.shape, output.dtype) == ("y", "top1", (10,), "uint8")
    assert output.path.stat().st_size == N + 128  # one byte per sample and the .npy header
    full, accuracy = compute_outputs(store.onnx_path("lab/a"), _data(), "classification")
    stored = store.load_stored_outputs("lab/a")
    assert np.array_equal(stored.labels()[:, 0], np.argmax(full, axis=1))
    assert np.array_equal(np.argmax(store.load_outputs("lab/a"), axis=1), np.argmax(full, axis=1))
    assert record.accuracy == accuracy and record.batch_size == defaults.OUTPUTS_BATCH_SIZE
    assert not store.outputs_path("lab/a").exists()  # no full outputs kept


def test_disagreement_and_bounds_from_stored_labels_equal_those_of_the_full_outputs(tmp_path):
    store = ModelStore(tmp_path)
    for model_id, seed in (("lab/a", 1), ("lab/b", 2)):
        _index_model(store, model_id, seed)
    full = {m: compute_outputs(store.onnx_path(m), _data(), "classification")[0] for m in ("lab/a", "lab/b")}
    exact = compare_outputs("lab/a", full["lab/a"], "lab/b", full["lab/b"], "classification")
    stored = compare_stored(
        "lab/a", store.load_stored_outputs("lab/a"), "lab/b", store.load_stored_outputs("lab/b"), "classification"
    )
    assert 0 < exact.difference < 1
    assert stored == exact
    settings = BoundSettings()
    assert bound_stored_pair(stored, settings, store)[0] == bound_comparison(exact)


# -- vectors: float16 with a sound error interval -----------------------------------------------------------------


def test_vectors_are_kept_in_float16_with_a_per_sample_error_bound_that_holds(tmp_path):
    store = ModelStore(tmp_path)
    record = _index_model(store, "lab/r", seed=3, task="regression", outputs=16)
    (output,) = record.stored
    assert (output.kind, output.dtype, output.shape) == ("values", "float16", (16,))
    full, _ = compute_outputs(store.onnx_path("lab/r"), _data(), "regression")
    stored = store.load_stored_outputs("lab/r")
    true_error = np.linalg.norm(stored.vectors() - full.astype(np.float64), axis=1)
    assert np.all(true_error <= stored.vector_errors())
    assert np.all(stored.vector_errors() <= 2**-11 * np.linalg.norm(full, axis=1) * 1.001 + 1e-6)  # float16's rounding
    assert output.path.stat().st_size == N * 16 * 2 + 128  # half of float32


@pytest.mark.parametrize("mode", ["off", "statistical"])
def test_the_bound_from_float16_vectors_contains_the_bound_from_the_exact_outputs(tmp_path, mode):
    store = ModelStore(tmp_path)
    for model_id, seed in (("lab/r", 3), ("lab/s", 4)):
        _index_model(store, model_id, seed, task="regression", outputs=16)
    full = {m: compute_outputs(store.onnx_path(m), _data(), "regression")[0] for m in ("lab/r", "lab/s")}
    exact = compare_outputs("lab/r", full["lab/r"], "lab/s", full["lab/s"], "regression")
    ref, cand = store.load_stored_outputs("lab/r"), store.load_stored_outputs("lab/s")
    measured = compare_stored("lab/r", ref, "lab/s", cand, "regression")
    interval = relative_l2_interval(ref, cand)
    assert interval.difference_low <= exact.difference <= interval.difference_high
    assert exact.relative_spread <= interval.spread_high
    assert interval.difference_high - interval.difference_low < 2e-3 * exact.difference  # float16: tight
    exact_bound = bound_comparison(exact, mode=mode)
    for stored in (None, (ref, cand)):  # read from the store, or given by the caller
        bound = bound_stored_pair(measured, BoundSettings(mode=mode), store, stored=stored)[0]
        assert bound.lower <= exact_bound.lower and bound.upper >= exact_bound.upper
        assert bound.upper - exact_bound.upper < 2e-3 * exact_bound.upper
        assert bound.empirical == measured.difference


def test_vectors_beyond_float16_range_are_kept_exactly_in_float32(tmp_path):
    store = ModelStore(tmp_path)
    writer = store.outputs_writer("lab/big", 4, "values")
    writer.add(["y"], [np.array([[1e5, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]], dtype=np.float32)])
    (output,) = writer.finish()
    assert (output.dtype, output.exact) == ("float32", True)


# -- every output of a multi-output model --------------------------------------------------------------------------


def test_every_output_of_a_two_output_model_is_stored_and_a_change_in_either_is_a_disagreement(tmp_path):
    store = ModelStore(tmp_path)
    record = _index_model(store, "lab/two", seed=5, outputs=4, extra_outputs=(3,))
    assert record.output_names == ("y", "z0")
    x = _data().x
    stored = store.load_stored_outputs("lab/two")
    labels = stored.labels()
    assert labels.shape == (N, 2)
    _, batches = output_batches(store.onnx_path("lab/two"), x)
    second = np.concatenate([values[1] for _, values in batches])
    assert np.array_equal(labels[:, 1], np.argmax(second, axis=1))
    # a candidate equal in the first output and different in the second disagrees wherever the second differs
    changed = dataclasses.replace(stored, arrays=(stored.arrays[0], (stored.arrays[1] + 1) % 3), errors=(None, None))
    assert compare_stored("lab/two", stored, "lab/c", changed, "classification").difference == 1.0
    assert compare_stored("lab/two", stored, "lab/c", stored, "classification").difference == 0.0
    # the array view a segment analysis reads: argmax differs exactly where a label does
    dense = stored.dense()
    assert dense.shape == (N, 12)
    assert np.array_equal(np.argmax(dense, axis=1), labels[:, 0] * 3 + labels[:, 1])


def test_a_named_output_is_the_only_one_stored(tmp_path):
    store = ModelStore(tmp_path)
    path = _linear_onnx(tmp_path / "m.onnx", seed=5, outputs=4, extra_outputs=(3,))
    stored, _, _ = store_outputs(store, "lab/m", path, _data(), "classification", output_names=["z0"])
    assert [(o.name, o.shape) for o in stored] == [("z0", (3,))]


# -- batching -----------------------------------------------------------------------------------------------------


def _batch_dependent_onnx(path: Path) -> Path:
    """y = x − mean over the batch: its outputs depend on which samples share a batch (as dynamic int8
    quantization's scales do)."""
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("ReduceMean", ["flat"], ["mean"], axes=[0], keepdims=1),
        helper.make_node("Sub", ["flat", "mean"], ["centred"]),
        helper.make_node("MatMul", ["centred", "w"], ["y"]),
    ]
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(size=(64, 10)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([-1, 64], dtype=np.int64), "shape"),
    ]
    graph = helper.make_graph(
        nodes,
        "batchy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_outputs_are_computed_at_the_recorded_batch_size_so_a_batch_dependent_model_gives_the_same_ones(tmp_path):
    path = _batch_dependent_onnx(tmp_path / "batchy.onnx")
    store = ModelStore(tmp_path / "store")
    first, _, batch_size = store_outputs(store, "lab/q", path, _data(), "classification")
    once = np.load(first[0].path)
    again, _, _ = store_outputs(store, "lab/q", path, _data(), "classification")
    assert batch_size == defaults.OUTPUTS_BATCH_SIZE
    assert np.array_equal(np.load(again[0].path), once)
    # at another batch size the outputs do change: the batch size is what fixes them
    other, _, _ = store_outputs(store, "lab/q", path, _data(), "classification", batch_size=7)
    assert not np.array_equal(np.load(other[0].path), once)


def test_a_model_with_a_fixed_batch_dim_runs_at_it_and_the_padding_is_dropped(tmp_path):
    fixed = _linear_onnx(tmp_path / "fixed.onnx", seed=1, batch=8)
    free = _linear_onnx(tmp_path / "free.onnx", seed=1)
    data = _data(n=21)
    size, batches = output_batches(fixed, data.x)
    rows = [len(values[0]) for _, values in batches]
    assert size == 8 and rows == [8, 8, 5]
    np.testing.assert_allclose(
        compute_outputs(fixed, data, "classification")[0], compute_outputs(free, data, "classification")[0], rtol=1e-5
    )


def test_non_finite_outputs_fail_the_stage_naming_the_first_sample_and_leave_nothing(tmp_path):
    store = ModelStore(tmp_path)
    path = _linear_onnx(tmp_path / "m.onnx", seed=1)
    data = _data(n=200)
    data.x[150, 0, 0, 0] = np.inf
    with pytest.raises(
        NonFiniteValues, match=r"lab/m: 1 of 200 outputs on digits hold NaN or ±inf \(first: sample 150\)"
    ):
        store_outputs(store, "lab/m", path, data, "classification")
    assert not store.outputs_dir("lab/m").exists()
    assert not any(store.model_dir("lab/m").glob(".outputs*"))


# -- refinement at query time, stores of full outputs, integrity ---------------------------------------------------


def test_query_refinement_gives_the_same_bounds_on_a_store_of_full_outputs_and_after_it_is_compacted(tmp_path):
    full_store = ModelStore(tmp_path / "full")
    compact_store = ModelStore(tmp_path / "compact")
    ids = [f"lab/m{k}" for k in range(5)]
    for seed, model_id in enumerate(ids):
        _index_full(full_store, model_id, seed)
        _index_model(compact_store, model_id, seed)
    before = {m: StoredOutputsMeasurer(full_store, BoundSettings())(m, ids) for m in ids}
    after = {m: StoredOutputsMeasurer(compact_store, BoundSettings())(m, ids) for m in ids}
    assert before == after
    assert all(b is not None for bounds in before.values() for b in bounds)
    # and the store of full outputs, compacted in place by the format upgrade, answers the same
    done = ensure_current_format(full_store)
    assert done.outputs == 5 and not any((tmp_path / "full").rglob("outputs.npy"))
    assert (tmp_path / "full" / MANIFEST_FILE).exists()
    assert {m: StoredOutputsMeasurer(full_store, BoundSettings())(m, ids) for m in ids} == before
    assert check_store(full_store).healthy


def test_a_store_of_full_outputs_is_read_as_the_labels_they_amount_to(tmp_path):
    store = ModelStore(tmp_path)
    _index_full(store, "lab/old", seed=1)
    full = np.load(store.outputs_path("lab/old"))
    stored = store.load_stored_outputs("lab/old")
    assert np.array_equal(stored.labels()[:, 0], np.argmax(full, axis=1))
    assert np.array_equal(store.load_outputs("lab/old"), full)  # the array readers see it as before


def test_a_damaged_compact_file_is_named_by_readers_and_by_verify(tmp_path):
    store = ModelStore(tmp_path)
    record = _index_model(store, "lab/a", seed=1)
    path = record.stored[0].path
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DamagedArtifact, match=r"0\.top1\.npy .*contents changed"):
        store.load_stored_outputs("lab/a")
    health = check_store(store)
    assert [c.path.name for c in health.damaged] == ["0.top1.npy"]
