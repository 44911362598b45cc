"""`sommelier compare` (two ONNX models' difference on a dataset, its bound, their segments) and
`sommelier synthesize` (write a synthesized candidate, model N with segments of M, and check it)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sommelier_cli.arguments import output_file, parse_fraction, percent, writing
from sommelier_cli.output import print_json
from sommelier_cli.profile import parse_input_shape
from sommelier_core import defaults
from sommelier_core.equivalence.bound import BOUND_MODE_SPECS, BOUND_MODES
from sommelier_core.settings import store_root

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from sommelier_core.models import Signature
    from sommelier_core.segments.analysis import SegmentAnalysis


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add `compare` and `synthesize`."""
    c = sub.add_parser("compare", help="difference of two ONNX models on a dataset, with its bound")
    c.add_argument("reference")
    c.add_argument("candidate")
    c.add_argument(
        "--data", help="built-in dataset name or .npz with 'x' and optional 'y' (required by --bound custom)"
    )
    c.add_argument(
        "--bound",
        default=defaults.BOUND_MODE,
        choices=BOUND_MODES,
        help="; ".join(f"{spec.name}: {spec.summary}" for spec in BOUND_MODE_SPECS.values()),
    )
    c.add_argument(
        "--segments",
        action="store_true",
        help="also look for interchangeable segments (paper §4.2; runs REF many times, so off by default)",
    )
    c.add_argument(
        "--input-shape",
        type=parse_input_shape,
        metavar="NAME=D1,D2,…",
        help="the shape the models' symbolic input dims take (e.g. x=1,3,48,192; batch dim ignored): chooses "
        "the built-in validation set and checks --data against it",
    )
    c.add_argument(
        "--epsilon",
        type=parse_fraction,
        default=defaults.SEGMENT_EPSILON,
        help="segments: largest estimated difference of REF with CAND's segments swapped in "
        f"(default {percent(defaults.SEGMENT_EPSILON)})",
    )
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_compare)

    syn = sub.add_parser(
        "synthesize", help="write a synthesized candidate (model N with segments from M, id N+M) as an ONNX file"
    )
    syn.add_argument("hit_id", metavar="HIT_ID", help="a synthesized hit's model id, BASE+DONOR")
    syn.add_argument("--out", type=output_file, required=True, help="where to write the .onnx file")
    syn.add_argument("--json", action="store_true")
    syn.set_defaults(func=cmd_synthesize)


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare two ONNX models on a dataset and bound their difference.

    `--bound arora` adds the reference's architecture term (paper §4.1), its cushions measured on the
    same data; `--bound custom` is the same on a dataset the user supplies with `--data`. A reference computing in
    integers or float16 has no cushions: the bound falls back to the statistical term and says so. Segments are
    analysed only with `--segments`.
    """
    from sommelier_core.equivalence.bound import bound_comparison
    from sommelier_core.equivalence.compare import check_compatible, compare_outputs
    from sommelier_core.equivalence.cushions import CushionsNotApplicable, compute_cushions
    from sommelier_core.errors import IncompatibleModels, InvalidValue
    from sommelier_core.inference import run_onnx
    from sommelier_core.ingest.convert import load_onnx, onnx_signature
    from sommelier_core.ingest.validation import DatasetError, validation_set_for
    from sommelier_core.models import task_for_output_rank
    from sommelier_core.segments.analysis import describe_segments, segment_summary

    if BOUND_MODE_SPECS[args.bound].custom_data and not args.data:
        raise DatasetError(f"--bound {args.bound} needs --data FILE.npz (an array 'x' of inputs and an optional 'y')")
    ref_path, cand_path = Path(args.reference), Path(args.candidate)
    ref_model, cand_model = load_onnx(ref_path), load_onnx(cand_path)
    ref_sig, cand_sig = onnx_signature(ref_model), onnx_signature(cand_model)
    if args.input_shape is not None:
        name = args.input_shape[0]
        if name not in (ref_sig.inputs[0].name, cand_sig.inputs[0].name):
            raise InvalidValue(
                f"--input-shape names input {name!r}; the models' inputs are {ref_sig.inputs[0].name!r} and "
                f"{cand_sig.inputs[0].name!r}"
            )
        ref_sig, cand_sig = _at_input_shape(args.input_shape, ref_sig), _at_input_shape(args.input_shape, cand_sig)
    ref_sig, cand_sig = _at_validation_shape(str(ref_path), ref_sig, cand_sig, args.data or "")
    task = task_for_output_rank(len(ref_sig.outputs[0].shape))  # the reference's (§4.3)
    try:
        check_compatible(str(ref_path), ref_sig, str(cand_path), cand_sig)
    except IncompatibleModels as exc:
        # not comparable as whole models, but segments may be: N with M's segments keeps N's inputs and
        # outputs (the transfer case of paper §4.2: a shared backbone under different heads)
        segments, failure = None, None
        try:
            if args.segments:
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
            print_json(payload)
        else:
            print(f"error: incompatible models: {exc}", file=sys.stderr)
            if segments is not None and segments.segments:
                print(describe_segments(segments))
            if failure is not None:
                print(f"segments: {failure}", file=sys.stderr)
            if not args.segments:
                print("(--segments looks for segments the two models share)", file=sys.stderr)
        return 1
    dataset = validation_set_for(str(ref_path), ref_sig, args.data or "")
    ref_outputs = run_onnx(ref_path, dataset.x)
    comparison = compare_outputs(str(ref_path), ref_outputs, str(cand_path), run_onnx(cand_path, dataset.x), task)
    cushions, mode, note = None, args.bound, None
    if BOUND_MODE_SPECS[args.bound].architecture_term:
        try:
            cushions = compute_cushions(ref_model, dataset.x, model_id=str(ref_path), dataset=dataset.name)
        except CushionsNotApplicable as exc:
            mode = "statistical"
            note = f"cushions not applicable ({exc}): bounded by the statistical term only"
    bound = bound_comparison(comparison, mode=mode, cushions=cushions)
    payload = {
        "compatible": True,
        "kind": comparison.kind,
        "disagreement": comparison.difference,
        "bound": bound.upper,
        "bound_mode": mode,
        "statistical_term": bound.statistical_term,
        "architecture_term": bound.architecture_term,
        "n": comparison.n,
        "dataset": dataset.name,
    }
    if note is not None:
        payload["bound_note"] = note
    segments, failure = None, None
    if args.segments:
        segments, failure = _segment_analysis(
            ref_path, ref_model, cand_path, cand_model, dataset.x, task, args, ref_outputs
        )
        payload["segments"] = [s.as_json() for s in segments.segments] if segments is not None else []
        if segments is not None:
            payload["segment_synthesis"] = segment_summary(segments)
        else:
            payload["segments_error"] = failure
    if args.json:
        print_json(payload)
    else:
        architecture = f", architecture term {bound.architecture_term:.2%}" if cushions is not None else ""
        print(
            f"{comparison.kind} {comparison.difference:.2%} on {comparison.n} samples of {dataset.name}; "
            f"upper bound {bound.upper:.2%} ({mode}, δ={bound.delta}{architecture})"
        )
        if note is not None:
            print(note)
        if args.segments:
            print(describe_segments(segments) if segments is not None else f"segments: {failure}")
    return 0


def _at_input_shape(given: tuple[str, tuple[int, ...]], signature: Signature) -> Signature:
    """The signature with its input's symbolic dims set from `--input-shape` (batch dim ignored) where the named
    input is this model's and the given dims fit its concrete ones; otherwise unchanged (the compatibility check
    then names what differs)."""
    from sommelier_core.ingest.validation import shape_fits

    name, shape = given
    first = signature.inputs[0]
    if first.name == name and shape_fits(first.shape[1:], shape[1:]):
        return signature.at_input_shape(tuple(shape[1:]))
    return signature


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
    out = args.out
    with writing(out, "--out"):
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
        print_json(payload)
    else:
        print(
            f"Wrote {out}: {analysis.reference_id} with {len(analysis.kept)} segment(s) from {analysis.candidate_id}; "
            f"measured {check.kind} from {analysis.reference_id} {check.difference:.2%} on {check.n} samples of "
            f"{check.dataset} (estimated {analysis.estimated_difference:.2%}, ≤ {analysis.estimated_upper:.2%})"
        )
    return 0
