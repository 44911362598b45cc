"""Segment equivalence on the zoo (paper §7.2, Fig. 10 and Fig. 13; Table 2's time per pair).

    python benchmarks/segments.py                 # needs an indexed default zoo (scripts/demo) in the store
    python benchmarks/segments.py --skip-levels   # only the zoo's own transfer models for Fig. 10

**Fig. 10** — for each transfer family (upstream O pretrained on mnist8; F fine-tuned on digits with
k = 0…3 frozen stages and a fresh head), the fine-tuned segments of F (those whose weights differ from
O's, the head excepted) are replaced by O's. *Real QoR* = accuracy of the replaced model ÷ accuracy of
F; *estimated lower-bound QoR* = (acc(F) − d̂) ÷ acc(F), d̂ the one-sided 95 % upper bound on the
noise-injected disagreement (paper §4.2: noise of each segment's bounded norm at its output). Levels:
the zoo's models (15 epochs of fine-tuning) and, unless --skip-levels, the same transfers fine-tuned
for 1, 2 and 4 epochs here (lighter fine-tuning). The acceptable region is real QoR ≥ 90 %.

**Fig. 13** — for every family root R of the zoo, rank every I/O-compatible model by the statistical
upper bound on its disagreement from R (measured exhaustively from stored outputs), and separately
with the synthesized candidates R+M (R with segments of M within ε) added at their measured upper
bound (as the index ranks them); report the share of families whose top-1 / any of top-5 lies
outside the family (a synthesized candidate counts as outside when its donor M is: the paper's
"partial model equivalence relations" across series). A second reading, closer to the paper's
"models finding top-K equivalents outside their series", ranks each model M once, at the closer of
its whole-model relation and its partial one (R+M), so a same-family donor cannot take two places.

**Cost** — seconds per analysed pair (sequences, LCS, bounds, noise injection), and the per-model cost
of the `segment_matches` stage (both directions for the model's five stored peers).

Figures go to stdout and `benchmarks/results/segments.json`.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import onnx


def _store(root: Path):
    from sommelier_core.store import ModelStore

    store = ModelStore(root)
    if not (root / "models").exists():
        raise SystemExit(f"no indexed store at {root}: run scripts/demo (or sommelier zoo build && sommelier index)")
    return store


def _families(root: Path) -> dict[str, str]:
    """model id → family, from the zoo manifest."""
    from sommelier_core.zoo import load_manifest

    manifest = load_manifest(root / "zoo")
    found = {}
    for model in manifest.models:
        repository = "zoo-torch" if model.framework == "torch" else "zoo-tf"
        found[f"{repository}/{model.name}"] = model.family
    return found


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    from sommelier_core.inference import probe_session

    output = model.graph.output[0].name
    return probe_session(model, [output]).run([output], {model.graph.input[0].name: x})[0]


def _export(module) -> onnx.ModelProto:
    import torch

    buffer = io.BytesIO()
    torch.onnx.export(
        module.eval(),
        torch.zeros(1, 1, 8, 8),
        buffer,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return onnx.load_from_string(buffer.getvalue())


def _probe(model: onnx.ModelProto, x: np.ndarray, tensors: list[str]) -> dict[str, np.ndarray]:
    from sommelier_core.inference import probe_session

    return dict(zip(tensors, probe_session(model, tensors).run(tensors, {model.graph.input[0].name: x}), strict=True))


def _sample_norms(value: np.ndarray) -> np.ndarray:
    return np.linalg.norm(value.reshape(len(value), -1).astype(np.float64), axis=1)


def fig10_cell(fine_tuned: onnx.ModelProto, original: onnx.ModelProto, x, y, draws: int, delta: float) -> dict:
    """Replace F's fine-tuned segments (the head excepted) by O's: real vs estimated lower-bound QoR.

    Diagnostics per tuned segment: the bound against the real difference at the segment's output when
    that segment alone is swapped (its input unchanged, as the bound assumes), per sample and
    aggregated; and the estimate the same noise injection would give with a *perfect* bound (noise of
    each sample's real segment-output difference), which separates the bound's slack from the noise
    model's.
    """
    from sommelier_core.equivalence.bound import clopper_pearson
    from sommelier_core.segments.error_bound import SegmentBounder
    from sommelier_core.segments.lcs import candidate_segments
    from sommelier_core.segments.noise_effect import NoiseInjector, qor_difference
    from sommelier_core.segments.sequences import model_sequences
    from sommelier_core.segments.synthesis import synthesize

    started = time.perf_counter()
    view_f, seq_f = model_sequences(fine_tuned)
    view_o, seq_o = model_sequences(original)
    segments = candidate_segments(view_f, seq_f, view_o, seq_o)
    bounder = SegmentBounder(view_f, view_o, x)
    bounds = bounder.bounds(segments)
    head = fine_tuned.graph.output[0].name
    tuned = [i for i, s in enumerate(segments) if bounds[i].max_bound > 0 and s.reference_output != head]
    outputs = _run(fine_tuned, x)
    accuracy = float(np.mean(outputs.argmax(1) == y))
    replaced = synthesize(view_f, view_o, [segments[i] for i in tuned]) if tuned else fine_tuned
    replaced_outputs = _run(replaced, x)
    seconds = time.perf_counter() - started
    real = float(np.mean(replaced_outputs.argmax(1) == y)) / accuracy

    def lower_qor(norms: dict[str, np.ndarray]) -> tuple[float, float]:
        """(worst noise-injected disagreement over the draws, the lower-bound QoR from its upper bound)."""
        found = max(qor_difference(outputs, injector.run(norms, seed), "classification") for seed in range(draws))
        upper = clopper_pearson(round(found * len(x)), len(x), delta)[1]
        return found, max(0.0, (accuracy - upper) / accuracy)

    estimate, lower, perfect, perfect_lower, flipped_lower = 0.0, 1.0, 0.0, 1.0, 1.0
    diagnostics = []
    if tuned:
        started = time.perf_counter()
        injector = NoiseInjector(view_f, x, bounder.probe.shapes)
        estimate, lower = lower_qor({segments[i].reference_output: bounds[i].per_sample for i in tuned})
        seconds += time.perf_counter() - started
        base = _probe(fine_tuned, x, [segments[i].reference_output for i in tuned])
        measured, differences = {}, {}
        for i in tuned:
            tensor = segments[i].reference_output
            alone = _probe(synthesize(view_f, view_o, [segments[i]]), x, [tensor])[tensor]
            differences[tensor] = alone - base[tensor]
            measured[tensor] = _sample_norms(differences[tensor])
            ratio = bounds[i].per_sample / np.maximum(measured[tensor], 1e-12)
            diagnostics.append(
                {
                    "nodes": segments[i].reference_nodes[0],
                    "relative_bound": round(bounds[i].relative_bound, 3),
                    "relative_real": round(float(np.mean(measured[tensor] / bounds[i].output_norms)), 3),
                    "bound_over_real_aggregate": round(
                        float(np.linalg.norm(bounds[i].per_sample) / np.linalg.norm(measured[tensor])), 3
                    ),
                    "bound_over_real_median": round(float(np.median(ratio)), 3),
                    "bound_over_real_min": round(float(np.min(ratio)), 3),
                }
            )
        perfect, perfect_lower = lower_qor(measured)
        # noise that knows even more: every element's real magnitude, only the signs random
        flipped = max(
            qor_difference(outputs, injector.run_with(_random_signs(differences, seed)), "classification")
            for seed in range(draws)
        )
        flipped_lower = max(0.0, (accuracy - clopper_pearson(round(flipped * len(x)), len(x), delta)[1]) / accuracy)
    return {
        "tuned_segments": len(tuned),
        "relative_bounds": [round(bounds[i].relative_bound, 3) for i in tuned],
        "accuracy": accuracy,
        "real_qor": real,
        "real_disagreement": float(np.mean(replaced_outputs.argmax(1) != outputs.argmax(1))),
        "estimated_disagreement": estimate,
        "estimated_lower_qor": lower,
        "segments": diagnostics,
        "noise_at_real_norm_disagreement": perfect,
        "noise_at_real_norm_lower_qor": perfect_lower,
        "real_magnitudes_random_signs_lower_qor": flipped_lower,
        "seconds": seconds,
    }


def _random_signs(differences: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Each tensor's real difference with every element's sign drawn at random (its magnitudes and norm kept)."""
    rng = np.random.default_rng(seed)
    return {
        t: np.abs(d) * rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=d.shape) for t, d in differences.items()
    }


