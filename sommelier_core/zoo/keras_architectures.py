"""Keras architectures of the built-in zoo, exported as TF-Hub-style SavedModels.

Image models take NCHW input (N, 1, 8, 8) like every other model in the zoo, and permute it to
NHWC as their first layer (TensorFlow's CPU convolutions want channels last). The input layer is
named `x`, which becomes the SavedModel signature's input name. All output logits (N, 10).
Keras is imported inside the functions so importing the zoo does not load TensorFlow.
"""

from __future__ import annotations

from typing import Any

NUM_CLASSES = 10
INPUT_NAME = "x"
INPUT_SHAPES: dict[str, tuple[int, ...]] = {"keras_cnn": (1, 8, 8), "keras_mlp": (1, 8, 8), "keras_mlp1d": (40,)}


def keras_cnn(width: int) -> Any:
    """Two 3x3 conv layers (width, 2·width channels), a max-pool, then a dense head."""
    import keras

    inputs = keras.Input(shape=(1, 8, 8), name=INPUT_NAME)
    h = keras.layers.Permute((2, 3, 1))(inputs)
    h = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(h)
    h = keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D(2)(h)
    h = keras.layers.Flatten()(h)
    outputs = keras.layers.Dense(NUM_CLASSES, name="logits")(h)
    return keras.Model(inputs, outputs, name=f"keras_cnn_w{width}")


def keras_mlp(width: int) -> Any:
    """Two hidden dense layers of `width` units over the flattened NCHW image."""
    import keras

    inputs = keras.Input(shape=(1, 8, 8), name=INPUT_NAME)
    h = keras.layers.Flatten()(inputs)
    h = keras.layers.Dense(width, activation="relu")(h)
    h = keras.layers.Dense(width, activation="relu")(h)
    outputs = keras.layers.Dense(NUM_CLASSES, name="logits")(h)
    return keras.Model(inputs, outputs, name=f"keras_mlp_w{width}")


def keras_mlp1d(width: int) -> Any:
    """Two hidden dense layers of `width` units over a 40-sample MNIST-1D signal."""
    import keras

    inputs = keras.Input(shape=(40,), name=INPUT_NAME)
    h = keras.layers.Dense(width, activation="relu")(inputs)
    h = keras.layers.Dense(width, activation="relu")(h)
    outputs = keras.layers.Dense(NUM_CLASSES, name="logits")(h)
    return keras.Model(inputs, outputs, name=f"keras_mlp1d_w{width}")


KERAS_ARCHITECTURES = {"keras_cnn": keras_cnn, "keras_mlp": keras_mlp, "keras_mlp1d": keras_mlp1d}


def build_keras_architecture(architecture: str, width: int) -> Any:
    """A freshly initialised Keras model of the named architecture and width (uses Keras' seed)."""
    if architecture not in KERAS_ARCHITECTURES:
        raise ValueError(f"unknown Keras architecture {architecture!r}; known: {', '.join(KERAS_ARCHITECTURES)}")
    return KERAS_ARCHITECTURES[architecture](width)
