"""The inbox's pictures: well-formed SVG with nothing a Content-Security-Policy would refuse (no
script, no `style`), user text escaped, the bars and stretches it should have; and the cost CSV
a spreadsheet opens without running anything."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta

import pytest
from markupsafe import Markup

from ledger import DailyCost, Segment
from sessions.web.charts import OTHER_FILL, PALETTE, costs_csv, costs_svg, timeline_svg
from workflows.models import Gate

pytestmark = pytest.mark.fast

SVG = "{http://www.w3.org/2000/svg}"
T0 = datetime(2026, 11, 29, 10, 2, 1, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script> & "q" \x1b[31m'
PRICE = 0.001
DAYS = [date(2026, 11, 27) + timedelta(days=n) for n in range(4)]


def _parse(svg: Markup) -> ET.Element:
    """The picture as XML: it must parse, be one `<svg role="img">` with a label and a title,
    and hold nothing a strict Content-Security-Policy would block."""
    assert isinstance(svg, Markup)
    root = ET.fromstring(str(svg))
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img" and root.get("aria-label")
    assert root.get("width") == "100%" and root.get("viewBox", "").startswith("0 0 ")
    assert root.find(f"{SVG}title") is not None
    for element in root.iter():
        assert element.tag.removeprefix(SVG) not in ("script", "style", "foreignObject")
        assert "style" not in element.attrib
        assert not any(name.startswith("on") for name in element.attrib)
        assert not any("javascript:" in value for value in element.attrib.values())
    return root


def _titles(element: ET.Element) -> list[str]:
    return [t.text or "" for t in element.iter(f"{SVG}title")]


def _stretch(state: str, start: float, end: float | None) -> Segment:
    return Segment.model_validate(
        {
            "state": state,
            "start": T0 + timedelta(seconds=start),
            "end": None if end is None else T0 + timedelta(seconds=end),
        }
    )


def _row(day: date, key: str | None, seconds: float, sandboxes: int = 1) -> DailyCost:
    return DailyCost(day=day, key=key, sandboxes=sandboxes, running_seconds=seconds)


# ---------------------------------------------------------------- timeline


def test_timeline_draws_each_stretch_with_its_colour_and_title() -> None:
    segments = [
        _stretch("running", 0, 123),
        _stretch("paused", 123, 723),
        _stretch("running", 723, 800),
    ]
    root = _parse(timeline_svg(segments, now=T0 + timedelta(hours=1)))
    rects = [r for r in root.iter(f"{SVG}rect") if r.get("class") in ("running", "paused")]
    assert [r.get("class") for r in rects] == ["running", "paused", "running"]
    assert [r.get("fill") for r in rects] == ["#2e7d32", "#9e9e9e", "#2e7d32"]
    assert _titles(rects[0]) == ["running 2m 03s, 10:02:01–10:04:04Z"]
    assert _titles(rects[1]) == ["paused 10m 00s, 10:04:04–10:14:04Z"]
    # Closed stretches end the picture, not `now`: the last one reaches the right edge.
    last = rects[-1]
    assert float(last.get("x", 0)) + float(last.get("width", 0)) == pytest.approx(592)
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "2026-11-29 10:02:01Z" in texts and "10:15:21Z" in texts


def test_an_open_stretch_is_drawn_up_to_now() -> None:
    now = T0 + timedelta(seconds=300)
    root = _parse(timeline_svg([_stretch("running", 0, 60), _stretch("paused", 60, None)], now=now))
    paused = next(r for r in root.iter(f"{SVG}rect") if r.get("class") == "paused")
    assert float(paused.get("x", 0)) + float(paused.get("width", 0)) == pytest.approx(592)
    assert float(paused.get("x", 0)) == pytest.approx(8 + 584 * 60 / 300)
    assert _titles(paused) == ["paused 4m 00s, 10:03:01–10:07:01Z (still paused)"]
    assert "10:07:01Z" in [t.text for t in root.iter(f"{SVG}text")]
    assert "4m 00s paused" in (root.get("aria-label") or "")


def test_gates_are_ticks_with_titles() -> None:
    gates = [
        Gate(gate="deploy", state="approved", requested_at=T0 + timedelta(seconds=60),
             decided_at=T0 + timedelta(seconds=310)),
        Gate(gate="merge", requested_at=T0 + timedelta(seconds=400)),
    ]  # fmt: skip
    now = T0 + timedelta(seconds=500)
    svg = timeline_svg([_stretch("running", 0, None)], now=now, gates=gates)
    root = _parse(svg)
    marks = [g for g in root.iter(f"{SVG}g") if g.get("class") == "gate"]
    assert [_titles(g)[0] for g in marks] == [
        "gate deploy: approved after 4m 10s, requested 10:03:01Z",
        "gate merge: waiting for 1m 40s, requested 10:08:41Z",
    ]
    assert "2 gates" in (root.get("aria-label") or "")


def test_timeline_escapes_a_hostile_gate_name() -> None:
    gate = Gate(gate=HOSTILE, requested_at=T0 + timedelta(seconds=10))
    svg = timeline_svg([_stretch("running", 0, 30)], now=T0 + timedelta(seconds=60), gates=[gate])
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    root = _parse(svg)
    [mark] = [g for g in root.iter(f"{SVG}g") if g.get("class") == "gate"]
    # Parsed back, the text is the name as given, its escape sequence shown, not sent.
    assert _titles(mark)[0].startswith('gate <script>alert("x")</script> & "q" \\x1b[31m: ')


def test_no_segments_says_so() -> None:
    root = _parse(timeline_svg([], now=T0))
    assert [t.text for t in root.iter(f"{SVG}text")] == ["no sandbox time yet"]
    assert list(root.iter(f"{SVG}rect")) == []


def test_a_naive_now_is_taken_as_utc() -> None:
    aware = timeline_svg([_stretch("running", 0, None)], now=T0 + timedelta(seconds=90))
    naive = timeline_svg(
        [_stretch("running", 0, None)], now=(T0 + timedelta(seconds=90)).replace(tzinfo=None)
    )
    assert aware == naive


# ---------------------------------------------------------------- costs per day


def _bars(root: ET.Element) -> dict[str, list[ET.Element]]:
    """Each day's bar (by its `data-day`) and the rects stacked in it."""
    return {
        g.get("data-day", ""): list(g.iter(f"{SVG}rect"))
        for g in root.iter(f"{SVG}g")
        if g.get("class") == "bar"
    }


