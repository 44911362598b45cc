"""A model's latency on a device estimated from the device's operator table (paper §5.5), not measured.

Every executed node's time comes from the table (`node_times`). Node times are combined over the graph as
the **critical path** (sum along sequences, max across parallel branches), or as their **sum** when the
device runs nodes one after another — ONNX Runtime's default sequential executor does, so the table records
the execution mode it was profiled under and the estimate follows it. The table's fitted per-run and
per-node overheads are added.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sommelier_core.profiling.executed_nodes import ExecutionGraph
from sommelier_core.profiling.operator_table import OperatorLatencyTable
from sommelier_core.profiling.operators import PARALLEL


@dataclass(frozen=True)
class LatencyEstimate:
    """A latency predicted from a device's operator table (not measured)."""

    device: str
    batch_size: int
    latency_ms: float
    """The estimate: overhead + sum of node times (sequential devices) or + the critical path (parallel)."""
    serial_ms: float
    """Sum of the estimated node times (with the per-node overhead, without the per-run one)."""
    critical_path_ms: float
    """Longest path through the graph by estimated node times (the same node times as `serial_ms`)."""
    exact_nodes: int
    """Nodes whose key is in the table."""
    interpolated_nodes: int
    """Nodes interpolated by MACs / elements within their op class or a coarser one."""


def estimate_latency(graph: ExecutionGraph, table: OperatorLatencyTable) -> LatencyEstimate:
    """A model's latency on the table's device, from its executed graph (see this module's docstring)."""
    lookup = table.lookup
    node_ms = []
    exact = 0
    per_node = table.node_overhead_us
    for us, hit in lookup.times_us(graph.nodes):
        exact += hit
        # A negative per-node term is the profiler's own cost counted inside each span: it is taken off each
        # node's time, never below a tenth of it (a shape op recorded at 0–1 µs cannot give back more).
        node_ms.append((max(us + per_node, 0.1 * us) if per_node < 0 else us + per_node) / 1000.0)
    serial = float(sum(node_ms))
    critical = critical_path_ms(graph, node_ms)
    body = critical if table.execution_mode == PARALLEL else serial
    overhead = table.run_overhead_us / 1000.0
    return LatencyEstimate(
        device=table.device,
        batch_size=graph.batch_size,
        latency_ms=body + overhead,
        serial_ms=serial,
        critical_path_ms=critical,
        exact_nodes=exact,
        interpolated_nodes=len(graph.nodes) - exact,
    )


def critical_path_ms(graph: ExecutionGraph, node_ms: Sequence[float]) -> float:
    """Longest path through the executed graph with `node_ms` as node weights (sum along, max across branches).

    Nodes are in execution order, which is topological; a node starts when the last of its inputs'
    producers is done.
    """
    finish: dict[str, float] = {}
    longest = 0.0
    for node, ms in zip(graph.nodes, node_ms, strict=True):
        start = max((finish.get(name, 0.0) for name in node.inputs if name), default=0.0)
        done = start + ms
        for name in node.outputs:
            if name:
                finish[name] = done
        longest = max(longest, done)
    return longest
