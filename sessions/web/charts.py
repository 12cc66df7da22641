"""The inbox's pictures: a session's sandbox timeline and costs per day, as inline SVG.

Pure functions of the data, no I/O and no clock (`now` is given). The page's
Content-Security-Policy allows no inline script and no `style=` attribute, so every colour and
size is a presentation attribute (`fill="#..."`), and the SVG scales by its viewBox. Every text
that comes from users (org and issue ids, gate names) is escaped twice over: control and bidi
characters shown as escapes (`common.text.escape`, which also keeps the XML well-formed), then
`markupsafe.escape` for the markup. Each picture is an `<svg role="img">` with an `aria-label`
and a `<title>`, and each bar or stretch carries its own `<title>` (the browser's tooltip).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Protocol

from markupsafe import Markup

from common.text import escape as terminal_escape
from common.units import format_span
from ledger.models import DailyCost
from sessions.audit import csv_cell

__all__ = [
    "OTHER",
    "PALETTE",
    "costs_csv",
    "costs_svg",
    "key_totals",
    "timeline_svg",
]

RUNNING_FILL = "#2e7d32"
PAUSED_FILL = "#9e9e9e"
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442")
"""Okabe and Ito's colour-blind-safe colours (black left out): the top keys of a cost chart."""
OTHER_FILL = "#bdbdbd"
OTHER = "other"
"""The stack of every key past the palette's, summed."""
NO_ISSUE = "(no issue)"
GATE_FILLS = {"waiting": "#e69f00", "approved": "#0072b2", "rejected": "#d55e00"}
"""A gate's marker by its state; any other (timed out) is `GATE_OTHER_FILL`."""
GATE_OTHER_FILL = "#cc79a7"
TEXT_FILL = "#424242"
GRID_STROKE = "#e0e0e0"
FONT = 'font-family="system-ui, sans-serif" font-size="11"'

_NOT_XML = re.compile("[\ufffe\uffff]")
"""Characters XML refuses even escaped, which `common.text.UNSAFE` lets through."""


class Stretch(Protocol):
    """A stretch of a sandbox's life: `ledger.Segment` (in `SessionStatus.segments`)."""

    @property
    def state(self) -> str: ...

    @property
    def start(self) -> datetime: ...

    @property
    def end(self) -> datetime | None: ...


