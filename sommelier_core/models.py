"""The identity and interface of a model: what a repository lists and what its tensors look like.

These small frozen records travel between every stage, so they stay plain and hashable.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Framework = Literal["torch", "tensorflow", "onnx"]
Task = Literal["classification", "regression"]
LoaderKind = Literal["torchhub", "savedmodel", "onnx"]


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor: dtype name (numpy spelling) and shape; symbolic dims are strings."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def canonical(self) -> str:
        """Shape and dtype with the leading (batch) dim written as `?`, names ignored."""
        dims = ["?"] + [str(d) if isinstance(d, int) else "?" for d in self.shape[1:]]
        return f"{self.dtype}[{','.join(dims)}]"


@dataclass(frozen=True)
class Signature:
    """A model's input and output tensors, in graph order."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def key(self) -> str:
        """Canonical text used to decide I/O compatibility (names and batch size ignored)."""
        ins = ";".join(t.canonical() for t in self.inputs)
        outs = ";".join(t.canonical() for t in self.outputs)
        return f"in:{ins}|out:{outs}"

    def input_key(self) -> str:
        """Canonical text of the inputs only: models with equal input keys can share a validation set."""
        return ";".join(t.canonical() for t in self.inputs)

    def at_input_shape(self, sample_shape: tuple[int, ...]) -> Signature:
        """This signature with the first input's non-batch dims set to `sample_shape` (the validation inputs it
        ran on): a model exported with symbolic H, W run on 8×8 digits takes what a fixed 8×8 model takes, so
        their outputs on that set compare (`outputs.ModelOutputs.signature_key`)."""
        first, *rest = self.inputs
        if len(first.shape) != len(sample_shape) + 1:
            raise ValueError(f"input {first.name!r} has shape {list(first.shape)}; samples have {list(sample_shape)}")
        shaped = TensorSpec(first.name, first.dtype, (first.shape[0], *(int(d) for d in sample_shape)))
        return Signature((shaped, *rest), self.outputs)


@dataclass(frozen=True)
class ModelEntry:
    """A model as a repository lists it.

    `model_id` is `<repository>/<name>[@version]`. `input_shape` excludes the batch dimension and
    is needed to export frameworks that do not declare it (PyTorch); `labels` names the output
    classes when the repository declares them (paper §4.1 label-syntax check).
    """

    model_id: str
    repository: str
    name: str
    version: str
    framework: Framework
    task: Task
    input_shape: tuple[int, ...] | None = None
    input_dtype: str = "float32"
    labels: tuple[str, ...] | None = None
    metadata: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def meta(self) -> dict[str, str]:
        """Repository metadata (lineage, description, …) as a mapping."""
        return dict(self.metadata)


@dataclass(frozen=True)
class FetchedModel:
    """A model fetched to local files, with what is needed to load it in its own framework.

    `source_path` is a Torch Hub repository dir (with `entry_point`), a SavedModel dir, or an
    `.onnx` file, by `loader`.
    """

    entry: ModelEntry
    loader: LoaderKind
    source_path: Path
    entry_point: str | None = None


def model_id_for(repository: str, name: str, version: str = "") -> str:
    """The stable id `<repository>/<name>[@version]` (design §2)."""
    return f"{repository}/{name}@{version}" if version else f"{repository}/{name}"


SYNTHESIZED_SEPARATOR = "+"
"""Joins the base and the donor model id in a synthesized candidate's id: `N+M` (model N with segments from M)."""


def synthesized_id(base_id: str, donor_id: str) -> str:
    """The id of the synthesized candidate N+M: model `base_id` with segments from `donor_id`."""
    return f"{base_id}{SYNTHESIZED_SEPARATOR}{donor_id}"


def task_for_output_rank(rank: int | None) -> Task:
    """The task a model's first output reads as when nothing declares one: `(N, classes)` (rank 2) is
    classification; any other rank, or one not known, is regression (vector outputs, compared by relative l2)."""
    return "classification" if rank == 2 else "regression"


_ESCAPES = (("/", "__"), ("@", "--"))
"""How the separators of a model id are written in its directory name (readable, and decodable for plain ids)."""
_PLAIN_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.]*(?:[-_][A-Za-z0-9.]+)*$")
_UNSAFE_CHARACTER = re.compile(r"[^A-Za-z0-9._-]")
ID_HASH_SEPARATOR = "~"
"""Joins the readable part of a directory name to the short hash of the exact id (never in a plain id's name)."""
ID_HASH_HEX_CHARS = 12


def safe_name(model_id: str) -> str:
    """A file-system-safe directory name for a model id, different for every id (injective).

    A *plain* id — segments between `/` and `@` made of letters, digits and dots joined by single `-` or `_`,
    starting with a letter or digit (so no name is `.` or `..`) —
    is written as before (`zoo-torch/cnn_w32` → `zoo-torch__cnn_w32`): no plain segment holds `__` or `--`
    or starts or ends with `-`/`_`, so the name decodes back to one id, and stores indexed before keep
    their directories. Any other id (`lab/col:x`, `a/b__c`, `a/_x`) has its unsafe characters replaced
    and `~` plus a short sha256 of the exact id appended (`lab__col_x~…`), so ids that read alike get
    different directories (`lab/col:x` and `lab/col_x` shared one before).
    """
    readable = model_id
    for separator, escape in _ESCAPES:
        readable = readable.replace(separator, escape)
    if is_plain_id(model_id):
        return readable
    digest = hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:ID_HASH_HEX_CHARS]
    return f"{_UNSAFE_CHARACTER.sub('_', readable)[:120]}{ID_HASH_SEPARATOR}{digest}"


def is_plain_id(model_id: str) -> bool:
    """Whether `safe_name` writes the id in its readable form alone (see there)."""
    return all(_PLAIN_SEGMENT.match(segment) for segment in re.split(r"[/@]", model_id))


def legacy_safe_name(model_id: str) -> str:
    """The directory name stores written before `safe_name` became injective (`:` written `_`, so ids could
    share one). Equal to `safe_name` for plain ids; a store reader looks here when the new name is absent."""
    return model_id.replace("/", "__").replace("@", "--").replace(":", "_")
