"""A folder of images or `.npy` arrays as a validation dataset, with its preprocessing stated.

Files are read in sorted order. When they sit in subfolders (`cat/1.png`, `dog/2.png`), the subfolders are the
classes (labels 0, 1, … in sorted order, as torchvision's `ImageFolder` numbers them); files directly in the
folder are unlabelled. A `.npy` file is one sample, used as it is. An image (PNG, JPEG, BMP, …) is read with
Pillow and preprocessed as the configuration states — nothing is guessed, since a wrong guess would compare
models on inputs they never see:

- `size: [H, W]` — resized to H × W (bilinear); required for images;
- `channels: 1 | 3` — grey or RGB (default 3);
- `scale` — multiplied after conversion to float (default 1/255, pixels to [0, 1]);
- `mean`, `std` — per-channel standardisation after scaling (default none);
- `layout: NCHW | NHWC` — the model's tensor layout (default NCHW, the ONNX convention).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sommelier_core.errors import SommelierError
from sommelier_core.zoo.datasets import Dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
ARRAY_SUFFIX = ".npy"
PREPROCESSING_KEYS = ("size", "channels", "scale", "mean", "std", "layout")
LAYOUTS = ("NCHW", "NHWC")
DEFAULT_SCALE = 1 / 255


class FolderDatasetError(SommelierError):
    """A dataset folder, or its stated preprocessing, cannot be used."""


def dataset_files(folder: Path) -> list[tuple[Path, str | None]]:
    """(file, class folder or None) of every image or `.npy` file, sorted; subfolders one level deep are classes."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FolderDatasetError(f"{folder}: not a folder")
    found: list[tuple[Path, str | None]] = []
    for path in sorted(folder.iterdir()):
        if path.is_dir():
            found += [(p, path.name) for p in sorted(path.iterdir()) if _is_sample(p)]
        elif _is_sample(path):
            found.append((path, None))
    if not found:
        raise FolderDatasetError(
            f"{folder}: holds no images ({', '.join(IMAGE_SUFFIXES)}) or {ARRAY_SUFFIX} arrays, directly or in "
            "class subfolders"
        )
    return found


def folder_sample_shape(folder: Path, preprocessing: Mapping[str, Any]) -> tuple[int, ...]:
    """The shape of one sample (batch excluded) as the model receives it, without reading every file."""
    files = dataset_files(folder)
    first = files[0][0]
    if first.suffix.lower() == ARRAY_SUFFIX:
        return tuple(int(d) for d in np.load(first, mmap_mode="r").shape)
    height, width, channels, _, _, _, layout = _checked(folder, preprocessing)
    return (channels, height, width) if layout == "NCHW" else (height, width, channels)


def load_folder_dataset(folder: Path, preprocessing: Mapping[str, Any], samples: int | None = None) -> Dataset:
    """The folder's samples (at most `samples`) as float32 inputs, with labels when files sit in class folders."""
    files = dataset_files(folder)[:samples] if samples else dataset_files(folder)
    classes = sorted({c for _, c in files if c is not None})
    arrays = [_read(path, folder, preprocessing) for path, _ in files]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise FolderDatasetError(
            f"{folder}: samples have different shapes {sorted(shapes)}; expected one shape (state `size` for images)"
        )
    labelled = classes and all(c is not None for _, c in files)
    y = np.array([classes.index(c) for _, c in files], dtype=np.int64) if labelled else None
    return Dataset(name=Path(folder).name, x=np.stack(arrays).astype(np.float32), y=y)


def _is_sample(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in (*IMAGE_SUFFIXES, ARRAY_SUFFIX)


def _read(path: Path, folder: Path, preprocessing: Mapping[str, Any]) -> np.ndarray:
    if path.suffix.lower() == ARRAY_SUFFIX:
        try:
            return np.load(path, allow_pickle=False).astype(np.float32)
        except (OSError, ValueError) as exc:
            raise FolderDatasetError(f"{path}: not a readable .npy array ({exc})") from exc
    from PIL import Image, UnidentifiedImageError

    height, width, channels, scale, mean, std, layout = _checked(folder, preprocessing)
    try:
        with Image.open(path) as image:
            converted = image.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
            pixels = np.asarray(converted, dtype=np.float32)
    except (OSError, UnidentifiedImageError) as exc:
        raise FolderDatasetError(f"{path}: not a readable image ({exc})") from exc
    pixels = pixels.reshape(height, width, channels) * scale
    if mean is not None:
        pixels = pixels - mean
    if std is not None:
        pixels = pixels / std
    return pixels.transpose(2, 0, 1) if layout == "NCHW" else pixels


def _checked(
    folder: Path, preprocessing: Mapping[str, Any]
) -> tuple[int, int, int, float, np.ndarray | None, np.ndarray | None, str]:
    """(height, width, channels, scale, mean, std, layout) from the stated preprocessing, each checked."""
    where = f"{folder}: preprocessing"
    unknown = sorted(set(preprocessing) - set(PREPROCESSING_KEYS))
    if unknown:
        raise FolderDatasetError(f"{where}.{unknown[0]}: unknown key; expected one of {', '.join(PREPROCESSING_KEYS)}")
    size = preprocessing.get("size")
    if not (isinstance(size, list | tuple) and len(size) == 2 and all(isinstance(d, int) and d > 0 for d in size)):
        raise FolderDatasetError(f"{where}.size: expected [height, width] in pixels for images, got {size!r}")
    channels = preprocessing.get("channels", 3)
    if channels not in (1, 3):
        raise FolderDatasetError(f"{where}.channels: expected 1 (grey) or 3 (RGB), got {channels!r}")
    scale = preprocessing.get("scale", DEFAULT_SCALE)
    if not isinstance(scale, int | float) or isinstance(scale, bool) or scale <= 0:
        raise FolderDatasetError(f"{where}.scale: expected a positive number, got {scale!r}")
    layout = str(preprocessing.get("layout", "NCHW")).upper()
    if layout not in LAYOUTS:
        raise FolderDatasetError(f"{where}.layout: expected one of {', '.join(LAYOUTS)}, got {layout!r}")
    stats = []
    for key in ("mean", "std"):
        value = preprocessing.get(key)
        if value is None:
            stats.append(None)
            continue
        values = value if isinstance(value, list | tuple) else [value]
        if len(values) not in (1, channels) or not all(isinstance(v, int | float) for v in values):
            raise FolderDatasetError(
                f"{where}.{key}: expected one number or {channels} (one per channel), got {value!r}"
            )
        if key == "std" and any(v <= 0 for v in values):
            raise FolderDatasetError(f"{where}.std: expected positive numbers, got {value!r}")
        stats.append(np.asarray(values, dtype=np.float32))
    return int(size[0]), int(size[1]), int(channels), float(scale), stats[0], stats[1], layout
