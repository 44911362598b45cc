"""Training the zoo's Keras models and publishing them as TF-Hub-style SavedModel directories.

Each model is exported with Keras 3's `model.export`, which writes a SavedModel with a
`serving_default` signature: input `x` (float32, batch first, the shape of the Keras input) and
output `output_0` (float32 logits, (N, 10)). `tensorflow_hub.load(dir)` and
`tf.saved_model.load(dir)` both read it. Accuracy is measured on the exported artifact itself,
so it is exactly what a consumer of the directory observes. TensorFlow is imported lazily.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sommelier_core.zoo.datasets import Dataset
from sommelier_core.zoo.keras_architectures import INPUT_NAME, build_keras_architecture

SIGNATURE_NAME = "serving_default"
OUTPUT_NAME = "output_0"


@dataclass(frozen=True)
class KerasTrainConfig:
    """Optimiser settings for one Keras training run (Adam on cross-entropy over logits)."""

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 3e-3


def _quiet_tensorflow() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def train_keras_model(architecture: str, width: int, data: Dataset, seed: int, config: KerasTrainConfig) -> Any:
    """A Keras model of the given architecture trained on `data`, seeded and with deterministic ops.

    Keras seeds Python's and numpy's global generators too; their states are restored afterwards.
    TensorFlow's op determinism, once enabled, stays on for the process.
    """
    tf = _quiet_tensorflow()
    import keras

    if data.y is None:
        raise ValueError(f"dataset {data.name!r} has no labels to train on")
    tf.config.experimental.enable_op_determinism()
    saved_np, saved_py = np.random.get_state(), random.getstate()
    try:
        keras.utils.set_random_seed(seed)
        model = build_keras_architecture(architecture, width)
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        model.fit(np.array(data.x), np.array(data.y), epochs=config.epochs, batch_size=config.batch_size, verbose=0)
    finally:
        np.random.set_state(saved_np)
        random.setstate(saved_py)
    return model


def export_savedmodel(model: Any, path: Path) -> Path:
    """Write `model` as a SavedModel directory at `path` (serving_default: `x` → `output_0`)."""
    _quiet_tensorflow()
    model.export(str(path), format="tf_saved_model", verbose=False)
    return path


def savedmodel_logits(path: Path, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Logits of the SavedModel at `path` on `x`, through its `serving_default` signature."""
    tf = _quiet_tensorflow()
    serve = tf.saved_model.load(str(path)).signatures[SIGNATURE_NAME]
    parts = [
        serve(**{INPUT_NAME: tf.constant(np.array(x[i : i + batch_size]))})[OUTPUT_NAME].numpy()
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(parts, axis=0)


def limit_tensorflow_threads(threads: int) -> None:
    """Ask TensorFlow for `threads` intra- and inter-op threads; ignored once its runtime has started."""
    tf = _quiet_tensorflow()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass
