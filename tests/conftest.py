"""Shared fixtures (small real event files made once per session by the real simulation) and
the guards that keep a stuck test from costing the whole CI budget."""

from __future__ import annotations

import faulthandler
import json
import os
import time
from pathlib import Path

import pytest

from dampeml.detector.simulation import SimulationConfig, simulate
from dampeml.io.root_writer import write_event_file

# A test past its pytest-timeout normally fails by SIGALRM. A driver waiting in Ray Train's fit
# (ray.get on the controller) did not take that signal in two runs here on an overloaded machine,
# and a hang inside C code may never return to Python to take it. faulthandler's own thread then
# dumps every thread's stack and ends the run this long after the test's timeout, not at CI's limit.
# (pytest's own faulthandler_timeout does the same with one limit for all tests; ours range
# from 60 to 1200 s, so the hook below takes each test's own.)
HARD_STOP_GRACE_S = 120
_STDERR_FD: int | None = None


def pytest_configure(config):
    global _STDERR_FD
    _STDERR_FD = os.dup(2)  # the real stderr: during a test, fd 2 is pytest's capture file


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    marker = item.get_closest_marker("timeout")
    limit = marker.args[0] if marker and marker.args else item.config.getini("timeout")
    if limit and float(limit) > 0 and _STDERR_FD is not None:
        faulthandler.dump_traceback_later(float(limit) + HARD_STOP_GRACE_S, exit=True, file=_STDERR_FD)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


#: The slow tier (`pytest -m slow`; `-m "not slow"` is the fast one): tests marked so, and every
#: test whose own timeout allows more than this (Ray clusters, training, tuning, reprocessing,
#: the main job), so that a new long test lands in the slow tier by the timeout it needs.
SLOW_TIMEOUT_S = 120


def pytest_collection_modifyitems(config, items):
    for item in items:
        marker = item.get_closest_marker("timeout")
        if marker and marker.args and float(marker.args[0]) > SLOW_TIMEOUT_S:
            item.add_marker(pytest.mark.slow)


def in_ci() -> bool:
    """True under CI (the CI variable set, as every CI service and .ci/run set it)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _fail_skip_in_ci(report) -> None:
    """In CI a skip is a failure: the suite skips only where its environment is broken (tf_keras
    missing, PostgreSQL not installed), and CI must not turn green without those tests."""
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI={os.environ['CI']!r}, where nothing may skip: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_skip_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield  # a module-level pytest.importorskip skips the module here, at collection
    _fail_skip_in_ci(outcome.get_result())


_TIER_SECONDS = {"fast": [0, 0.0], "slow": [0, 0.0]}  # tier: [tests, seconds]


def pytest_terminal_summary(terminalreporter):
    """Each tier's test count and time (CI prints it: the fast tier must stay within 5 minutes)."""
    parts = [f"{tier} tier {n} tests in {sec / 60:.1f} min" for tier, (n, sec) in _TIER_SECONDS.items() if n]
    if parts:
        terminalreporter.write_line("time per tier: " + "; ".join(parts))


def pytest_runtest_logreport(report):
    """Print a failure when it happens, not only in the final summary that a run killed later
    (by the guard above, or by CI's limit) never reaches; add the test's time to its tier."""
    tier = _TIER_SECONDS["slow" if "slow" in report.keywords else "fast"]
    tier[0] += report.when == "call"
    tier[1] += report.duration
    if report.failed:
        tail = "\n".join(report.longreprtext.splitlines()[-25:])
        os.write(_STDERR_FD or 2, f"\n--- {report.nodeid} failed ({report.when}):\n{tail}\n".encode())


@pytest.fixture
def ray_idle():
    """Each test starts on an idle Ray: :func:`wait_for_idle_ray` before it."""
    wait_for_idle_ray()


