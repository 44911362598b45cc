"""Building the built-in zoo on disk: a Torch Hub directory, TF-Hub SavedModels, and the manifest.

Layout under `out_dir`:

- `torchhub/`: `hubconf.py`, `zoo_architectures.py`, `weights/<name>.pt`, `sommelier.json`
- `tfhub/<name>/`: one SavedModel per Keras model, and `tfhub/sommelier.json`
- `manifest.json`: every model of both frameworks with lineage and measured ground truth

Everything is offline and deterministic: each model's seed is derived from the zoo seed and its
name (so a model does not depend on which others are built), torch runs with deterministic
algorithms on one thread (`THREADS`), and Keras with op determinism.
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
import zlib
from pathlib import Path

import numpy as np

from sommelier_core.zoo import torchhub
from sommelier_core.zoo.catalogue import ModelSpec, default_catalogue, small_catalogue
from sommelier_core.zoo.datasets import load_dataset
from sommelier_core.zoo.keras_architectures import INPUT_SHAPES as KERAS_INPUT_SHAPES
from sommelier_core.zoo.manifest import (
    MANIFEST_FILE,
    ZooManifest,
    ZooModel,
    write_hub_metadata,
    write_manifest,
)
from sommelier_core.zoo.tfhub import (
    KerasTrainConfig,
    export_savedmodel,
    limit_tensorflow_threads,
    savedmodel_logits,
    train_keras_model,
)
from sommelier_core.zoo.torch_architectures import INPUT_SHAPES as TORCH_INPUT_SHAPES
from sommelier_core.zoo.torch_architectures import StagedNet, build_architecture
from sommelier_core.zoo.training import (
    TrainConfig,
    accuracy,
    deterministic_torch,
    disagreement,
    seeded_init,
    top1,
    train_classifier,
)
from sommelier_core.zoo.variants import add_weight_noise, calibrate, magnitude_prune

logger = logging.getLogger("sommelier.zoo")

TORCH_HUB_DIR = "torchhub"
TF_HUB_DIR = "tfhub"
LABELS = [str(digit) for digit in range(10)]
# One thread: the weight bytes depend on the thread count (reductions split differently), and on
# a shared 2-core machine two OpenMP threads slow tiny convolutions down up to 10x when another
# process is busy, while alone they gain only about a third.
THREADS = 1

TRAIN_CONFIGS = {
    "digits": TrainConfig(epochs=30),
    "mnist8": TrainConfig(epochs=10),
    "mnist1d": TrainConfig(epochs=30),
}
FINE_TUNE_CONFIG = TrainConfig(epochs=15, learning_rate=2e-3)
KERAS_TRAIN_CONFIGS = {"digits": KerasTrainConfig(epochs=30), "mnist1d": KerasTrainConfig(epochs=30)}
NOISE_SCALE_RANGE = (0.0, 1.0)
PRUNE_FRACTION_RANGE = (0.0, 0.98)


def build_zoo(out_dir: Path, small: bool = False, seed: int = 0) -> ZooManifest:
    """Train, derive and publish the zoo under `out_dir`; return its manifest.

    `small=True` builds eight models covering every kind (for tests); the default builds about
    sixty. The same seed gives byte-identical PyTorch weights. An existing zoo in `out_dir` is
    replaced; any other non-empty directory is refused.
    """
    out_dir = Path(out_dir)
    _prepare(out_dir)
    catalogue = small_catalogue() if small else default_catalogue()
    started = time.perf_counter()
    logger.info(
        "building %s zoo of %d models in %s (seed %d)", "small" if small else "full", len(catalogue), out_dir, seed
    )
    torch_specs = [spec for spec in catalogue if spec.framework == "torch"]
    keras_specs = [spec for spec in catalogue if spec.framework == "tensorflow"]
    records = {m.name: m for m in _build_torch_hub(out_dir / TORCH_HUB_DIR, torch_specs, seed)}
    records.update({m.name: m for m in _build_tf_hub(out_dir / TF_HUB_DIR, keras_specs, seed)})
    manifest = ZooManifest(seed=seed, small=small, models=[records[spec.name] for spec in catalogue])
    write_manifest(out_dir, manifest)
    logger.info("zoo of %d models built in %.1f s", len(manifest.models), time.perf_counter() - started)
    return manifest


def model_seed(zoo_seed: int, name: str) -> int:
    """The seed of one model: a stable hash of the zoo seed and the model's name."""
    return zlib.crc32(f"{zoo_seed}/{name}".encode())


