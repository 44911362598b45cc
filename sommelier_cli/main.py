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
from typing import TYPE_CHECKING

from sommelier_core.errors import SommelierError
from sommelier_core.settings import dagster_home, mlflow_tracking_uri, store_root, zoo_dir

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from sommelier_core.models import Signature
    from sommelier_core.segments.analysis import SegmentAnalysis


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


def parse_batch_sizes(text: str) -> list[int]:
    """`1,8,32` → [1, 8, 32]: batch sizes for `sommelier profile --memory`, each a whole number ≥ 1."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected batch sizes ≥ 1 separated by commas, like 1,8,32")
    return sizes


def positive_int(text: str) -> int:
    """A whole number ≥ 1 (a batch size or a resolution given as a flag)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number ≥ 1")
    return value


def _print_json(payload: object) -> None:
    """Strict JSON on stdout: an unknown figure (NaN, e.g. a latency not measured at the query's resolution)
    is `null`, which every JSON reader takes, not the `NaN` token Python would write."""
    print(json.dumps(_strict(payload), indent=2, sort_keys=True, allow_nan=False))


def _strict(value: object) -> object:
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


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
    """Answer a query — in the query language (positional text) or by flags — from the materialized index."""
    from sommelier_core.querying.api import run_query, spec_from_arguments
    from sommelier_core.querying.language import parse_query

    flag_names = (
        "ref", "within", "memory", "flops", "params", "latency_ms", "device", "order_by", "limit", "batch_size",
        "resolution",
    )  # fmt: skip
    if args.text is not None:
        flags = [f"--{name.replace('_', '-')}" for name in flag_names if getattr(args, name) is not None]
        if flags:
            raise SommelierError(f"give the query either as text or with flags, not both (also got {', '.join(flags)})")
        spec = parse_query(args.text)
    elif args.ref is not None:
        spec = spec_from_arguments(
            ref=args.ref,
            within=0.05 if args.within is None else args.within,
            memory=args.memory,
            flops=args.flops,
            params=args.params,
            latency_ms=args.latency_ms,
            device=args.device or "cpu",
            order_by=args.order_by or "similarity",
            limit=args.limit,
            batch_size=args.batch_size,
            resolution=args.resolution,
        )
    else:
        raise SommelierError("give a query text (FIND … LIKE 'model' …) or --ref MODEL")
    if args.refine < 0:
        raise SommelierError(f"--refine must be ≥ 0, got {args.refine}")
    result = run_query(spec, refine=args.refine, synthesized=args.synthesized)
    hits, plan = result.hits, result.plan
    if args.json:
        payload: dict = {"reference": plan.reference_id, "hits": [h.to_json() for h in hits]}
        if args.explain:
            payload["plan"] = result.explain_json()
        _print_json(payload)
        return 0
    if args.explain:
        print(result.explain())
    if plan.within is not None:
        print(f"Models like {plan.reference_id} within {plan.within:.1%} on {plan.device}: {len(hits)}")
    else:
        print(f"Models on {plan.device}: {len(hits)}")
    for h in hits:
        p = h.profile
        print(
            f"  {h.model_id:<36} bound ≤ {h.upper_bound:6.2%} (≥ {h.lower_bound:5.2%}, {h.provenance:<10}) "
            f"MACs {p.macs:>9,}  memory {p.memory_bytes / 1024:8.1f} KiB  latency {p.latency_ms:6.3f} ms"
            + (" (estimated)" if p.latency_estimated else "")
        )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Query latency, index memory and insertion time on a synthetic repository (paper Tables 3–4)."""
    from sommelier_bench.query_bench import format_scale_report, run_scale_benchmark

    report = run_scale_benchmark(
        args.models,
        queries=args.queries,
        mlflow_models=args.mlflow_models,
        seed=args.seed,
        echo=None if args.json else print,
    )
    if args.json:
        _print_json(report)
    else:
        print(format_scale_report([report]))
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """Static costs and measured latency of one ONNX file; optionally its operators, memory per setting and
    latency estimates from operator tables."""
    from sommelier_core.ingest.convert import load_onnx
    from sommelier_core.profiling.operator_latency import (
        OperatorLatencyTable,
        estimate_latency,
        execution_graph,
        profile_operators,
    )
    from sommelier_core.profiling.profile import measure_latency, memory_profile, static_profile

    path = Path(args.model)
    model = load_onnx(path)
    shapes = None
    if args.resolution is not None:
        from sommelier_core.profiling.profile import shapes_at_resolution

        shapes = {k: (args.batch_size, *v[1:]) for k, v in shapes_at_resolution(model, args.resolution).items()}
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
    if args.memory:
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
        _print_json(payload)
    else:
        for key, value in payload.items():
            print(f"{key:>22}: {value}")
    return 0


def cmd_device_list(args: argparse.Namespace) -> int:
    """Profiled devices (an operator table built from measurements) and imported ones (a table alone)."""
    from sommelier_core.store import ModelStore

    store = ModelStore(store_root())
    profiled = sorted(p.stem for p in (store.index_dir / "operator_table").glob("*.parquet"))
    imported = sorted(p.stem for p in store.devices_dir.glob("*.parquet"))
    for name in profiled:
        print(f"{name:<20} measured (operator table {store.index_dir / 'operator_table' / (name + '.parquet')})")
    for name in imported:
        print(f"{name:<20} estimated from imported table {store.devices_dir / (name + '.parquet')}")
    if not profiled and not imported:
        print("no devices yet: run `sommelier index` (profiles every device present) or `sommelier device import`")
    return 0


def cmd_device_export(args: argparse.Namespace) -> int:
    """Copy a profiled device's operator table out, to import it on another machine."""
    from sommelier_core.profiling.operator_latency import OperatorLatencyTable, UnknownOperatorTable
    from sommelier_core.store import ModelStore

    source = ModelStore(store_root()).index_dir / "operator_table" / f"{args.device}.parquet"
    if not source.exists():
        raise UnknownOperatorTable(f"device {args.device!r} has no operator table at {source}; run `sommelier index`")
    OperatorLatencyTable.read(source).write(Path(args.out))
    print(f"wrote the {args.device} operator table to {args.out}")
    return 0