class GateMark(Protocol):
    """What the timeline shows of a gate: `workflows.Gate`."""

    @property
    def gate(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def requested_at(self) -> datetime: ...

    @property
    def decided_at(self) -> datetime | None: ...


# ---------------------------------------------------------------- timeline

_TL_WIDTH = 600.0
_TL_LEFT = 8.0
_TL_RIGHT = 592.0
_TL_BAR_TOP = 22.0
_TL_BAR_HEIGHT = 24.0
_TL_AXIS = 54.0
_TL_HEIGHT = 84.0


def timeline_svg(
    segments: Sequence[Stretch], *, now: datetime, gates: Sequence[GateMark] = ()
) -> Markup:
    """A session's running (green) and paused (grey, lighter) stretches as one horizontal bar
    from its first start to its last end (an open stretch: to `now`), with a tick where each gate
    was requested (a line on to its decision) and the start and end times under it (UTC)."""
    now = _utc(now)
    stretches = [
        (s.state, _utc(s.start), _utc(s.end) if s.end is not None else None)
        for s in segments
        if s.state in ("running", "paused")
    ]
    if not stretches:
        label = "Sandbox timeline: no sandbox time yet"
        body = Markup(
            '<text x="300" y="24" text-anchor="middle" fill="{}" {}>no sandbox time yet</text>'
        ).format(TEXT_FILL, Markup(FONT))
        return _svg(_TL_WIDTH, 40, label, body)

    first = min(start for _, start, _ in stretches)
    first = min([first, *(_utc(gate.requested_at) for gate in gates)])
    last = max(max(end or now, start) for _, start, end in stretches)
    for gate in gates:
        last = max(last, _utc(gate.decided_at) if gate.decided_at is not None else now)
    span = max((last - first).total_seconds(), 1.0)

    def x_of(at: datetime) -> float:
        share = min(max((at - first).total_seconds() / span, 0.0), 1.0)
        return _TL_LEFT + share * (_TL_RIGHT - _TL_LEFT)

    parts: list[Markup] = [
        Markup('<rect x="{}" y="{}" width="{}" height="{}" fill="#f5f5f5"/>').format(
            _n(_TL_LEFT), _n(_TL_BAR_TOP), _n(_TL_RIGHT - _TL_LEFT), _n(_TL_BAR_HEIGHT)
        )
    ]
    seconds = {"running": 0.0, "paused": 0.0}
    for state, start, end in stretches:
        stop = max(end or now, start)
        length = (stop - start).total_seconds()
        seconds[state] += length
        x0, x1 = x_of(start), x_of(stop)
        tip = f"{state} {format_span(length)}, {_range(start, stop)}"
        if end is None:
            tip += " (still " + state + ")"
        fill = (
            Markup('fill="{}"').format(RUNNING_FILL)
            if state == "running"
            else Markup('fill="{}" fill-opacity="0.55" stroke="{}" stroke-width="0.5"').format(
                PAUSED_FILL, PAUSED_FILL
            )
        )
        parts.append(
            Markup(
                '<rect class="{}" x="{}" y="{}" width="{}" height="{}" {}><title>{}</title></rect>'
            ).format(
                state,
                _n(x0),
                _n(_TL_BAR_TOP),
                _n(max(x1 - x0, 0.5)),
                _n(_TL_BAR_HEIGHT),
                fill,
                tip,
            )
        )

    for gate in gates:
        parts.append(_gate_mark(gate, x_of, now))

    parts.append(
        Markup('<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}"/>').format(
            _n(_TL_LEFT), _n(_TL_AXIS), _n(_TL_RIGHT), _n(_TL_AXIS), TEXT_FILL
        )
    )
    same_day = first.date() == last.date()
    parts.append(
        Markup('<text x="{}" y="{}" fill="{}" {}>{}</text>').format(
            _n(_TL_LEFT), _n(_TL_AXIS + 16), TEXT_FILL, Markup(FONT), _stamp(first, with_day=True)
        )
    )
    parts.append(
        Markup('<text x="{}" y="{}" text-anchor="end" fill="{}" {}>{}</text>').format(
            _n(_TL_RIGHT),
            _n(_TL_AXIS + 16),
            TEXT_FILL,
            Markup(FONT),
            _stamp(last, with_day=not same_day),
        )
    )
    parts.append(_timeline_legend())
    label = (
        f"Sandbox timeline: {format_span(seconds['running'])} running, "
        f"{format_span(seconds['paused'])} paused, {_plural(len(gates), 'gate')}, "
        f"{_range(first, last)}"
    )
    return _svg(_TL_WIDTH, _TL_HEIGHT, label, Markup("").join(parts))


def _gate_mark(gate: GateMark, x_of: _XOf, now: datetime) -> Markup:
    requested = _utc(gate.requested_at)
    decided = _utc(gate.decided_at) if gate.decided_at is not None else None
    fill = GATE_FILLS.get(gate.state, GATE_OTHER_FILL)
    waited = ((decided or now) - requested).total_seconds()
    state = gate.state.replace("_", " ")
    if decided is None:
        tip = f"gate {_text(gate.gate)}: {state} for {format_span(waited)}"
    else:
        tip = f"gate {_text(gate.gate)}: {state} after {format_span(waited)}"
    tip += f", requested {_stamp(requested, with_day=False)}"
    x0 = x_of(requested)
    x1 = x_of(decided or now)
    top = _TL_BAR_TOP - 12
    return Markup(
        '<g class="gate"><title>{}</title>'
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="2"/>'
        '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="2"/>'
        '<circle cx="{}" cy="{}" r="3.5" fill="{}"/></g>'
    ).format(
        tip,
        _n(x0),
        _n(top),
        _n(x0),
        _n(_TL_BAR_TOP + _TL_BAR_HEIGHT + 2),
        fill,
        _n(x0),
        _n(top),
        _n(max(x1, x0)),
        _n(top),
        fill,
        _n(x0),
        _n(top),
        fill,
    )


def _timeline_legend() -> Markup:
    y = _TL_AXIS + 16
    return Markup(
        '<g class="legend">'
        '<rect x="230" y="{}" width="10" height="10" fill="{}"/>'
        '<text x="244" y="{}" fill="{}" {}>running</text>'
        '<rect x="300" y="{}" width="10" height="10" fill="{}" fill-opacity="0.55"/>'
        '<text x="314" y="{}" fill="{}" {}>paused</text></g>'
    ).format(
        _n(y - 9),
        RUNNING_FILL,
        _n(y),
        TEXT_FILL,
        Markup(FONT),
        _n(y - 9),
        PAUSED_FILL,
        _n(y),
        TEXT_FILL,
        Markup(FONT),
    )


class _XOf(Protocol):
    def __call__(self, at: datetime, /) -> float: ...


# ---------------------------------------------------------------- costs per day

_C_WIDTH = 720.0
_C_LEFT = 64.0
_C_RIGHT = 708.0
_C_TOP = 30.0
_C_PLOT_HEIGHT = 200.0
_C_LEGEND_COLUMNS = 4
_C_LEGEND_ROW = 18.0
_C_MAX_X_LABELS = 10
_C_KEY_WIDTH = 22
"""Characters of a key the legend shows (its tooltip has all of it)."""


def costs_svg(
    rows: Sequence[DailyCost], *, price_per_second: float, days: Sequence[date], title: str
) -> Markup:
    """Costs per day as stacked bars, one bar per day of `days` (a day without rows: an empty
    bar), stacked by `row.key`: the 7 keys costing most get their colour, the rest one grey
    "other"; a None key is "(no issue)". Dollars up the side, some days along the bottom (all of
    them when there are few), and a legend."""
    wanted = set(days)
    groups = _top_keys(rows, wanted)
    cost: dict[tuple[date, str], float] = defaultdict(float)
    running: dict[tuple[date, str], float] = defaultdict(float)
    members: dict[str, set[str | None]] = defaultdict(set)
    for row in rows:
        if row.day not in wanted:
            continue
        group = groups.get(row.key, OTHER)
        cost[row.day, group] += row.running_seconds * price_per_second
        running[row.day, group] += row.running_seconds
        members[group].add(row.key)
    order = [*dict.fromkeys(groups.values())]
    if any(group == OTHER for _, group in cost):
        order.append(OTHER)
    colours = {group: PALETTE[i] for i, group in enumerate(order) if group != OTHER}
    colours[OTHER] = OTHER_FILL
    names = {group: _key_name(key) for key, group in groups.items()}
    others = len(members[OTHER])
    names[OTHER] = f"{OTHER} ({_plural(others, 'key')})"

    day_totals = {day: sum(cost[day, group] for group in order) for day in days}
    top, step, decimals = _scale(max(day_totals.values(), default=0.0))

    def y_of(dollars: float) -> float:
        return _C_TOP + _C_PLOT_HEIGHT * (1 - dollars / top)

    parts: list[Markup] = [
        Markup('<text x="{}" y="18" fill="{}" font-weight="bold" {}>{}</text>').format(
            _n(_C_LEFT), TEXT_FILL, Markup(FONT), _text(title)
        )
    ]
    for index in range(round(top / step) + 1):
        value = index * step
        y = y_of(value)
        parts.append(
            Markup(
                '<line class="grid" x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}"/>'
                '<text x="{}" y="{}" text-anchor="end" fill="{}" {}>{}</text>'
            ).format(
                _n(_C_LEFT),
                _n(y),
                _n(_C_RIGHT),
                _n(y),
                GRID_STROKE if index else TEXT_FILL,
                _n(_C_LEFT - 6),
                _n(y + 4),
                TEXT_FILL,
                Markup(FONT),
                f"${value:,.{decimals}f}",
            )
        )

    slot = (_C_RIGHT - _C_LEFT) / max(len(days), 1)
    width = max(slot * 0.7, 1.0)
    every = math.ceil(len(days) / _C_MAX_X_LABELS) if days else 1
    base = _C_TOP + _C_PLOT_HEIGHT
    for index, day in enumerate(days):
        x = _C_LEFT + index * slot + (slot - width) / 2
        total = day_totals[day]
        heading = (
            f"{day.isoformat()}: ${total:.4f}" if total else f"{day.isoformat()}: no sandbox time"
        )
        bar: list[Markup] = [
            Markup('<g class="bar" data-day="{}"><title>{}</title>').format(
                day.isoformat(), heading
            )
        ]
        bottom = 0.0
        for group in order:
            value = cost.get((day, group), 0.0)
            if value <= 0:
                continue
            y0, y1 = y_of(bottom + value), y_of(bottom)
            bottom += value
            tip = (
                f"{names[group]}, {day.isoformat()}: ${value:.4f} "
                f"({format_span(running[day, group])} running)"
            )
            bar.append(
                Markup(
                    '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>'
                ).format(_n(x), _n(y0), _n(width), _n(y1 - y0), colours[group], tip)
            )
        bar.append(Markup("</g>"))
        parts.append(Markup("").join(bar))
        if index % every == 0:
            parts.append(
                Markup('<text x="{}" y="{}" text-anchor="middle" fill="{}" {}>{}</text>').format(
                    _n(x + width / 2), _n(base + 16), TEXT_FILL, Markup(FONT), _day_label(day)
                )
            )

    legend_top = base + 32
    column = (_C_RIGHT - _C_LEFT) / _C_LEGEND_COLUMNS
    for index, group in enumerate(order):
        lx = _C_LEFT + (index % _C_LEGEND_COLUMNS) * column
        ly = legend_top + (index // _C_LEGEND_COLUMNS) * _C_LEGEND_ROW
        group_total = sum(cost[day, group] for day in days)
        parts.append(
            Markup(
                '<g class="legend"><title>{}: ${}</title>'
                '<rect x="{}" y="{}" width="10" height="10" fill="{}"/>'
                '<text x="{}" y="{}" fill="{}" {}>{}</text></g>'
            ).format(
                names[group],
                f"{group_total:.4f}",
                _n(lx),
                _n(ly),
                colours[group],
                _n(lx + 14),
                _n(ly + 9),
                TEXT_FILL,
                Markup(FONT),
                _shortened(names[group], _C_KEY_WIDTH),
            )
        )
    legend_rows = math.ceil(len(order) / _C_LEGEND_COLUMNS)
    height = legend_top + legend_rows * _C_LEGEND_ROW + 4
    grand = sum(day_totals.values())
    span = f"{days[0].isoformat()} to {days[-1].isoformat()}" if days else "no days"
    label = f"{_text(title)}: ${grand:.4f} in all, {span}"
    if not order:
        label += ", no sandbox time"
    return _svg(_C_WIDTH, height, label, Markup("").join(parts))


def costs_csv(rows: Iterable[DailyCost], *, price_per_second: float, by: str) -> str:
    """The rows of a cost chart for a spreadsheet: `day,<by>,sandboxes,running_seconds,cost_usd`,
    one line per row (`by`: the keys' column, `org` or `issue`), every cell a spreadsheet would
    run as a formula neutralised (`csv_cell`)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([csv_cell(v) for v in ("day", by, "sandboxes", "running_seconds", "cost_usd")])
    for row in rows:
        cells: list[object] = [
            row.day.isoformat(),
            row.key,
            row.sandboxes,
            row.running_seconds,
            f"{row.running_seconds * price_per_second:.6f}",
        ]
        writer.writerow([csv_cell(cell) for cell in cells])
    return out.getvalue()


def key_totals(
    rows: Iterable[DailyCost], wanted: set[date] | None = None
) -> list[tuple[str | None, float]]:
    """Running seconds per key (of the `wanted` days, else all), costliest first, then by name,
    None last: the order of a chart's colours and of its totals table."""
    totals: dict[str | None, float] = defaultdict(float)
    for row in rows:
        if wanted is None or row.day in wanted:
            totals[row.key] += row.running_seconds
    return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))


