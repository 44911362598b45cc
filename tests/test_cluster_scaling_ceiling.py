"""The cluster benchmark's figures: 2 workers vs 1 per round and their median, and how large the ratio could have
been for the CPU the 2-worker run used."""

from __future__ import annotations

from sommelier_bench.cluster_scaling import ScalingRun, cpu_bound_speedup, round_speedups, speedup


def _run(workers: int, wall_s: float, cpu: dict[str, float]) -> ScalingRun:
    return ScalingRun(workers, 48, wall_s, 0, 0.5, cpu_seconds=cpu)


def test_the_ceiling_is_the_one_worker_wall_over_the_two_worker_cpu_seconds_shared_by_the_cores():
    runs = [
        _run(1, 45.0, {"celery workers": 20.0, "mlflow server": 10.0}),
        _run(2, 40.0, {"celery workers": 26.0, "mlflow server": 14.0}),
    ]
    # 40 CPU-s on 2 cores need at least 20 s: 45 / 20 = 2.25x at best, against the 45 / 40 = 1.125x measured.
    assert cpu_bound_speedup(runs, cores=2) == 2.25
    assert speedup(runs) == 1.125


def test_on_one_core_the_ceiling_is_below_one_when_the_two_worker_run_used_more_cpu_than_one_worker_took():
    runs = [_run(2, 30.0, {"celery workers": 50.0}), _run(1, 45.0, {"celery workers": 40.0})]
    assert cpu_bound_speedup(runs, cores=1) == 0.9


def test_with_several_rounds_the_ratio_is_the_median_of_the_rounds_ratios():
    runs = [
        _run(1, 60.0, {}),
        _run(2, 40.0, {}),  # round 1: 1.5x
        ScalingRun(1, 48, 45.0, 0, 0.5, round=2),
        ScalingRun(2, 48, 50.0, 0, 0.5, round=2),  # round 2: 0.9x
        ScalingRun(1, 48, 48.0, 0, 0.5, round=3),
        ScalingRun(2, 48, 40.0, 0, 0.5, round=3),  # round 3: 1.2x
    ]
    assert round_speedups(runs) == [1.5, 0.9, 1.2]
    assert speedup(runs) == 1.2
