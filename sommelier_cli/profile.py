"""`sommelier profile`: static costs, latency, operators, memory per setting and estimates of one ONNX file."""

from __future__ import annotations

import argparse
from pathlib import Path

from sommelier_cli.arguments import non_negative_int, parse_batch_sizes, positive_int
from sommelier_cli.output import print_json
from sommelier_core import defaults


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `profile`."""
    p = sub.add_parser("profile", help="static costs and latency of an ONNX file (FLOPs = 2 × MACs)")
    p.add_argument("model")
    p.add_argument("--device", default=defaults.DEVICE)
    p.add_argument("--batch-size", type=positive_int, default=defaults.BATCH_SIZE)
    p.add_argument(
        "--resolution", type=positive_int, help="size of the symbolic spatial dims (models with dynamic H, W)"
    )
    p.add_argument(
        "--input-shape",
        type=parse_input_shape,
        action="append",
        metavar="NAME=D1,D2,…",
        help="an input's full shape, batch first (e.g. x=1,3,48,192; non-square is fine); repeat per input",
    )
    p.add_argument(
        "--memory", type=parse_batch_sizes, metavar="B1,B2,…", help="memory and MACs at these batch sizes (Fig. 12a)"
    )
    p.add_argument(
        "--operators", type=non_negative_int, default=0, metavar="N", help="the N slowest executed operators"
    )
    p.add_argument(
        "--estimate", action="append", metavar="TABLE.parquet", help="estimated latency from an operator table"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_profile)


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """`x=1,3,48,192` → (`x`, (1, 3, 48, 192)): an input's name and full shape (batch first), each dim ≥ 1."""
    name, sep, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in dims.split(",")) if sep and name.strip() else ()
    except ValueError:
        shape = ()
    if not shape or any(d < 1 for d in shape):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NAME=D1,D2,… (an input's name and its whole shape, batch first, e.g. x=1,3,48,192)"
        )
    return name.strip(), shape


def cmd_profile(args: argparse.Namespace) -> int:
    """Static costs and measured latency of one ONNX file; optionally its operators, memory per setting and
    latency estimates from operator tables."""
    from sommelier_core.ingest.convert import load_onnx
    from sommelier_core.profiling import (
        OperatorLatencyTable,
        estimate_latency,
        execution_graph,
        measure_latency,
        memory_profile,
        profile_operators,
        static_profile,
    )

    path = Path(args.model)
    model = load_onnx(path)
    shapes = None
    if args.resolution is not None:
        from sommelier_core.profiling import shapes_at_resolution

        shapes = {k: (args.batch_size, *v[1:]) for k, v in shapes_at_resolution(model, args.resolution).items()}
    if args.input_shape:
        shapes = {**(shapes or {}), **dict(args.input_shape)}
    static = static_profile(model, batch_size=args.batch_size, input_shapes=shapes)
    latency = measure_latency(path, device=args.device, batch_size=args.batch_size, input_shapes=shapes)
    payload: dict = {
        "params": static.params,
        "macs": static.macs,
        "flops": static.flops,
        "weight_bytes": static.weight_bytes,
        "peak_activation_bytes": static.peak_activation_bytes,
        "latency_ms": {args.device: latency.median_ms},
    }
    if args.memory and args.input_shape:
        payload["memory"] = [
            {"batch_size": batch, "input_shapes": scaled, "memory_bytes": profile.memory_bytes, "macs": profile.macs}
            for batch in args.memory
            for scaled in [{name: [batch, *dims[1:]] for name, dims in shapes.items()}]
            for profile in [static_profile(model, batch_size=batch, input_shapes=scaled)]
        ]
    elif args.memory:
        batches = args.memory
        resolutions = [None] if args.resolution is None else [args.resolution]
        payload["memory"] = [
            {"batch_size": m.batch_size, "resolution": m.resolution, "memory_bytes": m.memory_bytes, "macs": m.macs}
            for m in memory_profile(model, batches, resolutions)
        ]
    graph = None
    if args.operators:
        operators = profile_operators(path, args.device, args.batch_size, input_shapes=shapes)
        ranked = sorted(zip(operators.node_us, operators.graph.nodes, strict=True), key=lambda t: -t[0])
        payload["operators"] = [{"key": n.key, "time_us": us} for us, n in ranked[: args.operators]]
        graph = operators.graph
    if args.estimate:
        # an estimate needs only the executed graph: one untimed host pass unless the operators were profiled
        graph = graph or execution_graph(path, args.batch_size, input_shapes=shapes)
        estimates = {}
        for table_path in args.estimate:
            table = OperatorLatencyTable.read(Path(table_path), Path(table_path).stem)
            estimates[table.device] = estimate_latency(graph, table).latency_ms
        payload["estimated_latency_ms"] = estimates
    if args.json:
        print_json(payload)
    else:
        for key, value in payload.items():
            print(f"{key:>22}: {value}")
    return 0
