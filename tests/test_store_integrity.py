"""Integrity of the store: records and the files they point to carry checksums, index files have a manifest of
theirs, readers verify, a damaged record makes its stage re-run, and `sommelier verify` reports and repairs."""

from __future__ import annotations

import argparse
import io
import json
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.stages import PER_MODEL_STAGES, stages_to_run, stale_devices
from sommelier_cli import verify
from sommelier_core.equivalence.pair_measure import BoundSettings, StoredOutputsMeasurer
from sommelier_core.errors import MissingStageOutput
from sommelier_core.stages import reads
from sommelier_core.store import (
    DamagedArtifact,
    DamagedArtifactWarning,
    ModelStore,
    read_checked,
    read_parquet_checked,
    write_checked,
    write_parquet_atomic,
)
from sommelier_core.store.checked_files import CHECKSUMS_FILE, check_listed
from sommelier_core.store.checksums import bytes_checksum
from sommelier_core.store.health import check_store, repair
from sommelier_core.store.records import RECORD_SCHEMA
from tests.store_records import small_record

ROWS = 360
"""Rows of the small `model_outputs` record (`tests/store_records.py`)."""


def _outputs(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(ROWS, 10)).astype(np.float32)


def _model(store: ModelStore, model_id: str, seed: int = 0) -> None:
    """Every per-model record of `model_id`, with a real `model.onnx` (bytes) and `outputs.npy` behind them."""
    store.model_dir(model_id).mkdir(parents=True, exist_ok=True)
    store.onnx_path(model_id).write_bytes(b"onnx bytes of " + model_id.encode() * 50)
    store.save_outputs(model_id, _outputs(seed))
    for stage in PER_MODEL_STAGES:
        store.save_record(stage, model_id, small_record(stage, model_id, store.root))
    store.save_record("device_profile@cpu", model_id, small_record("device_profile", model_id, store.root))


def _before_checksums(payload: dict) -> dict:
    """A record envelope as schema 2 wrote it: no checksums."""
    return {k: v for k, v in payload.items() if k not in ("checksum", "artifacts")} | {"schema": 2}


def _flip_digit(path: Path) -> None:
    """Flip the low bit of a digit inside the record body: the file stays well-formed JSON."""
    data = bytearray(path.read_bytes())
    start = data.index(b'"record":')
    at = next(i for i in range(start, len(data)) if 0x31 <= data[i] <= 0x38)
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _flip_byte(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if at is None else at] ^= 0x40
    path.write_bytes(bytes(data))


# -- records and the files they point to -----------------------------------------------------------------------


def test_a_record_carries_the_checksum_of_its_body_and_of_each_store_file_it_points_to(tmp_path):
    store = ModelStore(tmp_path)
    _model(store, "lab/m")
    payload = json.loads(store.record_path("model_outputs", "lab/m").read_text())
    assert payload["schema"] == RECORD_SCHEMA == 4
    assert payload["checksum"].startswith("sha256:") and len(payload["checksum"]) == 7 + 64
    outputs = store.outputs_path("lab/m").read_bytes()
    assert payload["artifacts"] == {
        "models/lab__m/outputs.npy": {"bytes": len(outputs), "sha256": bytes_checksum(outputs).sha256}
    }
    assert set(json.loads(store.record_path("model_profile", "lab/m").read_text())["artifacts"]) == {
        "models/lab__m/model.onnx"
    }
    assert json.loads(store.record_path("peers", "lab/m").read_text())["artifacts"] == {}  # it points to no file


def test_a_record_written_before_checksums_is_read_and_counted_unverified_not_damaged(tmp_path):
    store = ModelStore(tmp_path)
    _model(store, "lab/m")
    path = store.record_path("peers", "lab/m")
    payload = json.loads(path.read_text())
    path.write_text(json.dumps(_before_checksums(payload)))
    assert store.load_record("peers", "lab/m") == small_record("peers", "lab/m", tmp_path)
    assert store.check_record("peers", "lab/m").status == "unverified"


