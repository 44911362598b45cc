"""The plots: the Pareto front and compatibility groups computed right (checkable by hand), each index figure
rendering to a PNG and each per-model chart to a self-contained SVG, and `sommelier plot` writing one from a
materialized index."""

from __future__ import annotations

import argparse
import re
from xml.etree import ElementTree

import polars as pl
import pytest

from sommelier_core.plots import (
    ParetoPoint,
    compatibility_groups,
    data_uri,
    equivalence_heatmap,
    latency_svg,
    markdown_image,
    memory_by_batch_svg,
    pareto_front,
    pareto_plot,
    pareto_points,
    png_bytes,
)
from sommelier_core.plots.latency import kernel_time_by_op
from sommelier_core.plots.svg import SVG_MAGIC, side_by_side
from sommelier_core.profiling import DeviceProfile, LatencyProfile, MemoryPoint

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _semantic() -> pl.DataFrame:
    """a–b–c are one compatible group (a↔b 0.1, a↔c 0.3, b↔c 0.2); d and e another (0.05)."""
    pairs = [("a", "b", 0.1), ("a", "c", 0.3), ("b", "c", 0.2), ("d", "e", 0.05)]
    rows = [(r, c, u) for r, c, u in pairs] + [(c, r, u) for r, c, u in pairs]
    return pl.DataFrame(rows, schema=["reference_id", "candidate_id", "upper"], orient="row")


def _resource() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "model_id": ["a", "b", "c", "a", "b", "c"],
            "onnx_path": ["models/a.onnx", "models/b.onnx", "models/c.onnx"] * 2,
            "device": ["cpu"] * 6,
            "batch_size": [1, 1, 1, 8, 8, 8],
            "flops": [100, 50, 20, 800, 400, 160],
            "memory_bytes": [1000, 2000, 500, 8000, 9000, 4000],
            "latency_ms": [1.0, 0.6, None, 6.0, 4.0, 2.0],
        }
    )


def test_the_pareto_front_keeps_the_points_nothing_beats_on_both_bound_and_cost():
    points = [ParetoPoint("ref", 0.0, 100), ParetoPoint("b", 0.1, 50), ParetoPoint("c", 0.3, 20)]
    points += [ParetoPoint("worse", 0.2, 60), ParetoPoint("tie", 0.1, 70)]
    # worse (0.2 at 60) loses to b (0.1 at 50); tie (0.1 at 70) to b as well
    assert [p.model_id for p in pareto_front(points)] == ["c", "b", "ref"]


def test_pareto_points_take_the_references_candidates_at_one_device_and_batch_size():
    points = pareto_points(_semantic(), _resource(), "a", "flops")
    assert points == [ParetoPoint("a", 0.0, 100.0), ParetoPoint("b", 0.1, 50.0), ParetoPoint("c", 0.3, 20.0)]
    at_8 = pareto_points(_semantic(), _resource(), "a", "flops", batch_size=8)
    assert [p.cost for p in at_8] == [800.0, 400.0, 160.0]
    # c has no latency at batch 1: left out, not drawn at 0
    assert [p.model_id for p in pareto_points(_semantic(), _resource(), "a", "latency_ms")] == ["a", "b"]
    assert pareto_points(_semantic(), _resource(), "a", "flops", device="cuda") == []


def test_models_are_grouped_by_the_pairs_that_join_them_largest_group_first():
    groups = compatibility_groups([("a", "b"), ("b", "c"), ("d", "e")], models=["f"])
    assert groups == [["a", "b", "c"], ["d", "e"], ["f"]]


@pytest.mark.parametrize(
    "figure",
    [
        lambda: equivalence_heatmap(_semantic(), models=["a", "b", "c", "d", "e", "lonely"]),
        lambda: pareto_plot("a", {"flops": pareto_points(_semantic(), _resource(), "a", "flops"), "latency_ms": []}),
    ],
    ids=["heatmap", "pareto"],
)
def test_each_index_plot_renders_to_a_png(figure):
    png = png_bytes(figure())
    assert png.startswith(PNG_MAGIC) and 2_000 < len(png) < 400_000


def _memory_chart() -> bytes:
    return memory_by_batch_svg("a", [MemoryPoint(b, r, 4096, 1024 * b, 10 * b) for b in (1, 2, 4) for r in (None, 64)])


def _latency_chart() -> bytes:
    return latency_svg(DeviceProfile("a", "cpu", (LatencyProfile("cpu", 1, 1.0, 1.4, 50, 2),), (), 0.1))


@pytest.mark.parametrize("chart", [_memory_chart, _latency_chart], ids=["memory", "latency"])
def test_each_per_model_chart_is_a_sized_svg_that_loads_nothing_and_runs_nothing(chart):
    svg = chart()
    root = ElementTree.fromstring(svg)
    assert svg.startswith(SVG_MAGIC) and root.tag == "{http://www.w3.org/2000/svg}svg"
    assert float(root.get("width")) >= 400 and float(root.get("height")) >= 300
    assert b"<script" not in svg and b"@import" not in svg
    assert not re.search(rb'(?:href|src)="(?!#)', svg)  # no link out of the document (pygal's own are to #ids)


