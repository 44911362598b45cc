"""Is the bound safe, tight and dataset-independent? Paper Table 1, Fig. 11 and Table 2 on the built-in zoo.

    python benchmarks/bound_safety.py              # every section (≈ 3–4 min on 2 cores)
    python benchmarks/bound_safety.py --quick      # fewer draws, smaller pools (≈ 1 min; a smoke test)
    python benchmarks/bound_safety.py --calibrate  # also print the C the calibration cells call for

Needs the indexed ONNX files of the default zoo (`scripts/demo` or `sommelier index`) under the store
root (`SOMMELIER_HOME`, default `.sommelier/`).

1. **Table 1** (in distribution): for each pair and n = 100, 1 000, 10 000 MNIST-1D samples, R
   validation draws give R bounds (`statistical` and `arora`, the reference's cushions measured on the
   same draw); H fresh, disjoint held-out draws of the same size give the real difference. Reported:
   mean bound / min / mean held-out difference, the unsafe rate (fraction of (validation, held-out)
   draw couples where the held-out difference exceeds the bound; safe means ≤ δ), how often the bound
   is below the difference on the whole held-out pool (≈ the true difference, which is what the
   statistical term bounds) and the tightness (mean bound − mean held-out difference).
2. **Dataset independence**: the same bounds (computed on in-distribution validation draws, n = 1 000
   and 10 000) against held-out draws of *shifted* data — MNIST-1D generated with other parameters
   (scale, padding, shear, translation, noise) or with noise added to the inputs — and, for digits
   models, the digits validation split against MNIST downsampled to 8×8 (`mnist8`), clean and noisy.
   Unsafe rates of `statistical` vs `arora` per shift.
3. **Fig. 11**: per pair, the empirical difference and the `arora` bound each computed on one draw of
   every dataset (n = 1 000): their spread (max − min) across datasets.
4. **Calibration of C** (`--calibrate`): on the calibration cells only — in distribution, n = 1 000,
   the pairs `cnn1d_w32 → cnn1d_w32_noise3` (a noise variant, ≈ 8 % apart) and `mlp1d_w64 →
   keras_mlp1d_w64` (two trainings in two frameworks, ≈ 38 % apart), one low and one high
   disagreement — the smallest C such that the held-out difference exceeds the `arora` bound in at
   most δ of the draw couples. Every other cell (other pairs and sizes, every shift, digits) validates it.
5. **Cost** (paper Table 2): wall time of `compute_cushions` for every model of the zoo on its
   validation set (the indexing settings).

Figures go to stdout and to `benchmarks/results/bound_safety.json`.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sommelier_core.equivalence.bound import ARORA_CONSTANT, architecture_term, bound_comparison
from sommelier_core.equivalence.compare import compare_outputs
from sommelier_core.equivalence.cushions import Cushions, compute_cushions
from sommelier_core.inference import run_onnx
from sommelier_core.models import safe_name
from sommelier_core.settings import store_root
from sommelier_core.zoo import datasets

DELTA = 0.05
MNIST1D_PAIRS = [
    ("zoo-torch/cnn1d_w32", "zoo-torch/cnn1d_w32_noise1"),
    ("zoo-torch/cnn1d_w32", "zoo-torch/cnn1d_w32_noise3"),  # calibration (n = 1 000, in distribution)
    ("zoo-torch/cnn1d_w32", "zoo-torch/cnn1d_w32_noise2"),
    ("zoo-torch/mlp1d_w64", "zoo-tf/keras_mlp1d_w64"),  # calibration (n = 1 000, in distribution)
    ("zoo-tf/keras_mlp1d_w64", "zoo-torch/mlp1d_w64"),
    ("zoo-torch/mlp1d_w64", "zoo-torch/cnn1d_w32"),
]
CALIBRATION_PAIRS = [MNIST1D_PAIRS[1], MNIST1D_PAIRS[3]]
CALIBRATION_N = 1000
# MNIST-1D generation-parameter overrides (defaults: scale_coeff 0.4, padding [36, 60], shear_scale
# 0.75, max_translation 48, iid_noise_scale 0.02, corr_noise_scale 0.25) and input noise (σ, in
# standardised units) that define each shifted dataset.
MNIST1D_SHIFTS: dict[str, tuple[dict, float]] = {
    "scale": ({"scale_coeff": 0.8}, 0.0),
    "padding": ({"padding": [30, 70]}, 0.0),
    "shear": ({"shear_scale": 1.5}, 0.0),
    "translation": ({"max_translation": 60}, 0.0),
    "input noise 0.3": ({}, 0.3),
    "signal noise x2": ({"iid_noise_scale": 0.04, "corr_noise_scale": 0.5}, 0.0),
}
DIGITS_PAIRS = [
    ("zoo-torch/cnn_w32", "zoo-torch/cnn_w32_noise2"),
    ("zoo-torch/cnn_w32", "zoo-torch/dwcnn_w32"),
    ("zoo-torch/mlp_w64", "zoo-torch/mlp_w64_noise3"),
    ("zoo-torch/rescnn_w16", "zoo-torch/rescnn_w16_noise2"),
    ("zoo-torch/dwcnn_w32", "zoo-torch/dwcnn_w32_prune3"),
    ("zoo-tf/keras_cnn_w16", "zoo-torch/cnn_w16"),
]


@dataclass
class Sizes:
    """Draw counts: validation draws R and held-out draws H per n, and the shifted-pool size."""

    sizes: tuple[int, ...]
    validation_draws: dict[int, int]
    heldout_draws: dict[int, int]

    def pool(self, counts: dict[int, int]) -> int:
        return max(n * counts[n] for n in self.sizes)


FULL = Sizes((100, 1000, 10000), {100: 20, 1000: 10, 10000: 4}, {100: 20, 1000: 10, 10000: 3})
QUICK = Sizes((100, 1000), {100: 10, 1000: 4}, {100: 10, 1000: 4})


def mnist1d(
    n: int, seed: int, overrides: dict | None = None, input_noise: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """n MNIST-1D signals generated like `zoo.datasets` does, with generation parameters overridden.

    Same templates, transforms and standardisation constants as the built-in set (so `overrides={}`
    and no noise is the in-distribution data); `input_noise` adds Gaussian noise to the standardised
    signal.
    """
    x, labels = datasets.generate_mnist1d(n, seed, overrides)
    if input_noise:
        x = x + np.random.default_rng(seed).normal(0.0, input_noise, x.shape)
    return x.astype(np.float32), labels


class Zoo:
    """ONNX files of the indexed zoo, and each model's outputs on named pools (computed once)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.outputs: dict[tuple[str, str], np.ndarray] = {}

    def onnx(self, model_id: str) -> Path:
        path = self.root / "models" / safe_name(model_id) / "model.onnx"
        if not path.exists():
            raise SystemExit(f"{path} missing: index the default zoo first (scripts/demo or sommelier index)")
        return path

    def run(self, model_id: str, pool: str, x: np.ndarray) -> np.ndarray:
        key = (model_id, pool)
        if key not in self.outputs:
            self.outputs[key] = run_onnx(self.onnx(model_id), x)
        return self.outputs[key]