def test_a_well_formed_but_changed_record_is_damaged_and_named(tmp_path):
    store = ModelStore(tmp_path)
    _model(store, "lab/m")
    path = store.record_path("pair_bounds", "lab/m")
    _flip_digit(path)
    json.loads(path.read_text())  # still well-formed
    with pytest.raises(DamagedArtifact, match="does not match its checksum") as raised:
        store.load_record("pair_bounds", "lab/m")
    assert str(path) in str(raised.value) and "(model lab/m, stage pair_bounds)" in str(raised.value)
    assert "sommelier index" in str(raised.value)
    check = store.check_record("pair_bounds", "lab/m")
    assert (check.status, check.path) == ("damaged", path)


def test_a_truncated_file_a_record_points_to_fails_reading_the_record_and_a_flipped_one_fails_its_check(tmp_path):
    store = ModelStore(tmp_path)
    _model(store, "lab/m")
    onnx = store.onnx_path("lab/m")
    original = onnx.read_bytes()
    onnx.write_bytes(original[:100])
    with pytest.raises(DamagedArtifact, match="100 bytes where") as raised:
        store.load_record("onnx_model", "lab/m")
    assert raised.value.path == onnx and "model.onnx (model lab/m, stage onnx_model)" in str(raised.value)
    onnx.write_bytes(original)
    _flip_byte(onnx)
    store.load_record("onnx_model", "lab/m")  # reading a record compares sizes only (a stat, no read)
    check = store.check_record("onnx_model", "lab/m")
    assert (check.status, check.path) == ("damaged", onnx) and "contents changed" in check.problem
    assert store.check_record("onnx_model", "lab/m", full=False).status == "ok"


@pytest.mark.parametrize("damage", ["truncate", "bit-flip", "other model's outputs"])
def test_damaged_stored_outputs_are_refused_naming_the_file(tmp_path, damage):
    store = ModelStore(tmp_path)
    _model(store, "lab/m", seed=0)
    _model(store, "lab/n", seed=1)
    path = store.outputs_path("lab/m")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "bit-flip":
        _flip_byte(path, at=128 + 4 * 100 + 3)  # the exponent byte of the 101st float: still a valid array
        assert np.load(path).shape == (ROWS, 10)
    else:
        path.write_bytes(store.outputs_path("lab/n").read_bytes())
    with pytest.raises(DamagedArtifact) as raised:
        store.load_outputs("lab/m")
    assert str(path) in str(raised.value) and "model lab/m" in str(raised.value)
    assert store.load_outputs("lab/n").shape == (ROWS, 10)


@pytest.mark.parametrize(
    "replacement",
    [np.arange(3, dtype=np.int64), np.zeros((ROWS - 1, 10), np.float32), b"not an npy file"],
    ids=["int64-vector", "rows-missing", "not-npy"],
)
def test_outputs_of_a_record_without_checksums_are_checked_for_what_the_record_says(tmp_path, replacement):
    store = ModelStore(tmp_path)
    _model(store, "lab/m")
    record = store.record_path("model_outputs", "lab/m")
    payload = json.loads(record.read_text())
    record.write_text(json.dumps(_before_checksums(payload)))
    path = store.outputs_path("lab/m")
    if isinstance(replacement, bytes):
        path.write_bytes(replacement)
    else:
        np.save(path, replacement)
    with pytest.raises(DamagedArtifact, match="outputs.npy"):
        store.load_outputs("lab/m")
    assert store.check_record("model_outputs", "lab/m").status == "damaged"


def test_outputs_without_a_record_load_unverified_and_missing_outputs_say_so(tmp_path):
    store = ModelStore(tmp_path)
    store.save_outputs("lab/m", _outputs(0))
    assert store.load_outputs("lab/m").shape == (ROWS, 10)
    with pytest.raises(MissingStageOutput):
        store.load_outputs("lab/other")


