"""A folder of `.onnx` files as a repository.

The interface is read from each graph (first input's shape and dtype); the task is guessed from the
first output (`models.task_for_output_rank`: rank 2, `(N, classes)`, reads as classification) unless
`sommelier.json` in the folder declares it. A file that cannot be parsed is still listed, so the rest of the folder
indexes; converting it then fails with a `ConversionError` naming the file.

ONNX files are data, so an ONNX folder needs no trust (`trust`). A file that is a symbolic link resolving
outside the folder is listed with a note but never read: fetching it is refused (`OutsideRepository`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sommelier_core.errors import RepositoryError
from sommelier_core.ingest.repositories.entries import make_entry, merged_metadata, read_metadata_file, short_sha256
from sommelier_core.ingest.repositories.trust import is_inside, require_inside
from sommelier_core.models import FetchedModel, ModelEntry, model_id_for, task_for_output_rank

ONNX_SUFFIX = ".onnx"


class OnnxFolderRepository:
    """Every `*.onnx` file directly inside `folder`; the model name is the file stem."""

    def __init__(
        self,
        name: str,
        folder: str | Path,
        *,
        metadata: Mapping[str, Mapping[str, Any]] | None = None,
        trusted: bool = False,
    ) -> None:
        self.name = name
        self.trusted = trusted
        """Recorded for uniformity: ONNX files run no code when loaded, so nothing here depends on it."""
        self.folder = Path(folder)
        self.metadata = {k: dict(v) for k, v in (metadata or {}).items()}

    def list_models(self) -> list[ModelEntry]:
        """One entry per `.onnx` file, sorted by name; version = short sha256 of the file."""
        if not self.folder.is_dir():
            raise RepositoryError(f"ONNX repository {self.name!r}: {self.folder} is not a directory")
        declared = read_metadata_file(self.folder)
        return [self._entry(path, declared) for path in sorted(self.folder.glob(f"*{ONNX_SUFFIX}"))]

    def find(self, model_id: str) -> ModelEntry | None:
        """The entry of one model by id, reading only its own file (listing the folder reads every file, which a
        fetch per model would repeat for each); None when no file of this folder has that id."""
        if not self.folder.is_dir():
            raise RepositoryError(f"ONNX repository {self.name!r}: {self.folder} is not a directory")
        stem = model_id.split("/", 1)[-1]
        path = self.folder / f"{stem}{ONNX_SUFFIX}"
        if model_id_for(self.name, stem) == model_id and path.is_file():
            entry = self._entry(path, read_metadata_file(self.folder))
            if entry.model_id == model_id:
                return entry
        # an id that is not its file's name (an escaped one): look through the listing
        return next((e for e in self.list_models() if e.model_id == model_id), None)

    def _entry(self, path: Path, declared: Mapping[str, Any]) -> ModelEntry:
        meta = merged_metadata(declared, self.metadata, name=path.stem)
        if not is_inside(path, self.folder):
            note = f"{path.name} is a symbolic link out of the repository's folder; it is not read"
            return make_entry(
                self.name,
                path.stem,
                "onnx",
                {**meta, "listing_note": note},
                version=short_sha256([str(path.resolve()).encode()]),
            )
        interface = _graph_interface(path)
        if interface is None:
            meta = {**meta, "listing_note": f"{path.name} could not be parsed as an ONNX model"}
            interface = (None, "float32", None)
        input_shape, input_dtype, output_rank = interface
        return make_entry(
            self.name,
            path.stem,
            "onnx",
            meta,
            version=short_sha256([path]),
            task=task_for_output_rank(output_rank),
            input_shape=input_shape,
            input_dtype=input_dtype,
        )

    def fetch(self, entry: ModelEntry, dest_dir: Path) -> FetchedModel:
        """The `.onnx` file itself: it is already local, so nothing is copied into `dest_dir`."""
        path = self.folder / f"{entry.name}{ONNX_SUFFIX}"
        if not path.is_file():
            raise RepositoryError(f"{model_id_for(self.name, entry.name)}: no file {path}")
        return FetchedModel(entry=entry, loader="onnx", source_path=require_inside(path, self.folder, self.name))


def _graph_interface(path: Path) -> tuple[tuple[int, ...] | None, str, int | None] | None:
    """(input shape without batch, or None if symbolic; input dtype; first output rank), or None
    when the file is not a readable ONNX model."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:
        return None
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if not inputs or not model.graph.output:
        return None
    tensor_type = inputs[0].type.tensor_type
    dims = tensor_type.shape.dim[1:]
    shape = tuple(d.dim_value for d in dims) if all(d.HasField("dim_value") for d in dims) else None
    dtype = tensor_dtype_to_np_dtype(tensor_type.elem_type).name if tensor_type.elem_type else "float32"
    output_type = model.graph.output[0].type.tensor_type
    rank = len(output_type.shape.dim) if output_type.HasField("shape") else None
    return shape, dtype, rank
