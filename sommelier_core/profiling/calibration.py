"""The calibration sweep's graphs (`calibration_sweep`) profiled on a device: the entries they add to its
operator table, cached per device so that rebuilding a table does not profile the sweep again.

The measured profiles are the product; the graphs are not kept. They are generated from their seed into a scratch
directory when a device is profiled and removed once measured (1 554 graphs, 842 MB for sweep 7: they made up most of
a store that kept them), so a store holds one small JSON file of profiles per device.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from sommelier_core import defaults
from sommelier_core.profiling.calibration_sweep import CALIBRATION_PREFIX, SWEEP_VERSION, calibration_models
from sommelier_core.profiling.operator_table import ProfiledModel
from sommelier_core.profiling.operators import OperatorProfile, profile_operators
from sommelier_core.store import write_atomic
from sommelier_core.store.codec import StorePaths, decode, encode

CACHE_FORMAT = "sommelier.calibration_profiles"
CACHE_SCHEMA = 1
"""Version of the cache file's data (before it, the cache was pickled)."""


def calibration_profiles(
    out_dir: Path,
    device: str = defaults.DEVICE,
    runs: int = defaults.PROFILE_RUNS,
    threads: int | None = None,
    rounds: int = defaults.OPERATOR_SWEEP_ROUNDS,
) -> list[ProfiledModel]:
    """Every calibration graph (`calibration_sweep`) profiled on a device, ready to join a table.

    The whole sweep is profiled `rounds` times, one round after the other, and each graph keeps its round with
    the lower kernel sum: a burst of load from another process during one graph's few milliseconds would
    otherwise set that configuration's time (models are measured the same way: the quietest round is kept).
    The graphs are generated from their seed into a scratch directory under `out_dir` and removed when measured.
    """
    if rounds < 1:
        raise ValueError(f"need rounds ≥ 1 to profile the calibration sweep, got {rounds}")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".sweep-") as scratch:
        paths = calibration_models(Path(scratch))
        best: list[OperatorProfile | None] = [None] * len(paths)
        for _ in range(rounds):
            for i, path in enumerate(paths):
                operators = profile_operators(path, device, runs=runs, warmup=3, threads=threads)
                if best[i] is None or operators.kernel_ms < best[i].kernel_ms:  # type: ignore[union-attr]
                    best[i] = operators
    return [ProfiledModel(f"{CALIBRATION_PREFIX}{p.stem}", ops) for p, ops in zip(paths, best, strict=True) if ops]


def cached_calibration_profiles(
    out_dir: Path,
    device: str = defaults.DEVICE,
    runs: int = defaults.PROFILE_RUNS,
    threads: int | None = None,
    rounds: int = defaults.OPERATOR_SWEEP_ROUNDS,
) -> tuple[list[ProfiledModel], float]:
    """`calibration_profiles`, kept in `out_dir` per device, thread count and sweep version so that rebuilding a
    device's table does not profile the sweep again; (profiles, seconds spent profiling now — 0 from the cache)."""
    cache = out_dir / f"profiles-v{SWEEP_VERSION}-{device}-t{threads or 0}-r{runs}x{rounds}.json"
    if cache.exists():
        try:
            payload = json.loads(cache.read_bytes())
            if payload["format"] == CACHE_FORMAT and payload["schema"] == CACHE_SCHEMA:
                return decode(payload["profiles"], list[ProfiledModel], StorePaths(out_dir)), 0.0
        except (ValueError, KeyError, TypeError):  # damaged (`CodecError` is a ValueError)
            pass
        cache.unlink()  # another schema, or damaged: profile again
    started = time.perf_counter()
    profiled = calibration_profiles(out_dir, device, runs, threads, rounds)
    seconds = time.perf_counter() - started
    data = encode(profiled, list[ProfiledModel], StorePaths(out_dir))
    payload = {"format": CACHE_FORMAT, "schema": CACHE_SCHEMA, "profiles": data}
    write_atomic(cache, json.dumps(payload, separators=(",", ":"), allow_nan=False).encode())
    return profiled, seconds