def test_one_bar_per_day_stacked_by_key() -> None:
    rows = [
        _row(DAYS[0], "acme", 4104),
        _row(DAYS[0], "globex", 1000),
        _row(DAYS[2], "acme", 500),
        _row(date(2026, 1, 1), "acme", 99_999),  # not one of the days: left out
    ]
    root = _parse(costs_svg(rows, price_per_second=PRICE, days=DAYS, title="Cost per org"))
    bars = _bars(root)
    assert list(bars) == [d.isoformat() for d in DAYS]
    assert [len(rects) for rects in bars.values()] == [2, 0, 1, 0]
    acme, globex = bars[DAYS[0].isoformat()]
    assert _titles(acme) == ["acme, 2026-11-27: $4.1040 (1h 08m running)"]
    assert _titles(globex) == ["globex, 2026-11-27: $1.0000 (16m 40s running)"]
    assert acme.get("fill") == PALETTE[0] and globex.get("fill") == PALETTE[1]
    # Stacked: globex sits on acme.
    assert float(globex.get("y", 0)) + float(globex.get("height", 0)) == pytest.approx(
        float(acme.get("y", 0))
    )
    assert bars[DAYS[2].isoformat()][0].get("fill") == PALETTE[0]
    assert "$5.6040 in all" in (root.get("aria-label") or "")


def test_the_y_axis_has_three_or_four_gridlines_in_dollars() -> None:
    rows = [_row(DAYS[0], "acme", 4104)]
    root = _parse(costs_svg(rows, price_per_second=PRICE, days=DAYS, title="t"))
    grid = [line for line in root.iter(f"{SVG}line") if line.get("class") == "grid"]
    assert 3 <= len(grid) <= 4
    labels = [t.text or "" for t in root.iter(f"{SVG}text") if (t.text or "").startswith("$")]
    assert labels == ["$0", "$2", "$4", "$6"]
    # The tallest bar stays inside the plot.
    [rect] = _bars(root)[DAYS[0].isoformat()]
    assert float(rect.get("y", 0)) >= 30


def test_small_costs_get_cents_on_the_axis() -> None:
    root = _parse(costs_svg([_row(DAYS[0], "a", 60)], price_per_second=PRICE, days=DAYS, title="t"))
    labels = [t.text or "" for t in root.iter(f"{SVG}text") if (t.text or "").startswith("$")]
    assert labels == ["$0.00", "$0.02", "$0.04", "$0.06"]


