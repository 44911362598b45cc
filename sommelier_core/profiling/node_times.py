"""Every executed node's time on a device, from its operator table (paper §5.5) — measured, predicted or
interpolated.

A node's time is the mean of its key's measured times when the key is in the table, otherwise from the
**kernel-class predictor** (`predictor`: a forest per kernel class — dense / depthwise / grouped conv,
matrix product, pooling, layout reorder, each other op type — fitted on the table's entries, those of its
models and of the calibration sweep's small graphs (`calibration_sweep`), on features read from the key:
MACs, channels, spatial size, kernel, stride, fused activation, broadcasting, permutation, …). A key whose
class has too few entries for a forest (or that does not parse) is interpolated within its *op class* (op
type + kernel size, group kind, strides, fused activation) by **MACs** (element count for ops without MACs)
in log–log space between the nearest smaller and larger entries, or scaled from the nearest one beyond the
range; a class with no entry falls back to the op type, then to all ops of the same kind.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from functools import cached_property

import numpy as np
import polars as pl

from sommelier_core.profiling.calibration_sweep import CALIBRATION_PREFIX
from sommelier_core.profiling.executed_nodes import ExecutedNode
from sommelier_core.profiling.predictor import OperatorPredictor

_VIEW_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
"""Ops ONNX Runtime runs without copying: their time does not grow with the tensor."""


class NodeTimes:
    """Exact, predicted and interpolated node times from one table's entries (`OPERATOR_TABLE_SCHEMA`).

    A key not in the table whose kernel class has a fitted predictor (`times_us`) takes its prediction;
    otherwise, in order of resort (`time_us`):
    1. its op class, when the node's work lies within the class's range: log–log interpolation between the
       nearest smaller and larger entries;
    2. a cost model fitted over its op type (else over every op of its work kind): time = t0 + a·MACs +
       b·elements (non-negative, least squares on relative error), so a matrix product with one row (memory-
       bound) and one with many (compute-bound) are told apart; multiplied by the ratio measured/model of
       the class entry nearest in work (clipped to [¼, 4]) when the node's class has entries. Views (Reshape, …)
       take the median of their entries.
    """

    def __init__(self, entries: pl.DataFrame) -> None:
        self.exact = dict(zip(entries["key"].to_list(), entries["time_us"].to_list(), strict=True))
        rows = list(
            zip(
                entries["op_class"].to_list(),
                entries["op"].to_list(),
                entries["work_kind"].to_list(),
                entries["work"].to_list(),
                entries["elements"].to_list(),
                entries["time_us"].to_list(),
                strict=True,
            )
        )
        grouped: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
        for op_class, op, kind, work, elements, us in rows:
            if us > 0:
                for group in (f"class:{op_class}#{kind}", f"op:{op}#{kind}", f"kind:{kind}"):
                    grouped[group].append((work, elements, us))
        self.points = {g: np.array(sorted(p)) for g, p in grouped.items()}
        self.models: dict[str, np.ndarray | None] = {}
        self.keys = entries["key"].to_list()
        self.works = entries["work"].to_list()
        self.swept = [all(m.startswith(CALIBRATION_PREFIX) for m in ms.split(",")) for ms in entries["models"]]
        self.predicted: dict[str, float | None] = {}

    @cached_property
    def predictor(self) -> OperatorPredictor:
        """Efficiency forests per kernel class, fitted on this table's entries (`predictor`)."""
        return OperatorPredictor.fit(self.keys, self.works, [self.exact[k] for k in self.keys], self.swept)

    def times_us(self, nodes: Sequence[ExecutedNode]) -> list[tuple[float, bool]]:
        """Each node's time and whether it was an exact hit: the table's entry when the key is there, else the
        kernel-class predictor when its class has one (one batch per class), else `time_us`'s interpolation."""
        unseen = {n.key: n.work for n in nodes if n.key not in self.exact and n.key not in self.predicted}
        unseen = {k: w for k, w in unseen.items() if _op_type(k) not in _VIEW_OPS}
        if unseen:
            items = list(unseen.items())
            self.predicted.update(zip(unseen, self.predictor.predict(items), strict=True))
        result = []
        for node in nodes:
            if node.key in self.exact:
                result.append((self.exact[node.key], True))
            elif self.predicted.get(node.key) is not None:
                result.append((float(self.predicted[node.key]), False))  # type: ignore[arg-type]
            else:
                result.append(self.time_us(node))
        return result

    @staticmethod
    def _alike(points: np.ndarray | None, node: ExecutedNode) -> np.ndarray | None:
        """For MAC ops, the entries within 4× of the node's arithmetic intensity (MACs per element moved):
        a one-row matrix product is memory-bound, a many-row one compute-bound, at the same MACs."""
        if points is None or node.work_kind != "macs" or node.elements <= 0:
            return points
        intensity = node.work / node.elements
        theirs = points[:, 0] / np.maximum(points[:, 1], 1.0)
        near = points[(theirs <= 4 * intensity) & (theirs >= intensity / 4)]
        return near if len(near) else None

    def _model(self, group: str) -> np.ndarray | None:
        """(t0, a, b) of time = t0 + a·work + b·elements over a group, or None with too few distinct points."""
        if group not in self.models:
            points = self.points.get(group)
            model = None
            if points is not None and len(points) >= 3 and points[:, 0].max() >= 4 * max(points[:, 0].min(), 1.0):
                from scipy.optimize import nnls

                design = np.column_stack([np.ones(len(points)), points[:, 0], points[:, 1]]) / points[:, 2:3]
                model, _ = nnls(design, np.ones(len(points)))
            self.models[group] = model
        return self.models[group]

    def time_us(self, node: ExecutedNode) -> tuple[float, bool]:
        """The node's time and whether it was an exact hit."""
        if node.key in self.exact:
            return self.exact[node.key], True
        kind = node.work_kind
        op_type = node.op.rsplit(".", 1)[-1]
        in_class = self._alike(self.points.get(f"class:{node.op_class}#{kind}"), node)
        in_op = self._alike(self.points.get(f"op:{node.op}#{kind}"), node)
        if op_type in _VIEW_OPS and (in_class is not None or in_op is not None):
            return float(np.median((in_class if in_class is not None else in_op)[:, 2])), False
        if in_class is not None and in_class[0, 0] <= node.work <= in_class[-1, 0] and node.work > 0:
            return _interpolate(in_class[:, 0], in_class[:, 2], node.work), False
        for group in (f"op:{node.op}#{kind}", f"kind:{kind}"):
            if group.startswith("op:") and in_op is None:
                continue  # the op's entries are all of another arithmetic intensity: the kind-wide model
            model = self._model(group)
            if model is None:
                continue
            predicted = _predict(model, node.work, node.elements)
            near = in_class  # the op model is fitted on the op's own entries: only a class adds local information
            if near is not None and predicted > 0:
                i = int(np.argmin(np.abs(np.log(np.maximum(near[:, 0], 1.0)) - math.log(max(node.work, 1.0)))))
                reference = _predict(model, near[i, 0], near[i, 1])
                if reference > 0:
                    predicted *= float(np.clip(near[i, 2] / reference, 0.25, 4.0))
            return predicted, False
        for points in (in_class, in_op, self.points.get(f"kind:{kind}")):
            if points is not None:
                return _interpolate(points[:, 0], points[:, 2], node.work), False
        return 0.0, False  # an empty table of this work kind: `estimate_latency` reports the node as unestimated


def _op_type(key: str) -> str:
    return key.split("|", 1)[0].rsplit(".", 1)[-1]


def _predict(model: np.ndarray, work: float, elements: float) -> float:
    return float(model[0] + model[1] * work + model[2] * elements)


def _interpolate(works: np.ndarray, times: np.ndarray, work: float) -> float:
    """Time at `work` from (work, time) points: log–log linear between neighbours, proportional beyond."""
    order = np.argsort(works)
    works, times = np.maximum(works[order], 1.0), times[order]
    if work <= 0:
        return float(times[0])
    x = math.log(work)
    log_w = np.log(works)
    if log_w[0] <= x <= log_w[-1]:
        return float(math.exp(np.interp(x, log_w, np.log(times))))
    edge = 0 if x < log_w[0] else -1
    return float(times[edge] * work / works[edge])
