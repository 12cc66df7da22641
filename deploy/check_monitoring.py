"""Structural checks of the monitoring files, which kubernetes-validate has no schema for.

Called by check_deploy.py. The collector's k8s config is the compose one; the collector pod is
hardened and probed on its health_check extension; the workers' OTLP endpoint reaches its
Service; the PodMonitor selects its pods on the exporter's port; every alert and dashboard query
parses and uses only metrics the worker exports (telemetry/prometheus.py: ours, the workflows'
and the Temporal SDK's, as Prometheus names them behind the collector); dashboards take their
Prometheus from a datasource variable.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from telemetry.prometheus import known_series

DEPLOY = Path(__file__).resolve().parent
MONITORING = DEPLOY / "k8s" / "monitoring"
GRAFANA = DEPLOY / "grafana"
SEVERITIES = {"warning", "critical"}

_GRAFANA_INTERVALS = re.compile(r"\$(__rate_interval|__interval|__range)\b|\$\{(__\w+)\}")
_GRAFANA_VARIABLE = re.compile(r"\$\{?(\w+)\}?")


def _docs(path: Path) -> dict[tuple[str, str], dict]:
    return {
        (d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(path.read_text()) if d
    }


def _port(endpoint: str) -> int:
    return int(str(endpoint).rsplit(":", 1)[1])


# ---------------------------------------------------------------- PromQL


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects; ValueError when it does not parse."""
    import promql_parser  # the dev extra; imported here so that the error can say so

    names: set[str] = set()

    def visit(node: Any) -> None:
        if node is None:
            return
        if isinstance(node, promql_parser.VectorSelector):
            names.add(node.name or "")
        elif isinstance(node, promql_parser.MatrixSelector):
            visit(node.vector_selector)
        elif isinstance(node, promql_parser.BinaryExpr):
            visit(node.lhs)
            visit(node.rhs)
        elif isinstance(node, promql_parser.Call):
            for arg in node.args:
                visit(arg)
        elif isinstance(node, promql_parser.AggregateExpr):
            visit(node.expr)
            visit(node.param)
        elif hasattr(node, "expr"):  # ParenExpr, UnaryExpr, SubqueryExpr
            visit(node.expr)

    visit(promql_parser.parse(expr))
    return names


def check_query(where: str, expr: str) -> list[str]:
    """`expr` parses, and every metric it names is one the worker exports."""
    try:
        names = metric_names(expr)
    except ImportError:
        return [f"{where}: promql-parser is not installed (pip install -e '.[dev]')"]
    except (ValueError, TypeError) as err:
        return [f"{where}: PromQL does not parse: {err}"]
    known = known_series()
    return [f"{where}: unknown metric {name}" for name in sorted(names) if name not in known]


