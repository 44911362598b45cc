"""The store's data-only format: records as versioned JSON, paths relative to the store root, legacy stores
of pickled records migrated once or refused, the semantic store saved as data, and copied stores (queries,
MLflow) that work in their new place."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sommelier_core.stages import STAGES
from sommelier_core.store import LegacyStoreError, ModelStore, StoreFormatError, ensure_current_format
from sommelier_core.store.codec import StorePaths, decode, encode
from sommelier_core.store.manifest import MANIFEST_FILE, STORE_VERSION, store_version
from sommelier_core.store.records import RECORD_SCHEMA
from tests.conftest import mlflow_client
from tests.store_records import RECORDS, small_record


def _strict_json(path: Path) -> dict:
    """A file's JSON, refusing the non-standard NaN and Infinity literals."""

    def refuse(name: str) -> None:
        raise AssertionError(f"{path} holds the non-standard JSON literal {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


# -- records ---------------------------------------------------------------------------------------------


def test_every_stage_that_keeps_a_record_has_a_small_test_record():
    assert set(RECORDS) == {s.name for s in STAGES if s.record}


@pytest.mark.parametrize("stage", sorted(RECORDS))
def test_every_stage_record_round_trips_through_its_json_file(tmp_path, stage):
    store = ModelStore(tmp_path)
    record = small_record(stage, "lab/m", tmp_path)
    store.save_record(stage, "lab/m", record)
    assert store.load_record(stage, "lab/m") == record
    assert store.records(stage) == {"lab/m": record}
    payload = _strict_json(store.record_path(stage, "lab/m"))
    assert (payload["format"], payload["schema"], payload["stage"], payload["model_id"]) == (
        "sommelier.record",
        RECORD_SCHEMA,
        stage,
        "lab/m",
    )


def test_a_per_device_record_is_of_its_stage_and_named_for_the_device(tmp_path):
    store = ModelStore(tmp_path)
    record = small_record("device_profile", "lab/m", tmp_path)
    store.save_record("device_profile@cpu", "lab/m", record)
    assert store.record_path("device_profile@cpu", "lab/m").name == "device_profile@cpu.json"
    assert store.records("device_profile@cpu") == {"lab/m": record}
    assert store.records("device_profile@cuda") == {}


def test_paths_inside_the_store_are_written_relative_and_infinity_as_data(tmp_path):
    store = ModelStore(tmp_path)
    store.save_record("onnx_model", "lab/m", small_record("onnx_model", "lab/m", tmp_path))
    store.save_record("model_outputs", "lab/m", small_record("model_outputs", "lab/m", tmp_path))
    store.save_record("model_cushions", "lab/m", small_record("model_cushions", "lab/m", tmp_path))
    conversion = _strict_json(store.record_path("onnx_model", "lab/m"))["record"]
    assert conversion["onnx_path"] == {"$store": "models/lab__m/model.onnx"}
    outputs = _strict_json(store.record_path("model_outputs", "lab/m"))["record"]
    assert outputs["path"] == {"$store": "models/lab__m/outputs.npy"}  # a `str` field holding a path, too
    cushions = _strict_json(store.record_path("model_cushions", "lab/m"))["record"]
    assert cushions["cushions"]["activation_contraction"] == {"$float": "inf"}
    assert str(tmp_path) not in store.record_path("onnx_model", "lab/m").read_text()


def test_a_copied_store_reads_its_own_paths_and_keeps_paths_outside_it(tmp_path):
    from sommelier_core.models import FetchedModel
    from tests.store_records import entry

    original = ModelStore(tmp_path / "a")
    original.save_record("onnx_model", "lab/m", small_record("onnx_model", "lab/m", original.root))
    outside = FetchedModel(entry("lab/m"), "onnx", tmp_path / "repository" / "m.onnx")
    original.save_record("fetched_model", "lab/m", outside)
    relative = FetchedModel(entry("lab/n"), "onnx", Path("n.onnx"))
    original.save_record("fetched_model", "lab/n", relative)
    subprocess.run(["cp", "-a", str(original.root), str(tmp_path / "b")], check=True)
    copy = ModelStore(tmp_path / "b")
    assert copy.load_record("onnx_model", "lab/m").onnx_path == tmp_path / "b" / "models" / "lab__m" / "model.onnx"
    assert copy.load_record("fetched_model", "lab/m") == outside  # the user's repository did not move
    assert copy.load_record("fetched_model", "lab/n") == relative


@dataclasses.dataclass(frozen=True)
class _Everything:
    """Every kind of value the codec stores, for `test_the_codec_round_trips_...`."""

    weights: np.ndarray
    scale: np.float32
    count: np.int64
    by_batch: dict[int, float]
    names: dict[str, tuple[str, ...]]
    pairs: list[tuple[int, str]]
    tags: frozenset[str]
    either: int | str
    maybe: float | None
    where: Path
    kind: str = "a"


def test_the_codec_round_trips_arrays_scalars_non_str_keys_unions_and_non_finite_floats(tmp_path):
    value = _Everything(
        weights=np.arange(6, dtype=np.float32).reshape(2, 3) / 3,
        scale=np.float32(0.1),
        count=np.int64(2**40),
        by_batch={1: 0.5, 8: -math.inf},
        names={"a": ("x", "y")},
        pairs=[(1, "one"), (2, "two")],
        tags=frozenset({"b", "a"}),
        either="batch",
        maybe=math.nan,
        where=tmp_path / "models" / "m.onnx",
    )
    paths = StorePaths(tmp_path)
    data = json.loads(json.dumps(encode(value, _Everything, paths), allow_nan=False))
    assert data["by_batch"] == [[1, 0.5], [8, {"$float": "-inf"}]]  # int keys as pairs, -inf as data
    assert data["where"] == {"$store": "models/m.onnx"}
    back = decode(data, _Everything, StorePaths(tmp_path / "elsewhere"))
    assert back.weights.dtype == np.float32 and np.array_equal(back.weights, value.weights)
    assert type(back.scale) is np.float32 and back.scale == value.scale
    assert type(back.count) is np.int64 and back.count == 2**40
    assert (back.by_batch, back.names, back.pairs, back.tags, back.either) == (
        value.by_batch,
        value.names,
        value.pairs,
        value.tags,
        value.either,
    )
    assert math.isnan(back.maybe)
    assert back.where == tmp_path / "elsewhere" / "models" / "m.onnx"
    assert decode({**data, "kind": "a"}, _Everything, paths).kind == "a"


def test_a_record_of_a_newer_schema_names_its_file_model_and_stage(tmp_path):
    store = ModelStore(tmp_path)
    store.save_record("peers", "lab/m", small_record("peers", "lab/m", tmp_path))
    path = store.record_path("peers", "lab/m")
    payload = json.loads(path.read_text())
    path.write_text(json.dumps(payload | {"schema": RECORD_SCHEMA + 1}))
    with pytest.raises(StoreFormatError, match="newer than this Sommelier") as raised:
        store.load_record("peers", "lab/m")
    assert str(path) in str(raised.value) and "lab/m" in str(raised.value) and "peers" in str(raised.value)


@pytest.mark.parametrize(
    "contents",
    [b"{not json", b'{"format": "other"}', b"[1, 2]", None],
    ids=["not-json", "other-format", "not-an-object", "wrong-field-type"],
)
def test_a_record_that_does_not_decode_is_a_domain_error_naming_it(tmp_path, contents):
    store = ModelStore(tmp_path)
    store.save_record("peers", "lab/m", small_record("peers", "lab/m", tmp_path))
    path = store.record_path("peers", "lab/m")
    if contents is None:
        payload = json.loads(path.read_text())
        payload["record"]["pool_size"] = "two"
        contents = json.dumps(payload).encode()
    path.write_bytes(contents)
    with pytest.raises(StoreFormatError) as raised:
        store.load_record("peers", "lab/m")
    assert str(path) in str(raised.value) and "(model lab/m, stage peers)" in str(raised.value)


def test_a_record_of_another_type_than_its_stage_keeps_is_refused(tmp_path):
    store = ModelStore(tmp_path)
    with pytest.raises(TypeError, match="stage 'peers' keeps PeerSample records"):
        store.save_record("peers", "lab/m", small_record("pair_scores", "lab/m", tmp_path))
    assert not store.has_record("peers", "lab/m")


# -- legacy stores ---------------------------------------------------------------------------------------

OLD_MODULES = {
    # class → module it had when the legacy store was written (sommelier_core before the subpackages)
    "Conversion": "sommelier_core.convert",
    "ModelOutputs": "sommelier_core.outputs",
    "ModelCushions": "sommelier_core.cushions",
    "Cushions": "sommelier_core.cushions",
    "LayerCushion": "sommelier_core.cushions",
    "ModelProfile": "sommelier_core.resource_index",
    "InputResolution": "sommelier_core.resource_index",
    "StaticProfile": "sommelier_core.profile",
    "LatencyProfile": "sommelier_core.profile",
    "MemoryPoint": "sommelier_core.profile",
    "DeviceProfile": "sommelier_core.operator_latency",
    "OperatorProfile": "sommelier_core.operator_latency",
    "ExecutionGraph": "sommelier_core.operator_latency",
    "ExecutedNode": "sommelier_core.operator_latency",
    "PeerSample": "sommelier_core.peers",
    "PairScores": "sommelier_core.equivalence",
    "Comparison": "sommelier_core.equivalence",
    "PairBounds": "sommelier_core.bound",
    "PairBound": "sommelier_core.bound",
}


def _legacy_pickle(record: object) -> bytes:
    """`record` pickled as a store of format 1 holds it: every class under its old module path.

    Protocol 3 names globals in text lines (`c<module>\\n<name>\\n`) and has no frames, so the module can be
    swapped in the bytes.
    """
    data = pickle.dumps(record, protocol=3)
    for cls in {type(v) for v in _values(record)}:
        if cls.__name__ in OLD_MODULES:
            old = OLD_MODULES[cls.__name__].encode()
            data = data.replace(
                f"c{cls.__module__}\n{cls.__name__}\n".encode(), b"c" + old + b"\n" + cls.__name__.encode() + b"\n"
            )
    return data


def _values(value: object):
    yield value
    if dataclasses.is_dataclass(value):
        for field in dataclasses.fields(value):
            yield from _values(getattr(value, field.name, None))
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _values(item)


def _legacy_store(old_root: Path, root: Path) -> dict[str, object]:
    """A format-1 store at `root` whose records were written at `old_root` (the store was moved since)."""
    written = {}
    for stage in RECORDS:
        record = small_record(stage, "lab/m", old_root)
        if stage == "pair_scores":  # measured figures were numpy scalars in some records
            comparison = dataclasses.replace(record.comparisons[0], difference=np.float64(0.25))
            record = dataclasses.replace(record, comparisons=(comparison,))
        if stage == "fetched_model":  # written before `ModelEntry.metadata` existed
            del record.entry.__dict__["metadata"]
        name = "device_profile@cpu" if stage == "device_profile" else stage
        path = root / "models" / "lab__m" / f"{name}.pkl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_legacy_pickle(record))
        written[name] = small_record(stage, "lab/m", root)
    (root / "index").mkdir()
    (root / "index" / "semantic_store.pkl").write_bytes(b"\x80\x04old incremental state")
    (root / "calibration").mkdir()
    (root / "calibration" / "profiles-v7-cpu-t0-r10x2.pkl").write_bytes(b"\x80\x04old calibration cache")
    return written


def test_a_legacy_store_is_migrated_once_to_data_with_paths_under_its_new_root(tmp_path):
    root = tmp_path / "moved"
    expected = _legacy_store(tmp_path / "original", root)
    assert b"sommelier_core.convert" in (root / "models" / "lab__m" / "onnx_model.pkl").read_bytes()
    store = ModelStore(root)
    done = ensure_current_format(store)
    assert done.records == len(RECORDS)
    assert done.removed == ["index/semantic_store.pkl", "calibration/profiles-v7-cpu-t0-r10x2.pkl"]
    assert sorted(root.rglob("*.pkl")) == []
    for name, record in expected.items():
        assert store.load_record(name, "lab/m") == record, name
    assert store.load_record("onnx_model", "lab/m").onnx_path == root / "models" / "lab__m" / "model.onnx"
    assert store_version(root) == STORE_VERSION
    assert not ensure_current_format(store)  # marked current: not scanned again


def test_reading_a_legacy_record_without_migrating_says_to_reindex(tmp_path):
    _legacy_store(tmp_path, tmp_path)
    store = ModelStore(tmp_path)
    assert store.has_record("peers", "lab/m")
    with pytest.raises(LegacyStoreError, match="sommelier index") as raised:
        store.load_record("peers", "lab/m")
    assert "peers.pkl" in str(raised.value) and "lab/m" in str(raised.value)
    with pytest.raises(LegacyStoreError, match="re-index"):
        store.records("peers")


class _Payload:
    """A pickle that runs code when loaded (as a hostile shared store could hold)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("kind", ["runs-code", "not-a-pickle", "not-a-record"])
def test_a_pickle_that_is_no_record_is_refused_with_the_reindex_message_and_never_run(tmp_path, kind):
    marker = tmp_path / "ran"
    contents = {
        "runs-code": pickle.dumps(_Payload(marker)),
        "not-a-pickle": b"garbage, not a pickle",
        "not-a-record": pickle.dumps({"model_id": "lab/m"}),
    }[kind]
    _legacy_store(tmp_path, tmp_path)
    (tmp_path / "models" / "lab__m" / "peers.pkl").write_bytes(contents)
    with pytest.raises(LegacyStoreError, match="re-index") as raised:
        ensure_current_format(ModelStore(tmp_path))
    assert "peers.pkl" in str(raised.value)
    assert not marker.exists()
    assert (tmp_path / "models" / "lab__m" / "onnx_model.pkl").exists()  # nothing half-migrated
    assert not (tmp_path / MANIFEST_FILE).exists()


def test_a_store_of_a_newer_format_is_refused(tmp_path):
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"format": "sommelier.store", "version": STORE_VERSION + 1}))
    with pytest.raises(StoreFormatError, match="upgrade Sommelier"):
        ensure_current_format(ModelStore(tmp_path))


# -- index files -----------------------------------------------------------------------------------------


def _bound(reference: str, candidate: str, upper: float, empirical: float | None = None):
    from sommelier_core.equivalence.bound import PairBound

    empirical = upper / 2 if empirical is None else empirical
    return PairBound(reference, candidate, "disagreement", empirical, upper / 4, upper, 100, "empirical", 0.05)


def test_the_semantic_store_saved_as_data_loads_equal_and_syncs_on_as_the_original(tmp_path):
    from sommelier_core.index.semantic import SemanticStore

    fingerprints = {"a": "f1", "b": "f2", "c": "f3", "d": "f3"}  # c and d are identical
    pairs = [_bound("a", "b", 0.1), _bound("b", "c", 0.2), _bound("a", "c", 0.5, empirical=0.0)]
    original = SemanticStore()
    original.sync(pairs, fingerprints)
    original.delete("d")
    path = tmp_path / "semantic_store.npz"
    original.save(path)
    loaded = SemanticStore.load(path)
    assert loaded.to_frame().equals(original.to_frame())
    assert loaded.candidates("a") == original.candidates("a")
    assert len(loaded) == len(original) == 3
    changed = [_bound("a", "b", 0.05), pairs[1], _bound("c", "e", 0.3)]
    fingerprints = {"a": "f1", "b": "f2", "c": "f3", "e": "f4"}
    assert loaded.sync(changed, fingerprints) == original.sync(changed, fingerprints)
    assert loaded.to_frame().equals(original.to_frame())
    assert loaded.to_frame().equals(SemanticStore.from_pairs(changed, fingerprints).to_frame())


def test_a_semantic_store_file_that_is_not_one_is_a_domain_error(tmp_path):
    from sommelier_core.index.semantic import SemanticStore

    path = tmp_path / "semantic_store.npz"
    path.write_bytes(pickle.dumps(SemanticStore()))
    with pytest.raises(StoreFormatError, match="not a saved semantic store"):
        SemanticStore.load(path)


def test_the_resource_index_keeps_onnx_paths_relative_and_reads_them_under_its_store(tmp_path):
    from sommelier_core.index.resource import build_resource_index, read_resource_index

    profile = small_record("model_profile", "lab/m", tmp_path / "a")
    outside = dataclasses.replace(small_record("model_profile", "lab/n", tmp_path), onnx_path="/data/n.onnx")
    frame = build_resource_index([profile, outside], store_root=tmp_path / "a")
    assert frame["onnx_path"].to_list() == ["models/lab__m/model.onnx", "/data/n.onnx"]
    (tmp_path / "b" / "index").mkdir(parents=True)
    frame.write_parquet(tmp_path / "b" / "index" / "resource_index.parquet")
    read = read_resource_index(tmp_path / "b" / "index" / "resource_index.parquet")
    assert read["onnx_path"].to_list() == [str(tmp_path / "b" / "models" / "lab__m" / "model.onnx"), "/data/n.onnx"]


def test_a_copied_store_logs_mlflow_artifacts_into_itself(tmp_path, monkeypatch):

    from resources.mlflow_tracker import MlflowTracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    table = pl.DataFrame({"reference_id": ["a"], "candidate_id": ["b"], "upper": [0.1]})
    monkeypatch.setenv("SOMMELIER_HOME", str(tmp_path / "a"))
    first = MlflowTracker().log_index_run(table, {"models": 2.0})
    subprocess.run(["cp", "-a", str(tmp_path / "a"), str(tmp_path / "b")], check=True)
    monkeypatch.setenv("SOMMELIER_HOME", str(tmp_path / "b"))
    second = MlflowTracker().log_index_run(table, {"models": 2.0})
    client = mlflow_client(tmp_path / 'b' / 'mlflow' / 'mlflow.db')
    copy_artifacts = (tmp_path / "b" / "mlflow" / "artifacts").as_uri()
    for run_id in (first, second):  # the copied run's artifacts are read from the copy too
        uri = client.get_run(run_id).info.artifact_uri
        assert uri.startswith(copy_artifacts + "/"), uri
    experiment = client.get_experiment_by_name("sommelier")
    assert experiment.artifact_location == copy_artifacts
    assert list((tmp_path / "b" / "mlflow" / "artifacts").rglob(f"{second}/artifacts/pair_scores.csv"))
    assert not list((tmp_path / "a" / "mlflow" / "artifacts").rglob(second))  # the original is untouched
    original = mlflow_client(tmp_path / 'a' / 'mlflow' / 'mlflow.db')
    assert original.get_run(first).info.artifact_uri.startswith((tmp_path / "a").as_uri() + "/")


# -- a store indexed end to end (tests/conftest.py) --------------------------------------------------------


def test_an_indexed_store_holds_no_pickles_and_is_marked_current(indexed_store):
    assert sorted(indexed_store.root.rglob("*.pkl")) == []
    assert sorted(indexed_store.root.rglob("*.pickle")) == []
    assert store_version(indexed_store.root) == STORE_VERSION
    assert (indexed_store.root / "index" / "semantic_store.npz").exists()


def test_every_record_of_an_indexed_store_reencodes_to_the_same_file(indexed_store):
    from sommelier_core.store.records import decode_record, encode_record

    store = ModelStore(indexed_store.root)
    files = sorted((indexed_store.root / "models").glob("*/*.json"))
    assert {p.stem.split("@")[0] for p in files} == set(RECORDS)
    for path in files:
        model_id, record = decode_record(path.read_bytes(), path, path.stem, None, store.paths)
        assert encode_record(path.stem, model_id, record, store.paths) == path.read_bytes(), path
        assert str(indexed_store.root) not in path.read_text(), path  # every path inside the store is relative


def test_a_copy_of_an_indexed_store_answers_queries_with_onnx_files_inside_the_copy(indexed_store, tmp_path):
    import sommelier_core
    from sommelier_core.zoo import load_manifest

    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(indexed_store.root), str(copy)], check=True)
    resource = pl.read_parquet(copy / "index" / "resource_index.parquet")
    assert all(not p.startswith("/") for p in resource["onnx_path"].to_list())
    parent = next(m for m in load_manifest(indexed_store.zoo).models if m.transformation in ("noise", "prune"))
    ref = ("zoo-torch/" if parent.framework == "torch" else "zoo-tf/") + parent.parent
    hits = sommelier_core.query(ref=ref, within=1.0, index_dir=copy / "index")
    assert hits
    for hit in hits:
        assert Path(hit.onnx_path).is_relative_to(copy) and Path(hit.onnx_path).is_file(), hit.onnx_path
    conversion = ModelStore(copy).load_record("onnx_model", ref)
    assert conversion.onnx_path == copy / "models" / conversion.onnx_path.parent.name / "model.onnx"
    original = sommelier_core.query(ref=ref, within=1.0, index_dir=indexed_store.root / "index")
    assert [h.model_id for h in original] == [h.model_id for h in hits]
    assert all(Path(h.onnx_path).is_relative_to(indexed_store.root) for h in original)


def test_the_calibration_cache_is_data_that_reads_back_equal(tmp_path, monkeypatch):
    from sommelier_core.profiling import calibration
    from sommelier_core.profiling.operator_table import ProfiledModel

    operators = small_record("device_profile", "lab/m", tmp_path).operators[0]
    profiled = [ProfiledModel("calibration/gemm", operators, 0.05), ProfiledModel("calibration/conv", operators)]
    monkeypatch.setattr(calibration, "calibration_profiles", lambda *args: profiled)
    first, _ = calibration.cached_calibration_profiles(tmp_path, runs=2, threads=1, rounds=1)
    monkeypatch.setattr(calibration, "calibration_profiles", lambda *args: pytest.fail("profiled again"))
    again, seconds = calibration.cached_calibration_profiles(tmp_path, runs=2, threads=1, rounds=1)
    assert again == first == profiled and seconds == 0.0
    (cache,) = tmp_path.glob("profiles-*.json")
    assert _strict_json(cache)["schema"] == calibration.CACHE_SCHEMA


def test_the_store_resource_migrates_a_legacy_store_on_first_use(tmp_path):
    from resources.store import ModelStoreResource

    expected = _legacy_store(tmp_path / "original", tmp_path / "store")
    store = ModelStoreResource(root=str(tmp_path / "store")).store()
    assert store.load_record("peers", "lab/m") == expected["peers"]
    assert sorted((tmp_path / "store").rglob("*.pkl")) == []


def test_sommelier_index_says_in_one_line_that_a_store_cannot_be_migrated(tmp_path, monkeypatch, capsys):
    from pipelines import index_run
    from resources.store import ModelStoreResource

    _legacy_store(tmp_path, tmp_path)
    (tmp_path / "models" / "lab__m" / "peers.pkl").write_bytes(b"garbage, not a pickle")
    monkeypatch.setenv("SOMMELIER_HOME", str(tmp_path))
    monkeypatch.setattr(index_run, "run_index", lambda *_, **__: ModelStoreResource().store())  # its first store use
    assert index_run.main([]) == 2
    error = capsys.readouterr().err
    errors = [line for line in error.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "peers.pkl" in errors[0] and "Traceback" not in error