def fig10(root: Path, store, levels: bool, draws: int, delta: float) -> list[dict]:
    import torch

    from sommelier_core.zoo.build import FINE_TUNE_CONFIG
    from sommelier_core.zoo.datasets import load_dataset
    from sommelier_core.zoo.torch_architectures import build_architecture
    from sommelier_core.zoo.training import TrainConfig, deterministic_torch, seeded_init, train_classifier

    data = load_dataset("digits", split="val")
    x, y = data.x, data.y
    train = load_dataset("digits", "train")
    rows = []
    for family, architecture, width in (("cnn_w32_mnist8", "cnn", 32), ("rescnn_w16_mnist8", "rescnn", 16)):
        original = onnx.load(str(store.onnx_path(f"zoo-torch/{family}")))
        upstream = torch.hub.load(str(root / "zoo" / "torchhub"), family, source="local", verbose=False)
        for frozen in range(4):
            epoch_levels = [FINE_TUNE_CONFIG.epochs] + ([1, 2, 4] if levels and frozen < 3 else [])
            for epochs in epoch_levels:
                if epochs == FINE_TUNE_CONFIG.epochs:
                    fine_tuned = onnx.load(str(store.onnx_path(f"zoo-torch/{family}_freeze{frozen}")))
                    source = "zoo"
                else:
                    with deterministic_torch():
                        child = seeded_init(lambda a=architecture, w=width: build_architecture(a, w), 1)
                        head = f"stages.{len(upstream.stages) - 1}."
                        body = {k: v for k, v in copy.deepcopy(upstream.state_dict()).items() if not k.startswith(head)}
                        child.load_state_dict(body, strict=False)
                        config = TrainConfig(epochs=epochs, learning_rate=FINE_TUNE_CONFIG.learning_rate)
                        model = train_classifier(child, train, 1, config, frozen_stages=frozen)
                    fine_tuned = _export(model)
                    source = "fine-tuned here"
                cell = fig10_cell(fine_tuned, original, x, y, draws, delta)
                rows.append({"family": family, "frozen": frozen, "epochs": epochs, "source": source, **cell})
                print(
                    f"{family:<18} frozen {frozen} epochs {epochs:>2} ({source:<15}) tuned {cell['tuned_segments']} "
                    f"acc {cell['accuracy']:.3f}  real QoR {cell['real_qor']:6.1%}  "
                    f"estimated ≥ {cell['estimated_lower_qor']:6.1%}  "
                    f"(with a perfect bound ≥ {cell['noise_at_real_norm_lower_qor']:6.1%}; "
                    f"real magnitudes, random signs ≥ {cell['real_magnitudes_random_signs_lower_qor']:6.1%})"
                )
                for segment in cell["segments"]:
                    print(
                        f"    {segment['nodes']:<28} bound/‖X‖ {segment['relative_bound']:6.3f}  "
                        f"real/‖X‖ {segment['relative_real']:6.3f}  bound/real: aggregate "
                        f"{segment['bound_over_real_aggregate']:.2f}, per sample median "
                        f"{segment['bound_over_real_median']:.2f} min {segment['bound_over_real_min']:.2f}"
                    )
    return rows


