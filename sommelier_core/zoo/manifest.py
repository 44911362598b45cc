"""The zoo's ground truth: every model with its lineage and measured quality, as written to disk.

`manifest.json` at the zoo root lists all models of both frameworks; each hub directory also
carries a `sommelier.json` with the same flat per-model metadata keyed by name, which is what a
repository adapter reads when it lists the hub.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

MANIFEST_FILE = "manifest.json"
HUB_METADATA_FILE = "sommelier.json"
Transformation = Literal["base", "transfer", "noise", "prune"]


@dataclass(frozen=True)
class ZooModel:
    """One model of the zoo: identity, interface, lineage and ground truth (all JSON-serialisable).

    `dataset` is the validation dataset the model was trained for; `accuracy` and
    `disagreement_from_parent` (top-1, null for models without a parent) are measured on its
    `val` split. `artifact` is the model's file or directory relative to the zoo root; `seed` is
    the seed its weights were drawn and trained with.
    """

    name: str
    framework: Literal["torch", "tensorflow"]
    task: Literal["classification"]
    dataset: str
    input_shape: list[int]
    labels: list[str]
    family: str
    architecture: str
    width: int
    parent: str | None
    transformation: Transformation
    frozen_layers: int | None
    noise_scale: float | None
    prune_fraction: float | None
    accuracy: float
    disagreement_from_parent: float | None
    seed: int
    artifact: str
    description: str

    def metadata(self) -> dict[str, Any]:
        """The flat metadata record written to the hubs' `sommelier.json` and the manifest."""
        return asdict(self)


@dataclass(frozen=True)
class ZooManifest:
    """All models of a built zoo, in build order (parents before their children)."""

    seed: int
    small: bool
    models: list[ZooModel] = field(default_factory=list)

    def by_name(self, name: str) -> ZooModel:
        """The model called `name` (KeyError naming it when the zoo has none)."""
        for model in self.models:
            if model.name == name:
                return model
        raise KeyError(f"no model {name!r} in the zoo")

    def for_framework(self, framework: str) -> list[ZooModel]:
        """The models of one framework ("torch" or "tensorflow")."""
        return [m for m in self.models if m.framework == framework]

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON-ready mapping."""
        return {"seed": self.seed, "small": self.small, "models": [m.metadata() for m in self.models]}


def write_manifest(out_dir: Path, manifest: ZooManifest) -> Path:
    """Write `manifest.json` under `out_dir` and return its path."""
    path = Path(out_dir) / MANIFEST_FILE
    path.write_text(json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n")
    return path


def write_hub_metadata(hub_dir: Path, models: list[ZooModel]) -> Path:
    """Write a hub's `sommelier.json`: `{name: metadata}` for the models it holds."""
    path = Path(hub_dir) / HUB_METADATA_FILE
    path.write_text(json.dumps({m.name: m.metadata() for m in models}, indent=2, sort_keys=True) + "\n")
    return path


def load_manifest(out_dir: Path) -> ZooManifest:
    """Read the manifest of a zoo built under `out_dir`."""
    path = Path(out_dir) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no zoo manifest at {path}; build the zoo with build_zoo({str(out_dir)!r})")
    raw = json.loads(path.read_text())
    names = {f.name for f in fields(ZooModel)}
    models = [ZooModel(**{k: v for k, v in record.items() if k in names}) for record in raw["models"]]
    return ZooManifest(seed=int(raw["seed"]), small=bool(raw["small"]), models=models)
