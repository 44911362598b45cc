"""Profiling (paper §5.3, §5.5): what a model costs — static figures, measured latency, operator tables, estimates.

Modules, lowest first:

- `shapes`: the input shapes a model is profiled at (symbolic dims fixed, resolution, `profiled_shapes`).
- `inferred_graph`: the graph with every tensor's type and shape known (shape inference, completed by a run).
- `macs`: multiply-accumulates per op, and the ops counted as zero.
- `static`: params, MACs, weight and peak-activation bytes of one forward pass (`static_profile`).
- `memory`: static cost per batch size × resolution (`memory_profile`).
- `feeds`: seeded random inputs for a session.
- `latency`: measured `session.run` latency on one device (`measure_latency`, `available_devices`).
- `executed_nodes`: the nodes ONNX Runtime executes, and the key a table gives each.
- `operators`: per-node kernel times from ONNX Runtime's profiler (`profile_operators`, `execution_graph`).
- `device_profile`: a model on one device, latency and operators per batch size (`profile_device`).
- `predictor`: per-kernel-class latency forests for keys a table lacks.
- `node_times`: each executed node's time from a table — exact, predicted or interpolated.
- `operator_table`: a device's per-operator table, built, stored and imported (`build_operator_table`).
- `estimate`: a model's latency estimated from a table (`estimate_latency`).
- `calibration_sweep`: the calibration sweep's small graphs.
- `calibration`: those graphs profiled on a device, cached (`cached_calibration_profiles`).
"""

from sommelier_core.profiling.calibration import cached_calibration_profiles, calibration_profiles
from sommelier_core.profiling.device_profile import DeviceProfile, profile_device
from sommelier_core.profiling.estimate import LatencyEstimate, estimate_latency
from sommelier_core.profiling.latency import LatencyProfile, UnknownDevice, available_devices, measure_latency
from sommelier_core.profiling.memory import MemoryPoint, memory_profile
from sommelier_core.profiling.operator_table import (
    OperatorLatencyTable,
    ProfiledModel,
    UnknownOperatorTable,
    build_operator_table,
    import_operator_table,
    imported_operator_tables,
)
from sommelier_core.profiling.operators import OperatorProfile, execution_graph, profile_operators
from sommelier_core.profiling.shapes import (
    ProfiledShapes,
    UnprofilableModel,
    has_dynamic_resolution,
    native_resolution,
    profiled_shapes,
    shapes_at_resolution,
)
from sommelier_core.profiling.static import StaticProfile, UncostedOpsWarning, static_profile

__all__ = [
    "DeviceProfile",
    "LatencyEstimate",
    "LatencyProfile",
    "MemoryPoint",
    "OperatorLatencyTable",
    "OperatorProfile",
    "ProfiledModel",
    "ProfiledShapes",
    "StaticProfile",
    "UncostedOpsWarning",
    "UnknownDevice",
    "UnknownOperatorTable",
    "UnprofilableModel",
    "available_devices",
    "build_operator_table",
    "cached_calibration_profiles",
    "calibration_profiles",
    "estimate_latency",
    "execution_graph",
    "has_dynamic_resolution",
    "import_operator_table",
    "imported_operator_tables",
    "measure_latency",
    "memory_profile",
    "native_resolution",
    "profile_device",
    "profile_operators",
    "profiled_shapes",
    "shapes_at_resolution",
    "static_profile",
]
