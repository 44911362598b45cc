"""The testing use case (paper §2 (iii), §6): do N equivalent variants flag corrupted and out-of-distribution inputs?

For each model under test (the zoo's digits base models that have enough equivalents), a
`DisagreementTester` gets N variants from one query (`LIKE model WITHIN ε`), spread over the equivalent
range or the N closest. Clean inputs: digits' `val` split (never trained on). Suspicious inputs, the same
number, each kind seeded:

- `gaussian` — clean + N(0, 0.25²) per pixel, clipped to [0, 1];
- `salt_pepper` — a quarter of the pixels set to 0 or 1;
- `occlusion` — a random 4 × 4 block (a quarter of the image) set to 0;
- `inverted` — 1 − x;
- `mnist8` — MNIST digits brought to the 8 × 8 format (the zoo's related task): a shifted distribution;
- `uniform` — images of uniform noise: no digit at all.

Each score's AUROC separating suspicious from clean (1 = perfect, 0.5 = chance): the baseline is the model's
own confidence (1 − its largest softmax probability, Hendrycks & Gimpel 2017); against it the variants'
vote (`disagreement`), the distance between distributions (`divergence`) and the tester's `score` (both).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from sommelier_core.errors import UnknownModel
from sommelier_core.model_testing import DisagreementTester
from sommelier_core.model_testing.variants import disagreement_scores, softmax
from sommelier_core.zoo import load_dataset

CORRUPTIONS = ("gaussian", "salt_pepper", "occlusion", "inverted", "mnist8", "uniform")
METHODS = ("confidence", "disagreement", "divergence", "score")


def suspicious_inputs(kind: str, clean: np.ndarray, seed: int = 0) -> np.ndarray:
    """`len(clean)` inputs of one kind (see the module doc), seeded."""
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        return np.clip(clean + rng.normal(0, 0.25, clean.shape), 0, 1).astype(np.float32)
    if kind == "salt_pepper":
        mask = rng.random(clean.shape) < 0.25
        return np.where(mask, rng.integers(0, 2, clean.shape), clean).astype(np.float32)
    if kind == "occlusion":
        out = np.array(clean)
        for image, (row, col) in zip(out, rng.integers(0, 5, size=(len(out), 2)), strict=True):
            image[:, row : row + 4, col : col + 4] = 0
        return out
    if kind == "inverted":
        return (1 - clean).astype(np.float32)
    if kind == "mnist8":
        return np.array(load_dataset("mnist8", "val").x[: len(clean)])
    if kind == "uniform":
        return rng.uniform(0, 1, clean.shape).astype(np.float32)
    raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(CORRUPTIONS)}")


def _method_scores(tester: DisagreementTester, x: np.ndarray) -> dict[str, np.ndarray]:
    model, variants = tester.outputs(x)
    scores = disagreement_scores(model, variants)
    return {
        "confidence": 1 - softmax(model).max(axis=1),
        "disagreement": scores.disagreement,
        "divergence": scores.divergence,
        "score": scores.score,
    }


def auroc_table(tester: DisagreementTester, clean: np.ndarray, seed: int = 0) -> dict[str, dict[str, float]]:
    """AUROC of every method for every kind of suspicious input against the clean ones."""
    on_clean = _method_scores(tester, clean)
    table: dict[str, dict[str, float]] = {}
    for kind in CORRUPTIONS:
        on_suspicious = _method_scores(tester, suspicious_inputs(kind, clean, seed))
        labels = np.r_[np.zeros(len(clean)), np.ones(len(clean))]
        table[kind] = {m: float(roc_auc_score(labels, np.r_[on_clean[m], on_suspicious[m]])) for m in METHODS}
    return table


def zoo_models_under_test(store: Path) -> list[str]:
    """The zoo's digits base models (PyTorch) listed in the store's zoo manifest."""
    from sommelier_core.zoo import load_manifest

    manifest = load_manifest(Path(store) / "zoo")
    return [
        f"zoo-torch/{m.name}"
        for m in manifest.models
        if m.framework == "torch" and m.dataset == "digits" and m.transformation == "base"
    ]


def run_variant_testing_benchmark(
    store: Path,
    n: int = 5,
    within: float = 0.05,
    models: list[str] | None = None,
    seed: int = 0,
    echo: Callable[[str], None] | None = print,
) -> dict:
    """AUROC per kind and method, averaged over the models under test, for spread and closest variants."""
    index_dir = Path(store) / "index"
    clean = np.array(load_dataset("digits", "val").x)
    per_model: dict[str, dict] = {}
    for model_id in models or zoo_models_under_test(store):
        entry: dict[str, object] = {}
        for pick in ("spread", "closest"):
            try:
                tester = DisagreementTester.from_query(
                    model_id, n=n, within=within, index_dir=index_dir, spread=pick == "spread"
                )
            except UnknownModel as exc:
                entry["skipped"] = str(exc)
                break
            if len(tester.variants) < n:
                entry["skipped"] = f"only {len(tester.variants)} variants within {within:.0%}"
                break
            entry[pick] = {"variants": tester.variant_ids, "auroc": auroc_table(tester, clean, seed)}
        per_model[model_id] = entry
        if echo:
            if "skipped" in entry:
                echo(f"  {model_id:28s} skipped: {entry['skipped']}")
            else:
                spread = entry["spread"]["auroc"]  # type: ignore[index]
                echo(
                    f"  {model_id:28s} spread variants {', '.join(entry['spread']['variants'])}: "  # type: ignore[index]
                    + "  ".join(f"{k} {spread[k]['confidence']:.2f}→{spread[k]['score']:.2f}" for k in CORRUPTIONS)
                )
    tested = {m: e for m, e in per_model.items() if "skipped" not in e}
    mean: dict[str, dict[str, dict[str, float]]] = {}
    for pick in ("spread", "closest"):
        mean[pick] = {
            kind: {
                method: float(np.mean([e[pick]["auroc"][kind][method] for e in tested.values()]))  # type: ignore[index]
                for method in METHODS
            }
            for kind in CORRUPTIONS
        }
    overall = {
        pick: {method: float(np.mean([mean[pick][k][method] for k in CORRUPTIONS])) for method in METHODS}
        for pick in mean
    }
    return {
        "n_variants": n,
        "within": within,
        "clean_inputs": len(clean),
        "models_tested": len(tested),
        "auroc_mean": mean,
        "auroc_overall": overall,
        "per_model": per_model,
    }


def format_variant_testing_report(report: dict) -> str:
    """A table of mean AUROC per kind: confidence baseline vs the variants' scores (spread picks)."""
    mean = report["auroc_mean"]["spread"]
    lines = [
        f"{report['models_tested']} models under test, {report['n_variants']} variants each within "
        f"{report['within']:.0%} (spread picks), {report['clean_inputs']} clean digits vs as many suspicious",
        "",
        "| inputs | confidence (baseline) | disagreement | divergence | score | score, closest picks |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind in CORRUPTIONS:
        row = mean[kind]
        closest = report["auroc_mean"]["closest"][kind]["score"]
        lines.append(
            f"| {kind} | {row['confidence']:.3f} | {row['disagreement']:.3f} | {row['divergence']:.3f} | "
            f"{row['score']:.3f} | {closest:.3f} |"
        )
    overall, closest = report["auroc_overall"]["spread"], report["auroc_overall"]["closest"]
    lines.append(
        f"| **mean** | {overall['confidence']:.3f} | {overall['disagreement']:.3f} | {overall['divergence']:.3f} | "
        f"{overall['score']:.3f} | {closest['score']:.3f} |"
    )
    return "\n".join(lines)


def write_report(report: dict, path: Path) -> None:
    """The report as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