def wait_for_idle_ray() -> None:
    """Wait (up to 120 s) until the running local Ray has every logical CPU free again.

    A Ray Train run returns before its placement group is gone. On a busy 2-core machine the next
    run in the same Ray could start with its workers on the free CPUs and none left for its data
    feed, and wait forever (a known Ray Data + Train pitfall). Fails, naming what still holds CPUs.
    """
    import ray

    deadline = time.monotonic() + 120
    while ray.is_initialized():
        total = ray.cluster_resources().get("CPU", 0.0)
        free = ray.available_resources().get("CPU", 0.0)
        if free >= total:
            break
        if time.monotonic() > deadline:
            groups = [
                f"{pg.get('name') or pg_id} ({pg['state']})"
                for pg_id, pg in ray.util.placement_group_table().items()
                if pg["state"] != "REMOVED"
            ]
            pytest.fail(f"Ray still holds {total - free:g} of {total:g} CPUs after 120 s; groups: {groups}")
        time.sleep(0.5)


def registered_epoch(run_dir: Path) -> int:
    """The epoch of the newest checkpoint Ray Train's controller has registered: the one it restores
    after a worker dies. It records it in checkpoint_manager_snapshot.json (after the files are on
    disk, which alone do not make a checkpoint restorable); 0 before the first."""
    try:
        snapshot = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
    except (OSError, ValueError):  # not written yet, or caught mid-write
        return 0
    return int(((snapshot.get("latest_checkpoint_result") or {}).get("metrics") or {}).get("epoch", 0))


def dropping(source):
    """A source of hits (e.g. `detector.stk.backsplash`) that draws its hits, so the random stream and
    every other source stay as they were, and returns none: the same events without that source."""

    def dropped(*args, **kwargs):
        hits = source(*args, **kwargs)
        return hits.select(hits.event < 0)

    return dropped


def simulated(particle: str, n: int, e_min: float, e_max: float, seed: int, **options) -> dict:
    """The branches of `n` simulated events; `options` are the rest of `SimulationConfig` (mode, trigger,
    version...). One helper, so every test module draws its events the same way."""
    return simulate(SimulationConfig(particle, n, e_min, e_max, seed=seed, **options))[0]


def make_file(
    path: Path,
    particle: str,
    n: int,
    e_min: float,
    e_max: float,
    mode: str = "mc",
    seed: int = 1,
    trigger: bool = True,
) -> Path:
    cfg = SimulationConfig(particle, n, e_min, e_max, mode=mode, seed=seed, trigger=trigger)
    branches, metadata = simulate(cfg)
    return write_event_file(path, branches, metadata)


@pytest.fixture(scope="session")
def sample_files(tmp_path_factory) -> dict[str, Path]:
    """Small MC files per particle (100 GeV - 100 TeV) and one flight-like proton file."""
    d = tmp_path_factory.mktemp("events")
    return {
        "proton": make_file(d / "proton.root", "proton", 600, 100, 1e5, seed=11),
        "helium": make_file(d / "helium.root", "helium", 600, 100, 1e5, seed=12),
        "electron": make_file(d / "electron.root", "electron", 400, 100, 1e4, seed=13),
        "flight": make_file(d / "flight.root", "proton", 300, 100, 1e5, mode="flight", seed=14),
    }


@pytest.fixture(scope="session")
def registered_models(tmp_path_factory) -> str:
    """A private MLflow store (sqlite + artifacts in a temp dir) holding every catalog network.

    Small presets, untrained (seeded) weights (tagged untrained=true): for plumbing, accounting and
    timing tests, never physics. Each network and the three `bgo-direction-*-aligned` models
    is registered once, as version 1, under the aliases `production` and `staging`. Returns the
    tracking URI; point MLFLOW_TRACKING_URI at it (monkeypatch.setenv) in the test that uses it.
    """
    import os

    from dampeml.registry.bootstrap import ensure_experiment, register_catalog

    d = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{d / 'mlflow.db'}"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        ensure_experiment(d / "artifacts")
        # seeded: the same untrained weights in every session, so that a test's outcome (e.g. how
        # many events sit on a pixel edge in the ONNX chain comparison) does not vary between runs
        from dampeml.models.common import tf_keras

        tf_keras().utils.set_random_seed(19)
        register_catalog(aliases=("production", "staging"), preset="small")
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    return uri


@pytest.fixture(scope="session")
def trained_bgo_mid():
    """The small bgo-direction-mid trained on MC p/He once per session: (model, info)."""
    from tests.trained_bgo import train_bgo_mid

    return train_bgo_mid()
