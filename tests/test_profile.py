"""Static cost and measured latency of small models, checked against hand-computed and published figures."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sommelier_core.profiling import (
    LatencyProfile,
    UncostedOpsWarning,
    UnknownDevice,
    UnprofilableModel,
    available_devices,
    measure_latency,
    static_profile,
)

OPSET = [helper.make_opsetid("", 17)]
LIGHT_ZOO = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def _model(nodes, inputs, outputs, initializers=(), opsets=OPSET) -> onnx.ModelProto:
    """A model built by hand; outputs may leave their shape to inference, so the checker is not run."""
    graph = helper.make_graph(nodes, "test", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=opsets)


def _weight(name: str, *shape: int) -> TensorProto:
    return numpy_helper.from_array(np.random.default_rng(0).standard_normal(shape).astype(np.float32), name)


@pytest.fixture(scope="module")
def conv_net_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Conv 1→8 3x3 pad 1 on 8x8, ReLU, depthwise Conv 8→8 3x3, Flatten, Linear 512→10; dynamic batch."""
    torch = pytest.importorskip("torch")

    class ConvNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
            self.depthwise = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.fc = torch.nn.Linear(8 * 8 * 8, 10)

        def forward(self, x):
            return self.fc(torch.flatten(self.depthwise(torch.relu(self.conv(x))), 1))

    path = tmp_path_factory.mktemp("profile") / "conv_net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            ConvNet().eval(),
            (torch.zeros(1, 1, 8, 8),),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
        )
    return path


def test_conv_net_params_macs_weight_bytes_and_peak_activations_match_hand_counts(conv_net_path: Path) -> None:
    profile = static_profile(onnx.load(conv_net_path))
    # params: conv 8·1·3·3 + 8 = 80; depthwise 8·(8/8)·3·3 + 8 = 80; fc 10·512 + 10 = 5130 → 5290
    assert profile.params == 5290
    assert profile.weight_bytes == 5290 * 4
    # MACs = output elements × (C_in/groups) × kH × kW, bias not counted:
    # conv (8·8·8)·1·9 = 4608; depthwise (8·8·8)·(8/8)·9 = 4608; fc 512·10 = 5120 → 14336
    assert dict(profile.macs_by_op_type) == {"Conv": 4608 + 4608, "Gemm": 5120}
    assert profile.macs == 14336
    assert profile.flops == 2 * 14336
    # float32 activations: x 1·8·8 = 256 B; conv, relu, depthwise, flatten outputs 512 floats = 2048 B each;
    # logits 40 B. x dies after conv, so the peak is any op's input + output: 2048 + 2048 = 4096 B.
    assert profile.peak_activation_bytes == 4096
    assert profile.batch_size == 1
    assert profile.uncosted_ops == ()


def test_batch_size_scales_macs_and_activations_linearly_but_not_params(conv_net_path: Path) -> None:
    model = onnx.load(conv_net_path)
    one, three = static_profile(model, batch_size=1), static_profile(model, batch_size=3)
    assert three.macs == 3 * one.macs
    assert three.peak_activation_bytes == 3 * one.peak_activation_bytes
    assert (three.params, three.weight_bytes) == (one.params, one.weight_bytes)
    assert three.batch_size == 3
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch", "the model must not be modified"


def test_depthwise_1d_conv_counts_channels_per_group() -> None:
    # x (N, 4, 16), W (6, 4/2, 3), group 2, pad 1 → Y (N, 6, 16); MACs = N·6·16 · (4/2)·3 = 576·N
    model = _model(
        [helper.make_node("Conv", ["x", "w"], ["y"], group=2, pads=[1, 1])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6, 16])],
        [_weight("w", 6, 2, 3)],
    )
    assert static_profile(model, batch_size=2).macs == 2 * 576


def test_conv_transpose_counts_input_elements_times_kernel_and_output_channels() -> None:
    # x (1, 4, 5, 5), W (4, 2, 3, 3): every input element feeds 2·3·3 outputs → 100 · 18 = 1800 MACs
    model = _model(
        [helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [_weight("w", 4, 2, 3, 3)],
    )
    assert static_profile(model).macs == 1800


def test_batched_matmul_counts_output_elements_times_inner_dim() -> None:
    # a (N, 2, 3, 4) @ w (4, 5) → (N, 2, 3, 5); MACs = N·2·3·5 · 4 = 120·N; 20 params
    model = _model(
        [helper.make_node("MatMul", ["a", "w"], ["y"])],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 2, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [_weight("w", 4, 5)],
    )
    profile = static_profile(model, batch_size=2)
    assert profile.macs == 240
    assert profile.params == 20
    # a: 2·24 floats = 192 B, y: 2·30 floats = 240 B, both live during the MatMul
    assert profile.peak_activation_bytes == 192 + 240


def test_einsum_contraction_costs_like_the_equivalent_matmul() -> None:
    # b=2, i=3, j=4, k=5: 2·3·4·5 = 120 MACs, as for the batched MatMul
    model = _model(
        [helper.make_node("Einsum", ["a", "b"], ["y"], equation="bij,bjk->bik")],
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3, 4]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 4, 5]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        opsets=[helper.make_opsetid("", 12)],
    )
    assert static_profile(model).macs == 120


