"""Segments in the pipeline and the index: per-pair records, synthesized candidates, `sommelier synthesize`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import polars as pl

from sommelier_core.inference import run_onnx
from sommelier_core.store import ModelStore

SOMMELIER = str(Path(sys.executable).parent / "sommelier")


def test_compare_stage_records_segment_matches_for_every_sampled_pair(indexed_store):
    store = ModelStore(indexed_store.root)
    for model_id in indexed_store.first_run.models:
        if not store.has_record("peers", model_id):
            continue
        record = store.load_record("segment_matches", model_id)
        peers = store.load_record("peers", model_id).peers
        assert record.pairs_examined == 2 * len(peers)
        for analysis in record.analyses:
            assert {analysis.reference_id, analysis.candidate_id} <= {model_id, *peers}
            for segment in analysis.segments:
                assert len(segment.reference_nodes) == len(segment.candidate_nodes) > 0
                assert segment.output_bound >= 0
    # the small zoo's 8x8 CNNs share their architecture: their pairs match segment by segment
    cnn = store.load_record("segment_matches", "zoo-torch/cnn_w16")
    assert any(len(a.segments) == 4 for a in cnn.analyses)


def test_synthesized_candidates_are_indexed_with_their_sources_and_materialize_as_runnable_onnx(
    indexed_store, tmp_path
):
    table = pl.read_parquet(indexed_store.root / "index" / "synthesized_index.parquet")
    assert table.height > 0
    assert set(table["provenance"]) == {"synthesized"}
    indexed = set(indexed_store.first_run.models)
    assert set(table["base_id"]) <= indexed and set(table["donor_id"]) <= indexed
    assert (table["upper"] >= table["measured_difference"]).all()
    row = table.row(0, named=True)
    out = tmp_path / "synth.onnx"
    env = {**os.environ, "SOMMELIER_HOME": str(indexed_store.root), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [SOMMELIER, "synthesize", row["synthesized_id"], "--out", str(out), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["base_id"] == row["base_id"] and payload["donor_id"] == row["donor_id"]
    onnx.checker.check_model(onnx.load(out))
    store = ModelStore(indexed_store.root)
    base_outputs = store.load_outputs(row["base_id"])
    from sommelier_core.zoo.datasets import load_dataset

    x = load_dataset("digits", split="val").x[: len(base_outputs)]
    outputs = run_onnx(out, x)
    assert outputs.shape == base_outputs.shape
    measured = float(np.mean(outputs.argmax(1) != base_outputs.argmax(1)))
    assert payload["measured_difference"] == measured == row["measured_difference"]  # as the index measured it
    # a new model: neither its base nor its donor
    donor_outputs = store.load_outputs(row["donor_id"])
    assert not np.allclose(outputs, base_outputs, atol=1e-6) and not np.allclose(outputs, donor_outputs, atol=1e-6)


def test_synthesize_of_an_unknown_id_exits_2_naming_it(indexed_store, tmp_path):
    env = {**os.environ, "SOMMELIER_HOME": str(indexed_store.root)}
    result = subprocess.run(
        [SOMMELIER, "synthesize", "zoo-torch/nope+zoo-torch/cnn_w16", "--out", str(tmp_path / "x.onnx")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 2
    assert "zoo-torch/nope+zoo-torch/cnn_w16" in result.stderr


def test_a_query_returns_synthesized_candidates_only_when_asked(indexed_store):
    import sommelier_core
    from sommelier_core.querying.api import run_query

    index_dir = indexed_store.root / "index"
    table = pl.read_parquet(index_dir / "synthesized_index.parquet")
    row = table.sort("upper").row(0, named=True)
    plain = sommelier_core.query(ref=row["base_id"], within=1.0, index_dir=index_dir)
    assert all(h.provenance != "synthesized" for h in plain)
    result = run_query(f"FIND MODELS LIKE '{row['base_id']}' WITHIN 100%", index_dir=index_dir, synthesized=True)
    hits = {h.model_id: h for h in result.hits}
    hit = hits[row["synthesized_id"]]
    assert hit.provenance == "synthesized" and hit.onnx_path == ""
    assert hit.lower_bound == 0 and hit.upper_bound == row["upper"]  # bounded against its own base directly
    assert hit.profile.macs > 0  # the base's figures (same structure)
    assert "synthesized" in result.explain()
    env = {**os.environ, "SOMMELIER_HOME": str(indexed_store.root)}
    cli = subprocess.run(
        [SOMMELIER, "query", "--ref", row["base_id"], "--within", "100%", "--synthesized", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    assert row["synthesized_id"] in {h["model_id"] for h in json.loads(cli.stdout)["hits"]}


def test_a_transfer_shares_its_frozen_stages_with_its_upstream_as_identical_segments(indexed_store):
    # cnn_w16_mnist8_freeze2: stages 0 and 1 frozen from cnn_w16_mnist8, stage 2 and a fresh head fine-tuned
    store = ModelStore(indexed_store.root)
    env = {**os.environ, "SOMMELIER_HOME": str(indexed_store.root), "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [
            SOMMELIER,
            "compare",
            str(store.onnx_path("zoo-torch/cnn_w16_mnist8_freeze2")),
            str(store.onnx_path("zoo-torch/cnn_w16_mnist8")),
            "--json",
            "--segments",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    segments = json.loads(result.stdout)["segments"]
    assert [s["ops"][0] for s in segments] == ["Conv", "Conv", "Conv", "Gemm"]
    assert [s["identical"] for s in segments] == [True, True, False, False]
    assert [s["output_bound"] == 0 for s in segments] == [True, True, False, False]