def test_reading_every_model_leaves_a_damaged_record_out_with_a_warning_naming_it(tmp_path):
    store = ModelStore(tmp_path)
    for i, model_id in enumerate(("lab/a", "lab/b", "lab/c")):
        _model(store, model_id, seed=i)
    damaged = store.record_path("pair_bounds", "lab/b")
    damaged.write_bytes(damaged.read_bytes()[:50])
    found, problems = store.read_records("pair_bounds", ["lab/a", "lab/b", "lab/c"])
    assert sorted(found) == ["lab/a", "lab/c"] and list(problems) == ["lab/b"]
    assert problems["lab/b"].path == damaged
    with pytest.warns(DamagedArtifactWarning, match="left out lab/b") as caught:
        assert sorted(store.records("pair_bounds", ["lab/a", "lab/b", "lab/c"])) == ["lab/a", "lab/c"]
    assert str(damaged) in str(caught[0].message)
    with pytest.warns(DamagedArtifactWarning, match="left out lab__b"):  # a scan knows the model by its directory
        assert sorted(store.records("pair_bounds")) == ["lab/a", "lab/c"]


def test_a_record_of_another_model_copied_into_a_models_directory_is_damaged(tmp_path):
    store = ModelStore(tmp_path)
    _model(store, "lab/a", seed=0)
    _model(store, "lab/b", seed=1)
    store.record_path("peers", "lab/a").write_bytes(store.record_path("peers", "lab/b").read_bytes())
    with pytest.raises(DamagedArtifact, match="record of model 'lab/b'"):
        store.load_record("peers", "lab/a")
    with pytest.warns(DamagedArtifactWarning):
        assert list(store.records("peers")) == ["lab/b"]
    assert [c.path for c in check_store(store).damaged] == [store.record_path("peers", "lab/a")]


# -- index files ------------------------------------------------------------------------------------------------


def test_an_index_file_is_written_with_its_checksum_in_the_manifest_beside_it_and_read_back_verified(tmp_path):
    path = tmp_path / "index" / "bound_settings.json"
    write_checked(path, b'{"mode": "statistical"}')
    manifest = json.loads((tmp_path / "index" / CHECKSUMS_FILE).read_text())
    assert manifest["files"]["bound_settings.json"] == {"bytes": 23, "sha256": bytes_checksum(path.read_bytes()).sha256}
    assert read_checked(path) == b'{"mode": "statistical"}'
    path.write_bytes(b'{"mode": "statisticaL"}')
    with pytest.raises(DamagedArtifact, match="run `sommelier index` to rebuild the index") as raised:
        read_checked(path)
    assert str(path) in str(raised.value) and "contents changed" in str(raised.value)


def test_a_parquet_table_is_verified_and_a_truncated_one_is_one_clear_error_even_without_a_checksum(tmp_path):
    frame = pl.DataFrame({"model_id": ["a", "b"], "macs": [1, 2]})
    path = tmp_path / "index" / "resource_index.parquet"
    write_parquet_atomic(frame, path)
    assert read_parquet_checked(path).equals(frame)
    legacy = tmp_path / "old" / "resource_index.parquet"  # written before manifests: read, unverified
    legacy.parent.mkdir()
    frame.write_parquet(legacy)
    assert read_parquet_checked(legacy).equals(frame)
    legacy.write_bytes(legacy.read_bytes()[:200])
    with pytest.raises(DamagedArtifact, match="not a parquet table") as raised:
        read_parquet_checked(legacy)
    assert str(legacy) in str(raised.value) and "sommelier index" in str(raised.value)


def test_a_damaged_manifest_is_reported_and_its_files_read_unverified(tmp_path):
    path = tmp_path / "index" / "semantic_index.parquet"
    write_parquet_atomic(pl.DataFrame({"x": [1]}), path)
    manifest = tmp_path / "index" / CHECKSUMS_FILE
    manifest.write_text(manifest.read_text().replace('"bytes": ', '"bytes": 1'))  # well-formed, wrong
    assert read_parquet_checked(path)["x"].to_list() == [1]
    checks = {c.path.name: c.status for c in check_listed(tmp_path / "index", [path.name])}
    assert checks == {CHECKSUMS_FILE: "damaged", "semantic_index.parquet": "unverified"}


