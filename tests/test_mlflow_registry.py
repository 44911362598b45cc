"""The MLflow Model Registry connector against a real MLflow (SQLite tracking store under tmp): listing versions
by flavour, fetching them for conversion, trust, the sensor seeing a new version, verdicts written back as tags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sommelier_core.ingest.repositories import MlflowRegistryRepository, UntrustedRepository, repository_from_config
from sommelier_core.ingest.repositories.mlflow_registry import (
    BOUND_TAG,
    EQUIVALENTS_TAG,
    NEAREST_TAG,
    THRESHOLD_TAG,
    Verdict,
    split_version_name,
    verdicts_from_index,
    write_verdicts,
)
from tests.mlflow_models import register_onnx, register_pyfunc, register_pytorch, tracking_uri


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """digits v1, v2 (ONNX), torchnet v1 (pytorch), echo v1 (pyfunc only), and Sommelier's own mirror model."""
    folder = tmp_path_factory.mktemp("registry")
    uri = tracking_uri(folder)
    register_onnx(uri, folder, "digits", seed=0, tags={"sommelier.task": "classification"})
    register_onnx(uri, folder, "digits", seed=1)
    register_pytorch(uri, folder, "torchnet", seed=0)
    register_pyfunc(uri, folder, "echo")
    register_onnx(uri, folder, "zoo__mirror", seed=2)
    from mlflow import MlflowClient

    MlflowClient(uri, registry_uri=uri).set_registered_model_tag("zoo__mirror", "sommelier.model_id", "zoo/mirror")
    return uri, folder


def test_versions_are_listed_by_convertible_flavour_with_their_signature(registry) -> None:
    uri, _ = registry
    repo = MlflowRegistryRepository("reg", uri)

    entries = {e.model_id: e for e in repo.list_models()}

    assert sorted(entries) == ["reg/digits/v1", "reg/digits/v2", "reg/torchnet/v1"]
    v1 = entries["reg/digits/v1"]
    assert (v1.framework, v1.task, v1.input_shape) == ("onnx", "classification", (1, 8, 8))
    assert entries["reg/torchnet/v1"].framework == "torch"
    assert v1.meta()["mlflow_flavour"] == "onnx" and v1.version != entries["reg/digits/v2"].version
    assert repo.skipped == ["echo v1: flavours python_function; expected one of onnx, pytorch, tensorflow"]


def test_a_filter_selects_registered_models(registry) -> None:
    uri, _ = registry
    repo = repository_from_config("mlflow", "reg", uri, filter="name LIKE 'torch%'")
    assert [e.model_id for e in repo.list_models()] == ["reg/torchnet/v1"]


def test_an_onnx_version_is_fetched_untrusted_and_converts(registry, tmp_path: Path) -> None:
    from sommelier_core.ingest.convert import convert_model

    uri, _ = registry
    repo = MlflowRegistryRepository("reg", uri)
    entry = next(e for e in repo.list_models() if e.model_id == "reg/digits/v2")

    fetched = repo.fetch(entry, tmp_path / "fetch")
    conversion = convert_model(fetched, tmp_path / "model.onnx")

    assert fetched.loader == "onnx" and fetched.source_path.is_relative_to(tmp_path / "fetch")
    assert conversion.signature.inputs[0].shape[1:] == (1, 8, 8)


