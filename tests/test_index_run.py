"""The in-process driver behind `sommelier index`, on inputs that need no models."""

from __future__ import annotations

from dagster import DagsterInstance

from pipelines.definitions import build_resources
from pipelines.index_run import run_index
from resources.repositories import RepositoriesResource, RepositoryConfig
from resources.store import ModelStoreResource, StoreIOManager


def test_no_listed_models_leaves_the_index_untouched_and_says_why(tmp_path):
    (tmp_path / "empty").mkdir()
    index_file = tmp_path / "index" / "semantic_index.parquet"
    index_file.parent.mkdir()
    index_file.write_bytes(b"previous index")
    resources = build_resources("local") | {
        "store": ModelStoreResource(root=str(tmp_path)),
        "io_manager": StoreIOManager(root=str(tmp_path)),
        "repositories": RepositoriesResource(
            repositories=[
                RepositoryConfig(kind="onnx", name="empty", location=[str(tmp_path / "empty")]),
                RepositoryConfig(kind="torchhub", name="gone", location=[str(tmp_path / "missing-hub")]),
            ]
        ),
    }
    lines: list[str] = []
    with DagsterInstance.ephemeral() as instance:
        summary = run_index(echo=lines.append, instance=instance, resources=resources)
    assert "<repositories>" in summary.failures and "missing-hub" in summary.failures["<repositories>"]
    assert any("gone" in line and "missing-hub" in line for line in lines)
    assert any("The index is left as it was" in line for line in lines)
    assert index_file.read_bytes() == b"previous index"