@pytest.mark.parametrize(
    "contents", [None, b"[1, 2]", b'{"mode": "statistical", "delta": "small"}'], ids=["flip", "list", "type"]
)
def test_damaged_bound_settings_are_one_clear_error_naming_the_file(tmp_path, contents):
    store = ModelStore(tmp_path)
    BoundSettings(mode="statistical", delta=0.05).save(store.index_dir, store)
    path = store.index_dir / "bound_settings.json"
    assert BoundSettings.load(store.index_dir) == BoundSettings(mode="statistical", delta=0.05)
    if contents is None:
        path.write_bytes(path.read_bytes().replace(b"0.05", b"0.55"))
    else:
        (store.index_dir / CHECKSUMS_FILE).unlink()  # an unverified file still has to be bound settings
        path.write_bytes(contents)
    with pytest.raises(DamagedArtifact, match="bound_settings.json is damaged") as raised:
        BoundSettings.load(store.index_dir)
    assert "run `sommelier index`" in str(raised.value)
    assert BoundSettings.load(tmp_path / "elsewhere") is None


# -- what reads records: stages to run, refinement ----------------------------------------------------------------


def _entry(model_id: str = "lab/m"):
    return small_record("fetched_model", model_id, Path(".")).entry


@pytest.mark.parametrize(
    ("damaged", "expected"),
    [
        ("pair_bounds.json", ("pair_bounds",)),
        ("model_cushions.json", ("model_cushions", "pair_bounds")),
        ("outputs.npy", ("model_outputs", "peers", "pair_scores", "segment_matches", "pair_bounds")),
        ("model.onnx", PER_MODEL_STAGES[1:]),
        ("fetched_model.json", PER_MODEL_STAGES),
    ],
)
def test_a_damaged_record_or_file_makes_its_stage_and_what_reads_it_run_again(tmp_path, damaged, expected):
    store = ModelStore(tmp_path)
    _model(store, "lab/m")
    assert stages_to_run(store, _entry(), reads()) == ()
    path = store.model_dir("lab/m") / damaged
    path.write_bytes(path.read_bytes()[:-7])
    told = []
    assert stages_to_run(store, _entry(), reads(), on_damage=told.append) == expected
    assert told and all(c.status == "damaged" for c in told)
    assert path in [c.path for c in told]


def test_a_damaged_device_profile_is_profiled_again(tmp_path):
    store = ModelStore(tmp_path)
    _model(store, "lab/m")
    assert stale_devices(store, "lab/m", ["cpu"]) == []
    _flip_digit(store.record_path("device_profile@cpu", "lab/m"))
    assert stale_devices(store, "lab/m", ["cpu"]) == ["cpu"]


def test_refinement_skips_pairs_with_damaged_outputs_with_a_warning_naming_the_file(tmp_path):
    store = ModelStore(tmp_path)
    for i, model_id in enumerate(("lab/ref", "lab/a", "lab/b")):
        _model(store, model_id, seed=i)
    measurer = StoredOutputsMeasurer(store, BoundSettings(mode="statistical"))
    assert all(b is not None for b in measurer("lab/ref", ["lab/a", "lab/b"]))
    candidate = store.outputs_path("lab/a")
    candidate.write_bytes(candidate.read_bytes()[:500])
    measurer = StoredOutputsMeasurer(store, BoundSettings(mode="statistical"))
    with pytest.warns(DamagedArtifactWarning, match="index bound is kept") as caught:
        bounds = measurer("lab/ref", ["lab/a", "lab/b"])
    assert bounds[0] is None and bounds[1] is not None
    assert str(candidate) in str(caught[0].message)
    reference = store.outputs_path("lab/ref")
    reference.write_bytes(reference.read_bytes()[:500])
    measurer = StoredOutputsMeasurer(store, BoundSettings(mode="statistical"))
    with pytest.warns(DamagedArtifactWarning, match="not refining candidates of lab/ref") as caught:
        assert measurer("lab/ref", ["lab/b"]) == [None]
        assert measurer("lab/ref", ["lab/b"]) == [None]
    assert len(caught) == 1  # once per damaged file


# -- sommelier verify -----------------------------------------------------------------------------------------------


def _verify(monkeypatch, root: Path, *argv: str) -> int:
    monkeypatch.setenv("SOMMELIER_HOME", str(root))
    parser = argparse.ArgumentParser()
    verify.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["verify", *argv])
    return args.func(args)


