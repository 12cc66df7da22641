"""What the monitoring promises on paper is what ships: the metric catalogue is what the worker
creates, docs/observability.md lists every metric and alert, and the dashboard pictures in the
docs are drawn from the dashboards as they are now."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from telemetry.instruments import OWN_METRICS, WORKFLOW_METRICS, Instruments
from telemetry.prometheus import series_names

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "observability.md").read_text()
RULES = ROOT / "deploy" / "k8s" / "monitoring" / "prometheusrule.yaml"
_KINDS = {"Sum": "counter", "Histogram": "histogram"}


def test_the_catalogue_is_what_the_worker_creates() -> None:
    """Alerts and dashboards are checked against `OWN_METRICS`: each entry must be an
    instrument the worker really creates, with that unit and kind, and none left out."""
    reader = InMemoryMetricReader()
    inst = Instruments.create(MeterProvider(metric_readers=[reader]).get_meter("t"))
    for field in Instruments.__dataclass_fields__:
        instrument = getattr(inst, field)
        recorded = getattr(instrument, "add", None) or instrument.record
        recorded(1, {})
    data = reader.get_metrics_data()
    created = {}
    for metric in data.resource_metrics[0].scope_metrics[0].metrics:
        kind = _KINDS[type(metric.data).__name__]
        if kind == "counter" and not metric.data.is_monotonic:
            kind = "updowncounter"
        created[metric.name] = (kind, metric.unit)
    assert created == {m.name: (m.kind, m.unit) for m in OWN_METRICS}


def test_every_metric_and_its_prometheus_name_is_documented() -> None:
    for metric in (*OWN_METRICS, *WORKFLOW_METRICS):
        assert f"| `{metric.name}` |" in DOC, metric.name
        assert f"`{metric.unit}`" in DOC, metric.unit
        base = {
            n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
            for n in series_names(metric)
        }
        (prometheus,) = base  # one name, and the docs give it
        assert f"`{prometheus}" in DOC, prometheus


def test_every_alert_is_in_the_docs_alert_table() -> None:
    rule = yaml.safe_load(RULES.read_text())
    alerts = [r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]]
    assert len(alerts) >= 10
    missing = [name for name in alerts if f"| `{name}` |" not in DOC]
    assert not missing, f"docs/observability.md has no row for {missing}"


def _renderer():
    spec = importlib.util.spec_from_file_location("render", ROOT / "deploy/grafana/render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["worker", "sessions"])
def test_the_dashboard_pictures_in_the_docs_are_current(name: str) -> None:
    board = json.loads((ROOT / "deploy" / "grafana" / f"{name}.json").read_text())
    picture = ROOT / "docs" / "img" / f"grafana-{name}.svg"
    assert picture.read_text() == _renderer().render(board), (
        f"{picture.name} is stale: run `python deploy/grafana/render.py`"
    )
    assert f"img/grafana-{name}.svg" in DOC
    for panel in board["panels"]:  # every panel is drawn, with its title
        assert panel["title"].replace("&", "&amp;") in picture.read_text()
