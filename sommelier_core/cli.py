"""The `sommelier` command line: build the zoo, index, query, profile, compare, open the UI.

`--json` output is stable: tooling depends on its keys. Errors go to stderr as one line naming
the model, field or file and what was expected; the exit status is 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from sommelier_core.errors import SommelierError
from sommelier_core.settings import dagster_home, mlflow_tracking_uri, store_root, zoo_dir


def parse_fraction(text: str) -> float:
    """`5%` or `0.05` → 0.05 (a bare number above 1 is refused as ambiguous)."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a percentage like 5% or a fraction like 0.05") from None
    if value < 0 or (value > 1 and not raw.endswith("%")):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a percentage like 5% or a fraction like 0.05")
    return value


def _print_json(payload: object) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True))


def cmd_zoo_build(args: argparse.Namespace) -> int:
    """Generate the built-in model zoo."""
    import logging

    from sommelier_core.zoo import build_zoo

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out) if args.out else zoo_dir()
    manifest = build_zoo(out, small=args.small, seed=args.seed)
    print(f"Built {len(manifest.models)} models in {out}")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    """Materialize every asset in process (runs the pipelines' driver in its own interpreter)."""
    return subprocess.call([sys.executable, "-m", "pipelines.index_run", *(["--full"] if args.full else [])])