def _prepare(out_dir: Path) -> None:
    """Make `out_dir` ready: create it, or clear a previous zoo; refuse to clobber anything else."""
    if out_dir.exists():
        foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in {TORCH_HUB_DIR, TF_HUB_DIR, MANIFEST_FILE})
        if foreign:
            raise ValueError(
                f"{out_dir} holds files that are not a zoo ({', '.join(foreign[:5])}); refusing to overwrite"
            )
        (out_dir / MANIFEST_FILE).unlink(missing_ok=True)
        for sub in (TORCH_HUB_DIR, TF_HUB_DIR):
            shutil.rmtree(out_dir / sub, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def _build_torch_hub(hub_dir: Path, specs: list[ModelSpec], zoo_seed: int) -> list[ZooModel]:
    torchhub.init_hub(hub_dir)
    models: dict[str, StagedNet] = {}
    records: list[ZooModel] = []
    with deterministic_torch(THREADS):
        for spec in specs:
            started = time.perf_counter()
            seed = model_seed(zoo_seed, spec.name)
            val = load_dataset(spec.dataset, "val")
            model, knob = _make_torch_model(spec, seed, models, val.x)
            models[spec.name] = model
            torchhub.save_weights(hub_dir, spec.name, model)
            predictions = top1(model, val.x)
            parent_gap = None
            if spec.parent is not None:
                parent_gap = disagreement(predictions, top1(models[spec.parent], val.x))
            record = _record(
                spec, seed, knob, accuracy(predictions, val.y), parent_gap, f"{TORCH_HUB_DIR}/weights/{spec.name}.pt"
            )
            records.append(record)
            _log_model(record, time.perf_counter() - started)
    entries = [(r.name, r.architecture, r.width, r.description) for r in records]
    torchhub.write_hubconf(hub_dir, entries)
    write_hub_metadata(hub_dir, records)
    return records


def _make_torch_model(
    spec: ModelSpec, seed: int, built: dict[str, StagedNet], val_x: np.ndarray
) -> tuple[StagedNet, float | None]:
    """The trained or derived network for `spec` and its knob (noise scale or prune fraction)."""
    if spec.transformation == "base":
        model = seeded_init(lambda: build_architecture(spec.architecture, spec.width), seed)
        return train_classifier(model, load_dataset(spec.dataset, "train"), seed, TRAIN_CONFIGS[spec.dataset]), None
    parent = built[spec.parent]
    if spec.transformation == "transfer":
        return _fine_tune(spec, parent, seed), None
    parent_top1 = top1(parent, val_x)
    if spec.transformation == "noise":
        variant = calibrate(
            lambda scale: add_weight_noise(parent, scale, seed),
            parent_top1,
            val_x,
            spec.target_disagreement,
            *NOISE_SCALE_RANGE,
        )
    else:
        variant = calibrate(
            lambda fraction: magnitude_prune(parent, fraction),
            parent_top1,
            val_x,
            spec.target_disagreement,
            *PRUNE_FRACTION_RANGE,
        )
    return variant.model, variant.knob


def _fine_tune(spec: ModelSpec, parent: StagedNet, seed: int) -> StagedNet:
    """The parent's feature stages with a fresh seeded head, fine-tuned with the first stages frozen."""
    frozen = spec.frozen_layers or 0
    if frozen > parent.feature_stage_count():
        raise ValueError(
            f"model {spec.name!r}: cannot freeze {frozen} stages of a {parent.feature_stage_count()}-stage body"
        )
    child = seeded_init(lambda: build_architecture(spec.architecture, spec.width), seed)
    head_prefix = f"stages.{len(parent.stages) - 1}."
    body = {k: v for k, v in copy.deepcopy(parent.state_dict()).items() if not k.startswith(head_prefix)}
    child.load_state_dict(body, strict=False)
    return train_classifier(child, load_dataset(spec.dataset, "train"), seed, FINE_TUNE_CONFIG, frozen_stages=frozen)


def _build_tf_hub(hub_dir: Path, specs: list[ModelSpec], zoo_seed: int) -> list[ZooModel]:
    hub_dir.mkdir(parents=True, exist_ok=True)
    if not specs:
        write_hub_metadata(hub_dir, [])
        return []
    limit_tensorflow_threads(THREADS)
    records: list[ZooModel] = []
    for spec in specs:
        if spec.transformation != "base":
            raise ValueError(f"model {spec.name!r}: the Keras zoo holds base models only, not {spec.transformation!r}")
        started = time.perf_counter()
        seed = model_seed(zoo_seed, spec.name)
        model = train_keras_model(
            spec.architecture, spec.width, load_dataset(spec.dataset, "train"), seed, KERAS_TRAIN_CONFIGS[spec.dataset]
        )
        path = export_savedmodel(model, hub_dir / spec.name)
        val = load_dataset(spec.dataset, "val")
        predictions = savedmodel_logits(path, val.x).argmax(axis=1)
        record = _record(spec, seed, None, accuracy(predictions, val.y), None, f"{TF_HUB_DIR}/{spec.name}")
        records.append(record)
        _log_model(record, time.perf_counter() - started)
    write_hub_metadata(hub_dir, records)
    return records


def _record(
    spec: ModelSpec, seed: int, knob: float | None, acc: float, parent_gap: float | None, artifact: str
) -> ZooModel:
    shapes = TORCH_INPUT_SHAPES if spec.framework == "torch" else KERAS_INPUT_SHAPES
    return ZooModel(
        name=spec.name,
        framework=spec.framework,
        task="classification",
        dataset=spec.dataset,
        input_shape=list(shapes[spec.architecture]),
        labels=list(LABELS),
        family=spec.family,
        architecture=spec.architecture,
        width=spec.width,
        parent=spec.parent,
        transformation=spec.transformation,
        frozen_layers=spec.frozen_layers,
        noise_scale=knob if spec.transformation == "noise" else None,
        prune_fraction=knob if spec.transformation == "prune" else None,
        accuracy=acc,
        disagreement_from_parent=parent_gap,
        seed=seed,
        artifact=artifact,
        description=_describe(spec, knob),
    )


def _describe(spec: ModelSpec, knob: float | None) -> str:
    if spec.transformation == "base":
        return f"{spec.architecture} of width {spec.width} trained on {spec.dataset}"
    if spec.transformation == "transfer":
        return f"{spec.parent} fine-tuned on {spec.dataset} with a new head and {spec.frozen_layers} frozen stages"
    if spec.transformation == "noise":
        return f"{spec.parent} with Gaussian weight noise of {knob:.4f} x each weight matrix's std"
    return f"{spec.parent} with the smallest {knob:.1%} of each weight matrix's entries zeroed"


def _log_model(record: ZooModel, seconds: float) -> None:
    gap = "" if record.disagreement_from_parent is None else f", {record.disagreement_from_parent:.1%} from parent"
    logger.info(
        "  %-28s %s accuracy %.1f%%%s (%.1f s)", record.name, record.framework, 100 * record.accuracy, gap, seconds
    )