def _top_keys(rows: Sequence[DailyCost], wanted: set[date]) -> dict[str | None, str]:
    """The keys with their own colour (`key_totals`' first), each mapped to its stack (never
    `OTHER`, whatever the key is called); every other key is `OTHER`'s."""
    ranked = [key for key, _ in key_totals(rows, wanted)]
    return {key: f"key-{index}" for index, key in enumerate(ranked[: len(PALETTE)])}


def _key_name(key: str | None) -> str:
    return NO_ISSUE if key is None else _text(key)


def _scale(highest: float) -> tuple[float, float, int]:
    """The y axis: its top, the step between gridlines (2 to 3 above the baseline, at round
    values: 1, 2, 2.5 or 5 times a power of ten) and the decimals its labels need."""
    highest = highest if highest > 0 else 0.01
    raw = highest / 3
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))
    top = math.ceil(highest / step - 1e-9) * step
    decimals = next(d for d in range(10) if abs(round(step, d) - step) < step * 1e-6)
    return top, step, (0 if decimals == 0 else max(decimals, 2))


def _day_label(day: date) -> str:
    return day.strftime("%m-%d")


# ---------------------------------------------------------------- shared


def _svg(width: float, height: float, label: str, body: Markup) -> Markup:
    """The whole `<svg>` element: scales to its container's width by the viewBox."""
    return Markup(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" width="100%" '
        'preserveAspectRatio="xMinYMin meet" role="img" aria-label="{}">'
        "<title>{}</title>{}</svg>"
    ).format(_n(width), _n(height), label, label, body)


def _text(value: object) -> str:
    """User text fit for SVG: control, bidi and non-XML characters shown as escapes. Still plain
    text: `Markup.format` escapes it (`markupsafe.escape`) where it lands in the markup."""
    return terminal_escape(_NOT_XML.sub("?", str(value)))


def _shortened(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _utc(at: datetime) -> datetime:
    """Aware in UTC (a naive time is taken as UTC already)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _stamp(at: datetime, *, with_day: bool) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%SZ" if with_day else "%H:%M:%SZ")


def _range(start: datetime, end: datetime) -> str:
    """`10:02:01–10:04:04Z`, with the days when it is not within one."""
    if start.date() == end.date():
        return f"{start:%H:%M:%S}–{end:%H:%M:%S}Z"
    return f"{start:%Y-%m-%d %H:%M:%S}–{end:%Y-%m-%d %H:%M:%S}Z"


def _n(value: float) -> str:
    """A coordinate, to the hundredth, without trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