def cmd_query(args: argparse.Namespace) -> int:
    """Answer a query from the materialized index."""
    from sommelier_core.query import query

    hits = query(
        ref=args.ref,
        within=args.within,
        memory=args.memory,
        flops=args.flops,
        params=args.params,
        latency_ms=args.latency_ms,
        device=args.device,
        order_by=args.order_by,
        limit=args.limit,
    )
    if args.json:
        _print_json({"reference": args.ref, "hits": [h.to_json() for h in hits]})
        return 0
    print(f"Models like {args.ref} within {args.within:.1%} on {args.device}: {len(hits)}")
    for h in hits:
        p = h.profile
        print(
            f"  {h.model_id:<36} bound ≤ {h.upper_bound:6.2%} (≥ {h.lower_bound:5.2%}, {h.provenance:<10}) "
            f"MACs {p.macs:>9,}  memory {p.memory_bytes / 1024:8.1f} KiB  latency {p.latency_ms:6.3f} ms"
        )
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """Static costs and measured latency of one ONNX file."""
    from sommelier_core.convert import load_onnx
    from sommelier_core.profile import measure_latency, static_profile

    path = Path(args.model)
    static = static_profile(load_onnx(path), batch_size=args.batch_size)
    latency = measure_latency(path, device=args.device, batch_size=args.batch_size)
    payload = {
        "params": static.params,
        "macs": static.macs,
        "flops": static.flops,
        "weight_bytes": static.weight_bytes,
        "peak_activation_bytes": static.peak_activation_bytes,
        "latency_ms": {args.device: latency.median_ms},
    }
    if args.json:
        _print_json(payload)
    else:
        for key, value in payload.items():
            print(f"{key:>22}: {value}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare two ONNX models on a dataset and bound their difference."""
    from sommelier_core.bound import bound_comparison
    from sommelier_core.convert import load_onnx, onnx_signature
    from sommelier_core.equivalence import check_compatible, compare_outputs
    from sommelier_core.errors import IncompatibleModels
    from sommelier_core.inference import run_onnx
    from sommelier_core.validation import validation_set_for

    ref_path, cand_path = Path(args.reference), Path(args.candidate)
    ref_sig, cand_sig = onnx_signature(load_onnx(ref_path)), onnx_signature(load_onnx(cand_path))
    try:
        check_compatible(str(ref_path), ref_sig, str(cand_path), cand_sig)
    except IncompatibleModels as exc:
        if args.json:
            _print_json({"compatible": False, "reason": str(exc)})
        else:
            print(f"error: incompatible models: {exc}", file=sys.stderr)
        return 1
    dataset = validation_set_for(str(ref_path), ref_sig, args.data or "")
    out = ref_sig.outputs[0]
    task = "classification" if len(out.shape) == 2 else "regression"
    comparison = compare_outputs(
        str(ref_path), run_onnx(ref_path, dataset.x), str(cand_path), run_onnx(cand_path, dataset.x), task
    )
    bound = bound_comparison(comparison, mode=args.bound)
    payload = {
        "compatible": True,
        "kind": comparison.kind,
        "disagreement": comparison.difference,
        "bound": bound.upper,
        "n": comparison.n,
        "dataset": dataset.name,
    }
    if args.json:
        _print_json(payload)
    else:
        print(
            f"{comparison.kind} {comparison.difference:.2%} on {comparison.n} samples of {dataset.name}; "
            f"upper bound {bound.upper:.2%} ({args.bound}, δ={bound.delta})"
        )
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """Start `dagster dev` on the workspace, with the Dagster instance under the store root."""
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    workspace = Path(__file__).resolve().parent.parent / "workspace.yaml"
    print(f"Dagster UI on http://127.0.0.1:{args.port} (instance in {home})")
    print(f"MLflow UI: mlflow ui --backend-store-uri {mlflow_tracking_uri()}")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    dagster = Path(sys.executable).with_name("dagster")  # the venv's dagster, whether or not it is on PATH
    cmd = [str(dagster) if dagster.exists() else "dagster", "dev", "-w", str(workspace), "-p", str(args.port)]
    return subprocess.call(cmd, env=env, cwd=workspace.parent)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="sommelier",
        description=f"Index model repositories by functional equivalence and resource profile. Store: {store_root()}",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    zoo = sub.add_parser("zoo", help="the built-in model zoo").add_subparsers(dest="zoo_command", required=True)
    build = zoo.add_parser("build", help="generate the built-in model zoo (offline, seeded)")
    build.add_argument("--out", help="output directory (default: <store>/zoo)")
    build.add_argument("--small", action="store_true", help="about 8 models, for tests")
    build.add_argument("--seed", type=int, default=0)
    build.set_defaults(func=cmd_zoo_build)

    index = sub.add_parser("index", help="materialize every asset in process, with progress")
    index.add_argument("--full", action="store_true", help="re-run every model, not only new or changed ones")
    index.set_defaults(func=cmd_index)

    q = sub.add_parser("query", help="models equivalent to a reference, within resource budgets")
    q.add_argument("--ref", required=True, help="reference model id, e.g. zoo-torch/cnn_w32")
    q.add_argument("--within", type=parse_fraction, default=0.05, help="equivalence threshold (default 5%%)")
    q.add_argument("--memory", type=parse_fraction, help="memory budget relative to the reference, e.g. 80%%")
    q.add_argument("--flops", type=parse_fraction, help="FLOPs budget relative to the reference, e.g. 50%%")
    q.add_argument("--params", type=parse_fraction, help="parameter budget relative to the reference")
    q.add_argument("--latency-ms", type=float, help="absolute latency budget on the device (ms)")
    q.add_argument("--device", default="cpu")
    q.add_argument(
        "--order-by", default="similarity", choices=["similarity", "flops", "macs", "params", "memory", "latency"]
    )
    q.add_argument("--limit", type=int)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_query)

    p = sub.add_parser("profile", help="static costs and latency of an ONNX file (FLOPs = 2 × MACs)")
    p.add_argument("model")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_profile)

    c = sub.add_parser("compare", help="difference of two ONNX models on a dataset, with its bound")
    c.add_argument("reference")
    c.add_argument("candidate")
    c.add_argument("--data", help="built-in dataset name or .npz with 'x' and optional 'y'")
    c.add_argument("--bound", default="statistical", choices=["off", "statistical"])
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compare)

    ui = sub.add_parser("ui", help="start dagster dev on the workspace and say how to open MLflow's UI")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; domain errors become one clear line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SommelierError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
