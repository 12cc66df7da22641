"""`python -m bench all` at tiny sizes, so the benchmark cannot rot.

Asserts only what holds by design (every figure present and consistent, the injected latency
seen on both paths, parked time not billed); never a performance target.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.cli import main
from bench.report import TARGETS

ROOT = Path(__file__).resolve().parents[2]
PHASES = ("provision", "exec", "pause", "resume", "finish")
STEPS = ("provision", "exec", "pause", "resume", "terminate")
"""The steps that are activity tasks; the ledger writes run inside workflow tasks (local)."""


def ordered(s: dict[str, Any], n: int) -> None:
    assert s["n"] == n
    assert 0 <= s["p50"] <= s["p95"] <= s["p99"] <= s["max"]


@pytest.fixture(scope="module")
def doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "out.json"
    args = ["all", "-n", "3", "-c", "3", "--sequential", "2", "-k", "5", "--park-concurrency", "5"]
    args += ["--loads", "1,2", "--rounds", "2", "--batch", "1"]
    args += ["--small-cache", "2", "--hold", "0.5", "--replay-rounds", "1", "--out", str(out)]
    assert main(args) == 0
    return json.loads(out.read_text())


def test_lifecycle_reports_both_paths_in_both_latency_settings(doc: dict[str, Any]) -> None:
    life = doc["lifecycle"]
    assert life["no_latency"]["latency_injected"] == {}
    assert life["e2b_latency"]["latency_injected"] == {"create": 0.15, "pause": 1.0, "resume": 1.0}
    assert life["sequential"]["concurrency"] == 1
    for run in life.values():
        n = run["n"]
        wf, base = run["workflow"], run["baseline"]
        assert wf["sessions_per_second"] > 0 and base["sessions_per_second"] > 0
        ordered(wf["session_ms"], n)
        ordered(base["session_ms"], n)
        for phase in PHASES:
            ordered(wf["phases_ms"][phase], n)
            ordered(base["phases_ms"][phase], n)
        # Every step of every session is timed.
        # ... and the gate's two notices (waiting, then approved), in the background.
        ordered(wf["overhead_per_step_ms"]["all"], n * (len(STEPS) + 2))
        assert "record_cost" not in wf["overhead_per_step_ms"]  # a local activity now
        for step in STEPS:
            assert wf["overhead_per_step_ms"][step]["n"] == n
        assert wf["overhead_per_step_ms"]["notify_gate"]["n"] == 2 * n
        assert wf["cpu"]["bench_process_cpu_seconds"] > 0
        assert run["ratio_workflow_to_baseline"]["session_p50"] > 0
        assert run["billing"]["sessions"] == n and run["billing"]["missing_cost_events"] == 0
    # The injected latency is really there, on both paths: a resume takes at least its second.
    slow = life["e2b_latency"]
    assert slow["baseline"]["phases_ms"]["resume"]["p50"] >= 1000
    assert slow["workflow"]["phases_ms"]["resume"]["p50"] >= 1000


def test_ours_and_the_floor_run_side_by_side(doc: dict[str, Any]) -> None:
    """The hand-written session runs the same steps as ours, on its own worker, under the same
    client: every figure is there for both, and each ratio is ours over the floor's."""
    floor = doc["floor"]
    assert set(floor["loads"]) == {"c1", "c2"} and floor["rounds"] == 2
    for key, run in floor["loads"].items():
        n = 2 * int(key[1:])  # two rounds of one batch of `load` sessions
        for side in ("ours", "floor"):
            figures = run[side]
            assert figures["sessions"] == n
            ordered(figures["session_ms"], n)
            for step in PHASES:
                ordered(figures["step_ms"][step], n)
            assert figures["worker_cpu_ms_per_session"] > 0
            assert figures["workflow_tasks_per_session"] >= 8
        ratios = run["ours_to_floor"]
        expected = run["ours"]["sessions_per_second"] / run["floor"]["sessions_per_second"]
        assert ratios["sessions_per_second"] == pytest.approx(expected, rel=1e-3)
    for side in ("ours", "floor"):
        assert floor["parked"][side]["k"] == 5
        assert floor["parked"][side]["rss_kib"]["parked"] > 0
    # The ratio targets name their load; a load not run is not judged.
    judged = {t["name"]: t for t in doc["targets"]}
    assert judged["sessions/s ours / floor, 1 at once"]["met"] in (True, False)
    assert judged["sessions/s ours / floor, 6 at once"]["met"] is None


def test_parked_sessions_bill_running_time_only(doc: dict[str, Any]) -> None:
    for name, cache in (("default_cache", 2000), ("small_cache", 2)):
        run = doc["parked"][name]
        assert run["k"] == 5 and run["max_cached_workflows"] == cache
        assert run["rss_kib"]["idle"] > 0 and run["rss_kib"]["parked"] > 0
        ordered(run["resume_after_approval_ms"], 5)
        assert run["approve_batch_seconds"] > 0
        bill = run["billing"]
        assert bill["sessions"] == 5 and bill["missing_cost_events"] == 0
        # Parked for at least the hold: the emulator saw it paused, the ledger billed it not.
        assert bill["observed_paused_seconds"] >= 5 * 0.5
        assert abs(bill["ledger_paused_seconds"] - bill["observed_paused_seconds"]) < 5 * 0.5
        assert bill["billed_running_seconds"] < bill["naive_running_seconds"]
    idle = doc["idle_cost"]
    assert idle["sessions"] == 10 and 0 < idle["billed_to_naive_ratio"] < 1
    assert idle["max_abs_error_seconds"] < 1.0


def test_replay_and_the_report_around_the_figures(doc: dict[str, Any]) -> None:
    replay = doc["replay"]
    assert replay["failures"] == 0 and replay["replayed"] == replay["histories"] >= 12
    assert replay["histories_per_second"] > 0
    machine = doc["machine"]
    assert machine["cpu_count"] >= 1 and machine["python"]
    assert {"temporalio", "e2b"} <= set(machine["versions"])
    assert len(doc["targets"]) == len(TARGETS)
    unjudged = {t["name"] for t in doc["targets"] if t["met"] is None}
    assert unjudged == {
        f"{what} ours / floor, {c} at once"
        for c in (6, 12)
        for what in ("sessions/s", "worker CPU per session")
    }
    assert all(t["value"] is not None for t in doc["targets"] if t["name"] not in unjudged)
    assert set(doc["samples"]["lifecycle"]) == {"sequential", "no_latency", "e2b_latency"}
    assert doc["command"].startswith("python -m bench all")


def test_bad_arguments_are_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["all", "-n", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --sessions must be at least 1") and "Traceback" not in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--sessions", "0"], "error: --sessions must be at least 1"),
        (["--hold", "-1"], "error: --hold must not be negative"),
        (["nope"], "error: Invalid value for '[SCENARIO]': 'nope' is not one of 'all'"),
    ],
)
def test_python_m_bench_refuses_bad_arguments_in_one_line(args: list[str], expected: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), result.stderr


def test_python_m_bench_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: python -m bench [OPTIONS] [SCENARIO]")


def test_plot_without_matplotlib_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # matplotlib is an optional extra (`.[bench]`): stand in for a machine without it.
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    assert main(["replay", "--plot"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --plot needs matplotlib: pip install -e '.[bench]'\n"