def test_the_memory_chart_draws_totals_and_weights_per_resolution_in_mib():
    svg = memory_by_batch_svg("m", [MemoryPoint(b, None, 2 * 2**20, 2**20 * b, 1) for b in (1, 2, 4)]).decode()
    assert "own input size" in svg and "weights, own input size" in svg
    assert ">4<" in svg  # batch 4's label on the x axis; its total is 2 + 4 = 6 MiB, inside the y range
    assert ">6<" in svg


def test_the_latency_chart_puts_the_largest_operator_on_top():
    from sommelier_core.profiling.executed_nodes import ExecutedNode, ExecutionGraph
    from sommelier_core.profiling.operators import OperatorProfile

    def node(name, op):
        return ExecutedNode(name, op, f"{op}|k", op, "macs", 1.0, (), ())

    graph = ExecutionGraph(1, "all", (node("r", "Relu"), node("c", "Conv")))
    profile = DeviceProfile(
        "a",
        "cpu",
        (LatencyProfile("cpu", 1, 1.0, 1.4, 50, 2),),
        (OperatorProfile("cpu", graph, (50.0, 300.0), 5, 1, 0.6),),
        0.1,
    )
    svg = latency_svg(profile).decode()
    # pygal lists a horizontal bar chart's labels bottom to top: the last is the top one
    assert svg.index(">Relu<") < svg.index(">Conv<")


def test_charts_side_by_side_make_one_svg_as_wide_as_both():
    wide = side_by_side(_memory_chart(), _latency_chart())
    root = ElementTree.fromstring(wide)
    assert float(root.get("width")) == 480 + 800 and float(root.get("height")) == 360
    assert [float(child.get("x")) for child in root] == [0.0, 480.0]


def test_a_plot_goes_inline_in_markdown_as_a_data_uri():
    png = png_bytes(equivalence_heatmap(_semantic(), models=["a", "b"]))
    assert data_uri(png).startswith("data:image/png;base64,iVBORw0KGgo")
    assert markdown_image(png, "memory [a]") == f"![memory [a)]({data_uri(png)})"
    assert data_uri(_memory_chart()).startswith("data:image/svg+xml;base64,PHN2Zy")


def test_kernel_time_is_summed_by_operator_type_without_its_domain():
    from sommelier_core.profiling.executed_nodes import ExecutedNode, ExecutionGraph
    from sommelier_core.profiling.operators import OperatorProfile

    def node(name, op):
        return ExecutedNode(name, op, f"{op}|k", op, "macs", 1.0, (), ())

    graph = ExecutionGraph(1, "all", (node("c1", "com.microsoft.nchwc.Conv"), node("c2", "Conv"), node("r", "Relu")))
    profile = DeviceProfile("a", "cpu", (), (OperatorProfile("cpu", graph, (300.0, 200.0, 50.0), 5, 1, 0.6),), 0.1)
    assert kernel_time_by_op(profile) == [("Conv", 0.5), ("Relu", 0.05)]


def test_sommelier_plot_pareto_writes_a_png_and_names_the_front(tmp_path, monkeypatch, capsys):
    from sommelier_cli import plot

    (tmp_path / "index").mkdir()
    _semantic().write_parquet(tmp_path / "index" / "semantic_index.parquet")
    _resource().write_parquet(tmp_path / "index" / "resource_index.parquet")
    monkeypatch.setenv("SOMMELIER_HOME", str(tmp_path))
    parser = argparse.ArgumentParser()
    plot.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["plot", "pareto", "--like", "a", "--cost", "flops", "-o", str(tmp_path / "a.png")])
    assert args.func(args) == 0
    assert (tmp_path / "a.png").read_bytes().startswith(PNG_MAGIC)
    assert "Pareto front by FLOPs: c (0.3), b (0.1), a (0)" in capsys.readouterr().out
    args = parser.parse_args(["plot", "heatmap", "-o", str(tmp_path / "h.png")])
    assert args.func(args) == 0 and (tmp_path / "h.png").read_bytes().startswith(PNG_MAGIC)


def test_sommelier_plot_pareto_of_an_unknown_model_is_one_clear_error(tmp_path, monkeypatch):
    from sommelier_cli import plot
    from sommelier_core.errors import UnknownModel

    (tmp_path / "index").mkdir()
    _semantic().write_parquet(tmp_path / "index" / "semantic_index.parquet")
    _resource().write_parquet(tmp_path / "index" / "resource_index.parquet")
    monkeypatch.setenv("SOMMELIER_HOME", str(tmp_path))
    parser = argparse.ArgumentParser()
    plot.add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["plot", "pareto", "--like", "zz", "-o", str(tmp_path / "z.png")])
    with pytest.raises(UnknownModel, match="--like 'zz': no such model in the index"):
        args.func(args)