def fig13(store, families: dict[str, str], epsilon: float, samples: int, delta: float) -> dict:
    from sommelier_core.equivalence.bound import clopper_pearson
    from sommelier_core.segments.analysis import analyse_pair
    from sommelier_core.segments.candidates import synthesized_id
    from sommelier_core.zoo.datasets import load_dataset

    outputs_records = store.records("model_outputs", [m for m in families if store.has_record("model_outputs", m)])
    roots = sorted(m for m, f in families.items() if m.split("/", 1)[1] == f and m in outputs_records)
    models = {m: onnx.load(str(store.onnx_path(m))) for m in outputs_records}
    outputs = {m: store.load_outputs(m) for m in outputs_records}
    pair_seconds: list[float] = []
    pair_seconds_with_segments: list[float] = []
    per_family = []
    estimates: list[dict] = []
    members = {f: sum(1 for g in families.values() if g == f) for f in set(families.values())}
    for root in roots:
        record = outputs_records[root]
        data = load_dataset(record.dataset, split="val")
        x = data.x[: record.n]
        candidates = [m for m, r in outputs_records.items() if m != root and record.comparable_with(r)]
        real, synthesized = [], []
        best_relation: dict[str, float] = {}  # per model M: the closer of M itself and R+M
        for candidate in candidates:
            k = int(np.sum(outputs[root].argmax(1) != outputs[candidate].argmax(1)))
            real.append((clopper_pearson(k, record.n, delta)[1], candidate, families[candidate] != families[root]))
            best_relation[candidate] = real[-1][0]
            analysis = analyse_pair(
                root,
                models[root],
                candidate,
                models[candidate],
                x,
                record.task,
                epsilon=epsilon,
                delta=delta,
                reference_outputs=outputs[root],
                samples=samples,
            )
            pair_seconds.append(analysis.seconds)
            if analysis.segments:
                pair_seconds_with_segments.append(analysis.seconds)
            if analysis.synthesizable:
                outside = families[candidate] != families[root]
                synthesized.append((analysis.measured_upper, synthesized_id(root, candidate), outside))
                best_relation[candidate] = min(best_relation[candidate], analysis.measured_upper)
                estimates.append(
                    {
                        "synthesized_id": synthesized_id(root, candidate),
                        "segments_kept": len(analysis.kept),
                        "estimated_difference": analysis.estimated_difference,
                        "estimated_upper": analysis.estimated_upper,
                        "measured_difference": analysis.measured_difference,
                        "measured_upper": analysis.measured_upper,
                    }
                )
        without = sorted(real)
        with_segments = sorted(real + synthesized)
        per_model = sorted((u, m, families[m] != families[root]) for m, u in best_relation.items())
        entry = {
            "family": families[root],
            "members": members[families[root]],
            "reference": root,
            "candidates": len(candidates),
            "synthesized": len(synthesized),
            "top5_without": [(round(u, 4), m) for u, m, _ in without[:5]],
            "top5_with": [(round(u, 4), m) for u, m, _ in with_segments[:5]],
            "top1_outside_without": bool(without and without[0][2]),
            "top5_outside_without": any(o for _, _, o in without[:5]),
            "top1_outside_with": bool(with_segments and with_segments[0][2]),
            "top5_outside_with": any(o for _, _, o in with_segments[:5]),
            # the same among equivalents only: candidates whose upper bound is within ε
            "top1_outside_within_eps_without": _outside(without, epsilon, 1),
            "top5_outside_within_eps_without": _outside(without, epsilon, 5),
            "top1_outside_within_eps_with": _outside(with_segments, epsilon, 1),
            "top5_outside_within_eps_with": _outside(with_segments, epsilon, 5),
            # one entry per model M, at the closer of its whole-model and its partial (R+M) relation
            "top1_outside_per_model": bool(per_model and per_model[0][2]),
            "top5_outside_per_model": any(o for _, _, o in per_model[:5]),
            "top1_outside_within_eps_per_model": _outside(per_model, epsilon, 1),
            "top5_outside_within_eps_per_model": _outside(per_model, epsilon, 5),
            "synthesized_outside": sum(o for _, _, o in synthesized),
        }
        per_family.append(entry)
        print(
            f"{families[root]:<20} candidates {len(candidates):>2} synthesized {len(synthesized):>2}  "
            f"top-1 outside {entry['top1_outside_without']!s:>5} → {entry['top1_outside_with']!s:>5}  "
            f"top-5 outside {entry['top5_outside_without']!s:>5} → {entry['top5_outside_with']!s:>5}  "
            f"best with segments: {entry['top5_with'][0][1] if entry['top5_with'] else '-'}"
        )

    def share(key: str, rows: list[dict]) -> float:
        return sum(e[key] for e in rows) / max(len(rows), 1)

    multi = [e for e in per_family if e["members"] > 1]
    summary = {
        "families": len(per_family),
        "families_with_variants": len(multi),
        **{f"{key}": share(key, per_family) for key in _OUTSIDE_KEYS},
        **{f"{key}_families_with_variants": share(key, multi) for key in _OUTSIDE_KEYS},
        "synthesized_candidates": len(estimates),
        "synthesized_outside_family": sum(e["synthesized_outside"] for e in per_family),
        "synthesized_estimate_at_least_measured": sum(
            e["estimated_upper"] >= e["measured_difference"] for e in estimates
        ),
        "synthesized_measured_mean": statistics.fmean(e["measured_difference"] for e in estimates)
        if estimates
        else 0.0,
        "synthesized_estimated_mean": statistics.fmean(e["estimated_difference"] for e in estimates)
        if estimates
        else 0.0,
        "pairs": len(pair_seconds),
        "pairs_with_segments": len(pair_seconds_with_segments),
        "seconds_per_pair_mean": statistics.fmean(pair_seconds) if pair_seconds else 0.0,
        "seconds_per_pair_with_segments_median": statistics.median(pair_seconds_with_segments)
        if pair_seconds_with_segments
        else 0.0,
        "seconds_per_pair_max": max(pair_seconds, default=0.0),
    }
    return {"summary": summary, "per_family": per_family, "synthesized": estimates}