def cmd_device_import(args: argparse.Namespace) -> int:
    """Describe a device by an imported operator table; the next `sommelier index` adds its estimates."""
    from sommelier_core.profiling.operator_latency import import_operator_table
    from sommelier_core.store import ModelStore

    store = ModelStore(store_root())
    table = import_operator_table(Path(args.table), args.name, store.devices_dir)
    print(
        f"device {table.device}: {table.entries.height} operator keys imported to {store.devices_dir}; "
        "run `sommelier index` to add its estimated latencies to the resource index"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare two ONNX models on a dataset and bound their difference.

    `--bound arora` adds the reference's architecture term (paper §4.1), its cushions measured on the
    same data; `--bound custom` is the same on a dataset the user supplies with `--data`.
    """
    from sommelier_core.equivalence.bound import ARCHITECTURE_MODES, bound_comparison
    from sommelier_core.equivalence.compare import check_compatible, compare_outputs
    from sommelier_core.equivalence.cushions import compute_cushions
    from sommelier_core.errors import IncompatibleModels
    from sommelier_core.inference import run_onnx
    from sommelier_core.ingest.convert import load_onnx, onnx_signature
    from sommelier_core.ingest.validation import DatasetError, validation_set_for
    from sommelier_core.segments.analysis import describe_segments, segment_summary

    if args.bound == "custom" and not args.data:
        raise DatasetError("--bound custom needs --data FILE.npz (an array 'x' of inputs and an optional 'y')")
    ref_path, cand_path = Path(args.reference), Path(args.candidate)
    ref_model, cand_model = load_onnx(ref_path), load_onnx(cand_path)
    ref_sig, cand_sig = _at_validation_shape(
        str(ref_path), onnx_signature(ref_model), onnx_signature(cand_model), args.data or ""
    )
    task = "classification" if len(ref_sig.outputs[0].shape) == 2 else "regression"  # the reference's (§4.3)
    try:
        check_compatible(str(ref_path), ref_sig, str(cand_path), cand_sig)
    except IncompatibleModels as exc:
        # not comparable as whole models, but segments may be: N with M's segments keeps N's inputs and
        # outputs (the transfer case of paper §4.2: a shared backbone under different heads)
        segments, failure = None, None
        try:
            dataset = validation_set_for(str(ref_path), ref_sig, args.data or "")
            segments, failure = _segment_analysis(ref_path, ref_model, cand_path, cand_model, dataset.x, task, args)
        except DatasetError:
            pass  # no validation data for the reference: nothing to bound segments on
        if args.json:
            payload = {"compatible": False, "reason": str(exc)}
            if segments is not None:
                payload["segments"] = [s.as_json() for s in segments.segments]
                payload["segment_synthesis"] = segment_summary(segments)
            if failure is not None:
                payload["segments_error"] = failure
            _print_json(payload)
        else:
            print(f"error: incompatible models: {exc}", file=sys.stderr)
            if segments is not None and segments.segments:
                print(describe_segments(segments))
            if failure is not None:
                print(f"segments: {failure}", file=sys.stderr)
        return 1
    dataset = validation_set_for(str(ref_path), ref_sig, args.data or "")
    ref_outputs = run_onnx(ref_path, dataset.x)
    comparison = compare_outputs(str(ref_path), ref_outputs, str(cand_path), run_onnx(cand_path, dataset.x), task)
    cushions = None
    if args.bound in ARCHITECTURE_MODES:
        cushions = compute_cushions(ref_model, dataset.x, model_id=str(ref_path), dataset=dataset.name)
    bound = bound_comparison(comparison, mode=args.bound, cushions=cushions)
    payload = {
        "compatible": True,
        "kind": comparison.kind,
        "disagreement": comparison.difference,
        "bound": bound.upper,
        "bound_mode": args.bound,
        "statistical_term": bound.statistical_term,
        "architecture_term": bound.architecture_term,
        "n": comparison.n,
        "dataset": dataset.name,
    }
    segments, failure = _segment_analysis(
        ref_path, ref_model, cand_path, cand_model, dataset.x, task, args, ref_outputs
    )
    payload["segments"] = [s.as_json() for s in segments.segments] if segments is not None else []
    if segments is not None:
        payload["segment_synthesis"] = segment_summary(segments)
    else:
        payload["segments_error"] = failure
    if args.json:
        _print_json(payload)
    else:
        architecture = f", architecture term {bound.architecture_term:.2%}" if cushions is not None else ""
        print(
            f"{comparison.kind} {comparison.difference:.2%} on {comparison.n} samples of {dataset.name}; "
            f"upper bound {bound.upper:.2%} ({args.bound}, δ={bound.delta}{architecture})"
        )
        print(describe_segments(segments) if segments is not None else f"segments: {failure}")
    return 0


def _at_validation_shape(
    reference_id: str, reference: Signature, candidate: Signature, data: str
) -> tuple[Signature, Signature]:
    """Both signatures with symbolic input dims (a model exported with dynamic H, W) taken at the shape of the
    validation inputs both models are run on — the reference's — where they fit it, so such a model compares
    with a fixed one as in the index. Unchanged when neither is symbolic or no validation shape is known (the
    compatibility check then names what differs)."""
    from sommelier_core.ingest.validation import DatasetError, shape_fits, validation_input_shape

    def symbolic(signature: Signature) -> bool:
        return any(not isinstance(d, int) for d in signature.inputs[0].shape[1:])

    if not (symbolic(reference) or symbolic(candidate)):
        return reference, candidate
    try:
        shape = validation_input_shape(reference_id, reference, data)
    except DatasetError:
        return reference, candidate

    def at_shape(signature: Signature) -> Signature:
        fits = symbolic(signature) and shape_fits(signature.inputs[0].shape[1:], shape)
        return signature.at_input_shape(shape) if fits else signature

    return at_shape(reference), at_shape(candidate)


def _segment_analysis(
    ref_path: Path,
    ref_model: onnx.ModelProto,
    cand_path: Path,
    cand_model: onnx.ModelProto,
    x: np.ndarray,
    task: str,
    args: argparse.Namespace,
    reference_outputs: np.ndarray | None = None,
) -> tuple[SegmentAnalysis | None, str | None]:
    """The pair's segment analysis, or why it failed (ONNX Runtime or the synthesis could not handle the pair):
    that failure leaves the whole-model answer standing, as one bad pair does in the index."""
    from sommelier_core.segments.analysis import analyse_pair
    from sommelier_core.segments.candidates import PAIR_ERRORS

    try:
        analysis = analyse_pair(
            str(ref_path), ref_model, str(cand_path), cand_model, x, task, epsilon=args.epsilon,
            reference_outputs=reference_outputs,
        )  # fmt: skip
    except PAIR_ERRORS as exc:
        return None, f"segment analysis of {ref_path} with {cand_path} failed: {exc}"
    return analysis, None


def cmd_synthesize(args: argparse.Namespace) -> int:
    """Materialize a synthesized candidate (model N with segments from M) as an ONNX file, and check it.

    The file is run with ONNX Runtime on N's validation set; its measured difference from N is printed
    next to the index's estimate.
    """
    from sommelier_core.segments.candidates import materialize, measure_synthesized
    from sommelier_core.store import ModelStore, write_atomic

    store = ModelStore(store_root())
    model, analysis = materialize(store, args.hit_id)
    out = Path(args.out)
    write_atomic(out, model.SerializeToString())
    check = measure_synthesized(store, analysis, out)
    payload = {
        "synthesized_id": args.hit_id,
        "out": str(out),
        "base_id": analysis.reference_id,
        "donor_id": analysis.candidate_id,
        "segments": [s.as_json() for s in analysis.kept],
        "estimated_difference": analysis.estimated_difference,
        "estimated_upper": analysis.estimated_upper,
        "measured_difference": check.difference,
        "n": check.n,
        "dataset": check.dataset,
    }
    if args.json:
        _print_json(payload)
    else:
        print(
            f"Wrote {out}: {analysis.reference_id} with {len(analysis.kept)} segment(s) from {analysis.candidate_id}; "
            f"measured {check.kind} from {analysis.reference_id} {check.difference:.2%} on {check.n} samples of "
            f"{check.dataset} (estimated {analysis.estimated_difference:.2%}, ≤ {analysis.estimated_upper:.2%})"
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

    q = sub.add_parser(
        "query",
        help="models equivalent to a reference, within resource budgets",
        description="Either a query in the language, e.g. \"FIND 3 MODELS LIKE 'zoo-torch/cnn_w32' WITHIN 5%% "
        'WHERE memory <= 80%% AND latency@cpu < 30 ms ORDER BY similarity", or --ref with flags.',
    )
    q.add_argument("text", nargs="?", help="a query in the query language (quote it)")
    q.add_argument("--ref", help="reference model id, e.g. zoo-torch/cnn_w32")
    q.add_argument("--within", type=parse_fraction, help="equivalence threshold (default 5%%)")
    q.add_argument("--memory", type=parse_fraction, help="memory budget relative to the reference, e.g. 80%%")
    q.add_argument("--flops", type=parse_fraction, help="FLOPs budget relative to the reference, e.g. 50%%")
    q.add_argument("--params", type=parse_fraction, help="parameter budget relative to the reference")
    q.add_argument("--latency-ms", type=float, help="absolute latency budget on the device (ms)")
    q.add_argument("--device", help="device of latency budgets and figures (default cpu)")
    q.add_argument(
        "--order-by",
        choices=["similarity", "flops", "macs", "params", "memory", "latency"],
        help="final ranking (default similarity)",
    )
    q.add_argument("--limit", type=int)
    q.add_argument("--batch-size", type=positive_int, help="exec-spec batch size (as BATCH n)")
    q.add_argument("--resolution", type=positive_int, help="exec-spec input resolution H = W (as RESOLUTION r)")
    q.add_argument("--explain", action="store_true", help="print the plan with how many models each stage kept")
    q.add_argument(
        "--refine",
        type=int,
        default=64,
        metavar="N",
        help="measure up to N uncertain candidate pairs from stored outputs (default 64; 0: the index alone)",
    )
    q.add_argument(
        "--synthesized",
        action="store_true",
        help="also return synthesized candidates (model N with segments of M; `sommelier synthesize ID` writes one)",
    )
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_query)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(dest="bench_command", required=True)
    bq = bench.add_parser("query", help="query latency, index memory, insertion time vs MLflow and a scan")
    bq.add_argument("--models", type=int, default=10_000, help="synthetic repository size (default 10000)")
    bq.add_argument("--queries", type=int, default=200, help="queries per predicate kind (default 200)")
    bq.add_argument(
        "--mlflow-models", type=int, default=1000, help="models logged to MLflow for the comparison (0: skip)"
    )
    bq.add_argument("--seed", type=int, default=0)
    bq.add_argument("--json", action="store_true")
    bq.set_defaults(func=cmd_bench)

    p = sub.add_parser("profile", help="static costs and latency of an ONNX file (FLOPs = 2 × MACs)")
    p.add_argument("model")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--resolution", type=int, help="size of the symbolic spatial dims (models with dynamic H, W)")
    p.add_argument(
        "--memory", type=parse_batch_sizes, metavar="B1,B2,…", help="memory and MACs at these batch sizes (Fig. 12a)"
    )
    p.add_argument("--operators", type=int, default=0, metavar="N", help="the N slowest executed operators")
    p.add_argument(
        "--estimate", action="append", metavar="TABLE.parquet", help="estimated latency from an operator table"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_profile)

    dev = sub.add_parser("device", help="devices: list them, export a profiled device's operator table, import one")
    devsub = dev.add_subparsers(dest="device_command", required=True)
    dl = devsub.add_parser("list", help="devices with measured profiles and devices known by an imported table")
    dl.set_defaults(func=cmd_device_list)
    de = devsub.add_parser("export", help="write a profiled device's operator latency table to a parquet file")
    de.add_argument("device")
    de.add_argument("--out", required=True)
    de.set_defaults(func=cmd_device_export)
    di = devsub.add_parser("import", help="describe a device by an operator table measured elsewhere")
    di.add_argument("table", help="a parquet file written by `sommelier device export`")
    di.add_argument("--name", required=True, help="the device name queries use (latency@NAME, --device NAME)")
    di.set_defaults(func=cmd_device_import)

    c = sub.add_parser("compare", help="difference of two ONNX models on a dataset, with its bound")
    c.add_argument("reference")
    c.add_argument("candidate")
    c.add_argument(
        "--data", help="built-in dataset name or .npz with 'x' and optional 'y' (required by --bound custom)"
    )
    c.add_argument(
        "--bound",
        default="statistical",
        choices=["off", "statistical", "arora", "custom"],
        help="off: empirical; statistical: + Clopper–Pearson margin; arora: + the reference's architecture term "
        "(paper §4.1); custom: arora on the --data set",
    )
    c.add_argument(
        "--epsilon",
        type=parse_fraction,
        default=0.05,
        help="segments: largest estimated difference of REF with CAND's segments swapped in (default 5%%)",
    )
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compare)

    syn = sub.add_parser(
        "synthesize", help="write a synthesized candidate (model N with segments from M, id N+M) as an ONNX file"
    )
    syn.add_argument("hit_id", metavar="HIT_ID", help="a synthesized hit's model id, BASE+DONOR")
    syn.add_argument("--out", required=True, help="where to write the .onnx file")
    syn.add_argument("--json", action="store_true")
    syn.set_defaults(func=cmd_synthesize)

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