def _indexed(store: ModelStore) -> None:
    for i, model_id in enumerate(("lab/a", "lab/b")):
        _model(store, model_id, seed=i)
    write_parquet_atomic(pl.DataFrame({"model_id": ["lab/a", "lab/b"]}), store.index_dir / "resource_index.parquet")
    BoundSettings().save(store.index_dir, store)


def test_verify_reports_a_healthy_store_per_kind_of_file_and_exits_0(tmp_path, monkeypatch, capsys):
    store = ModelStore(tmp_path)
    _indexed(store)
    assert _verify(monkeypatch, tmp_path) == 0
    out = capsys.readouterr().out
    assert "Healthy: nothing damaged" in out and "record pair_bounds" in out and "outputs.npy" in out
    assert _verify(monkeypatch, tmp_path, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["healthy"] and report["models"] == 2 and report["damaged"] == []
    assert report["counts"]["record pair_bounds"] == {"ok": 2}
    assert report["counts"]["outputs.npy"] == {"ok": 2}
    assert report["counts"]["index resource_index.parquet"] == {"ok": 1}


def test_verify_names_each_damaged_file_and_its_model_exits_1_and_repair_makes_index_rerun_them(
    tmp_path, monkeypatch, capsys
):
    store = ModelStore(tmp_path)
    _indexed(store)
    outputs = store.outputs_path("lab/a")
    _flip_byte(outputs, at=128 + 3)
    record = store.record_path("peers", "lab/b")
    record.write_bytes(record.read_bytes()[:40])
    table = store.index_dir / "resource_index.parquet"
    table.write_bytes(table.read_bytes()[:-10])
    assert _verify(monkeypatch, tmp_path) == 1
    out = capsys.readouterr().out
    for path in (outputs, record, table):
        assert str(path) in out
    assert "model lab/a" in out and "Damaged (3)" in out
    assert _verify(monkeypatch, tmp_path, "--quick") == 1  # sizes only: the truncated files are found still
    assert str(table) in capsys.readouterr().out
    assert _verify(monkeypatch, tmp_path, "--json", "--repair") == 1
    report = json.loads(capsys.readouterr().out)
    assert sorted(report["removed"]) == sorted(
        str(p) for p in (store.record_path("model_outputs", "lab/a"), record, table)
    )
    assert stages_to_run(store, _entry("lab/a"), reads())[0] == "model_outputs"
    assert stages_to_run(store, _entry("lab/b"), reads())[0] == "peers"
    assert _verify(monkeypatch, tmp_path) == 0  # what is left is whole; the next index run writes the rest


def test_a_store_written_before_checksums_verifies_as_unverified_not_damaged(tmp_path):
    store = ModelStore(tmp_path)
    _indexed(store)
    for path in (tmp_path / "models").glob("*/*.json"):
        payload = json.loads(path.read_text())
        path.write_text(json.dumps(_before_checksums(payload)))
    (store.index_dir / CHECKSUMS_FILE).unlink()
    health = check_store(store)
    assert health.healthy and {c.status for c in health.checks} == {"unverified"}
    assert repair(store, health) == []


def test_the_io_manager_writes_index_tables_that_verify(tmp_path):
    from dagster import build_input_context, build_output_context

    from resources.store import StoreIOManager

    manager = StoreIOManager(root=str(tmp_path))
    frame = pl.DataFrame({"model_id": ["a"], "macs": [3]})
    manager.handle_output(build_output_context(asset_key="resource_index"), frame)
    assert {c.status for c in check_store(ModelStore(tmp_path)).checks} == {"ok"}
    path = tmp_path / "index" / "resource_index.parquet"
    path.write_bytes(path.read_bytes()[:-1] + b"X")
    with pytest.raises(DamagedArtifact, match="resource_index.parquet is damaged"):
        manager.load_input(build_input_context(asset_key="resource_index"))


def test_an_npy_is_never_loaded_with_pickles(tmp_path):
    store = ModelStore(tmp_path)
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    store.model_dir("lab/m").mkdir(parents=True)
    store.outputs_path("lab/m").write_bytes(buffer.getvalue())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DamagedArtifact, match="not a stored array"):
            store.load_outputs("lab/m")
