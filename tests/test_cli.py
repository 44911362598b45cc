"""The `sommelier` console script, run as a user runs it (subprocess), against an indexed store."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sommelier_cli.arguments import parse_batch_sizes, parse_fraction
from tests.conftest import two_class_onnx

SOMMELIER = str(Path(sys.executable).parent / "sommelier")


def run_cli(*args: str, root: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if root is not None:
        env["SOMMELIER_HOME"] = str(root)
    return subprocess.run([SOMMELIER, *args], capture_output=True, text=True, env=env, timeout=300)


def _zoo_onnx(store, name: str) -> Path:
    from sommelier_core.store import ModelStore

    return ModelStore(store.root).onnx_path(name)


def test_help_lists_every_command():
    out = run_cli("--help").stdout
    for command in ("zoo", "index", "query", "profile", "compare", "ui"):
        assert command in out


@pytest.mark.parametrize(("text", "value"), [("5%", 0.05), ("0.05", 0.05), ("80%", 0.8), ("150%", 1.5)])
def test_fractions_are_read_as_percentages_or_fractions(text, value):
    assert parse_fraction(text) == pytest.approx(value)


def test_a_bare_number_above_one_is_refused_as_ambiguous():
    with pytest.raises(Exception, match="expected a percentage like 5%"):
        parse_fraction("5")


def test_memory_batch_sizes_are_comma_separated_whole_numbers_of_at_least_one():
    assert parse_batch_sizes("1,8,32") == [1, 8, 32]
    for bad in ("1,x", "0,8", "", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected batch sizes ≥ 1"):
            parse_batch_sizes(bad)


def test_query_json_lists_hits_with_bounds_provenance_and_profile(indexed_store):
    semantic = pl.read_parquet(indexed_store.root / "index" / "semantic_index.parquet")
    ref = semantic["reference_id"][0]
    result = run_cli("query", "--ref", ref, "--within", "100%", "--json", root=indexed_store.root)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["reference"] == ref and payload["hits"]
    hit = payload["hits"][0]
    assert set(hit) == {"model_id", "onnx_path", "lower_bound", "upper_bound", "empirical", "provenance", "profile"}
    assert set(hit["profile"]) >= {"params", "macs", "flops", "memory_bytes", "latency_ms"}


def test_query_explain_shows_the_refine_stage_unless_refine_is_zero(indexed_store):
    ref = sorted(m for m in indexed_store.first_run.models if m.startswith("zoo-torch/"))[0]
    text = f"FIND MODELS LIKE '{ref}' WITHIN 100%"
    refined = run_cli("query", text, "--explain", root=indexed_store.root)
    assert refined.returncode == 0, refined.stderr
    assert "refine" in refined.stdout and "uncertain pairs from stored outputs" in refined.stdout
    alone = run_cli("query", text, "--explain", "--refine", "0", root=indexed_store.root)
    assert alone.returncode == 0 and "refine" not in alone.stdout


def test_query_with_unknown_reference_exits_2_naming_it(indexed_store):
    result = run_cli("query", "--ref", "zoo-torch/nope", root=indexed_store.root)
    assert result.returncode == 2
    assert "zoo-torch/nope" in result.stderr and "not in the index" in result.stderr


def test_profile_json_has_the_documented_keys_and_flops_twice_macs(indexed_store):
    onnx_path = _zoo_onnx(indexed_store, indexed_store.first_run.models[0])
    result = run_cli("profile", str(onnx_path), "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert set(payload) == {"params", "macs", "flops", "weight_bytes", "peak_activation_bytes", "latency_ms"}
    assert payload["flops"] == 2 * payload["macs"] and payload["latency_ms"]["cpu"] > 0


def test_compare_json_on_a_builtin_dataset_and_on_an_npz(indexed_store, tmp_path):
    zoo = [m for m in indexed_store.first_run.models if m.startswith("zoo-torch/")]
    ref, cand = _zoo_onnx(indexed_store, zoo[0]), _zoo_onnx(indexed_store, zoo[1])
    builtin = json.loads(run_cli("compare", str(ref), str(cand), "--json").stdout)
    assert set(builtin) >= {"compatible", "disagreement", "bound", "n"}
    assert builtin["compatible"] and 0 <= builtin["disagreement"] <= builtin["bound"] <= 1
    data = tmp_path / "mine.npz"
    np.savez(data, x=np.random.default_rng(0).random((50, 1, 8, 8), dtype=np.float32))
    custom = json.loads(run_cli("compare", str(ref), str(cand), "--data", str(data), "--json").stdout)
    assert custom["n"] == 50


def test_compare_of_incompatible_models_says_why(indexed_store, tmp_path):
    ref = _zoo_onnx(indexed_store, [m for m in indexed_store.first_run.models if m.startswith("zoo-torch/")][0])
    result = run_cli("compare", str(ref), str(two_class_onnx(tmp_path / "two.onnx")), "--json")
    assert result.returncode == 1
    payload = json.loads(result.stdout)
    assert payload["compatible"] is False and "outputs" in payload["reason"]


def test_the_console_script_answers_a_bad_value_with_one_error_line_and_exit_status_2(tmp_path):
    bad_value = ["query", "--ref", "R", "--latency-ms", "nan"]  # refused by the query API
    bad_flag = ["profile", str(tmp_path / "m.onnx"), "--batch-size", "0"]  # refused by argparse
    for args in (bad_value, bad_flag):
        result = run_cli(*args, root=tmp_path)
        assert result.returncode == 2 and result.stdout == ""
        assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("error: "), result.stderr


def test_profile_of_a_corrupt_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    result = run_cli("profile", str(bad))
    assert result.returncode == 2 and "bad.onnx" in result.stderr


def test_json_output_writes_unknown_figures_as_null_not_nan(capsys):
    import json as json_module

    from sommelier_cli.output import print_json

    print_json({"latency_ms": float("nan"), "hits": [{"bound": float("inf"), "macs": 3}], "n": 2.5})
    text = capsys.readouterr().out
    assert "NaN" not in text and "Infinity" not in text
    assert json_module.loads(text) == {"latency_ms": None, "hits": [{"bound": None, "macs": 3}], "n": 2.5}


def test_the_command_line_is_assembled_from_one_module_per_command_group():
    import argparse

    from sommelier_cli.main import COMMAND_GROUPS

    added = {}
    for group in COMMAND_GROUPS:
        sub = argparse.ArgumentParser().add_subparsers()
        group.add_commands(sub)
        added[group.__name__.removeprefix("sommelier_cli.")] = list(sub.choices)
    assert added == {
        "zoo": ["zoo"],
        "repo": ["repo"],
        "data": ["data"],
        "index": ["index"],
        "verify": ["verify"],
        "store": ["store"],
        "query": ["query"],
        "plot": ["plot"],
        "serve": ["serve"],
        "bench": ["bench"],
        "profile": ["profile"],
        "device": ["device"],
        "compare": ["compare", "synthesize"],
        "ui": ["ui"],
    }
