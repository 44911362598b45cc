"""The UIs as a user sees them, in a real browser: Dagster's asset graph, a model's asset page with its plots and
checks, the index page, the Overview timeline, and MLflow's experiment and Model Registry, on the small zoo
indexed by `sommelier index` (tests/conftest.py).

Playwright drives Debian's Chromium (`scripts/bootstrap` installs it; `SOMMELIER_CHROMIUM` names another
binary); without one the test is skipped, saying so. With `SOMMELIER_SCREENSHOTS=DIR` it saves the screenshots
docs/ui.md shows (`scripts/screenshots`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest

from sommelier_cli.ui import mlflow_command

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 90
"""How long a UI server may take to answer (loading the code location imports the whole pipeline)."""
PAGE_TIMEOUT_MS = 30_000


def chromium() -> str | None:
    """The Chromium binary to drive: `$SOMMELIER_CHROMIUM`, else Debian's `chromium` on PATH."""
    named = os.environ.get("SOMMELIER_CHROMIUM")
    if named:
        return named if Path(named).exists() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(servers: dict[str, tuple[list[str], str]], env: dict, logs: Path) -> Iterator[None]:
    """Run servers (name → command, URL to probe) side by side until the block ends, once every probe answers
    (failing with the server's log when one never does)."""
    processes = {}
    try:
        for name, (command, _) in servers.items():
            with (logs / f"{name}.log").open("w") as out:
                processes[name] = subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        for name, (_, probe) in servers.items():
            while True:
                try:
                    urllib.request.urlopen(probe, timeout=2)
                    break
                except OSError:
                    if processes[name].poll() is not None or time.monotonic() > deadline:
                        log = (logs / f"{name}.log").read_text()[-3000:]
                        pytest.fail(f"{name} did not answer {probe} within {START_TIMEOUT_S} s:\n{log}")
                    time.sleep(0.5)
        yield
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def browser():
    binary = chromium()
    if binary is None:
        pytest.skip(
            "no Chromium found: install Debian's `chromium` (scripts/bootstrap does, as root) or set SOMMELIER_CHROMIUM"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=binary, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def uis(indexed_store, tmp_path_factory):
    """Dagster's webserver on the workspace and MLflow's UI, on the indexed store, on free ports."""
    logs = tmp_path_factory.mktemp("ui-logs")
    dagster_port, mlflow_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(indexed_store.root / "dagster"),
        "SOMMELIER_HOME": str(indexed_store.root),
        "SOMMELIER_MLFLOW_UI": f"http://127.0.0.1:{mlflow_port}",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    dagster = [sys.executable, "-m", "dagster_webserver", "-w", str(REPO / "workspace.yaml")]
    dagster += ["-h", "127.0.0.1", "-p", str(dagster_port)]
    mlflow = mlflow_command(mlflow_port, tracking_uri=f"sqlite:///{indexed_store.root / 'mlflow' / 'mlflow.db'}")
    dagster_url, mlflow_url = f"http://127.0.0.1:{dagster_port}", f"http://127.0.0.1:{mlflow_port}"
    servers = {"dagster-webserver": (dagster, f"{dagster_url}/server_info"), "mlflow": (mlflow, f"{mlflow_url}/health")}
    with serving(servers, env, logs):
        yield dagster_url, mlflow_url


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(PAGE_TIMEOUT_MS)
    # Dagster greets a new browser with a community dialog, whenever the page gets to it: dismiss it then
    opened.add_locator_handler(opened.get_by_role("button", name="Skip"), lambda skip: skip.click())
    yield opened
    context.close()


def _screenshot(page, name: str) -> None:
    folder = os.environ.get("SOMMELIER_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


def _open(page, url: str) -> None:
    """Go to a page (Dagster's community dialog is dismissed by the page fixture's handler)."""
    page.goto(url)


def _model(indexed_store) -> str:
    return sorted(m for m in indexed_store.first_run.models if m.startswith("zoo-torch/cnn"))[0]


def _inline_plot(page) -> None:
    """Open the first plot of an event's metadata (Dagster shows long markdown behind "[Show Markdown]") and check
    the image in it (a PNG, or a per-model chart's SVG) is decoded (a broken image has no natural width)."""
    page.get_by_text("[Show Markdown]").first.click()
    image = page.locator("img[src^='data:image/png'], img[src^='data:image/svg+xml']").first
    image.wait_for()
    assert image.evaluate("i => i.complete && i.naturalWidth > 100")


def _all_checks_succeeded(page, checks: int) -> None:
    """The Checks tab lists `checks` checks, each "Succeeded" (none "Failed" or "Execution failed")."""
    page.get_by_text(f"Checks ({checks})").wait_for()
    page.get_by_text("Succeeded", exact=True).nth(checks - 1).wait_for()
    assert page.get_by_text("Failed", exact=False).count() == 0


def test_the_asset_graph_shows_every_stage_group_and_a_groups_stages(page, uis):
    dagster_url, _ = uis
    _open(page, f"{dagster_url}/asset-groups")
    for group in ("ingest", "analysis", "device", "index"):
        page.get_by_text(group, exact=True).first.wait_for()
    _screenshot(page, "dagster-asset-graph")
    page.get_by_text("7 assets").first.click()  # the analysis group's node: it opens to its stages
    for stage in ("model_outputs", "peers", "pair_scores", "pair_bounds"):
        page.get_by_text(stage, exact=True).first.wait_for()


def test_a_models_profile_page_shows_readable_figures_and_the_memory_plot(page, uis):
    dagster_url, _ = uis
    _open(page, f"{dagster_url}/assets/model_profile?view=events")
    page.get_by_text("Memory by batch size", exact=True).first.wait_for()
    assert page.get_by_text("MACs", exact=True).count() >= 1
    assert page.get_by_text("/#/experiments/").count() >= 1  # the MLflow run, as a link
    _screenshot(page, "dagster-model-profile")
    _inline_plot(page)
    _screenshot(page, "dagster-memory-plot")


def test_a_models_parity_check_and_its_bound_checks_passed(page, uis):
    dagster_url, _ = uis
    _open(page, f"{dagster_url}/assets/onnx_model?view=checks")
    page.get_by_text("conversion_parity").first.wait_for()
    _open(page, f"{dagster_url}/assets/pair_bounds?view=checks")
    for check in ("lower_within_upper", "bound_covers_measured"):
        page.get_by_text(check).first.wait_for()
    _all_checks_succeeded(page, 2)
    _screenshot(page, "dagster-pair-bounds-checks")


def test_the_semantic_index_page_shows_the_heat_map_pareto_plots_and_passing_checks(page, uis):
    dagster_url, _ = uis
    _open(page, f"{dagster_url}/assets/semantic_index?view=events")
    page.get_by_text("Equivalence heat map", exact=True).first.wait_for()
    assert page.get_by_text("Pareto: ", exact=False).count() >= 1
    _screenshot(page, "dagster-semantic-index")
    _inline_plot(page)
    _screenshot(page, "dagster-heat-map")
    _open(page, f"{dagster_url}/assets/semantic_index?view=checks")
    for check in ("semantic_index_consistency", "semantic_index_bounds"):
        page.get_by_text(check).first.wait_for()
    _all_checks_succeeded(page, 2)
    _screenshot(page, "dagster-index-checks")


def test_index_runs_show_on_the_overview_timeline_under_their_job_names(page, uis):
    dagster_url, _ = uis
    _open(page, f"{dagster_url}/overview/activity/timeline")
    for job in ("index_models", "build_index"):
        page.get_by_role("link", name=job).first.wait_for()
    assert page.get_by_text("__ephemeral_asset_job__").count() == 0
    _screenshot(page, "dagster-timeline")


def test_mlflow_lists_one_run_per_model_and_the_registry_holds_them_with_their_bounds(page, uis, indexed_store):
    _, mlflow_url = uis
    model = _model(indexed_store)
    page.goto(f"{mlflow_url}/#/experiments/1/runs?workflowType=machine_learning")
    page.get_by_text(model, exact=True).first.wait_for()
    assert page.get_by_text(model, exact=True).count() == 1  # one run per model version
    _screenshot(page, "mlflow-runs")
    page.goto(f"{mlflow_url}/#/models/{quote(model.replace('/', '__'), safe='')}?workflowType=machine_learning")
    for tag in ("accuracy", "peers", "bounds"):
        page.get_by_text(tag, exact=True).first.wait_for()
    _screenshot(page, "mlflow-registered-model")
