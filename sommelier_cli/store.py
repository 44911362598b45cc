"""`sommelier store du [--json] [--models N]`: what the store costs on disk, per area, per kind of file, per model."""

from __future__ import annotations

import argparse

from sommelier_cli.arguments import non_negative_int
from sommelier_cli.output import print_json


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `store du`."""
    store = sub.add_parser("store", help="the store on disk").add_subparsers(dest="store_command", required=True)
    du = store.add_parser(
        "du", help="bytes per area (models, index, calibration, dagster, mlflow, …), per kind of file and per model"
    )
    du.add_argument("--json", action="store_true", help="the figures as JSON (every model, in bytes)")
    du.add_argument(
        "--models",
        type=non_negative_int,
        default=10,
        help="models listed, largest first (default 10)",
    )
    du.set_defaults(func=cmd_store_du)


def cmd_store_du(args: argparse.Namespace) -> int:
    """Print the store's bytes per area and per kind of file, its largest models, and the total."""
    from sommelier_core.settings import store_root
    from sommelier_core.store.usage import store_usage

    usage = store_usage(store_root())
    if args.json:
        print_json(usage.to_data())
    else:
        print(render(usage.to_data(), args.models))
    return 0


def render(report: dict, models_shown: int) -> str:
    """The usage as text: areas, the models' files by kind (and MLflow's artifacts), the largest models, the total."""
    lines = [f"Store {report['root']}: {_bytes(report['total_bytes'])} in all"]
    lines.append("  by area:")
    linked = report["linked_bytes_by_area"]
    for area, size in sorted(report["bytes_by_area"].items(), key=lambda item: -item[1]):
        also = f"  (+ {_bytes(linked[area])} hard-linked to files counted above)" if linked.get(area) else ""
        lines.append(f"    {area:<14}{_bytes(size):>12}{also}")
    models = report["models"]
    if models:
        lines.append(f"  models ({len(models)}) by kind of file:")
        for kind, size in report["model_bytes_by_kind"].items():
            lines.append(f"    {kind:<14}{_bytes(size):>12}")
        without_onnx = sorted(m["bytes_without_onnx"] for m in models)
        lines.append(
            f"    per model beyond its ONNX file: median {_bytes(without_onnx[len(without_onnx) // 2])}, "
            f"largest {_bytes(without_onnx[-1])}"
        )
    if report["mlflow_artifact_bytes_by_kind"]:
        lines.append("  MLflow artifacts by kind (beyond files linked to the store's):")
        for kind, size in report["mlflow_artifact_bytes_by_kind"].items():
            lines.append(f"    {kind:<14}{_bytes(size):>12}")
    if models and models_shown:
        lines.append(f"  largest models (of {len(models)}):")
        for model in sorted(models, key=lambda m: -m["total_bytes"])[:models_shown]:
            kinds = ", ".join(f"{kind} {_bytes(size)}" for kind, size in model["bytes_by_kind"].items())
            lines.append(f"    {model['model_id']:<40}{_bytes(model['total_bytes']):>12}  ({kinds})")
    return "\n".join(lines)


def _bytes(count: int) -> str:
    """A byte count for people: `12.3 MiB`, exact below 1 KiB."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{count:,} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count:,} B"
