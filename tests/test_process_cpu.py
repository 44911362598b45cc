"""`sommelier_bench.process_cpu`, which the cluster benchmark reads a wall-time ratio against: CPU seconds are
counted per kind of process, by command line or else by the nearest ancestor's."""

from __future__ import annotations

import subprocess
import sys

from sommelier_bench.process_cpu import OTHER, ProcessCpu, kind_of

BUSY = "import sys, time\nstart = time.process_time()\nwhile time.process_time() - start < float(sys.argv[1]): pass"


def test_command_lines_name_the_cluster_services():
    assert kind_of("/venv/bin/python -m celery -A deploy.celery_app worker --pool solo") == "celery workers"
    assert kind_of("/venv/bin/python -m mlflow server --backend-store-uri postgresql://") == "mlflow server"
    assert kind_of("postgres: 15/main: postgres lab_dagster 127.0.0.1(5432) idle") == "postgresql"
    assert kind_of("/venv/bin/python -m sommelier_cli.main index") == "sommelier index (driver and run processes)"
    assert kind_of("/bin/sleep 1") is None


def test_a_busy_process_is_counted_under_its_kind_and_its_unnamed_child_under_it_too():
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {BUSY!r}, '0.4'])"
    with ProcessCpu(sample_s=0.05) as cpu:
        subprocess.run([sys.executable, "-c", BUSY, "0.6", "celery", "worker"], check=True)
        subprocess.run([sys.executable, "-c", child, "mlflow", "server"], check=True)
    seconds = cpu.seconds()
    # at least what each burned; at most that and what a busy machine's own processes of that kind add meanwhile
    assert 0.5 <= seconds["celery workers"] <= 3.0
    assert 0.3 <= seconds["mlflow server"] <= 3.0  # the child's command line names nothing: its parent's kind
    assert OTHER not in seconds or seconds[OTHER] < 60  # processes running before the block count only what they add
