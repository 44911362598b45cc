"""The identity and interface of a model: what a repository lists and what its tensors look like.

These small frozen records travel between every stage, so they stay plain and hashable.
"""

from __future__ import annotations

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


def safe_name(model_id: str) -> str:
    """A file-system-safe directory name for a model id."""
    return model_id.replace("/", "__").replace("@", "--").replace(":", "_")
