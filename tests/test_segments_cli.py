"""`sommelier compare … --json` reports matched segments; `sommelier synthesize` writes a runnable ONNX file."""

from __future__ import annotations

import json

import numpy as np
import onnx

from tests.segment_graphs import images, residual_net, residual_weights
from tests.test_cli import run_cli


def test_compare_json_lists_segments_with_nodes_bound_and_effect(tmp_path):
    base = residual_weights(0)
    twin = dict(base)
    twin["head_w"] = base["head_w"] + 0.05 * np.random.default_rng(2).normal(0, 1, base["head_w"].shape)
    onnx.save(residual_net(base), tmp_path / "n.onnx")
    onnx.save(residual_net(twin), tmp_path / "m.onnx")
    np.savez(tmp_path / "data.npz", x=images(300))
    paths = (str(tmp_path / "n.onnx"), str(tmp_path / "m.onnx"), "--data", str(tmp_path / "data.npz"), "--segments")
    text = run_cli("compare", *paths)
    assert text.returncode == 0, text.stderr
    assert "segments: 4 in common" in text.stdout
    result = run_cli("compare", *paths, "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    segments = payload["segments"]
    assert [s["reference_nodes"] for s in segments] == [
        ["stem"],
        ["bn", "relu0"],
        ["b1", "relu1", "b2", "add", "relu2", "flatten"],
        ["head"],
    ]
    assert all(s["reference_nodes"] == s["candidate_nodes"] for s in segments)
    # only the head differs: every other segment is identical, with a zero bound and no effect
    assert [s["identical"] for s in segments] == [True, True, True, False]
    assert [s["output_bound"] for s in segments[:3]] == [0.0, 0.0, 0.0]
    assert segments[3]["output_bound"] > 0 and 0 <= segments[3]["estimated_effect"] <= 1
    assert payload["segment_synthesis"]["matched"] == 4
    # everything swapped would be M itself: nothing new to synthesize
    assert payload["segment_synthesis"]["synthesizable"] is False


def test_compare_of_models_with_different_heads_still_lists_their_shared_segments(tmp_path):
    # same backbone, a 2-class head instead of 3: incompatible as whole models, three segments in common
    base = residual_weights(0)
    other = dict(base)
    other["head_w"] = base["head_w"][:2]
    other["head_b"] = base["head_b"][:2]
    n = residual_net(base)
    m = residual_net(other)
    m.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 2
    onnx.save(n, tmp_path / "n.onnx")
    onnx.save(m, tmp_path / "m.onnx")
    np.savez(tmp_path / "data.npz", x=images(100))
    result = run_cli(
        "compare",
        str(tmp_path / "n.onnx"),
        str(tmp_path / "m.onnx"),
        "--data",
        str(tmp_path / "data.npz"),
        "--json",
        "--segments",
    )
    assert result.returncode == 1
    payload = json.loads(result.stdout)
    assert payload["compatible"] is False and "outputs" in payload["reason"]
    assert [s["reference_nodes"][0] for s in payload["segments"]] == ["stem", "bn", "b1"]
    assert all(s["identical"] for s in payload["segments"])  # the backbone is the same network


def test_compare_reports_a_failed_segment_analysis_and_keeps_the_whole_model_answer(tmp_path, monkeypatch, capsys):
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    from sommelier_cli import main as cli
    from sommelier_core.segments import analysis

    def fails(*_args, **_kwargs):
        raise Fail("[ONNXRuntimeError] : 1 : FAIL : a kernel this build lacks")

    base = residual_weights(0)
    twin = {k: v + 0.05 * np.random.default_rng(3).normal(0, 1, v.shape) * np.std(v) for k, v in base.items()}
    twin["bn_var"] = np.abs(twin["bn_var"]) + 0.1
    onnx.save(residual_net(base), tmp_path / "n.onnx")
    onnx.save(residual_net(twin), tmp_path / "m.onnx")
    np.savez(tmp_path / "data.npz", x=images(100))
    monkeypatch.setattr(analysis, "analyse_pair", fails)
    paths = (str(tmp_path / "n.onnx"), str(tmp_path / "m.onnx"), "--data", str(tmp_path / "data.npz"), "--segments")
    assert cli.main(["compare", *paths, "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["compatible"] is True and 0 <= payload["bound"] <= 1
    assert payload["segments"] == []
    assert "n.onnx" in payload["segments_error"] and "a kernel this build lacks" in payload["segments_error"]
    assert cli.main(["compare", *paths]) == 0
    assert "segments: segment analysis of" in capsys.readouterr().out