_OUTSIDE_KEYS = (
    "top1_outside_without",
    "top5_outside_without",
    "top1_outside_with",
    "top5_outside_with",
    "top1_outside_within_eps_without",
    "top5_outside_within_eps_without",
    "top1_outside_within_eps_with",
    "top5_outside_within_eps_with",
    "top1_outside_per_model",
    "top5_outside_per_model",
    "top1_outside_within_eps_per_model",
    "top5_outside_within_eps_per_model",
)


def _outside(ranked: list[tuple[float, str, bool]], epsilon: float, k: int) -> bool:
    """Whether one of the first k candidates whose upper bound is within ε lies outside the family."""
    return any(outside for upper, _, outside in ranked[:k] if upper <= epsilon)


def stage_cost(store, epsilon: float, samples: int, delta: float) -> dict:
    """Wall time of the segment_matches stage's core call for every model with stored peers."""
    from sommelier_core.ingest.validation import resolve_dataset
    from sommelier_core.segments.candidates import match_peers

    seconds = []
    for model_id, peers in sorted(store.records("peers").items()):
        record = store.load_record("model_outputs", model_id)
        dataset = resolve_dataset(record.dataset, samples=record.n)
        started = time.perf_counter()
        match_peers(model_id, peers.peers, store, dataset.x, record.task, epsilon=epsilon, samples=samples, delta=delta)
        seconds.append(time.perf_counter() - started)
    return {
        "models": len(seconds),
        "seconds_per_model_mean": statistics.fmean(seconds) if seconds else 0.0,
        "seconds_per_model_median": statistics.median(seconds) if seconds else 0.0,
        "seconds_per_model_max": max(seconds, default=0.0),
        "seconds_total": sum(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default=os.environ.get("SOMMELIER_HOME", ".sommelier"))
    parser.add_argument("--epsilon", type=float, default=0.05)
    parser.add_argument("--samples", type=int, default=256, help="inputs per segment analysis (as the index)")
    parser.add_argument("--draws", type=int, default=3, help="noise draws per Fig. 10 estimate (the worst is kept)")
    parser.add_argument("--delta", type=float, default=0.05)
    parser.add_argument("--skip-levels", action="store_true", help="Fig. 10 with the zoo's transfer models only")
    parser.add_argument("--skip-stage-cost", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "segments.json"))
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = Path(args.store)
    store = _store(root)
    families = _families(root)

    print("Fig. 10: real vs estimated lower-bound QoR of F with its fine-tuned segments replaced by O's")
    started = time.perf_counter()
    rows = fig10(root, store, not args.skip_levels, args.draws, args.delta)
    acceptable = [r for r in rows if r["real_qor"] >= 0.9]
    fig10_summary = {
        "cells": len(rows),
        "estimate_below_real": sum(r["estimated_lower_qor"] <= r["real_qor"] + 1e-12 for r in rows),
        "acceptable_cells": len(acceptable),
        "acceptable_within_10_points": sum(r["real_qor"] - r["estimated_lower_qor"] <= 0.10 for r in acceptable),
        "acceptable_nontrivial": sum(r["tuned_segments"] > 0 for r in acceptable),
        "acceptable_nontrivial_within_10_points": sum(
            r["tuned_segments"] > 0 and r["real_qor"] - r["estimated_lower_qor"] <= 0.10 for r in acceptable
        ),
        "seconds": time.perf_counter() - started,
    }
    print(json.dumps(fig10_summary))

    print("\nFig. 13: families whose top-1 / top-5 equivalents lie outside the family (without → with segments)")
    fig13_result = fig13(store, families, args.epsilon, args.samples, args.delta)
    print(json.dumps(fig13_result["summary"]))

    cost = {}
    if not args.skip_stage_cost:
        print("\nsegment_matches stage cost per model (five stored peers, both directions)")
        cost = stage_cost(store, args.epsilon, args.samples, args.delta)
        print(json.dumps(cost))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "settings": vars(args),
        "fig10": {"summary": fig10_summary, "rows": rows},
        "fig13": fig13_result,
        "stage_cost": cost,
    }
    out.write_text(json.dumps(payload, indent=2, default=str))


if __name__ == "__main__":
    main()
