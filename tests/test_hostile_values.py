"""Hostile values are refused where they enter, with one clear error naming the model, field or file: non-finite
model outputs and dataset inputs, declared input shapes too large to feed, non-finite or out-of-range numbers given
to the query API and the language, queries nested too deeply, device names that are not names.

The hand-made hostile inputs here (`nan_digits_classifier`, `huge_input_model`, `digits_npz`) are reused by
`tests/test_cli_fuzz.py`.
"""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sommelier_core import defaults
from sommelier_core.equivalence.compare import check_finite_outputs, compare_outputs
from sommelier_core.equivalence.outputs import compute_outputs, outputs_on
from sommelier_core.errors import InputTooLarge, InvalidValue, NonFiniteValues
from sommelier_core.ingest.convert import convert_model
from sommelier_core.ingest.validation import (
    INPUT_BUDGET_ENV,
    DatasetError,
    NonFiniteInputs,
    check_input_budget,
    input_budget_bytes,
    load_npz_dataset,
)
from sommelier_core.models import FetchedModel, ModelEntry
from sommelier_core.querying.api import query, spec_from_arguments
from sommelier_core.querying.language import (
    MAX_NESTING,
    AllOf,
    AnyOf,
    Condition,
    QueryError,
    QuerySpec,
    check_device_name,
    parse_query,
    predicate_depth,
)
from sommelier_core.zoo.datasets import Dataset
from tests.digits_models import fixed_digits_classifier
from tests.test_query import _index

HUGE_INPUT_DIMS = (1, 1_000_000, 8)
"""The declared input of `huge_input_model` without its batch dim: 32 MB of float32 per sample."""


def nan_digits_classifier(path: Path) -> Path:
    """(N, 1, 8, 8) → (N, 10) like `fixed_digits_classifier`, but its weights are NaN: every output is NaN."""
    fixed_digits_classifier(path)
    model = onnx.load(str(path))
    weights = next(t for t in model.graph.initializer if t.name == "w")
    weights.CopyFrom(numpy_helper.from_array(np.full((64, 10), np.nan, dtype=np.float32), "w"))
    onnx.save(model, str(path))
    return path


def huge_input_model(path: Path) -> Path:
    """A file of a few hundred bytes declaring an input of (N, 1, 10⁶, 8) float32 → (N, 1) (global average)."""
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["y"])],
        "huge_input",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *HUGE_INPUT_DIMS])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def digits_npz(path: Path, x: np.ndarray, y: np.ndarray | None = None) -> Path:
    """An `.npz` dataset with inputs `x` (and labels `y` when given)."""
    np.savez(path, **({"x": x} if y is None else {"x": x, "y": y}))
    return path


def finite_digits(n: int = 4, seed: int = 0) -> np.ndarray:
    """`n` seeded digits-shaped inputs (N, 1, 8, 8)."""
    return np.random.default_rng(seed).normal(size=(n, 1, 8, 8)).astype(np.float32)


def _onnx_entry(name: str) -> ModelEntry:
    return ModelEntry(f"lab/{name}", "lab", name, "", "onnx", "classification")


# --- non-finite outputs --------------------------------------------------------------------------------------------


def test_outputs_that_are_all_nan_fail_the_outputs_stage_naming_the_model(tmp_path):
    path = nan_digits_classifier(tmp_path / "nan.onnx")
    dataset = Dataset("tiny", finite_digits(4), None)
    with pytest.raises(NonFiniteValues, match=r"lab/nan: 4 of 4 outputs on tiny hold NaN or ±inf \(first: sample 0\)"):
        compute_outputs(path, dataset, "classification", model_id="lab/nan")


def test_finite_outputs_pass_and_their_accuracy_is_measured(tmp_path):
    path = tmp_path / "ok.onnx"
    fixed_digits_classifier(path)
    outputs, acc = compute_outputs(path, Dataset("tiny", finite_digits(4), np.zeros(4, np.int64)), "classification")
    assert outputs.shape == (4, 10) and acc is not None and 0 <= acc <= 1


