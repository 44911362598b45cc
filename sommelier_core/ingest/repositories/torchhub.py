"""Torch Hub repositories: a local directory with a `hubconf.py`, or a GitHub `owner/repo[:ref]`.

Entry points are what `torch.hub.list` reports (public callables of `hubconf.py`). PyTorch
modules do not declare their input shape, so every listed model needs one from the hub's
`sommelier.json` or from the `input_shapes` configuration; a model without one is an error at
listing time rather than a failed export later.

Trust (`trust`): loading an entry point runs `hubconf.py` and whatever it unpickles, so only a trusted
repository's models are fetched. An untrusted repository is still listed — its entry points read from
`hubconf.py`'s syntax tree, its top-level code never run — and each fetch is refused, naming the fix.
Torch Hub's own trust prompt is answered `trust_repo=True` only for a trusted repository; an untrusted
GitHub reference is listed only from Torch Hub's cache (its code is never downloaded on Sommelier's say).
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from sommelier_core.errors import RepositoryError
from sommelier_core.ingest.repositories.entries import (
    METADATA_FILE,
    make_entry,
    merged_metadata,
    read_metadata_file,
    short_sha256,
)
from sommelier_core.ingest.repositories.network import DEFAULT_TIMEOUT_S, check_reachable, socket_timeout
from sommelier_core.ingest.repositories.trust import require_trust, trust_hint
from sommelier_core.models import FetchedModel, ModelEntry

HUBCONF = "hubconf.py"
GITHUB_URL = "https://github.com"
_GITHUB_REF = re.compile(r"^[\w.-]+/[\w.-]+(:[\w./-]+)?$")
_WEIGHT_SUFFIXES = (".pt", ".pth", ".safetensors", ".bin", ".ckpt")


class TorchHubRepository:
    """The entry points of one Torch Hub repository, as Sommelier models.

    `source` is a local directory holding `hubconf.py`, or a GitHub reference `owner/repo[:ref]`
    that Torch Hub downloads into its cache (`$TORCH_HOME/hub`). `trusted` says its code may run: only then
    is `hubconf.py` imported (exact entry points) and are its models fetched (module docstring).
    `input_shapes` maps entry names to input shapes (batch dimension excluded); `metadata` maps
    entry names to extra metadata that overrides the hub's `sommelier.json`; `entries` restricts
    the listing to the named entry points (default: those declared in `sommelier.json`, else all).
    """

    def __init__(
        self,
        name: str,
        source: str | Path,
        input_shapes: Mapping[str, Sequence[int]] | None = None,
        *,
        metadata: Mapping[str, Mapping[str, Any]] | None = None,
        entries: Sequence[str] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        trusted: bool = False,
    ) -> None:
        self.name = name
        self.source = str(source)
        self.trusted = trusted
        self.input_shapes = {k: tuple(v) for k, v in (input_shapes or {}).items()}
        self.metadata = {k: dict(v) for k, v in (metadata or {}).items()}
        self.entries = tuple(entries) if entries is not None else None
        self.timeout_s = timeout_s
        # An existing directory wins over the GitHub reading of an `owner/repo`-shaped relative path.
        self._local = Path(source).is_dir() or not _GITHUB_REF.match(self.source)
        self._downloaded: Path | None = None

    def list_models(self) -> list[ModelEntry]:
        """One entry per selected entry point, sorted by name, with metadata and version."""
        repo_dir = self.repo_dir()
        hubconf = self._hubconf(repo_dir)
        declared = read_metadata_file(repo_dir)
        names = self._selected_names(hubconf, declared, repo_dir)
        metas = {n: merged_metadata(declared, self.metadata, name=n) for n in names}
        missing = [n for n in names if "input_shape" not in metas[n] and n not in self.input_shapes]
        if missing:
            raise RepositoryError(
                f"Torch Hub repository {self.name!r} ({self.source}): no input shape known for entry point(s) "
                f'{", ".join(missing)}; PyTorch models do not declare one. Add "input_shape" (batch dimension '
                f"excluded) per entry to {repo_dir / METADATA_FILE}, or configure "
                f"input_shapes={{{missing[0]!r}: [1, 8, 8], ...}}"
            )
        return [
            make_entry(
                self.name,
                n,
                "torch",
                metas[n],
                version=self._version(hubconf, n, metas[n], repo_dir),
                input_shape=self.input_shapes.get(n),
            )
            for n in names
        ]

    def fetch(self, entry: ModelEntry, dest_dir: Path) -> FetchedModel:
        """The hub directory (local, or Torch Hub's cache for GitHub) and the entry point to load.

        Torch Hub keeps its own download cache, so nothing is written to `dest_dir`. Refused with
        `UntrustedRepository` unless the repository is trusted: loading the entry point runs its code.
        """
        require_trust(self.trusted, "torchhub", self.name, entry.model_id, f"{HUBCONF} and the weights it loads")
        repo_dir = self.repo_dir()
        if entry.name not in _entrypoints(_import_hubconf(repo_dir)):
            raise RepositoryError(f"{entry.model_id}: {repo_dir / HUBCONF} has no entry point {entry.name!r}")
        return FetchedModel(entry=entry, loader="torchhub", source_path=repo_dir, entry_point=entry.name)

    def repo_dir(self) -> Path:
        """The local directory holding `hubconf.py`, downloading a GitHub repository on first use."""
        if self._local:
            repo_dir = Path(self.source).resolve()
        else:
            if self._downloaded is None:
                self._downloaded = self._download()
            repo_dir = self._downloaded
        if not (repo_dir / HUBCONF).is_file():
            raise RepositoryError(
                f"Torch Hub repository {self.name!r}: {repo_dir} is not a directory with {HUBCONF}"
                + (" (nor a GitHub reference 'owner/repo[:ref]')" if self._local else "")
            )
        return repo_dir

    def _download(self) -> Path:
        """Torch Hub's cached copy of the GitHub reference if there is one (works offline), else a download."""
        import torch.hub

        cached = self._cached_dir()
        if cached is not None:
            return cached
        what = f"Torch Hub repository {self.name!r} (GitHub {self.source})"
        if not self.trusted:
            raise RepositoryError(
                f"{what} is not trusted and not in Torch Hub's cache; Sommelier downloads a repository's code only "
                f"when it is trusted; {trust_hint('torchhub', self.name)}"
            )
        check_reachable(GITHUB_URL, what, self.timeout_s)
        try:
            with socket_timeout(self.timeout_s):
                # The private helper is what torch.hub.list/load call; it is the only way to learn
                # the cache directory a GitHub reference was unpacked into.
                repo_dir = torch.hub._get_cache_or_reload(
                    self.source, force_reload=False, trust_repo=self.trusted, verbose=False, skip_validation=True
                )
        except Exception as exc:
            raise RepositoryError(f"{what}: download failed: {exc}") from exc
        return Path(repo_dir)

    def _cached_dir(self) -> Path | None:
        """The directory Torch Hub unpacked this reference into earlier (its naming rule), if any."""
        import torch.hub

        owner_repo, _, ref = self.source.partition(":")
        owner, repo = owner_repo.split("/")
        for candidate in [ref] if ref else ["main", "master"]:
            repo_dir = Path(torch.hub.get_dir()) / f"{owner}_{repo}_{candidate.replace('/', '_')}"
            if (repo_dir / HUBCONF).is_file():
                return repo_dir
        return None

    def _selected_names(self, hubconf: _Hubconf, declared: Mapping[str, Any], repo_dir: Path) -> list[str]:
        entrypoints = hubconf.entrypoints
        wanted = list(self.entries) if self.entries is not None else (sorted(declared) or entrypoints)
        unknown = [n for n in wanted if n not in entrypoints and n not in hubconf.imported]
        if unknown:
            raise RepositoryError(
                f"Torch Hub repository {self.name!r}: {', '.join(unknown)} named in configuration or "
                f"{METADATA_FILE} but not an entry point of {repo_dir / HUBCONF} "
                f"(entry points: {', '.join(entrypoints)})"
            )
        return sorted(wanted)

    def _hubconf(self, repo_dir: Path) -> _Hubconf:
        """The entry points and their source: imported when trusted (Torch Hub's exact rule), else parsed."""
        if self.trusted:
            return _imported_hubconf(repo_dir)
        return _parsed_hubconf(repo_dir)

    def _version(self, hubconf: _Hubconf, name: str, meta: Mapping[str, Any], repo_dir: Path) -> str:
        """The declared version, else the GitHub ref, else a hash of the entry's code and weights."""
        if meta.get("version"):
            return str(meta["version"])
        if not self._local and ":" in self.source:
            return self.source.split(":", 1)[1]
        code = hubconf.sources.get(name, name).encode()
        weights = _weight_file(repo_dir, name, meta)
        return short_sha256([code] + ([weights] if weights else []))


@dataclass(frozen=True)
class _Hubconf:
    """What listing needs from `hubconf.py`: entry point names and each one's source text (for its version)."""

    entrypoints: list[str]
    sources: dict[str, str]
    imported: frozenset[str] = frozenset()
    """Names an untrusted `hubconf.py` imports with `from … import`: entry points only if callable, which is
    unknown without running it, so they are listed only when `sommelier.json` or `entries` names them."""


def _imported_hubconf(repo_dir: Path) -> _Hubconf:
    """`hubconf.py` imported (its top-level code runs): for trusted repositories."""
    module = _import_hubconf(repo_dir)
    sources = {}
    for name in _entrypoints(module):
        try:
            sources[name] = inspect.getsource(getattr(module, name))
        except (OSError, TypeError):
            continue
    return _Hubconf(_entrypoints(module), sources)


def _parsed_hubconf(repo_dir: Path) -> _Hubconf:
    """`hubconf.py` read as a syntax tree, nothing executed: its public top-level functions and classes (and, in
    `imported`, names from `from … import`). Sources are the lines `inspect.getsource` gives, so a model's
    version does not change when its repository becomes trusted."""
    path = repo_dir / HUBCONF
    try:
        text = path.read_text()
        tree = ast.parse(text, filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError) as exc:
        raise RepositoryError(f"{path}: cannot be read as Python source: {exc}") from exc
    lines = text.splitlines(keepends=True)
    names: set[str] = set()
    imported: set[str] = set()
    sources: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names.add(node.name)  # no source: `inspect.getsource` cannot find a class of an unregistered module
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            sources[node.name] = "".join(lines[first - 1 : node.end_lineno])
        elif isinstance(node, ast.ImportFrom):
            imported.update(alias.asname or alias.name for alias in node.names if alias.name != "*")
    public = sorted(n for n in names if not n.startswith("_"))
    return _Hubconf(public, sources, frozenset(n for n in imported if not n.startswith("_")))


def _import_hubconf(repo_dir: Path) -> ModuleType:
    """Execute `hubconf.py` as a fresh module, with its directory importable (as Torch Hub does)."""
    path = repo_dir / HUBCONF
    module_name = f"_sommelier_hubconf_{short_sha256([str(path).encode()])}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RepositoryError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(repo_dir))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise RepositoryError(f"{path}: importing the Torch Hub configuration failed: {exc!r}") from exc
    finally:
        sys.path.remove(str(repo_dir))
    return module


def _entrypoints(hubconf: ModuleType) -> list[str]:
    """Torch Hub's rule (`torch.hub.list`): every public callable of `hubconf.py`."""
    return sorted(n for n in dir(hubconf) if not n.startswith("_") and callable(getattr(hubconf, n)))


def _weight_file(repo_dir: Path, name: str, meta: Mapping[str, Any]) -> Path | None:
    """The weight file of an entry: `weights`/`artifact` metadata, else `<name>.pt` and friends."""
    candidates = [
        base / str(meta[key])
        for key in ("weights", "artifact")
        if meta.get(key)
        for base in (repo_dir, repo_dir.parent)
    ]
    candidates += [
        folder / f"{name}{suffix}" for folder in (repo_dir, repo_dir / "weights") for suffix in _WEIGHT_SUFFIXES
    ]
    return next((path for path in candidates if path.is_file()), None)
