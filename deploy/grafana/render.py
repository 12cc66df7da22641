"""Draw a Grafana dashboard's layout as SVG: each panel where Grafana puts it (its 24-column
grid), with its title, its kind and unit, and its queries. The pictures in docs/img come from
here, since no Grafana runs where the docs are written:

    python deploy/grafana/render.py            # every dashboard → docs/img/grafana-<name>.svg
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from xml.sax.saxutils import escape

GRAFANA = Path(__file__).resolve().parent
IMAGES = GRAFANA.parents[1] / "docs" / "img"
COLUMN, ROW, MARGIN, HEADER = 50, 26, 6, 56
"""Pixels per grid column and grid row, between panels, and for the dashboard's title."""
CHARS_PER_COLUMN = 7.4
"""Query characters that fit in one column at the query font size."""


def _text(x: float, y: float, text: str, size: int, **style: str) -> str:
    attrs = " ".join(f'{k.replace("_", "-")}="{v}"' for k, v in style.items())
    return f'<text x="{x:.0f}" y="{y:.0f}" font-size="{size}" {attrs}>{escape(text)}</text>'


def _panel(panel: dict) -> list[str]:
    grid = panel["gridPos"]
    x, y = grid["x"] * COLUMN + MARGIN, HEADER + grid["y"] * ROW + MARGIN
    w, h = grid["w"] * COLUMN - MARGIN, grid["h"] * ROW - MARGIN
    if panel.get("type") == "row":
        return [
            f'<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="#e8eef7"/>',
            _text(x + 8, y + h - 9, f"▾ {panel['title']}", 15, font_weight="bold", fill="#1f3b63"),
        ]
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
    out = [
        f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="4" fill="#ffffff" stroke="#c7d0dc"/>',
        _text(x + 10, y + 22, panel["title"], 14, font_weight="bold", fill="#1b1f24"),
        _text(x + 10, y + 38, f"{panel['type']} · unit {unit}", 11, fill="#789"),
    ]
    width = max(20, int(grid["w"] * CHARS_PER_COLUMN) - 3)
    line_y, bottom = y + 58, y + h - 8
    for target in panel.get("targets", []):
        for i, line in enumerate(textwrap.wrap(target["expr"], width, break_on_hyphens=False)):
            if line_y > bottom:
                return out + [_text(x + 10, bottom, "…", 11, fill="#6b7785")]
            prefix = f"{target['refId']} " if i == 0 else "  "
            out.append(_text(x + 10, line_y, prefix + line, 11, fill="#274b7a"))
            line_y += 15
        line_y += 4
    return out


def render(board: dict) -> str:
    """The SVG of one dashboard's layout."""
    panels = board["panels"]
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    width, height = 24 * COLUMN + MARGIN, HEADER + bottom * ROW + MARGIN
    variables = ", ".join(f"${v['name']}" for v in board["templating"]["list"])
    body = [
        f'<rect width="{width}" height="{height}" fill="#f4f6f9"/>',
        _text(MARGIN + 4, 26, board["title"], 20, font_weight="bold", fill="#1b1f24"),
        _text(MARGIN + 4, 46, f"variables: {variables}", 12, fill="#6b7785"),
    ]
    for panel in panels:
        body += _panel(panel)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif">\n'
        + "\n".join(body)
        + "\n</svg>\n"
    )


def main(argv: list[str]) -> int:
    IMAGES.mkdir(parents=True, exist_ok=True)
    for path in sorted(GRAFANA.glob("*.json")):
        target = IMAGES / f"grafana-{path.stem}.svg"
        target.write_text(render(json.loads(path.read_text())))
        print(f"{path.name} → {target.relative_to(IMAGES.parents[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