def test_some_non_finite_rows_are_counted_and_the_first_is_named():
    outputs = np.zeros((4, 3), np.float32)
    outputs[1, 2], outputs[3, 0] = np.inf, np.nan
    with pytest.raises(NonFiniteValues, match=r"m: 2 of 4 outputs hold NaN or ±inf \(first: sample 1\)"):
        check_finite_outputs("m", outputs)
    check_finite_outputs("ints", np.array([[1, 2]], np.int64))  # integer outputs are finite by type


def test_a_comparison_with_nan_outputs_is_refused_not_scored_zero():
    finite = np.eye(4, 3, dtype=np.float32)
    nan = np.full((4, 3), np.nan, np.float32)
    # argmax of an all-NaN row is 0, like argmax of finite[0]: scored, the pair would "agree" on sample 0
    with pytest.raises(NonFiniteValues, match="cand: 4 of 4 outputs hold NaN"):
        compare_outputs("ref", finite, "cand", nan, "classification")
    with pytest.raises(NonFiniteValues, match="ref: 4 of 4 outputs hold NaN"):
        compare_outputs("ref", nan, "cand", finite, "regression")


def test_outputs_on_extra_data_that_are_nan_are_refused_and_not_kept(tmp_path):
    from sommelier_core.store import ModelStore

    store = ModelStore(tmp_path / "store")
    store.onnx_path("lab/nan").parent.mkdir(parents=True)
    nan_digits_classifier(store.onnx_path("lab/nan"))
    with pytest.raises(NonFiniteValues, match="lab/nan: 3 of 3 outputs on extra"):
        outputs_on(store, "lab/nan", Dataset("extra", finite_digits(3), None))
    assert not list(store.model_dir("lab/nan").glob("outputs-*"))


# --- datasets a user gives -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "y", "error", "words"),
    [
        (np.zeros((0, 1, 8, 8), np.float32), None, DatasetError, "'x' has shape (0, 1, 8, 8); expected at least one"),
        (np.array(3.0), None, DatasetError, "'x' has shape (); expected at least one input"),
        (np.full((5, 1, 8, 8), np.nan), None, NonFiniteInputs, "5 of 5 inputs in 'x' hold NaN"),
        (np.where(np.arange(5)[:, None, None, None] == 3, np.inf, finite_digits(5)), None, NonFiniteInputs,
         "1 of 5 inputs in 'x' hold NaN, ±inf or values beyond float32's range (first: sample 3)"),
        (np.full((2, 1, 8, 8), 1e39), None, NonFiniteInputs, "2 of 2 inputs in 'x' hold NaN, ±inf or values beyond"),
        (finite_digits(3), np.array([0.0, np.nan, 1.0]), DatasetError, "'y' holds nan at position 1"),
        (finite_digits(3), np.array([0.0, 1.5, 1.0]), DatasetError, "'y' holds 1.5 at position 1"),
        (finite_digits(3), np.array([0, 1]), DatasetError, "'y' has shape (2,); expected 3 labels"),
        (finite_digits(3), np.array(["a", "b", "c"]), DatasetError, "'y' of dtype <U1 is not labels"),
    ],
)  # fmt: skip
def test_a_dataset_that_is_empty_or_not_finite_is_refused_naming_the_file(tmp_path, x, y, error, words):
    path = digits_npz(tmp_path / "data.npz", x, y)
    with pytest.raises(error) as caught:
        load_npz_dataset(path)
    assert str(path) in str(caught.value) and words in str(caught.value)


def test_labels_stored_as_whole_floats_are_taken():
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        path = digits_npz(Path(directory) / "d.npz", finite_digits(3), np.array([0.0, 2.0, 1.0]))
        data = load_npz_dataset(path)
    assert data.y.tolist() == [0, 2, 1] and data.y.dtype == np.int64


# --- the input budget for declared shapes --------------------------------------------------------------------------