def test_keys_past_the_seventh_are_summed_as_other() -> None:
    rows = [_row(DAYS[0], f"org-{n}", 1000 - n * 10) for n in range(10)]
    rows.append(_row(DAYS[1], None, 5))
    root = _parse(costs_svg(rows, price_per_second=PRICE, days=DAYS, title="t"))
    bars = _bars(root)
    first = bars[DAYS[0].isoformat()]
    assert len(first) == 8
    assert [r.get("fill") for r in first] == [*PALETTE, OTHER_FILL]
    assert _titles(first[-1]) == ["other (4 keys), 2026-11-27: $2.7600 (46m 00s running)"]
    # The None key costs least of all: it is in "other" too, shown as "(no issue)" nowhere else.
    [other] = bars[DAYS[1].isoformat()]
    assert other.get("fill") == OTHER_FILL
    legend = [_titles(g)[0] for g in root.iter(f"{SVG}g") if g.get("class") == "legend"]
    assert len(legend) == 8 and legend[0] == "org-0: $1.0000"
    assert legend[-1].startswith("other (4 keys): $")


def test_the_none_key_is_no_issue() -> None:
    rows = [_row(DAYS[0], None, 60), _row(DAYS[0], "ISS-1", 30)]
    root = _parse(costs_svg(rows, price_per_second=PRICE, days=DAYS, title="t"))
    titles = [_titles(r)[0] for r in _bars(root)[DAYS[0].isoformat()]]
    assert titles == [
        "(no issue), 2026-11-27: $0.0600 (1m 00s running)",
        "ISS-1, 2026-11-27: $0.0300 (30s running)",
    ]


def test_a_key_named_other_is_not_mixed_with_the_other_stack() -> None:
    rows = [_row(DAYS[0], "other", 100)] + [_row(DAYS[0], f"k{n}", 10) for n in range(7)]
    root = _parse(costs_svg(rows, price_per_second=PRICE, days=DAYS, title="t"))
    rects = _bars(root)[DAYS[0].isoformat()]
    assert len(rects) == 8
    assert rects[0].get("fill") == PALETTE[0] and rects[-1].get("fill") == OTHER_FILL
    assert _titles(rects[-1])[0].startswith("other (1 key), ")


def test_costs_escape_a_hostile_key_and_title() -> None:
    rows = [_row(DAYS[0], HOSTILE, 60), _row(DAYS[1], "a&b", 30)]
    svg = costs_svg(rows, price_per_second=PRICE, days=DAYS, title=f"by {HOSTILE}")
    assert "<script>" not in svg and "\x1b" not in svg
    assert "&lt;script&gt;" in svg and "a&amp;b" in svg
    root = _parse(svg)
    [rect] = _bars(root)[DAYS[0].isoformat()]
    assert _titles(rect)[0].startswith('<script>alert("x")</script> & "q" \\x1b[31m, ')
    assert 'by <script>alert("x")' in (root.get("aria-label") or "")


def test_empty_days_are_empty_bars() -> None:
    root = _parse(costs_svg([], price_per_second=PRICE, days=DAYS, title="t"))
    bars = _bars(root)
    assert list(bars) == [d.isoformat() for d in DAYS]
    assert all(rects == [] for rects in bars.values())
    assert _titles(next(g for g in root.iter(f"{SVG}g") if g.get("class") == "bar")) == [
        "2026-11-27: no sandbox time"
    ]


def test_many_days_label_only_some() -> None:
    days = [date(2026, 9, 1) + timedelta(days=n) for n in range(90)]
    root = _parse(costs_svg([], price_per_second=PRICE, days=days, title="t"))
    assert len(_bars(root)) == 90
    labels = [t.text or "" for t in root.iter(f"{SVG}text") if (t.text or "")[:2].isdigit()]
    assert 5 <= len(labels) <= 10 and labels[0] == "09-01"


# ---------------------------------------------------------------- CSV


def test_costs_csv_header_and_rows() -> None:
    rows = [_row(DAYS[0], "acme", 60, sandboxes=2), _row(DAYS[0], None, 1.5)]
    text = costs_csv(rows, price_per_second=PRICE, by="org")
    assert text.splitlines()[0] == "day,org,sandboxes,running_seconds,cost_usd"
    assert list(csv.reader(io.StringIO(text)))[1:] == [
        ["2026-11-27", "acme", "2", "60.0", "0.060000"],
        ["2026-11-27", "", "1", "1.5", "0.001500"],
    ]


@pytest.mark.parametrize(
    ("key", "cell"),
    [
        ("=HYPERLINK(1)", "'=HYPERLINK(1)"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\\rx"),  # the CR shown as an escape too, as `sessions audit --csv` does
        ("ok=1", "ok=1"),
    ],
)
def test_costs_csv_neutralises_formulas(key: str, cell: str) -> None:
    text = costs_csv([_row(DAYS[0], key, 60)], price_per_second=PRICE, by="issue")
    [header, row] = list(csv.reader(io.StringIO(text)))
    assert header == ["day", "issue", "sandboxes", "running_seconds", "cost_usd"]
    assert row == ["2026-11-27", cell, "1", "60.0", "0.060000"]