def grafana_to_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced, so that PromQL can parse it."""
    return _GRAFANA_VARIABLE.sub("1", _GRAFANA_INTERVALS.sub("5m", expr))


# ---------------------------------------------------------------- the collector


def check_collector_manifest(worker_config: dict) -> list[str]:
    path = MONITORING / "otel-collector.yaml"
    docs = _docs(path)
    problems = []
    configmap = docs.get(("ConfigMap", "otel-collector"))
    deployment = docs.get(("Deployment", "otel-collector"))
    service = docs.get(("Service", "otel-collector"))
    if configmap is None or deployment is None or service is None:
        return ["monitoring: otel-collector.yaml needs the ConfigMap, Deployment and Service"]
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    if config != yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text()):
        problems.append("monitoring: the collector's ConfigMap differs from otel-collector.yaml")

    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    problems += _hardened("monitoring: collector", pod["spec"], container)
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    health = _port(config["extensions"]["health_check"]["endpoint"])
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        port = container.get(probe, {}).get("httpGet", {}).get("port")
        if ports.get(port, port) != health:
            problems.append(f"monitoring: collector {probe} is not on health_check's port {health}")
    exporter = _port(config["exporters"]["prometheus"]["endpoint"])
    if ports.get("prometheus") != exporter:
        problems.append(f"monitoring: collector port `prometheus` is not the exporter's {exporter}")

    labels = pod["metadata"]["labels"]
    if not service["spec"]["selector"].items() <= labels.items():
        problems.append("monitoring: the collector Service selects no collector pod")
    url = urlsplit(worker_config.get("OTEL_EXPORTER_OTLP_ENDPOINT", ""))
    namespace = yaml.safe_load((MONITORING / "kustomization.yaml").read_text()).get("namespace")
    host = f"{service['metadata']['name']}.{namespace}"
    served = {
        p["port"]: ports.get(p["targetPort"], p["targetPort"]) for p in service["spec"]["ports"]
    }
    otlp_http = _port(config["receivers"]["otlp"]["protocols"]["http"]["endpoint"])
    if not (url.hostname or "").startswith(host) or served.get(url.port) != otlp_http:
        problems.append(
            f"k8s: the workers' OTEL_EXPORTER_OTLP_ENDPOINT does not reach the collector "
            f"Service ({host}, OTLP/HTTP {otlp_http})"
        )
    return problems + check_pod_monitor(labels, ports, exporter)


def _hardened(where: str, pod: dict, container: dict) -> list[str]:
    """As the worker's pod: non-root, read-only root, no privilege, seccomp, sized."""
    security = container.get("securityContext", {})
    problems = []
    if pod.get("securityContext", {}).get("runAsNonRoot") is not True:
        problems.append(f"{where}: must run as non-root")
    if security.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: root filesystem must be read-only")
    if security.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: must not allow privilege escalation")
    if security.get("capabilities", {}).get("drop") != ["ALL"]:
        problems.append(f"{where}: must drop ALL capabilities")
    seccomp = pod.get("securityContext", {}).get("seccompProfile", {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        problems.append(f"{where}: needs a seccomp profile")
    resources = container.get("resources", {})
    for kind in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(resources.get(kind, {})):
            problems.append(f"{where}: needs cpu and memory {kind}")
    return problems


def check_pod_monitor(pod_labels: dict, ports: dict, exporter: int) -> list[str]:
    monitor = _docs(MONITORING / "podmonitor.yaml").get(("PodMonitor", "otel-collector"))
    if monitor is None or monitor.get("apiVersion") != "monitoring.coreos.com/v1":
        return ["monitoring: no PodMonitor otel-collector (monitoring.coreos.com/v1)"]
    problems = []
    if not monitor["spec"]["selector"]["matchLabels"].items() <= pod_labels.items():
        problems.append("monitoring: the PodMonitor's selector matches no collector pod")
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        if ports.get(endpoint.get("port")) != exporter:
            problems.append(
                f"monitoring: PodMonitor port {endpoint.get('port')!r} is not the collector's "
                f"Prometheus exporter ({exporter})"
            )
    return problems


# ---------------------------------------------------------------- alerts and dashboards


def check_rules() -> list[str]:
    rule = _docs(MONITORING / "prometheusrule.yaml").get(("PrometheusRule", "session-worker"))
    if rule is None or rule.get("apiVersion") != "monitoring.coreos.com/v1":
        return ["monitoring: no PrometheusRule session-worker (monitoring.coreos.com/v1)"]
    problems, seen = [], set()
    for group in rule["spec"]["groups"]:
        for alert in group["rules"]:
            name = alert.get("alert", "?")
            if name in seen:
                problems.append(f"alert {name}: defined twice")
            seen.add(name)
            problems += check_query(f"alert {name}", alert.get("expr", ""))
            if alert.get("labels", {}).get("severity") not in SEVERITIES:
                problems.append(f"alert {name}: severity must be one of {sorted(SEVERITIES)}")
            for key in ("summary", "runbook"):
                if not alert.get("annotations", {}).get(key):
                    problems.append(f"alert {name}: no {key} annotation")
    return problems


def check_dashboards() -> list[str]:
    problems, uids = [], set()
    paths = sorted(GRAFANA.glob("*.json"))
    if not paths:
        return ["grafana: no dashboard"]
    for path in paths:
        where = f"grafana/{path.name}"
        board = json.loads(path.read_text())
        if board.get("uid") in uids:
            problems.append(f"{where}: uid {board.get('uid')} used twice")
        uids.add(board.get("uid"))
        variables = {v["name"]: v for v in board.get("templating", {}).get("list", [])}
        source = variables.get("datasource", {})
        if source.get("type") != "datasource" or source.get("query") != "prometheus":
            problems.append(f"{where}: needs a `datasource` variable of Prometheus type")
        for var in variables.values():
            query = var.get("query")
            if var.get("type") == "query":
                if var.get("datasource", {}).get("uid") != "${datasource}":
                    problems.append(
                        f"{where}: variable {var['name']} must use the ${{datasource}} variable"
                    )
                text = query.get("query", "") if isinstance(query, dict) else str(query)
                match = re.fullmatch(r"label_values\((\w+),\s*\w+\)", text)
                if match is None or match.group(1) not in known_series():
                    problems.append(f"{where}: variable {var['name']} queries no known metric")
        problems += _check_panels(where, board.get("panels", []))
    return problems


def _check_panels(where: str, panels: list[dict]) -> list[str]:
    problems, cells = [], {}
    for panel in panels:
        title = panel.get("title", "?")
        grid = panel["gridPos"]
        if grid["x"] + grid["w"] > 24:
            problems.append(f"{where}: panel {title!r} is wider than the grid")
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                if (x, y) in cells:
                    problems.append(f"{where}: panel {title!r} overlaps {cells[(x, y)]!r}")
                    break
                cells[(x, y)] = title
            else:
                continue
            break
        if panel.get("type") == "row":
            continue
        sources = [panel.get("datasource"), *(t.get("datasource") for t in panel["targets"])]
        if any((s or {}).get("uid") != "${datasource}" for s in sources):
            problems.append(f"{where}: panel {title!r} must use the ${{datasource}} variable")
        for target in panel["targets"]:
            problems += check_query(
                f"{where}: panel {title!r}", grafana_to_promql(target.get("expr", ""))
            )
    return problems


def check_monitoring(worker_config: dict) -> list[str]:
    return check_collector_manifest(worker_config) + check_rules() + check_dashboards()
