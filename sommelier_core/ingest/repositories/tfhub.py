"""TF-Hub repositories: TF-Hub handles (URLs) and local TensorFlow 2 SavedModel directories.

A SavedModel declares its interface, so the input shape and dtype come from its
`serving_default` signature (read from `saved_model.pb` without restoring any variables);
metadata comes from a `sommelier.json` in the directory that holds the SavedModels, or from
configuration.

Restoring a SavedModel runs its graph (ops such as `tf.io.write_file` included), so models are fetched only
from a trusted repository (`trust`); listing reads the signature from the protocol buffer and runs nothing.
A SavedModel directory that is a symbolic link out of the repository's folder is refused.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sommelier_core.errors import RepositoryError
from sommelier_core.ingest.repositories.entries import (
    METADATA_FILE,
    make_entry,
    merged_metadata,
    read_metadata_file,
    tree_version,
)
from sommelier_core.ingest.repositories.network import DEFAULT_TIMEOUT_S, check_reachable, socket_timeout
from sommelier_core.ingest.repositories.trust import require_inside, require_trust
from sommelier_core.models import FetchedModel, ModelEntry, model_id_for, task_for_output_rank

SAVED_MODEL_FILE = "saved_model.pb"
SERVING_SIGNATURE = "serving_default"


@dataclass(frozen=True)
class ServingSignature:
    """The interface a SavedModel serves: inputs and outputs by name, shapes with None for unknown."""

    key: str
    inputs: tuple[tuple[str, str, tuple[int | None, ...] | None], ...]
    outputs: tuple[tuple[str, str, tuple[int | None, ...] | None], ...]


@dataclass(frozen=True)
class _Source:
    name: str
    handle: str
    local_dir: Path | None


class TFHubRepository:
    """TensorFlow SavedModels listed from TF-Hub handles or local directories.

    `handles` is a list of TF-Hub handles (URLs) or local SavedModel directories, or one local
    directory whose subdirectories are SavedModels (each with `saved_model.pb`). Remote handles
    are downloaded by `tensorflow_hub.resolve` into its cache (`TFHUB_CACHE_DIR`). `metadata`
    maps model names to metadata overriding `sommelier.json`. `trusted` lets its models be fetched (and so
    restored, which runs their graphs).
    """

    def __init__(
        self,
        name: str,
        handles: str | Path | Sequence[str | Path],
        *,
        metadata: Mapping[str, Mapping[str, Any]] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        trusted: bool = False,
    ) -> None:
        self.name = name
        self.trusted = trusted
        self.handles = [str(handles)] if isinstance(handles, str | Path) else [str(h) for h in handles]
        self.metadata = {k: dict(v) for k, v in (metadata or {}).items()}
        self.timeout_s = timeout_s
        self._resolved: dict[str, Path] = {}

    def list_models(self) -> list[ModelEntry]:
        """One entry per SavedModel, sorted by name; input shape from its serving signature."""
        entries = []
        for source in self._sources():
            model_dir = self._resolve(source)
            signature = read_serving_signature(model_dir)
            declared = read_metadata_file(source.local_dir.parent) if source.local_dir else {}
            meta = merged_metadata(declared, self.metadata, name=source.name)
            entries.append(self._entry(source, model_dir, signature, meta))
        return sorted(entries, key=lambda e: e.name)

    def fetch(self, entry: ModelEntry, dest_dir: Path) -> FetchedModel:
        """The local SavedModel directory (remote handles: tensorflow_hub's cache; `dest_dir` unused).

        Refused with `UntrustedRepository` unless the repository is trusted: restoring it runs its graph."""
        require_trust(self.trusted, "tfhub", self.name, entry.model_id, "a SavedModel's graph runs when restored")
        for source in self._sources():
            if source.name == entry.name:
                return FetchedModel(entry=entry, loader="savedmodel", source_path=self._resolve(source))
        raise RepositoryError(f"{entry.model_id}: TF-Hub repository {self.name!r} has no model {entry.name!r}")

    def _entry(self, source: _Source, model_dir: Path, signature: ServingSignature, meta: dict[str, Any]) -> ModelEntry:
        model_id = model_id_for(self.name, source.name)
        if len(signature.inputs) == 0:
            raise RepositoryError(f"{model_id}: signature {signature.key!r} of {model_dir} has no inputs")
        _, dtype, shape = signature.inputs[0]
        input_shape = shape[1:] if shape is not None else None
        if "input_shape" not in meta and (input_shape is None or any(d is None for d in input_shape)):
            raise RepositoryError(
                f"{model_id}: signature {signature.key!r} of {model_dir} leaves the input shape open ({shape}); "
                f'add "input_shape" (batch dimension excluded) for {source.name!r} to {METADATA_FILE} next to the '
                f"SavedModel, or configure metadata={{{source.name!r}: {{'input_shape': [...]}}}}"
            )
        output_shape = signature.outputs[0][2] if signature.outputs else None
        task = task_for_output_rank(len(output_shape) if output_shape is not None else None)
        return make_entry(
            self.name,
            source.name,
            "tensorflow",
            meta,
            version=str(meta.get("version") or _remote_version(source.handle) or tree_version(model_dir)),
            task=task,
            input_shape=input_shape,  # type: ignore[arg-type]
            input_dtype=dtype,
        )

    def _sources(self) -> list[_Source]:
        if len(self.handles) == 1 and not _is_url(self.handles[0]):
            folder = Path(self.handles[0])
            if folder.is_dir() and not (folder / SAVED_MODEL_FILE).is_file():
                subdirs = sorted(p for p in folder.iterdir() if (p / SAVED_MODEL_FILE).is_file())
                for subdir in subdirs:  # a link out of the folder refuses the listing: the repository is not as it says
                    require_inside(subdir, folder, self.name)
                if not subdirs:
                    raise RepositoryError(
                        f"TF-Hub repository {self.name!r}: {folder} holds no SavedModel subdirectory "
                        f"(a directory with {SAVED_MODEL_FILE})"
                    )
                return [_Source(p.name, str(p), p.resolve()) for p in subdirs]
        sources = [self._source(handle) for handle in self.handles]
        names = [s.name for s in sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise RepositoryError(f"TF-Hub repository {self.name!r}: several handles are named {', '.join(duplicates)}")
        return sources

    def _source(self, handle: str) -> _Source:
        if _is_url(handle):
            return _Source(_url_name(handle), handle, None)
        path = Path(handle)
        if not (path / SAVED_MODEL_FILE).is_file():
            raise RepositoryError(
                f"TF-Hub repository {self.name!r}: {handle!r} is neither a URL nor a SavedModel directory "
                f"(with {SAVED_MODEL_FILE})"
            )
        return _Source(path.resolve().name, handle, path.resolve())

    def _resolve(self, source: _Source) -> Path:
        """The local directory of a source; remote handles are downloaded once per instance."""
        if source.local_dir is not None:
            return source.local_dir
        if source.handle not in self._resolved:
            what = f"TF-Hub repository {self.name!r} (handle {source.handle})"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # tensorflow_hub imports pkg_resources
                import tensorflow_hub as hub
            if not _is_cached(source.handle):
                check_reachable(source.handle, what, self.timeout_s)
            try:
                with socket_timeout(self.timeout_s):
                    self._resolved[source.handle] = Path(hub.resolve(source.handle))
            except Exception as exc:
                raise RepositoryError(f"{what}: download failed: {exc}") from exc
        return self._resolved[source.handle]


def read_serving_signature(model_dir: Path) -> ServingSignature:
    """The `serving_default` signature of a SavedModel (or its only signature), without loading it."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = Path(model_dir) / SAVED_MODEL_FILE
    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString(path.read_bytes())
    except Exception as exc:
        raise RepositoryError(
            f"{path}: expected a TensorFlow SavedModel protocol buffer, cannot parse it: {exc}"
        ) from exc
    if not saved.meta_graphs:
        raise RepositoryError(f"{path}: the SavedModel holds no meta graph")
    signatures = {k: v for k, v in saved.meta_graphs[0].signature_def.items() if not k.startswith("__")}
    key = (
        SERVING_SIGNATURE
        if SERVING_SIGNATURE in signatures
        else (next(iter(signatures)) if len(signatures) == 1 else "")
    )
    if not key:
        raise RepositoryError(
            f"{model_dir}: no {SERVING_SIGNATURE!r} signature to read the interface from "
            f"(signatures: {', '.join(sorted(signatures)) or 'none'})"
        )
    signature = signatures[key]
    return ServingSignature(
        key=key,
        inputs=tuple(_tensor_info(n, signature.inputs[n]) for n in sorted(signature.inputs)),
        outputs=tuple(_tensor_info(n, signature.outputs[n]) for n in sorted(signature.outputs)),
    )


def _tensor_info(name: str, info: Any) -> tuple[str, str, tuple[int | None, ...] | None]:
    import numpy as np
    import tensorflow as tf

    dtype = np.dtype(tf.dtypes.as_dtype(info.dtype).as_numpy_dtype).name
    if info.tensor_shape.unknown_rank:
        return name, dtype, None
    return name, dtype, tuple(d.size if d.size >= 0 else None for d in info.tensor_shape.dim)


def _is_cached(handle: str) -> bool:
    """Whether tensorflow_hub already holds the handle in its cache (then resolving needs no network).

    tensorflow_hub caches a downloaded handle under `<cache dir>/<sha1 of the handle>`.
    """
    from tensorflow_hub import resolver

    cache_dir = resolver.tfhub_cache_dir(use_temp=True)
    return bool(cache_dir) and (Path(cache_dir) / hashlib.sha1(handle.encode("utf8")).hexdigest()).is_dir()


def _is_url(handle: str) -> bool:
    return "://" in handle


def _url_name(url: str) -> str:
    """A model name from a handle URL: its path without the trailing version, joined by '-'."""
    segments = [s for s in urlparse(url).path.split("/") if s]
    if segments and segments[-1].isdigit():
        segments = segments[:-1]
    return "-".join(segments) or (urlparse(url).hostname or "model")


def _remote_version(handle: str) -> str | None:
    """TF-Hub handles end in their version number; local directories have none."""
    if not _is_url(handle):
        return None
    last = [s for s in urlparse(handle).path.split("/") if s][-1:]
    return last[0] if last and last[0].isdigit() else None