def test_the_input_budget_counts_bytes_from_the_dims_alone():
    assert check_input_budget("m", {"x": ((2, 3), np.float32)}, budget_bytes=24) == 24
    with pytest.raises(InputTooLarge, match=r"m: inputs 'x' \(2, 3\) float32 would take 24 B, above .* of 23 B"):
        check_input_budget("m", {"x": ((2, 3), np.float32)}, budget_bytes=23)
    with pytest.raises(InvalidValue, match=r"m: input 'x' declares shape \(2, -1\); expected sizes ≥ 0"):
        check_input_budget("m", {"x": ((2, -1), np.float32)}, budget_bytes=10**9)


def test_the_input_budget_defaults_to_the_library_default_and_an_environment_variable_overrides_it(monkeypatch):
    monkeypatch.delenv(INPUT_BUDGET_ENV, raising=False)
    assert input_budget_bytes() == defaults.INPUT_BUDGET_BYTES == 256 * 1024**2
    monkeypatch.setenv(INPUT_BUDGET_ENV, str(2**30))
    assert input_budget_bytes() == 2**30
    assert check_input_budget("m", {"x": ((16, *HUGE_INPUT_DIMS), np.float32)}) == 16 * 32_000_000
    for bad in ("lots", "0", "-5"):
        monkeypatch.setenv(INPUT_BUDGET_ENV, bad)
        with pytest.raises(InvalidValue, match=f"{INPUT_BUDGET_ENV}='{bad}': expected a whole number of bytes"):
            input_budget_bytes()


def test_a_tiny_file_declaring_a_huge_input_is_refused_by_conversion_before_anything_is_allocated(tmp_path):
    source = huge_input_model(tmp_path / "huge.onnx")
    assert source.stat().st_size < 1024
    fetched = FetchedModel(_onnx_entry("huge"), "onnx", source)
    out = tmp_path / "out" / "model.onnx"
    tracemalloc.start()
    try:
        with pytest.raises(InputTooLarge) as caught:
            convert_model(fetched, out)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    # 16 parity samples × 10⁶ × 8 float32 = 512 000 000 B = 488.3 MiB, against the 256 MiB default
    assert "lab/huge: inputs 'input' (16, 1, 1000000, 8) float32 would take 488.3 MiB" in message
    assert "above the input budget of 256.0 MiB" in message and INPUT_BUDGET_ENV in message
    assert peak_bytes < 16 * 1024**2  # the 488 MiB batch was never allocated
    assert list(out.parent.iterdir()) == []  # no temporary file left behind


def test_a_profiling_feed_over_the_budget_is_refused_naming_the_file(tmp_path):
    from sommelier_core.profiling import measure_latency

    path = huge_input_model(tmp_path / "huge.onnx")
    with pytest.raises(InputTooLarge, match=r"huge.onnx: inputs 'x' \(16, 1, 1000000, 8\) float32 would take 488.3"):
        measure_latency(path, batch_size=16)
    tiny = tmp_path / "tiny.onnx"
    fixed_digits_classifier(tiny)
    with pytest.raises(InputTooLarge, match=r"'x' \(10000000, 1, 8, 8\) float32 would take 2.4 GiB"):
        measure_latency(tiny, batch_size=10_000_000)


# --- numbers given to the query API and the language ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        ({"within": math.nan}, "within must be a fraction in [0, 1], got nan"),
        ({"within": math.inf}, "within must be a fraction in [0, 1], got inf"),
        ({"within": 2.0}, "within must be a fraction in [0, 1], got 2.0"),
        ({"memory": math.nan}, "memory budget must be a positive finite number"),
        ({"memory": 0}, "memory budget must be a positive finite number (a fraction of the reference's), got 0"),
        ({"flops": math.inf}, "flops budget must be a positive finite number"),
        ({"params": -0.5}, "params budget must be a positive finite number"),
        ({"latency_ms": math.nan}, "latency_ms budget must be a positive finite number (milliseconds), got nan"),
        ({"latency_ms": 0}, "latency_ms budget must be a positive finite number"),
        ({"latency_ms": -1}, "latency_ms budget must be a positive finite number"),
        ({"latency_ms": "fast"}, "latency_ms budget must be a positive finite number (milliseconds), got 'fast'"),
        ({"limit": -1}, "limit must be a whole number ≥ 0, got -1"),
        ({"limit": 2.5}, "limit must be a whole number ≥ 0, got 2.5"),
        ({"batch_size": 0}, "batch_size must be a positive size, got 0"),
        ({"resolution": -8}, "resolution must be a positive size, got -8"),
    ],
)
def test_the_python_api_refuses_non_finite_and_out_of_range_numbers(arguments, words):
    with pytest.raises(InvalidValue) as caught:
        query(ref="R", index=_index(), refine=0, **arguments)
    assert words in str(caught.value) and isinstance(caught.value, ValueError)
    with pytest.raises(InvalidValue):
        spec_from_arguments(ref="R", **arguments)


