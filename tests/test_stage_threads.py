"""How many threads a stage's ONNX Runtime sessions run: ONNX Runtime's default (one per core) unless
`$SOMMELIER_STAGE_THREADS` says, which `deploy/local-cluster` sets to each worker's share of the machine's cores."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from deploy.local_cluster import Cluster, services, worker_threads
from sommelier_core.errors import SommelierError
from sommelier_core.inference import STAGE_THREADS_ENV, model_session, open_session, stage_threads


def _relu(path) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return model


def _threads(session) -> int:
    return session.get_session_options().intra_op_num_threads


def test_stage_sessions_run_the_threads_the_environment_names_and_measured_sessions_keep_the_default(
    monkeypatch, tmp_path
):
    path = tmp_path / "relu.onnx"
    model = _relu(path)
    monkeypatch.setenv(STAGE_THREADS_ENV, "1")
    assert _threads(open_session(path, spin=False)) == 1
    assert _threads(model_session(model)) == 1
    assert _threads(open_session(path, spin=False, threads=3)) == 3  # asked for explicitly
    assert _threads(open_session(path)) == 0  # latency is measured as served: ONNX Runtime's own default
    monkeypatch.delenv(STAGE_THREADS_ENV)
    assert _threads(open_session(path, spin=False)) == 0
    assert stage_threads() is None


@pytest.mark.parametrize("value", ["two", "0", "-1"])
def test_a_thread_count_that_is_not_a_positive_number_is_an_error_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv(STAGE_THREADS_ENV, value)
    with pytest.raises(SommelierError, match=f"SOMMELIER_STAGE_THREADS={value!r}: expected a positive number"):
        stage_threads()


def test_each_worker_of_a_local_cluster_gets_its_share_of_the_cores(tmp_path):
    assert [worker_threads(workers, cores=2) for workers in (1, 2, 3)] == [2, 1, 1]
    assert worker_threads(2, cores=16) == 8
    cluster = Cluster(state_dir=str(tmp_path), store_root=str(tmp_path), workers=2)
    workers = [service for service in services(cluster) if service.name.startswith("worker-")]
    assert [service.env for service in workers] == [{STAGE_THREADS_ENV: str(worker_threads(2))}] * 2
    assert all(not service.env for service in services(cluster) if not service.name.startswith("worker-"))
