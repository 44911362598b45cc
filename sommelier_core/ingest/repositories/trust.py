"""The trust boundary: which models run code when loaded, and files that leave their repository.

Loading a Torch Hub entry point runs `hubconf.py` (and whatever it unpickles); restoring a SavedModel or a
Keras model runs the graph's ops (`tf.io.write_file` included); an MLflow `pytorch` model is a pickle. Such
models are fetched only from a repository marked trusted (`trusted: true` in `sommelier.yaml`,
`sommelier repo add … --trust`); from any other repository, `fetch` refuses them with `UntrustedRepository`,
naming the repository and how to trust it. Listing never runs a repository's code unless it is trusted
(an untrusted Torch Hub repository's entry points are read from `hubconf.py`'s syntax tree). ONNX files
are data: ONNX Runtime runs only the operators the standard defines, so they need no trust. The built-in
zoo is Sommelier's own and is trusted.

A file a repository lists must live inside the repository's folder: a symbolic link that resolves outside
it is refused (`require_inside`), trusted or not, so a repository cannot make Sommelier read another file.
"""

from __future__ import annotations

from pathlib import Path

from sommelier_core.errors import RepositoryError

PROJECT_CONFIG_FILE = "sommelier.yaml"
"""The project configuration's file name (its home is `sommelier_core.ingest.project_config`); named here so
refusals can say where `trusted: true` goes without importing the configuration module."""


class UntrustedRepository(RepositoryError):
    """A model whose loading runs code, from a repository not marked trusted."""


class OutsideRepository(RepositoryError):
    """A repository file that is a symbolic link to somewhere outside the repository's folder."""


def trust_hint(kind: str, repository: str) -> str:
    """How a user marks `repository` trusted: the CLI command, or the key in the project configuration."""
    return (
        f"if you trust its code, mark it trusted with `sommelier repo add {kind} {repository} LOCATION --trust` "
        f"or `trusted: true` under repository {repository!r} in {PROJECT_CONFIG_FILE}"
    )


def require_trust(trusted: bool, kind: str, repository: str, model_id: str, runs: str) -> None:
    """Raise `UntrustedRepository` unless `trusted`: loading `model_id` would run code (`runs` says which)."""
    if trusted:
        return
    raise UntrustedRepository(
        f"{model_id}: repository {repository!r} is not trusted, and loading this model runs code ({runs}); "
        f"refused; {trust_hint(kind, repository)}"
    )


def require_inside(path: Path, root: Path, repository: str) -> Path:
    """`path` resolved, if it stays inside `root` (resolved); else `OutsideRepository` naming both."""
    resolved = Path(path).resolve()
    base = Path(root).resolve()
    if not resolved.is_relative_to(base):
        raise OutsideRepository(
            f"repository {repository!r}: {path} is a symbolic link to {resolved}, outside the repository's "
            f"folder {base}; refused (copy the file into the folder if it belongs there)"
        )
    return resolved


def is_inside(path: Path, root: Path) -> bool:
    """Whether `path` resolves to a place inside `root` (resolved)."""
    return Path(path).resolve().is_relative_to(Path(root).resolve())