def test_a_pytorch_version_is_refused_untrusted_and_converted_with_parity_when_trusted(registry, tmp_path) -> None:
    from sommelier_core.ingest.convert import convert_model

    uri, _ = registry
    untrusted = MlflowRegistryRepository("reg", uri)
    entry = next(e for e in untrusted.list_models() if e.model_id == "reg/torchnet/v1")
    with pytest.raises(UntrustedRepository, match="reg/torchnet/v1.*'reg' is not trusted.*pickle.*--trust"):
        untrusted.fetch(entry, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()  # refused before anything was downloaded

    fetched = MlflowRegistryRepository("reg", uri, trusted=True).fetch(entry, tmp_path / "fetch")
    conversion = convert_model(fetched, tmp_path / "torchnet.onnx")

    assert fetched.loader == "torchhub" and conversion.signature.outputs[0].shape[1:] == (10,)
    assert conversion.max_abs_error < 1e-4


def test_verdicts_are_read_from_index_rows_and_written_as_version_tags(registry) -> None:
    from mlflow import MlflowClient

    uri, _ = registry
    rows = [
        {"reference_id": "reg/digits/v1", "candidate_id": "reg/digits/v2", "upper": 0.30},
        {"reference_id": "reg/digits/v1", "candidate_id": "lab/a", "upper": 0.02},
        {"reference_id": "reg/digits/v1", "candidate_id": "lab/b", "upper": 0.04},
        {"reference_id": "reg/digits/v2", "candidate_id": "reg/digits/v1", "upper": 0.30},
        {"reference_id": "lab/a", "candidate_id": "reg/digits/v1", "upper": 0.02},
    ]
    verdicts = verdicts_from_index(rows, ["reg/digits/v1", "reg/digits/v2"], threshold=0.05)
    assert verdicts[0] == Verdict("reg/digits/v1", (("lab/a", 0.02), ("lab/b", 0.04)), "lab/a", 0.02, 0.05)
    assert verdicts[1] == Verdict("reg/digits/v2", (), "reg/digits/v1", 0.30, 0.05)

    tagged = write_verdicts(MlflowRegistryRepository("reg", uri), [*verdicts, Verdict("lab/a", (), None, None, 0.05)])

    assert tagged == ["reg/digits/v1", "reg/digits/v2"]
    tags = MlflowClient(uri, registry_uri=uri).get_model_version("digits", "1").tags
    assert json.loads(tags[EQUIVALENTS_TAG]) == [{"model": "lab/a", "bound": 0.02}, {"model": "lab/b", "bound": 0.04}]
    assert (tags[BOUND_TAG], tags[NEAREST_TAG], tags[THRESHOLD_TAG]) == ("0.02", "lab/a", "0.05")


def test_the_equivalents_tag_stays_within_mlflows_limit() -> None:
    many = tuple((f"lab/model_{i:05d}", 0.01) for i in range(1000))
    text = Verdict("reg/x/v1", many, many[0][0], 0.01, 0.05).tags()[EQUIVALENTS_TAG]
    assert len(text) <= 5000 and json.loads(text)[0] == {"model": "lab/model_00000", "bound": 0.01}


def test_version_names_split_back_and_others_are_refused() -> None:
    assert split_version_name("my model/v12") == ("my model", "12")
    with pytest.raises(Exception, match="not an MLflow model version name"):
        split_version_name("digits/latest")


def test_the_sensor_requests_a_run_for_a_new_version(registry, tmp_path: Path) -> None:
    from dagster import DagsterInstance, build_sensor_context

    from pipelines.sensors import make_repository_sensor
    from resources.repositories import RepositoriesResource, RepositoryConfig
    from resources.store import ModelStoreResource

    uri, folder = registry
    repositories = RepositoriesResource(
        repositories=[RepositoryConfig(kind="mlflow", name="reg", location=[uri])]
    )
    sensor = make_repository_sensor("index_models")
    with DagsterInstance.ephemeral() as instance:
        def evaluate():
            context = build_sensor_context(
                instance=instance,
                resources={"repositories": repositories, "store": ModelStoreResource(root=str(tmp_path))},
            )
            result = sensor(context)
            for request in result.dynamic_partitions_requests:
                instance.add_dynamic_partitions("models", list(request.partition_keys))
            return sorted(r.partition_key for r in result.run_requests)

        assert "reg/digits/v1" in evaluate()
        register_onnx(uri, folder, "digits", seed=3)
        assert "reg/digits/v3" in evaluate()
        assert "reg/digits/v3" in instance.get_dynamic_partitions("models")
    np.testing.assert_equal(len(MlflowRegistryRepository("reg", uri).list_models()), 4)


def test_the_registry_verdicts_asset_tags_the_versions_the_semantic_index_holds(
    registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import polars as pl
    from dagster import materialize
    from mlflow import MlflowClient

    from pipelines.definitions import all_assets, build_resources
    from resources.repositories import RepositoriesResource, RepositoryConfig
    from resources.store import StoreIOManager
    from sommelier_core.store import write_parquet_atomic

    uri, _ = registry
    monkeypatch.setenv("SOMMELIER_HOME", str(tmp_path))
    semantic = pl.DataFrame(
        {
            "reference_id": ["reg/digits/v2", "reg/digits/v2", "lab/a"],
            "candidate_id": ["lab/a", "reg/digits/v1", "reg/digits/v2"],
            "provenance": ["measured", "transitive", "measured"],
            "lower": [0.0, 0.1, 0.0],
            "empirical": [0.01, 0.2, 0.01],
            "upper": [0.03, 0.4, 0.03],
            "hops": [1, 2, 1],
        }
    )
    write_parquet_atomic(semantic, tmp_path / "index" / "semantic_index.parquet")
    repositories = RepositoriesResource(repositories=[RepositoryConfig(kind="mlflow", name="reg", location=[uri])])

    result = materialize(
        all_assets,
        selection=["registry_verdicts"],
        resources=build_resources("local")
        | {"repositories": repositories, "io_manager": StoreIOManager(root=str(tmp_path))},
    )

    frame = result.output_for_node("registry_verdicts")
    assert frame.to_dicts() == [{"model_id": "reg/digits/v2", "equivalents": 1, "nearest": "lab/a", "bound": 0.03}]
    tags = MlflowClient(uri, registry_uri=uri).get_model_version("digits", "2").tags
    assert json.loads(tags[EQUIVALENTS_TAG]) == [{"model": "lab/a", "bound": 0.03}] and tags[BOUND_TAG] == "0.03"


def test_an_unreachable_tracking_server_fails_fast_naming_the_repository() -> None:
    import time

    from sommelier_core.errors import RepositoryError

    start = time.monotonic()
    with pytest.raises(RepositoryError, match="MLflow repository 'remote': cannot reach 192.0.2.1"):
        MlflowRegistryRepository("remote", "http://192.0.2.1:5000", timeout_s=1).list_models()
    assert time.monotonic() - start < 15  # not MLflow's minutes of retries
