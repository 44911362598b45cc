"""`sommelier plot`: the index's pictures as PNG files — a reference's candidates against cost (Pareto), and the
equivalence heat map — drawn from the materialized index, as the Dagster and MLflow UIs show them."""

from __future__ import annotations

import argparse

import polars as pl

from sommelier_cli.arguments import device_name, output_file, parse_fraction, positive_int, writing
from sommelier_core import defaults
from sommelier_core.errors import InvalidValue, UnknownModel
from sommelier_core.plots import COSTS, equivalence_heatmap, pareto_front, pareto_plot, pareto_points, png_bytes
from sommelier_core.querying import load_index


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `plot pareto` and `plot heatmap`."""
    plot = sub.add_parser("plot", help="write the index's plots (Pareto of a reference, heat map) as PNG")
    kinds = plot.add_subparsers(dest="plot", required=True)
    pareto = kinds.add_parser(
        "pareto",
        help="a reference's candidates: upper bound against FLOPs, memory and latency, with the Pareto front",
    )
    pareto.add_argument("--like", required=True, help="the reference model id, e.g. zoo-torch/cnn_w32")
    pareto.add_argument("--within", type=parse_fraction, help="only candidates whose upper bound is within this")
    pareto.add_argument("--device", type=device_name, default=defaults.DEVICE, help="device of the latency panel")
    pareto.add_argument("--batch-size", type=positive_int, help="batch size of the costs (default: the smallest)")
    pareto.add_argument(
        "--cost",
        action="append",
        choices=sorted(COSTS),
        help=f"a cost panel (repeatable; default all: {', '.join(COSTS)})",
    )
    pareto.add_argument("-o", "--out", type=output_file, required=True, help="PNG file to write")
    pareto.set_defaults(func=cmd_pareto)
    heatmap = kinds.add_parser("heatmap", help="every indexed pair's bound, models grouped by compatibility")
    heatmap.add_argument(
        "--value", choices=["upper", "empirical"], default="upper", help="colour: upper bound or measured difference"
    )
    heatmap.add_argument("-o", "--out", type=output_file, required=True, help="PNG file to write")
    heatmap.set_defaults(func=cmd_heatmap)


def cmd_pareto(args: argparse.Namespace) -> int:
    """Write the Pareto plot of `--like`'s candidates and print its front (cheapest first) per cost."""
    index = load_index()
    known = set(index.semantic["reference_id"]) | set(index.resource["model_id"])
    if args.like not in known:
        raise UnknownModel(f"--like {args.like!r}: no such model in the index ({len(known)} models indexed)")
    semantic = index.semantic
    if args.within is not None:
        semantic = semantic.filter(pl.col("upper") <= args.within)
    if args.batch_size is not None and args.batch_size not in set(index.resource["batch_size"]):
        sizes = ", ".join(str(b) for b in sorted(set(index.resource["batch_size"])))
        raise InvalidValue(f"--batch-size {args.batch_size}: the index holds batch sizes {sizes}")
    panels = {
        cost: pareto_points(semantic, index.resource, args.like, cost, args.device, args.batch_size)
        for cost in (args.cost or list(COSTS))
    }
    with writing(args.out, "--out"):
        args.out.write_bytes(png_bytes(pareto_plot(args.like, panels)))
    candidates = semantic.filter(pl.col("reference_id") == args.like).height
    print(f"Wrote {args.out}: {candidates} candidates of {args.like} on {args.device}")
    for cost, points in panels.items():
        front = ", ".join(f"{p.model_id} ({p.bound:.3g})" for p in pareto_front(points))
        print(f"  Pareto front by {COSTS[cost]}: {front or 'no profiled candidates'}")
    return 0


def cmd_heatmap(args: argparse.Namespace) -> int:
    """Write the equivalence heat map of every indexed model."""
    index = load_index()
    models = sorted(set(index.resource["model_id"]) | set(index.semantic["reference_id"]))
    with writing(args.out, "--out"):
        args.out.write_bytes(png_bytes(equivalence_heatmap(index.semantic, args.value, models)))
    print(f"Wrote {args.out}: {len(models)} models, {index.semantic.height} candidate records")
    return 0
