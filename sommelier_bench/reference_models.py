"""Standard architectures with published costs, built offline: the evidence for the static profile.

Two sources, both without network: `keras.applications` built with `weights=None` and converted with
tf2onnx (dynamic batch, NCHW inside the graph as tf2onnx lays it out), plus a ViT-style transformer
(DeiT-Ti's configuration) written here in Keras; and the placeholder-weight model-zoo graphs the
`onnx` package ships under `onnx/backend/test/data/light/` (Caffe2 exports; fixed batch 1).

Published figures are MACs ("FLOPs" in most papers and in torchvision's metadata mean multiply-adds)
and parameter counts from the paper or torchvision/timm metadata of the same architecture; the
`source` field says which. Known, documented differences:

- tf2onnx folds BatchNormalization into the preceding convolution (scale into the kernel, shift
  into a bias), so a converted Keras model has no BN parameters, while published counts hold γ, β
  (torchvision) or γ, β plus the moving statistics (Keras' `count_params`); where a BN follows no
  convolution (DenseNet's pre-activation) it stays and its four vectors count.
- tf2onnx merges identical constants, so the untrained models get distinct placeholder values
  (uniform in [0.5, 1.5]) before conversion; the zero biases would otherwise count once.
- Caffe2 light-zoo graphs keep BN unfolded with its running statistics (+2 per channel), which
  torchvision counts as buffers, not parameters: the benchmark compares `params - bn_statistics`.
  Caffe2 DenseNet-121 is Caffe's BatchNorm (no affine) plus a Scale layer (Mul, Add) holding γ, β, so
  each BN also carries a converter's scale and bias: +83,648 (41,824 channels × 2) beyond torchvision's
  count, +1.05 %.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx

LIGHT_ZOO = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


@dataclass(frozen=True)
class ReferenceModel:
    """A standard architecture, how to build it offline, and its published cost."""

    name: str
    family: str
    published_macs: float | None
    published_params: int | None
    source: str
    """Where the published figures come from."""
    build: Callable[[Path], Path]
    """Writes the ONNX file into a directory (cached by name) and returns its path."""


def _light(file_name: str) -> Callable[[Path], Path]:
    def build(_: Path) -> Path:
        return LIGHT_ZOO / file_name

    return build


def _keras(constructor: str, resolution: int = 224, **kwargs: object) -> Callable[[Path], Path]:
    def build(cache: Path) -> Path:
        path = cache / f"keras_{constructor.lower()}_{resolution}.onnx"
        if path.exists():
            return path

        def make():
            from tf_keras import applications

            return getattr(applications, constructor)(weights=None, input_shape=(resolution, resolution, 3), **kwargs)

        return _convert_keras(make, path, resolution)

    return build


def _vit(
    name: str, patch: int, hidden: int, depth: int, heads: int, mlp: int, resolution: int = 224, classes: int = 1000
) -> Callable[[Path], Path]:
    """A ViT (Dosovitskiy et al. 2021): patch embedding, class token, position embedding, pre-norm blocks."""

    def build(cache: Path) -> Path:
        path = cache / f"{name}.onnx"
        if path.exists():
            return path

        def make():
            import tensorflow as tf
            import tf_keras as keras

            class Tokens(keras.layers.Layer):
                def build(self, input_shape):
                    self.cls = self.add_weight(name="cls", shape=(1, 1, hidden), initializer="zeros")
                    self.pos = self.add_weight(name="pos", shape=(1, input_shape[1] + 1, hidden), initializer="zeros")

                def call(self, x):
                    cls = tf.repeat(self.cls, tf.shape(x)[0], axis=0)
                    return tf.concat([cls, x], axis=1) + self.pos

            inputs = keras.Input((resolution, resolution, 3))
            x = keras.layers.Conv2D(hidden, patch, strides=patch)(inputs)
            x = keras.layers.Reshape(((resolution // patch) ** 2, hidden))(x)
            x = Tokens()(x)
            for _ in range(depth):
                y = keras.layers.LayerNormalization(epsilon=1e-6)(x)
                y = keras.layers.MultiHeadAttention(heads, hidden // heads)(y, y)
                x = x + y
                y = keras.layers.LayerNormalization(epsilon=1e-6)(x)
                # exact GELU through Erf (Keras' own gelu exports an `Erfc` that ONNX does not define)
                y = keras.layers.Dense(mlp, activation=lambda t: 0.5 * t * (1.0 + tf.math.erf(t * 0.70710678)))(y)
                x = x + keras.layers.Dense(hidden)(y)
            x = keras.layers.LayerNormalization(epsilon=1e-6)(x)
            outputs = keras.layers.Dense(classes)(x[:, 0])
            return keras.Model(inputs, outputs)

        return _convert_keras(make, path, resolution)

    return build


def _convnext(
    name: str, depths: tuple[int, ...], dims: tuple[int, ...], resolution: int = 224
) -> Callable[[Path], Path]:
    """ConvNeXt (Liu et al. 2022) with depthwise 7×7 convs as `DepthwiseConv2D`: Keras' own ConvNeXt uses a grouped
    `Conv2D` that tf2onnx leaves as an unconverted TensorFlow call."""

    def build(cache: Path) -> Path:
        path = cache / f"{name}.onnx"
        if path.exists():
            return path

        def make():
            import tensorflow as tf
            import tf_keras as keras

            def gelu(t):
                return 0.5 * t * (1.0 + tf.math.erf(t * 0.70710678))

            class LayerScale(keras.layers.Layer):
                def build(self, input_shape):
                    self.gamma = self.add_weight(name="gamma", shape=(input_shape[-1],), initializer="ones")

                def call(self, x):
                    return x * self.gamma

            inputs = keras.Input((resolution, resolution, 3))
            x = keras.layers.Conv2D(dims[0], 4, strides=4)(inputs)
            x = keras.layers.LayerNormalization(epsilon=1e-6)(x)
            for stage, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
                if stage > 0:
                    x = keras.layers.LayerNormalization(epsilon=1e-6)(x)
                    x = keras.layers.Conv2D(dim, 2, strides=2)(x)
                for _ in range(depth):
                    y = keras.layers.DepthwiseConv2D(7, padding="same")(x)
                    y = keras.layers.LayerNormalization(epsilon=1e-6)(y)
                    y = keras.layers.Dense(4 * dim, activation=gelu)(y)
                    y = keras.layers.Dense(dim)(y)
                    x = x + LayerScale()(y)
            x = keras.layers.GlobalAveragePooling2D()(x)
            x = keras.layers.LayerNormalization(epsilon=1e-6)(x)
            return keras.Model(inputs, keras.layers.Dense(1000)(x))

        return _convert_keras(make, path, resolution)

    return build


def _shufflenet_v2(name: str, channels: tuple[int, ...], repeats: tuple[int, ...]) -> Callable[[Path], Path]:
    """ShuffleNet V2 (Ma et al. 2018): channel split, two branches, concat, channel shuffle (torchvision's layout)."""

    def build(cache: Path) -> Path:
        path = cache / f"{name}.onnx"
        if path.exists():
            return path

        def make():
            import tensorflow as tf
            import tf_keras as keras

            layers = keras.layers

            def conv_bn(x, filters, relu=True):
                x = layers.BatchNormalization()(layers.Conv2D(filters, 1, use_bias=False)(x))
                return layers.ReLU()(x) if relu else x

            def dw_bn(x, stride):
                return layers.BatchNormalization()(layers.DepthwiseConv2D(3, stride, "same", use_bias=False)(x))

            def shuffle(x):
                h, w, c = x.shape[1:]
                x = tf.reshape(x, (-1, h, w, 2, c // 2))
                return tf.reshape(tf.transpose(x, (0, 1, 2, 4, 3)), (-1, h, w, c))

            def unit(x, out, stride):
                half = out // 2
                if stride == 1:
                    left, right = tf.split(x, 2, axis=-1)
                else:
                    left, right = conv_bn(dw_bn(x, 2), half), x
                right = conv_bn(dw_bn(conv_bn(right, half), stride), half)
                return shuffle(tf.concat([left, right], axis=-1))

            inputs = keras.Input((224, 224, 3))
            x = layers.Conv2D(channels[0], 3, 2, "same", use_bias=False)(inputs)
            x = layers.MaxPooling2D(3, 2, "same")(layers.ReLU()(layers.BatchNormalization()(x)))
            for out, count in zip(channels[1:-1], repeats, strict=True):
                for i in range(count):
                    x = unit(x, out, 2 if i == 0 else 1)
            x = conv_bn(x, channels[-1])
            return keras.Model(inputs, layers.Dense(1000)(layers.GlobalAveragePooling2D()(x)))

        return _convert_keras(make, path, 224)

    return build


def _convert_keras(make: Callable[[], object], path: Path, resolution: int | None) -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import tensorflow as tf
    import tf2onnx

    model = make()
    # Distinct placeholder values: tf2onnx merges identical constants, so zero biases and unit
    # LayerNorm/BN scales of an untrained model would otherwise count once for the whole model.
    rng = np.random.default_rng(0)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) for w in model.get_weights()])
    spec = (tf.TensorSpec((None, resolution, resolution, 3), tf.float32, name="x"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(path)
    return path


REFERENCE_MODELS: tuple[ReferenceModel, ...] = (
    ReferenceModel("resnet50", "ResNet", 3.8e9, 25_636_712, "He et al. 2016 (3.8 G mult-adds); Keras count",
                   _keras("ResNet50")),
    ReferenceModel("mobilenet_v1", "MobileNet", 569e6, 4_231_976, "Howard et al. 2017 (569 M, 4.2 M)",
                   _keras("MobileNet")),
    ReferenceModel("mobilenet_v2", "MobileNet", 300e6, 3_504_872, "Sandler et al. 2018 (300 M); torchvision params",
                   _keras("MobileNetV2")),
    ReferenceModel("efficientnet_b0", "EfficientNet", 0.39e9, 5_288_548, "Tan & Le 2019 (0.39 B); torchvision params",
                   _keras("EfficientNetB0")),
    ReferenceModel("densenet121", "DenseNet", 2.834e9, 7_978_856, "torchvision densenet121 metadata",
                   _keras("DenseNet121")),
    ReferenceModel("convnext_tiny", "ConvNeXt", 4.456e9, 28_589_128, "torchvision convnext_tiny metadata",
                   _convnext("convnext_tiny", (3, 3, 9, 3), (96, 192, 384, 768))),
    ReferenceModel("vit_ti16", "ViT", 1.258e9, 5_717_416, "DeiT-Ti (Touvron et al. 2021; timm/fvcore count)",
                   _vit("vit_ti16", patch=16, hidden=192, depth=12, heads=3, mlp=768)),
    ReferenceModel("shufflenet_v2", "ShuffleNet", 146e6, 2_278_604,
                   "Ma et al. 2018 (1×: 146 M); torchvision shufflenet_v2_x1_0 params",
                   _shufflenet_v2("shufflenet_v2", (24, 116, 232, 464, 1024), (4, 8, 4))),
    ReferenceModel("light_resnet50", "ResNet", 4.089e9, 25_557_032, "torchvision resnet50 (v1.5) metadata",
                   _light("light_resnet50.onnx")),
    ReferenceModel("light_vgg19", "VGG", 19.632e9, 143_667_240, "torchvision vgg19 metadata",
                   _light("light_vgg19.onnx")),
    ReferenceModel("light_densenet121", "DenseNet", 2.834e9, 7_978_856, "torchvision densenet121 metadata",
                   _light("light_densenet121.onnx")),
    ReferenceModel("light_squeezenet", "SqueezeNet", 0.349e9, 1_235_496, "torchvision squeezenet1_1 metadata",
                   _light("light_squeezenet.onnx")),
    ReferenceModel("light_shufflenet", "ShuffleNet", None, None,
                   "not compared: this Caffe2 graph groups stage 2's first 1×1 conv, which the paper's ShuffleNet "
                   "1× g=4 (Zhang et al. 2018 Table 1: 133 M) does not; ShuffleNet V2 above is the comparison",
                   _light("light_shufflenet.onnx")),
    ReferenceModel("light_inception_v1", "Inception", 1.43e9, 6_998_552,
                   "Sze et al. 2017 (Proc. IEEE) Table III: GoogLeNet v1 1.43 G MACs (the paper's ≈1.5 G is rounded); "
                   "Caffe count", _light("light_inception_v1.onnx")),
    ReferenceModel("light_bvlc_alexnet", "AlexNet", None, 60_965_224, "Caffe bvlc_alexnet (61.0 M params)",
                   _light("light_bvlc_alexnet.onnx")),
    ReferenceModel("light_inception_v2", "Inception", None, None, "no published figure used",
                   _light("light_inception_v2.onnx")),
    ReferenceModel("light_zfnet512", "ZFNet", None, None, "no published figure used", _light("light_zfnet512.onnx")),
)  # fmt: skip
"""The architectures of the profile benchmark; `published_*` None where no figure is claimed. (Keras' VGG16 is
left out: tf2onnx needs > 7 GB to convert it; VGG is covered by the light zoo's VGG-19.)"""


def dynamic_resolution_model(cache: Path) -> Path:
    """MobileNetV2 exported with symbolic batch, height and width (paper Fig. 12a: memory vs setting)."""
    path = cache / "keras_mobilenetv2_dynamic.onnx"
    if path.exists():
        return path

    def make():
        import tf_keras as keras
        from tf_keras import applications

        base = applications.MobileNetV2(weights=None, include_top=False, input_shape=(None, None, 3), pooling="avg")
        return keras.Model(base.input, keras.layers.Dense(1000)(base.output))

    return _convert_keras(make, path, None)