def disagreement(ref: np.ndarray, cand: np.ndarray) -> float:
    return float(np.mean(np.argmax(ref, axis=1) != np.argmax(cand, axis=1)))


def validation_bounds(
    zoo: Zoo, pair: tuple[str, str], pool_name: str, x: np.ndarray, n: int, draws: int, constant: float
) -> list[dict]:
    """Per validation draw: empirical difference, statistical and arora bounds, raw term T (C = 1)."""
    ref_id, cand_id = pair
    ref_all, cand_all = zoo.run(ref_id, pool_name, x), zoo.run(cand_id, pool_name, x)
    rows = []
    for r in range(draws):
        part = slice(r * n, (r + 1) * n)
        comparison = compare_outputs(ref_id, ref_all[part], cand_id, cand_all[part], "classification")
        cushions = cushions_of(zoo, ref_id, (pool_name, r, n), x[part])
        statistical = bound_comparison(comparison, "statistical", DELTA)
        arora = bound_comparison(comparison, "arora", DELTA, cushions=cushions, constant=constant)
        raw = architecture_term(cushions, n, "disagreement", 1.0)
        rows.append(
            {"empirical": comparison.difference, "statistical": statistical.upper, "arora": arora.upper, "raw": raw}
        )
    return rows


_CUSHION_CACHE: dict[tuple, Cushions] = {}


def cushions_of(zoo: Zoo, model_id: str, draw: tuple[str, int, int], x: np.ndarray) -> Cushions:
    """The reference's cushions on one draw (pool, index, n), computed once even if several pairs share it."""
    key = (model_id, *draw)
    if key not in _CUSHION_CACHE:
        _CUSHION_CACHE[key] = compute_cushions(zoo.onnx(model_id), x, model_id=model_id)
    return _CUSHION_CACHE[key]