def test_lstm_counts_input_and_recurrent_products_per_step() -> None:
    # X (seq 5, N, 3), hidden 4: W (1, 4·4, 3), R (1, 4·4, 4) → 5·N·(48 + 64) = 560·N MACs
    model = _model(
        [helper.make_node("LSTM", ["x", "w", "r"], ["y"], hidden_size=4)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, "N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [_weight("w", 1, 16, 3), _weight("r", 1, 16, 4)],
    )
    profile = static_profile(model, input_shapes={"x": [5, 2, 3]}, batch_size=2)
    assert profile.macs == 2 * 560
    assert profile.params == 48 + 64


def test_constant_node_weights_count_once_in_the_form_the_compute_op_reads() -> None:
    # A Constant node holds W (5, 4); Transpose folds it to (4, 5) at load time: 20 params, not 40,
    # the Transpose costs nothing and its output is not an activation; the int64 shape constant is no weight.
    weight = numpy_helper.from_array(np.ones((5, 4), np.float32), "w_value")
    model = _model(
        [
            helper.make_node("Constant", [], ["w"], value=weight),
            helper.make_node("Transpose", ["w"], ["wt"]),
            helper.make_node("MatMul", ["x", "wt"], ["h"]),
            helper.make_node("Reshape", ["h", "shape"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([-1, 5, 1], np.int64), "shape")],
    )
    profile = static_profile(model)
    assert (profile.params, profile.weight_bytes) == (20, 80)
    assert profile.macs == 4 * 5
    # x 16 B + h 20 B during the MatMul; h 20 B + y 20 B during the Reshape
    assert profile.peak_activation_bytes == 40


def test_op_without_mac_rule_is_listed_and_warned_about_not_silently_zero() -> None:
    model = _model(
        [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("TopK", ["h", "k"], ["values", "indices"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])],
        [
            helper.make_tensor_value_info("values", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("indices", TensorProto.INT64, None),
        ],
        [numpy_helper.from_array(np.array([3], np.int64), "k")],
    )
    with pytest.warns(UncostedOpsWarning, match="TopK"):
        profile = static_profile(model)
    assert profile.uncosted_ops == ("TopK",)
    assert profile.macs == 0
    assert profile.params == 0


def test_zero_cost_ops_are_not_reported_as_uncosted() -> None:
    model = _model(
        [
            helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["h"]),
            helper.make_node("MaxPool", ["h"], ["p"], kernel_shape=[2, 2]),
            helper.make_node("Softmax", ["p"], ["y"]),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [_weight(name, 2) for name in "sbmv"],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", UncostedOpsWarning)
        profile = static_profile(model)
    assert (profile.macs, profile.uncosted_ops, profile.params) == (0, (), 8)


def test_bn_running_statistics_are_counted_in_params_and_reported_apart() -> None:
    # BatchNormalization over 2 channels: scale, bias, running mean, running variance of 2 each → params 8,
    # of which the mean and variance (4) are what torch keeps as buffers, not parameters
    model = _model(
        [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [_weight(name, 2) for name in "sbmv"],
    )
    profile = static_profile(model)
    assert (profile.params, profile.bn_statistics) == (8, 4)


def test_unknown_shape_after_inference_names_the_tensor_and_node() -> None:
    model = _model(
        [helper.make_node("Mystery", ["x"], ["h"], domain="example.ops", name="mystery"),
         helper.make_node("Relu", ["h"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        opsets=[*OPSET, helper.make_opsetid("example.ops", 1)],
    )  # fmt: skip
    with pytest.raises(UnprofilableModel, match=r"'h'.*Mystery node 'mystery'"):
        static_profile(model)


def test_symbolic_non_batch_dims_need_input_shapes() -> None:
    model = _model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "seq"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    with pytest.raises(UnprofilableModel, match=r"'x'.*axis 1"):
        static_profile(model)
    # x (2, 7) and y (2, 7) float32, both live during the Relu
    assert static_profile(model, batch_size=2, input_shapes={"x": [2, 7]}).peak_activation_bytes == 2 * 56


def test_model_without_symbolic_batch_dim_cannot_be_profiled_at_another_batch_size() -> None:
    model = _model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    assert static_profile(model).peak_activation_bytes == 2 * 48  # static shapes are kept: x and y, 12 floats each
    with pytest.raises(UnprofilableModel, match="no input has a symbolic batch dimension"):
        static_profile(model, batch_size=4)


def test_inputs_without_batch_dim_keep_their_static_shape() -> None:
    # a (N, 7, 3, 4) broadcast against b (4, 5): only a takes the batch; N·7·3·5 outputs × 4 = 420·N MACs
    model = _model(
        [helper.make_node("Einsum", ["a", "b"], ["y"], equation="...ij,jk->...ik")],
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 7, 3, 4]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [4, 5]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        opsets=[helper.make_opsetid("", 12)],
    )
    assert static_profile(model, batch_size=2).macs == 2 * 420


@pytest.mark.parametrize(
    ("file_name", "published_macs", "published_params", "caffe_identity_affine"),
    [
        # torchvision model metadata ("GFLOPS" there are GMACs) for the same architectures
        ("light_vgg19.onnx", 19.632e9, 143_667_240, 0),
        ("light_resnet50.onnx", 4.089e9, 25_557_032, 0),
        ("light_squeezenet.onnx", 0.349e9, 1_235_496, 0),  # SqueezeNet 1.1
        # Caffe's BatchNorm has no affine: each BN here gets a converter's scale and bias (41,824 channels × 2)
        # and γ, β sit in the following Scale layer (Mul, Add), which torchvision's affine BN holds itself
        ("light_densenet121.onnx", 2.834e9, 7_978_856, 83_648),
    ],
)
def test_standard_architectures_match_published_macs_and_params(
    file_name: str, published_macs: float, published_params: int, caffe_identity_affine: int
) -> None:
    path = LIGHT_ZOO / file_name
    if not path.exists():
        pytest.skip(f"onnx does not ship {file_name}")
    profile = static_profile(onnx.load(path))
    assert profile.macs == pytest.approx(published_macs, rel=0.03)
    # These graphs build their weights with ConstantOfShape and keep BatchNormalization's running statistics,
    # which torchvision's count leaves out as buffers: without them the counts agree to the parameter.
    assert profile.params - profile.bn_statistics - caffe_identity_affine == published_params
    assert profile.uncosted_ops == ()


def test_measure_latency_reports_positive_median_at_most_p90_at_the_requested_batch(conv_net_path: Path) -> None:
    latency = measure_latency(conv_net_path, batch_size=4, warmup=2, repeats=10, threads=1)
    assert isinstance(latency, LatencyProfile)
    assert 0 < latency.median_ms <= latency.p90_ms
    assert (latency.device, latency.batch_size, latency.repeats, latency.threads) == ("cpu", 4, 10, 1)


def test_measure_latency_records_the_cpu_count_when_ort_picks_threads(conv_net_path: Path) -> None:
    assert measure_latency(conv_net_path, warmup=0, repeats=3).threads == os.cpu_count()


def test_unknown_device_is_a_value_error_naming_the_available_ones(conv_net_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'tpu'.*cpu"):
        measure_latency(conv_net_path, device="tpu")
    with pytest.raises(UnknownDevice):
        measure_latency(conv_net_path, device="tpu")


def test_cpu_is_always_available() -> None:
    devices = available_devices()
    assert devices[0] == "cpu"
    assert set(devices) <= {"cpu", "cuda"}


def test_shapes_static_inference_cannot_reach_are_taken_from_one_execution(tmp_path: Path) -> None:
    # torch exports nn.Unflatten as Shape/Mod/Slice arithmetic that ONNX data propagation stops at.
    # Conv1d 1→4, k=3, pad 1 on length 8: 4·8 outputs × 1·3 = 96 MACs; Linear 32→2: 64 MACs.
    # params: 4·1·3 + 4 + 32·2 + 2 = 82.
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(
        torch.nn.Unflatten(1, (1, 8)), torch.nn.Conv1d(1, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(32, 2)
    )
    path = tmp_path / "unflatten.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net.eval(), (torch.zeros(1, 8),), str(path), dynamo=False, input_names=["x"], output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        )  # fmt: skip
    profile = static_profile(onnx.load(path))
    assert (profile.macs, profile.params) == (160, 82)
    assert static_profile(onnx.load(path), batch_size=3).macs == 3 * 160


@pytest.mark.parametrize("name", ["mobilenet_v2", "shufflenet_v2", "vit_ti16"])
def test_keras_built_architectures_match_published_macs_within_3pct_and_params_within_1pct(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # depthwise convs (MobileNetV2), channel split/shuffle (ShuffleNetV2), attention blocks (ViT, DeiT-Ti config);
    # tf2onnx folds BatchNormalization into the convolutions, hence the small params differences
    pytest.importorskip("tf2onnx")
    from sommelier_bench.reference_models import REFERENCE_MODELS

    reference = next(r for r in REFERENCE_MODELS if r.name == name)
    profile = static_profile(onnx.load(reference.build(tmp_path_factory.mktemp("keras"))))
    assert profile.macs == pytest.approx(reference.published_macs, rel=0.03)
    assert profile.params == pytest.approx(reference.published_params, rel=0.01)
    assert profile.uncosted_ops == ()
