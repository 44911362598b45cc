"""Model outputs on extra datasets are computed once and then read from the store."""

import numpy as np

from sommelier_core.equivalence.outputs import outputs_on
from sommelier_core.store import ModelStore
from sommelier_core.zoo.datasets import Dataset
from tests.conftest import two_class_onnx


def test_outputs_on_an_extra_dataset_run_the_model_once(tmp_path):
    store = ModelStore(tmp_path)
    store.onnx_path("lab/two").parent.mkdir(parents=True)
    two_class_onnx(store.onnx_path("lab/two"))
    data = Dataset("mine", np.random.default_rng(0).random((20, 1, 8, 8), dtype=np.float32), None)
    first = outputs_on(store, "lab/two", data)
    store.onnx_path("lab/two").unlink()  # a second run of the model would now fail
    assert first.shape == (20, 2)
    assert np.array_equal(outputs_on(store, "lab/two", data), first)