@pytest.mark.parametrize("clause", ["LIMIT 0", "ON gpu", "ORDER BY flops", "BATCH 8"])
def test_a_where_text_that_goes_on_into_other_clauses_is_refused_not_cut_short(clause):
    # parsed as `FIND MODELS WHERE …`, the extra clause would otherwise be dropped without a word
    assert spec_from_arguments(ref="R", where="params < 5K OR flops < 1M").where == AnyOf(
        (Condition("params", "<", 5000.0), Condition("flops", "<", 1e6))
    )
    with pytest.raises(InvalidValue, match=f"where='params < 5 {clause}': expected conditions only"):
        spec_from_arguments(ref="R", where=f"params < 5 {clause}")


def test_a_query_spec_and_a_condition_built_directly_refuse_the_same_values():
    with pytest.raises(InvalidValue, match="within must be a fraction"):
        QuerySpec(reference="R", within=math.nan)
    with pytest.raises(InvalidValue, match="limit must be a whole number ≥ 0"):
        QuerySpec(limit=-3)
    with pytest.raises(InvalidValue, match=r"condition on params: value nan; expected a finite number"):
        Condition("params", "<", math.nan)
    assert QuerySpec(reference="R", within=0.0, limit=0).limit == 0


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("FIND MODELS LIKE 'R' WITHIN 1e999%", "number 1e999 at line 1, column 29 is too large"),
        ("FIND MODELS WHERE params < 1e400", "number 1e400 at line 1, column 28 is too large"),
        ("FIND MODELS WHERE memory < 1e308 MiB", "1e308 MiB at line 1, column 28 is too large"),  # 1e308 × 2²⁰
        ("FIND MODELS LIKE 'R' LIMIT 99999999999999999999", "LIMIT 99999999999999999999 at line 1, column 28 is too"),
        ("FIND MODELS LIKE 'R' BATCH " + "9" * 5000, "BATCH 99999999999999999999… (5000 characters) at line 1"),
        ("FIND 9223372036854775808 MODELS", "the model count 9223372036854775808 at line 1, column 6 is too large"),
        ("FIND MODELS LIKE 'R' WITHIN 200%", "WITHIN must be between 0% and 100%"),
    ],
)
def test_the_language_refuses_numbers_too_large_naming_their_position(text, words):
    with pytest.raises(QueryError) as caught:
        parse_query(text)
    assert words in str(caught.value)


def _nested(depth: int) -> str:
    """A WHERE clause `depth` AND/OR groups deep: (p AND (p OR (p AND …)))."""
    text = "params < 7"
    for level in range(depth - 1):
        text = f"(params < {level} {'AND' if level % 2 else 'OR'} {text})"
    return text if depth < 2 else f"params < 9 AND {text}"


