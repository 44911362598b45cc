"""The trust boundary: code in a repository runs only when the repository is trusted; files stay inside it.

Each hostile repository here would leave a marker file if its code ran; the tests check the markers are absent
(untrusted) or present (trusted, where running it is the point). Nothing touches the network.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from sommelier_core.errors import RepositoryError
from sommelier_core.ingest.repositories import (
    OnnxFolderRepository,
    OutsideRepository,
    TFHubRepository,
    TorchHubRepository,
    UntrustedRepository,
    repository_from_config,
)
from sommelier_core.models import ModelEntry
from tests.digits_models import fixed_digits_classifier

HOSTILE_HUBCONF = """
import pathlib
pathlib.Path({marker!r}).write_text("hubconf top-level code ran")

dependencies = ["torch"]


def payload(pretrained=True):
    import torch
    return torch.load({weights!r}, weights_only=False)  # a pickle: runs whatever it holds


class Wrapped:
    pass
"""


def hostile_hub(tmp_path: Path) -> tuple[Path, Path]:
    """A Torch Hub folder whose hubconf writes a marker at import, with an entry point that unpickles."""
    hub = tmp_path / "hub"
    hub.mkdir()
    marker = tmp_path / "hubconf-ran"
    (hub / "hubconf.py").write_text(HOSTILE_HUBCONF.format(marker=str(marker), weights=str(hub / "payload.pt")))
    (hub / "sommelier.json").write_text(json.dumps({"payload": {"input_shape": [1, 8, 8]}}))
    return hub, marker


def test_listing_an_untrusted_torch_hub_runs_none_of_its_code(tmp_path: Path) -> None:
    hub, marker = hostile_hub(tmp_path)

    [entry] = TorchHubRepository("evil", hub).list_models()

    assert entry.model_id == "evil/payload" and entry.input_shape == (1, 8, 8)
    assert not marker.exists()


def test_untrusted_entry_points_come_from_the_syntax_tree_with_the_versions_a_trusted_listing_gives(
    tmp_path: Path,
) -> None:
    hub, marker = hostile_hub(tmp_path)
    (hub / "sommelier.json").unlink()
    shapes = {"payload": [1, 8, 8], "Wrapped": [4]}

    untrusted = {e.name: e.version for e in TorchHubRepository("r", hub, input_shapes=shapes).list_models()}
    assert not marker.exists()
    trusted = {e.name: e.version for e in TorchHubRepository("r", hub, input_shapes=shapes, trusted=True).list_models()}

    assert marker.exists()  # trusted: imported, as Torch Hub does
    assert untrusted == trusted and sorted(untrusted) == ["Wrapped", "payload"]


def test_fetching_from_an_untrusted_torch_hub_is_refused_naming_the_repository_and_the_fix(tmp_path: Path) -> None:
    hub, marker = hostile_hub(tmp_path)
    repo = TorchHubRepository("evil", hub)
    [entry] = repo.list_models()

    with pytest.raises(UntrustedRepository) as refused:
        repo.fetch(entry, tmp_path / "fetch")

    message = str(refused.value)
    assert "evil/payload" in message and "'evil' is not trusted" in message
    assert "sommelier repo add torchhub evil LOCATION --trust" in message and "trusted: true" in message
    assert not marker.exists()


def test_a_trusted_torch_hub_is_fetched(tmp_path: Path) -> None:
    hub, _ = hostile_hub(tmp_path)
    repo = repository_from_config("torchhub", "mine", str(hub), trusted=True)
    [entry] = repo.list_models()
    assert repo.fetch(entry, tmp_path).entry_point == "payload"


def test_an_untrusted_github_reference_is_never_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.hub

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty cache
    with pytest.raises(RepositoryError, match="not trusted and not in Torch Hub's cache.*--trust"):
        TorchHubRepository("gh", "someone/models:v1").list_models()


def test_fetching_a_savedmodel_from_an_untrusted_tfhub_repository_is_refused(tmp_path: Path) -> None:
    entry = ModelEntry("tf/net", "tf", "net", "1", "tensorflow", "classification", (4,))
    with pytest.raises(UntrustedRepository, match="tf/net.*'tf' is not trusted.*graph runs when restored"):
        TFHubRepository("tf", tmp_path).fetch(entry, tmp_path)


def test_an_onnx_folder_needs_no_trust(tmp_path: Path) -> None:
    fixed_digits_classifier(tmp_path / "m.onnx")
    repo = OnnxFolderRepository("files", tmp_path)
    [entry] = repo.list_models()
    assert repo.fetch(entry, tmp_path).source_path == (tmp_path / "m.onnx").resolve()


def test_an_onnx_symlink_out_of_the_folder_is_listed_unread_and_refused(tmp_path: Path) -> None:
    folder, outside = tmp_path / "repo", tmp_path / "elsewhere"
    folder.mkdir()
    outside.mkdir()
    fixed_digits_classifier(outside / "secret.onnx")
    fixed_digits_classifier(folder / "inside.onnx")
    os.symlink(outside / "secret.onnx", folder / "leak.onnx")
    os.symlink(folder / "inside.onnx", folder / "alias.onnx")  # a link that stays inside is fine
    repo = OnnxFolderRepository("files", folder)

    entries = {e.name: e for e in repo.list_models()}

    assert "symbolic link out of the repository" in entries["leak"].meta()["listing_note"]
    assert entries["leak"].input_shape is None  # the file was not read
    with pytest.raises(OutsideRepository, match="leak.onnx is a symbolic link to .*secret.onnx, outside"):
        repo.fetch(entries["leak"], tmp_path)
    assert repo.fetch(entries["alias"], tmp_path).source_path == (folder / "inside.onnx").resolve()


def test_a_savedmodel_directory_linked_from_outside_refuses_the_listing(tmp_path: Path) -> None:
    folder, outside = tmp_path / "repo", tmp_path / "elsewhere" / "net"
    folder.mkdir()
    outside.mkdir(parents=True)
    (outside / "saved_model.pb").write_bytes(b"")
    os.symlink(outside, folder / "net")
    with pytest.raises(OutsideRepository, match="outside the repository's folder"):
        TFHubRepository("tf", folder, trusted=True).list_models()


def test_the_builtin_zoo_is_trusted_and_other_repositories_are_not_by_default(tmp_path: Path) -> None:
    from resources.repositories import RepositoryConfig, builtin_zoo_repositories

    assert all(config.trusted for config in builtin_zoo_repositories())
    assert RepositoryConfig(kind="torchhub", name="x", location=["/x"]).trusted is False
    assert TorchHubRepository("x", tmp_path).trusted is False


def test_the_generated_hubconf_text_is_what_torch_hub_would_list(tmp_path: Path) -> None:
    # decorated and undecorated functions: the parsed source is what inspect.getsource returns
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "hubconf.py").write_text(
        textwrap.dedent(
            """
            import functools

            def _deco(f):
                return f

            @_deco
            def net(pretrained=True):
                return None
            """
        )
    )
    shapes = {"net": [4]}
    untrusted = TorchHubRepository("r", hub, input_shapes=shapes).list_models()
    trusted = TorchHubRepository("r", hub, input_shapes=shapes, trusted=True).list_models()
    assert [e.version for e in untrusted] == [e.version for e in trusted]