def heldout_differences(
    zoo: Zoo, pair: tuple[str, str], pool_name: str, x: np.ndarray, n: int, draws: int
) -> list[float]:
    ref_all, cand_all = zoo.run(pair[0], pool_name, x), zoo.run(pair[1], pool_name, x)
    return [disagreement(ref_all[h * n : (h + 1) * n], cand_all[h * n : (h + 1) * n]) for h in range(draws)]


def unsafe_rate(bounds: list[float], held: list[float]) -> float:
    """Fraction of (validation draw, held-out draw) couples whose held-out difference exceeds the bound."""
    b, h = np.array(bounds)[:, None], np.array(held)[None, :]
    return float(np.mean(h > b))


def required_constant(rows: list[dict], held: list[float]) -> float:
    """The smallest C for which the arora bound is unsafe in at most δ of the couples."""
    needs = [(h - row["statistical"]) / row["raw"] for row in rows for h in held]
    return max(float(np.quantile(needs, 1 - DELTA, method="higher")), 0.0)


def summarise(results: dict) -> None:
    """Counts of safe cells (unsafe rate ≤ δ) and mean unsafe rates, statistical vs arora, per n and shift."""
    print("\n## Summary — cells safe (unsafe rate ≤ δ) and mean unsafe rate, statistical vs arora\n")
    print(
        "| data | n | cells | safe stat | safe arora | mean unsafe stat | mean unsafe arora "
        "| tightness arora mean / max |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for n in sorted({row["n"] for row in results["table1"]}):
        rows = [row for row in results["table1"] if row["n"] == n and not row["calibration"]]
        tight = [row["arora_mean"] - row["heldout_mean"] for row in rows]
        _summary_row("in distribution", n, rows, f"{fmt(np.mean(tight))} / {fmt(max(tight))}")
    for n in sorted({row["n"] for row in results["shifts"]}):
        for shift in MNIST1D_SHIFTS:
            rows = [r for r in results["shifts"] if r["n"] == n and r["shift"] == shift]
            _summary_row(shift, n, rows, "")
    for shift in sorted({row["shift"] for row in results["digits"]}):
        rows = [row for row in results["digits"] if row["shift"] == shift]
        _summary_row(f"digits → {shift}", rows[0]["n"], rows, "")


def _summary_row(name: str, n: int, rows: list[dict], extra: str) -> None:
    stat, arora = [r["unsafe_statistical"] for r in rows], [r["unsafe_arora"] for r in rows]
    print(
        f"| {name} | {n} | {len(rows)} | {sum(u <= DELTA for u in stat)} | {sum(u <= DELTA for u in arora)} | "
        f"{np.mean(stat):.2f} | {np.mean(arora):.2f} | {extra} |"
    )


def fmt(value: float) -> str:
    return f"{100 * value:5.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer draws and sizes (a smoke test)")
    parser.add_argument("--calibrate", action="store_true", help="print the C the calibration cells call for")
    parser.add_argument("--constant", type=float, default=ARORA_CONSTANT, help="C to validate (default: documented)")
    parser.add_argument("--store", help="store root holding models/<id>/model.onnx (default: the store root)")
    args = parser.parse_args()
    zoo = Zoo(Path(args.store) if args.store else store_root())
    plan = QUICK if args.quick else FULL
    constant = args.constant
    results: dict = {"delta": DELTA, "constant": constant, "quick": args.quick}
    started = time.perf_counter()

    # ---- data: disjoint pools (validation, held-out, one per shift), each model run once per pool
    t0 = time.perf_counter()
    val_x, _ = mnist1d(plan.pool(plan.validation_draws), seed=1001)
    held_x, _ = mnist1d(plan.pool(plan.heldout_draws), seed=2002)
    shifted = {
        name: mnist1d(plan.pool(plan.heldout_draws), seed=3003 + k, overrides=over, input_noise=noise)[0]
        for k, (name, (over, noise)) in enumerate(MNIST1D_SHIFTS.items())
    }
    print(f"data generated in {time.perf_counter() - t0:.1f} s")

    # ---- Table 1 and dataset independence on MNIST-1D
    table1, shift_rows, calibration_needs = [], [], []
    for pair in MNIST1D_PAIRS:
        for n in plan.sizes:
            rows = validation_bounds(zoo, pair, "val", val_x, n, plan.validation_draws[n], constant)
            held = heldout_differences(zoo, pair, "held", held_x, n, plan.heldout_draws[n])
            # the "true" difference: the whole held-out pool (what the statistical term is a bound on)
            pool_difference = heldout_differences(zoo, pair, "held", held_x, len(held_x), 1)[0]
            stat, arora = [r["statistical"] for r in rows], [r["arora"] for r in rows]
            calibration = pair in CALIBRATION_PAIRS and n == CALIBRATION_N
            if calibration:
                calibration_needs.append(required_constant(rows, held))
            table1.append(
                {
                    "reference": pair[0],
                    "candidate": pair[1],
                    "n": n,
                    "calibration": calibration,
                    "empirical_mean": float(np.mean([r["empirical"] for r in rows])),
                    "statistical_mean": float(np.mean(stat)),
                    "arora_mean": float(np.mean(arora)),
                    "arora_term_mean": float(np.mean([a - s for a, s in zip(arora, stat, strict=True)])),
                    "heldout_min": float(np.min(held)),
                    "heldout_mean": float(np.mean(held)),
                    "unsafe_statistical": unsafe_rate(stat, held),
                    "unsafe_arora": unsafe_rate(arora, held),
                    "pool_difference": pool_difference,
                    "below_pool_statistical": unsafe_rate(stat, [pool_difference]),
                    "below_pool_arora": unsafe_rate(arora, [pool_difference]),
                }
            )
            if n < 1000:
                continue
            for name, x in shifted.items():
                held_s = heldout_differences(zoo, pair, name, x, n, plan.heldout_draws[n])
                shift_rows.append(
                    {
                        "reference": pair[0],
                        "candidate": pair[1],
                        "n": n,
                        "shift": name,
                        "heldout_mean": float(np.mean(held_s)),
                        "statistical_mean": float(np.mean(stat)),
                        "arora_mean": float(np.mean(arora)),
                        "unsafe_statistical": unsafe_rate(stat, held_s),
                        "unsafe_arora": unsafe_rate(arora, held_s),
                    }
                )

    print(f"\n## Table 1 — in distribution (MNIST-1D), δ = {DELTA}, C = {constant:g}; differences in %")
    print("bound = mean over validation draws; min / mean = held-out difference over fresh draws of the same n;")
    print("unsafe = held-out draw above the bound; below pool = bound below the difference on the whole held-out pool")
    print("(* = calibration cell of C; the summary leaves those out)\n")
    print(
        "| reference → candidate | n | statistical bound / min / mean | arora bound (term) "
        "| unsafe stat / arora | below pool stat / arora | tightness arora |"
    )
    print("|---|---:|---|---|---|---|---:|")
    for row in table1:
        mark = "*" if row["calibration"] else ""
        print(
            f"| {row['reference']} → {row['candidate']}{mark} | {row['n']} | {fmt(row['statistical_mean'])} / "
            f"{fmt(row['heldout_min'])} / {fmt(row['heldout_mean'])} | {fmt(row['arora_mean'])} "
            f"({fmt(row['arora_term_mean'])}) | {row['unsafe_statistical']:.2f} / {row['unsafe_arora']:.2f} | "
            f"{row['below_pool_statistical']:.2f} / {row['below_pool_arora']:.2f} | "
            f"{fmt(row['arora_mean'] - row['heldout_mean'])} |"
        )

    print("\n## Dataset independence — bound on in-distribution validation draws vs shifted held-out draws\n")
    print("| reference → candidate | n | shift | held-out mean | stat bound | arora bound | unsafe stat / arora |")
    print("|---|---:|---|---:|---:|---:|---|")
    for row in shift_rows:
        print(
            f"| {row['reference']} → {row['candidate']} | {row['n']} | {row['shift']} | "
            f"{fmt(row['heldout_mean'])} | {fmt(row['statistical_mean'])} | {fmt(row['arora_mean'])} | "
            f"{row['unsafe_statistical']:.2f} / {row['unsafe_arora']:.2f} |"
        )

    # ---- digits models: validation split vs MNIST 8x8 (clean and noisy)
    digits_val = datasets.load_dataset("digits", "val")
    mnist8 = datasets.load_dataset("mnist8", "val", n=5000)
    noisy = np.clip(mnist8.x + np.random.default_rng(5).normal(0, 0.1, mnist8.x.shape), 0, 1).astype(np.float32)
    n_digits = len(digits_val.x)
    heldout_draws = len(mnist8.x) // n_digits
    digit_rows = []
    for pair in DIGITS_PAIRS:
        rows = validation_bounds(zoo, pair, "digits", digits_val.x, n_digits, 1, constant)
        for name, x in (("mnist8", mnist8.x), ("mnist8 + noise 0.1", noisy)):
            held = heldout_differences(zoo, pair, name, x, n_digits, heldout_draws)
            digit_rows.append(
                {
                    "reference": pair[0],
                    "candidate": pair[1],
                    "n": n_digits,
                    "shift": name,
                    "empirical": rows[0]["empirical"],
                    "statistical": rows[0]["statistical"],
                    "arora": rows[0]["arora"],
                    "heldout_mean": float(np.mean(held)),
                    "heldout_max": float(np.max(held)),
                    "unsafe_statistical": unsafe_rate([rows[0]["statistical"]], held),
                    "unsafe_arora": unsafe_rate([rows[0]["arora"]], held),
                }
            )
    print(f"\n## Digits models — bound on the digits validation split (n = {n_digits}) vs MNIST 8×8 draws\n")
    print(
        "| reference → candidate | shift | empirical | stat bound | arora bound "
        "| held-out mean / max | unsafe stat / arora |"
    )
    print("|---|---|---:|---:|---:|---|---|")
    for row in digit_rows:
        print(
            f"| {row['reference']} → {row['candidate']} | {row['shift']} | {fmt(row['empirical'])} | "
            f"{fmt(row['statistical'])} | {fmt(row['arora'])} | {fmt(row['heldout_mean'])} / "
            f"{fmt(row['heldout_max'])} | {row['unsafe_statistical']:.2f} / {row['unsafe_arora']:.2f} |"
        )

    # ---- Fig. 11: spread across datasets of the empirical score vs the bound (n = 1 000, one draw each)
    n = 1000
    fig11 = []
    named = {"in distribution": held_x, **shifted}
    for pair in MNIST1D_PAIRS:
        empirical, bounds = [], []
        for name, x in named.items():
            row = validation_bounds(zoo, pair, "held" if name == "in distribution" else name, x, n, 1, constant)[0]
            empirical.append(row["empirical"])
            bounds.append(row["arora"])
        fig11.append(
            {
                "reference": pair[0],
                "candidate": pair[1],
                "empirical": empirical,
                "arora": bounds,
                "empirical_spread": max(empirical) - min(empirical),
                "arora_spread": max(bounds) - min(bounds),
            }
        )
    print(f"\n## Fig. 11 — spread across the {len(named)} datasets (one draw of n = {n} each), in points\n")
    print("| reference → candidate | empirical min–max | spread | arora bound min–max | spread |")
    print("|---|---|---:|---|---:|")
    for row in fig11:
        print(
            f"| {row['reference']} → {row['candidate']} | {fmt(min(row['empirical']))}–{fmt(max(row['empirical']))} | "
            f"{fmt(row['empirical_spread'])} | {fmt(min(row['arora']))}–{fmt(max(row['arora']))} | "
            f"{fmt(row['arora_spread'])} |"
        )

    # ---- calibration of C
    calibrated = max(calibration_needs) if calibration_needs else float("nan")
    print(
        f"\nC called for by the calibration cells ({', '.join(f'{a} → {b}' for a, b in CALIBRATION_PAIRS)}, "
        f"in distribution, n = {CALIBRATION_N}): {calibrated:.3g} (validated here: {constant:g})"
    )

    # ---- cost: cushions of every zoo model on its validation set (the indexing settings)
    timings = {}
    for model_dir in sorted((zoo.root / "models").glob("*/model.onnx")):
        model_id = model_dir.parent.name.replace("__", "/")
        name = "mnist1d" if "1d" in model_id else "digits"
        x = datasets.load_dataset(name, "val").x
        t = time.perf_counter()
        compute_cushions(model_dir, x, model_id=model_id)
        timings[model_id] = time.perf_counter() - t
    if timings:
        values = np.array(list(timings.values()))
        slowest = max(timings, key=timings.get)
        print(
            f"\ncushions of {len(values)} zoo models: total {values.sum():.1f} s, mean {values.mean():.3f} s, "
            f"median {np.median(values):.3f} s, max {values.max():.3f} s ({slowest})"
        )

    results.update(
        {
            "table1": table1,
            "shifts": shift_rows,
            "digits": digit_rows,
            "fig11": fig11,
            "calibrated_constant": calibrated,
            "cushion_seconds": timings,
            "total_seconds": time.perf_counter() - started,
        }
    )
    summarise(results)
    print(f"\ntotal {results['total_seconds']:.0f} s")
    out = Path(__file__).parent / "results" / ("bound_safety_quick.json" if args.quick else "bound_safety.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