def test_a_query_nested_too_deeply_is_refused_at_parse_time_and_the_limit_itself_parses():
    assert predicate_depth(parse_query(f"FIND MODELS WHERE {_nested(MAX_NESTING)}").where) == MAX_NESTING
    with pytest.raises(QueryError, match=rf"nested too deeply \({MAX_NESTING + 1} AND/OR levels, max {MAX_NESTING}\)"):
        parse_query(f"FIND MODELS WHERE {_nested(MAX_NESTING + 1)}")
    with pytest.raises(QueryError, match=r"nested too deeply \(350 AND/OR levels, max 100\)"):
        parse_query(f"FIND MODELS WHERE {_nested(350)}")
    with pytest.raises(QueryError, match="nested too deeply"):
        query(ref="R", where=_nested(5000), index=_index(), refine=0)
    # redundant parentheses around one condition add no level
    assert parse_query("FIND MODELS WHERE " + "(" * 5000 + "params < 5" + ")" * 5000).where == Condition(
        "params", "<", 5.0
    )


def test_a_predicate_nested_too_deeply_in_python_is_refused_by_the_spec():
    predicate = Condition("params", "<", 1.0)
    for level in range(MAX_NESTING + 1):
        predicate = (AllOf if level % 2 else AnyOf)((Condition("flops", "<", 2.0), predicate))
    assert predicate_depth(predicate) == MAX_NESTING + 1
    with pytest.raises(InvalidValue, match=rf"nested too deeply \({MAX_NESTING + 1} AND/OR levels"):
        spec_from_arguments(ref="R", where=predicate)


# --- device names --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cpu", "edge-cpu", "gpu:0", "jetson_nano.v2", "_x", "where"])
def test_a_device_name_a_query_can_use_is_taken(name):
    assert check_device_name(name) == name
    assert parse_query(f"FIND MODELS ON {name} WHERE latency@{name} < 1 ms").device == name


@pytest.mark.parametrize("name", ["../evil", "a/b", "", ".hidden", "two words", "device", "DEVICE", "x" * 65, "é"])
def test_a_device_name_that_is_no_name_is_refused(name):
    with pytest.raises(InvalidValue, match=f"device name {name!r}: expected a name a query can use"):
        check_device_name(name)


# --- end to end: the stages isolate a hostile model --------------------------------------------------------------


def test_a_model_with_nan_outputs_and_one_declaring_a_huge_input_fail_their_stages_and_the_others_are_indexed(
    tmp_path, monkeypatch
):
    import polars as pl
    from dagster import DagsterInstance

    from pipelines.definitions import build_resources
    from pipelines.index_run import run_index
    from resources.repositories import RepositoriesResource, RepositoryConfig
    from resources.settings import IndexSettings

    monkeypatch.setenv("SOMMELIER_HOME", str(tmp_path))
    folder = tmp_path / "onnx"
    folder.mkdir()
    fixed_digits_classifier(folder / "a.onnx", 0)
    fixed_digits_classifier(folder / "b.onnx", 1)
    nan_digits_classifier(folder / "nan.onnx")
    huge_input_model(folder / "huge.onnx")
    resources = build_resources("local") | {
        "repositories": RepositoriesResource(
            repositories=[RepositoryConfig(kind="onnx", name="lab", location=[str(folder)])]
        ),
        "settings": IndexSettings(operator_sweep=False, latency_repeats=5, profile_runs=2),
    }
    (tmp_path / "dagster").mkdir()
    instance = DagsterInstance.local_temp(str(tmp_path / "dagster"))
    lines: list[str] = []
    summary = run_index(echo=lines.append, instance=instance, resources=resources)
    assert set(summary.failures) == {"lab/nan", "lab/huge"}, summary.failures
    # the outputs stage fails naming the model (its id once the asset passes it, its stored file until then)
    nan_failure = summary.failures["lab/nan"]
    assert nan_failure.startswith("model_outputs: NonFiniteValues")
    assert "lab/nan" in nan_failure or "lab__nan/model.onnx" in nan_failure
    assert "597 of 597 outputs on digits hold NaN or ±inf (first: sample 0); expected finite outputs" in nan_failure
    assert "lab/huge: inputs 'input' (16, 1, 1000000, 8) float32 would take 488.3 MiB" in summary.failures["lab/huge"]
    resource = pl.read_parquet(tmp_path / "index" / "resource_index.parquet")
    assert set(resource["model_id"]) == {"lab/a", "lab/b"}
