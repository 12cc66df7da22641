"""The report: targets checked against the figures, a readable table, and the optional plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.profile import profile_table
from bench.stack import BenchError


def _get(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


# (name, path in the document, comparison, limit, unit)
FLOOR_LOADS = (1, 6, 12)
"""The loads the issue sets the ratio targets at (`--loads`' default); others are reported."""

TARGETS = [
    *(
        target
        for c in FLOOR_LOADS
        for target in (
            (f"sessions/s ours / floor, {c} at once",
             f"floor.loads.c{c}.ours_to_floor.sessions_per_second", ">=", 0.97, "x"),
            (f"worker CPU per session ours / floor, {c} at once",
             f"floor.loads.c{c}.ours_to_floor.worker_cpu_ms_per_session", "<=", 1.10, "x"),
        )
    ),
    ("RSS per cached parked session ours / floor", "floor.parked.ours_to_floor",
     "<=", 1.2, "x"),
    ("RSS per cached parked session (beside the floor)",
     "floor.parked.ours.rss_kib_per_cached_parked_session", "<=", 100, "KiB"),
    ("worker RSS per cached parked session",
     "parked.default_cache.rss_growth_kib_per_cached_session", "<=", 100, "KiB"),
    ("parked sessions on one machine", "parked.default_cache.k", ">=", 10_000, ""),
    ("billed vs observed running, worst session", "idle_cost.max_abs_error_seconds",
     "<=", 0.2, "s"),
    ("parked time billed, worst session (tolerance)",
     "idle_cost.parked_seconds_billed_worst_session", "<=", 0.2, "s"),
]  # fmt: skip


def check_targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name, path, op, limit, unit in TARGETS:
        value = _get(doc, path)
        met = None if value is None else (value <= limit if op == "<=" else value >= limit)
        out.append(
            {"target": f"{op} {limit}{unit}", "name": name, "value": value, "met": met,
             "figure": path}
        )  # fmt: skip
    return out


def _pct(s: dict[str, Any] | None) -> str:
    if not s or s.get("p50") is None:
        return "-"
    return f"{s['p50']:.1f} / {s['p95']:.1f} / {s['p99']:.1f}"


def _lifecycle_table(life: dict[str, Any]) -> list[str]:
    lines = []
    for name, r in life.items():
        latency = ", ".join(f"{k} {v:g}s" for k, v in r["latency_injected"].items()) or "none"
        lines += [
            f"LIFECYCLE {name}: N={r['n']} C={r['concurrency']}, injected latency {latency}",
            f"  {'(ms: p50 / p95 / p99)':<22}{'workflow':>26}{'baseline (e2b SDK)':>26}",
        ]

        def row(label: str, wf: str, base: str = "-", r: dict[str, Any] = r) -> None:
            lines.append(f"  {label:<22}{_fmt(r, wf):>26}{_fmt(r, base):>26}")  # noqa: B023

        row("sessions / s", "workflow.sessions_per_second", "baseline.sessions_per_second")
        row("session", "workflow.session_ms", "baseline.session_ms")
        for phase in ("provision", "exec", "pause", "resume", "finish", "client_reaction"):
            row(f"  {phase}", f"workflow.phases_ms.{phase}", f"baseline.phases_ms.{phase}")
        row("overhead / step", "workflow.overhead_per_step_ms.all")
        row("  without dispatch", "workflow.overhead_per_step_without_dispatch_ms")
        # The ledger writes are local activities (inside workflow tasks): no step of their own.
        for step in ("provision", "exec", "pause", "notify_gate", "resume", "terminate"):
            row(f"  {step}", f"workflow.overhead_per_step_ms.{step}")
        row("  wf task dispatch", "workflow.overhead_split_ms.workflow_task_dispatch")
        row("  wf task processing", "workflow.overhead_split_ms.workflow_task_processing")
        row("  activity worker", "workflow.overhead_split_ms.activity_worker")
        row("workflow task wait", "workflow.workflow_task_ms.schedule_to_start")
        row("workflow task work", "workflow.workflow_task_ms.start_to_complete")
        row("CPU ms / session", "workflow.cpu.bench_process_cpu_ms_per_session",
            "baseline.cpu.bench_process_cpu_ms_per_session")  # fmt: skip
        row("  dev server", "workflow.cpu.dev_server_cpu_ms_per_session")
        ratio = _fmt(r, "ratio_workflow_to_baseline.session_p50")
        lines += [f"  {'workflow / baseline':<22}{ratio + 'x (session p50)':>26}", ""]
    return lines[:-1]


def _fmt(doc: dict[str, Any], path: str) -> str:
    value = _get(doc, path) if path != "-" else None
    if value is None:
        return "-"
    if isinstance(value, dict):
        return _pct(value)
    return f"{value:g}"


def _parked_table(parked: dict[str, Any]) -> list[str]:
    lines = ["PARKED"]
    for name, r in parked.items():
        rss = r["rss_kib"]
        lines.append(
            f"  {name:<14} K={r['k']} cache={r['max_cached_workflows']}: parked in "
            f"{r['park_seconds']}s ({r['parked_per_second']}/s); RSS idle {rss['idle']} KiB, "
            f"parked {rss['parked']} KiB -> {r['rss_growth_kib_per_parked_session']} KiB per "
            f"parked, {r['rss_growth_kib_per_cached_session']} KiB per cached session"
        )
        lines.append(
            f"  {'':<14} resume after approval p50/p95/p99 "
            f"{_pct(r['resume_after_approval_ms'])} ms; batch of {r['k']} approvals "
            f"{r['approve_batch_seconds']}s"
        )
        steady = r.get("steady_approvals", {})
        if steady.get("sessions"):
            lines.append(
                f"  {'':<14} {steady['sessions']} approved at {steady['rate_per_second']:g}/s: "
                f"resume p50/p95/p99 {_pct(steady['resume_after_approval_ms'])} ms; the burst "
                f"of the other {r['k'] - steady['sessions']}: "
                f"{_pct(r['burst_resume_after_approval_ms'])} ms"
            )
        server = r.get("dev_server_rss_kib") or {}
        if server.get("idle") is not None and server.get("parked") is not None:
            lines.append(
                f"  {'':<14} dev server RSS idle {server['idle']} KiB, parked {server['parked']} "
                f"KiB ({(server['parked'] - server['idle']) / r['k']:.1f} KiB per parked session)"
            )
        for phase, cpu in r.get("cpu", {}).items():
            lines.append(
                f"  {'':<14} CPU ms/session while {phase.replace('_', ' ')}: worker "
                f"{cpu.get('worker_process_cpu_ms_per_session')}, dev server "
                f"{cpu.get('dev_server_cpu_ms_per_session')}, bench process (client, emulator) "
                f"{cpu.get('bench_process_cpu_ms_per_session')} over {cpu['wall_seconds']}s"
            )
    return lines


_STEPS = ("provision", "exec", "pause", "resume", "finish")


def _floor_rows(floor: dict[str, Any]) -> list[list[str]]:
    """One row per load: ours / floor (ratio) for each figure."""
    rows = []
    for run in floor["loads"].values():
        o, f, q = run["ours"], run["floor"], run["ours_to_floor"]
        steps = " / ".join(f"{q['step_p50'][s]:.2f}" for s in _STEPS)
        rows.append(
            [
                str(run["concurrency"]),
                f"{o['sessions_per_second']:g} / {f['sessions_per_second']:g} "
                f"({q['sessions_per_second']:.2f}x)",
                f"{o['worker_cpu_ms_per_session']:g} / {f['worker_cpu_ms_per_session']:g} "
                f"({q['worker_cpu_ms_per_session']:.2f}x)",
                f"{o['dev_server_cpu_ms_per_session']:g} / {f['dev_server_cpu_ms_per_session']:g}",
                f"{o['workflow_tasks_per_session']:.1f} / {f['workflow_tasks_per_session']:.1f}",
                f"{o['session_ms']['p50']:g} / {f['session_ms']['p50']:g} "
                f"({q['session_p50']:.2f}x)",
                steps,
            ]
        )
    return rows


_FLOOR_HEADER = [
    "at once",
    "sessions/s ours / floor",
    "worker CPU ms/session",
    "dev server CPU ms/session",
    "workflow tasks/session",
    "session p50 ms",
    "step p50 ours/floor: " + " / ".join(_STEPS),
]


def _floor_parked(floor: dict[str, Any]) -> str:
    p = floor["parked"]
    o, f = p["ours"], p["floor"]
    return (
        f"{o['k']} parked sessions, worker RSS growth per cached parked session: ours "
        f"{o['rss_kib_per_cached_parked_session']:g} KiB, floor "
        f"{f['rss_kib_per_cached_parked_session']:g} KiB ({p['ours_to_floor']:g}x)"
    )


def render_table(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [
        f"machine: {m['cpu_count']} x {m['cpu_model']}, Python {m['python']}, "
        f"temporalio {m['versions'].get('temporalio')}, e2b {m['versions'].get('e2b')}, "
        f"load {m['load_average'][0]:.2f}",
        "",
    ]
    if "floor" in doc:
        lines += [
            "OURS / FLOOR  the same session written by hand (bench/floor_session.py), both "
            f"worker processes, alternating batches ({doc['floor']['rounds']} rounds)"
        ]
        for row in [_FLOOR_HEADER, *_floor_rows(doc["floor"])]:
            lines.append("  " + " | ".join(row))
        lines += ["  " + _floor_parked(doc["floor"]), ""]
        if "profile" in doc["floor"]:
            prof = doc["floor"]["profile"]
            lines.append(
                f"WORKER CPU ms/session by part, {prof['at_once']} at once (py-spy, GIL held): "
                "part | ours | floor | ours - floor"
            )
            lines += ["  " + " | ".join(row) for row in profile_table(prof)] + [""]
    if "lifecycle" in doc:
        lines += _lifecycle_table(doc["lifecycle"]) + [""]
    if "parked" in doc:
        lines += _parked_table(doc["parked"]) + [""]
    if "idle_cost" in doc:
        c = doc["idle_cost"]
        lines += [
            f"IDLE COST  {c['sessions']} parked sessions: "
            f"billed running {c['billed_running_seconds']}s"
            f" vs keep-running {c['naive_running_seconds']}s -> ratio {c['billed_to_naive_ratio']};"
            f" observed paused {c['observed_paused_seconds']}s, share of it billed "
            f"{c['parked_share_billed']}; billed-observed per session p50/p95/p99 "
            f"{_pct(c['error_per_session_ms'])} ms (worst {c['max_abs_error_seconds']}s)",
            "",
        ]
    if "replay" in doc:
        r = doc["replay"]
        lines += [
            f"REPLAY  {r['replayed']} histories in {r['seconds']}s: "
            f"{r['histories_per_second']} histories/s, {r['events_per_second']} events/s "
            f"({r['failures']} failures)",
            "",
        ]
    lines.append("TARGETS")
    for t in doc.get("targets", []):
        mark = {True: "met ", False: "MISS", None: "n/a "}[t["met"]]
        value = "-" if t["value"] is None else f"{t['value']:g}"
        lines.append(f"  [{mark}] {t['name']:<52} {value:>10}   target {t['target']}")
    return "\n".join(lines)


def _cdf(ax: Any, values: list[float], label: str) -> None:
    ordered = sorted(values)
    if ordered:
        ax.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=label)


def plot(doc: dict[str, Any], path: Path) -> None:
    """A PNG of the latency distributions (needs the `bench` extra: matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BenchError("--plot needs matplotlib: pip install -e '.[bench]'") from None
    samples = doc.get("samples", {})
    life = samples.get("lifecycle", {})
    panels = [(k, v) for k, v in life.items()]
    parked = samples.get("parked", {})
    count = len(panels) + (1 if panels else 0) + (1 if parked else 0)
    if count == 0:
        raise BenchError("nothing to plot: run the lifecycle or parked benchmark")
    fig, axes = plt.subplots(count, 1, figsize=(10, 3.6 * count), squeeze=False)
    ax_iter = iter(axes[:, 0])
    phases = ["provision", "exec", "pause", "resume", "finish"]
    for name, s in panels:
        ax = next(ax_iter)
        data, labels = [], []
        for p in phases:
            data += [s["phase_ms"].get(p, []), s["baseline_phase_ms"].get(p, [])]
            labels += [f"{p}\nworkflow", f"{p}\nbaseline"]
        ax.boxplot(data, showfliers=True)
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
        ax.set_ylabel("ms")
        ax.set_yscale("log")
        ax.set_title(f"lifecycle phases ({name})")
    if panels:
        ax = next(ax_iter)
        for name, s in panels:
            _cdf(ax, s["overhead_ms"], name)
        ax.axvline(10, color="k", linestyle="--", linewidth=1, label="target p50 10 ms")
        ax.set_xscale("log")
        ax.set_xlabel("orchestration overhead per step (ms)")
        ax.set_ylabel("fraction of steps")
        ax.set_title("overhead per step: workflow step time minus the provider's own time")
        ax.legend()
    if parked:
        ax = next(ax_iter)
        for name, values in parked.items():
            _cdf(ax, values, name)
        ax.set_xlabel("resume after approval (ms)")
        ax.set_ylabel("fraction of sessions")
        ax.set_title("parked sessions: approval -> sandbox running again")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_markdown(doc: dict[str, Any]) -> str:
    """The figures as Markdown tables, for docs/performance.md (written by `--save`)."""
    m = doc["machine"]
    out = [
        f"`{doc.get('command', 'python -m bench')}` on {doc['started_at'][:16]} UTC: "
        f"{m['cpu_count']} x {m['cpu_model']}, {m.get('memory_mib')} MiB, Python {m['python']}, "
        f"temporalio {m['versions'].get('temporalio')}, e2b {m['versions'].get('e2b')}, "
        f"{m.get('temporal_cli') or 'temporal CLI'}; load average at start "
        f"{m['load_average'][0]:.2f}.",
    ]
    if any(t["met"] is not None for t in doc.get("targets", [])):
        out += ["", "| target | measured | |", "|---|---|---|"]
    for t in doc.get("targets", []):
        if t["met"] is None:
            continue
        mark = "met" if t["met"] else "**missed**"
        value = "-" if t["value"] is None else f"{t['value']:g}"
        out.append(f"| {t['name']} {t['target']} | {value} | {mark} |")
    if "floor" in doc:
        out += [
            "",
            "Ours against the floor (the same session written by hand, "
            f"`bench/floor_session.py`; alternating batches, {doc['floor']['rounds']} rounds):",
            "",
            "| " + " | ".join(_FLOOR_HEADER) + " |",
            "|" + "---|" * len(_FLOOR_HEADER),
            *("| " + " | ".join(row) + " |" for row in _floor_rows(doc["floor"])),
            "",
            _floor_parked(doc["floor"]) + ".",
        ]
        if "profile" in doc["floor"]:
            prof = doc["floor"]["profile"]
            out += [
                "",
                f"Worker CPU per session by part at {prof['at_once']} at once (py-spy samples "
                "while the GIL is held, scaled to the measured CPU per session):",
                "",
                "| part | ours ms | floor ms | ours − floor |",
                "|---|---|---|---|",
                *("| " + " | ".join(row) + " |" for row in profile_table(prof)),
            ]
    if "lifecycle" in doc:
        out += [
            "",
            "| lifecycle run | N / C | sessions/s workflow / baseline | session p50 ms "
            "workflow / baseline | ratio | overhead/step p50 / p95 / p99 ms | CPU ms/session: "
            "dev server, bench process (baseline) |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in doc["lifecycle"].items():
            wf, base = r["workflow"], r["baseline"]
            out.append(
                f"| {name} | {r['n']} / {r['concurrency']} | {wf['sessions_per_second']:g} / "
                f"{base['sessions_per_second']:g} | {wf['session_ms']['p50']:g} / "
                f"{base['session_ms']['p50']:g} | "
                f"{r['ratio_workflow_to_baseline']['session_p50']:g} | "
                f"{_pct(wf['overhead_per_step_ms']['all'])} | "
                f"{wf['cpu']['dev_server_cpu_ms_per_session']}, "
                f"{wf['cpu']['bench_process_cpu_ms_per_session']} "
                f"({base['cpu']['bench_process_cpu_ms_per_session']}) |"
            )
    if "parked" in doc:
        out += [
            "",
            "| parked | K | parked/s | worker RSS idle → parked KiB | KiB per parked / "
            "per cached session | resume after approval p50 / p99 ms | approve batch s |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in doc["parked"].items():
            res = r["resume_after_approval_ms"]
            out.append(
                f"| {name} ({r['max_cached_workflows']}) | {r['k']} | {r['parked_per_second']:g} "
                f"| {r['rss_kib']['idle']} → {r['rss_kib']['parked']} | "
                f"{r['rss_growth_kib_per_parked_session']:g} / "
                f"{r['rss_growth_kib_per_cached_session']:g} | {res['p50']:g} / {res['p99']:g} "
                f"| {r['approve_batch_seconds']:g} |"
            )
    if "idle_cost" in doc:
        c = doc["idle_cost"]
        out += [
            "",
            f"Idle cost ({c['sessions']} parked sessions): billed running "
            f"{c['billed_running_seconds']:g} s against {c['naive_running_seconds']:g} s kept "
            f"running (ratio {c['billed_to_naive_ratio']:g}); share of the observed parked time "
            f"billed {c['parked_share_billed']:g}; billed − observed per session p50 / p99 "
            f"{c['error_per_session_ms']['p50']:g} / {c['error_per_session_ms']['p99']:g} ms, "
            f"worst {c['max_abs_error_seconds']:g} s.",
        ]
    if "replay" in doc:
        r = doc["replay"]
        out += [
            "",
            f"Replay: {r['histories_per_second']:g} histories/s ({r['events_per_second']:g} "
            f"events/s, {r['replayed']} replays of {r['histories']} stored histories).",
        ]
    return "\n".join(out) + "\n"
