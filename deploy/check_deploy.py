"""Structural checks of the deploy files that no off-the-shelf linter makes.

Run by `deploy/lint.sh` (after hadolint and kubernetes-validate): the compose file (services,
pinned images, healthchecks, start order, two workers, env names from the contract), the
collector config, the kustomizations and KEDA's ScaledObject, which kubernetes-validate has no
schema for. Prints one line per problem and exits 1 if there is any.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, like lint.sh
from common.settings import variable_names, variable_prefixes  # noqa: E402

DEPLOY = Path(__file__).resolve().parent
K8S = DEPLOY / "k8s"

# Every variable the worker reads or documents, from its settings model (common/settings.py):
# a name here that the code does not know is a typo the worker would silently ignore.
CONTRACT_ENV = variable_names()
CONTRACT_ENV_PREFIXES = variable_prefixes()

COMPOSE_SERVICES = {
    "temporal-db",
    "temporal",
    "temporal-ui",
    "ledger-db",
    "otel-collector",
    "worker",
    "emulator",
}
# The collector image is built FROM scratch: nothing inside it can run a probe.
NO_HEALTHCHECK = {"otel-collector"}

# The `temporal` trigger's metadata, as KEDA documents it (scalers/temporal, 2.17-2.22).
KEDA_TEMPORAL_METADATA = {
    "endpoint",
    "endpointFromEnv",
    "namespace",
    "activationTargetQueueSize",
    "targetQueueSize",
    "taskQueue",
    "queueTypes",
    "buildId",
    "selectAllActive",
    "selectUnversioned",
    "workerDeploymentName",
    "workerDeploymentBuildId",
    "includeRunningWorkflowCount",
    "workflowTaskQueueForCount",
    "apiKeyFromEnv",
    "minConnectTimeout",
    "unsafeSsl",
    "tlsServerName",
    "enableTLS",
}

_PINNED_TAG = re.compile(r"^[\w][\w.-]*\.\d[\w.-]*$")  # at least major.minor: 16.4, 1.28.1


def env_name_ok(name: str) -> bool:
    return name in CONTRACT_ENV or name.startswith(CONTRACT_ENV_PREFIXES)


def load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def check_image(where: str, image: str) -> list[str]:
    ref, _, digest = image.partition("@")
    name, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "")
    if digest.startswith("sha256:"):
        return []
    if not tag:
        return [f"{where}: image {image!r} has no tag"]
    if tag == "latest" or not _PINNED_TAG.match(tag):
        return [f"{where}: image {image!r} is not pinned to a version tag"]
    return []


def _duration_seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m)?", str(value))
    if not match:
        return 0.0
    scale = {"ms": 0.001, "s": 1, "m": 60, None: 1}[match.group(2)]
    return int(match.group(1)) * scale


def check_compose() -> list[str]:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services: dict = compose.get("services", {})
    problems = [f"compose: missing service {s}" for s in sorted(COMPOSE_SERVICES - set(services))]
    for name, svc in services.items():
        where = f"compose: {name}"
        if "build" not in svc:
            problems += check_image(where, svc.get("image", ""))
        if name not in NO_HEALTHCHECK and not svc.get("healthcheck", {}).get("test"):
            problems.append(f"{where}: no healthcheck")
        depends = svc.get("depends_on", {})
        if isinstance(depends, list):
            problems.append(f"{where}: depends_on without conditions")
            continue
        for dep, spec in depends.items():
            if dep not in services:
                problems.append(f"{where}: depends on unknown service {dep}")
            elif "healthcheck" in services[dep] and spec.get("condition") != "service_healthy":
                problems.append(f"{where}: should wait for {dep} to be healthy")
        for volume in svc.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith(".") and not (DEPLOY / source).exists():
                problems.append(f"{where}: mounts missing file {source}")

    worker = services.get("worker", {})
    if worker.get("deploy", {}).get("replicas") != 2:
        problems.append("compose: worker must run 2 replicas")
    if _duration_seconds(worker.get("stop_grace_period", "0")) <= 30:
        problems.append("compose: worker stop_grace_period must exceed the 30 s drain")
    env = worker.get("environment", {})
    problems += [f"compose: worker env {k} not in the contract" for k in env if not env_name_ok(k)]
    if env.get("SESSIONS_TASK_QUEUE") != "sandbox-sessions":
        problems.append("compose: worker task queue is not sandbox-sessions")

    emulator = services.get("emulator", {})
    if "dry-run" not in emulator.get("profiles", []):
        problems.append("compose: emulator must be in the dry-run profile only")
    if worker.get("depends_on", {}).get("emulator", {}).get("required") is not False:
        problems.append("compose: worker's dependency on the emulator must be required: false")
    dry = dict(
        line.split("=", 1)
        for line in (DEPLOY / "dry-run.env").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    command = [str(part) for part in emulator.get("command", [])]
    ports = {command[i]: command[i + 1] for i in range(len(command) - 1) if command[i][:2] == "--"}
    if "dry-run" not in dry.get("COMPOSE_PROFILES", "").split(","):
        problems.append("dry-run.env: COMPOSE_PROFILES must enable dry-run")
    if dry.get("E2B_API_URL") != f"http://emulator:{ports.get('--port')}":
        problems.append("dry-run.env: E2B_API_URL does not point at the emulator's API port")
    if dry.get("E2B_SANDBOX_URL") != f"http://emulator:{ports.get('--envd-port')}":
        problems.append("dry-run.env: E2B_SANDBOX_URL does not point at the emulator's envd port")
    return problems


def check_collector() -> list[str]:
    config = yaml.safe_load((DEPLOY / "otel-collector.yaml").read_text())
    problems = []
    for pipeline, spec in config["service"]["pipelines"].items():
        for kind in ("receivers", "processors", "exporters"):
            for component in spec.get(kind, []):
                if component not in config.get(kind, {}):
                    problems.append(f"otel-collector: {pipeline} uses undefined {component}")
    for ext in config["service"].get("extensions", []):
        if ext not in config.get("extensions", {}):
            problems.append(f"otel-collector: undefined extension {ext}")
    if "otlp" not in config.get("receivers", {}):
        problems.append("otel-collector: no OTLP receiver")
    return problems


def check_kustomizations() -> list[str]:
    problems = []
    listed = set()
    for kfile in sorted(K8S.glob("*/kustomization.yaml")):
        for resource in yaml.safe_load(kfile.read_text()).get("resources", []):
            target = (kfile.parent / resource).resolve()
            listed.add(target)
            if not target.exists():
                problems.append(f"{kfile.relative_to(DEPLOY)}: missing resource {resource}")
    for manifest in sorted(K8S.glob("*/*.yaml")):
        if manifest.name != "kustomization.yaml" and manifest.resolve() not in listed:
            problems.append(f"{manifest.relative_to(DEPLOY)}: not in any kustomization")
    return problems


def check_k8s() -> list[str]:
    docs = {
        (doc["kind"], doc["metadata"]["name"]): doc
        for path in K8S.glob("*/*.yaml")
        for doc in load_all(path)
        if doc.get("kind") != "Kustomization"
    }
    problems = []
    config = docs[("ConfigMap", "session-worker")]["data"]
    deployment = docs[("Deployment", "session-worker")]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env_names = set(config) | {e["name"] for e in container.get("env", [])}
    problems += [f"k8s: env {n} not in the contract" for n in env_names if not env_name_ok(n)]
    problems += check_image("k8s: deployment", container["image"])

    scaled = docs.get(("ScaledObject", "session-worker"))
    if scaled is None:
        return problems + ["k8s: no KEDA ScaledObject"]
    if scaled.get("apiVersion") != "keda.sh/v1alpha1":
        problems.append("keda: ScaledObject apiVersion must be keda.sh/v1alpha1")
    if scaled["spec"]["scaleTargetRef"]["name"] != deployment["metadata"]["name"]:
        problems.append("keda: scaleTargetRef does not name the worker Deployment")
    for trigger in scaled["spec"]["triggers"]:
        meta = trigger.get("metadata", {})
        if trigger.get("type") != "temporal":
            problems.append(f"keda: unexpected trigger type {trigger.get('type')}")
        for key, value in meta.items():
            if key not in KEDA_TEMPORAL_METADATA:
                problems.append(f"keda: unknown temporal metadata {key}")
            if not isinstance(value, str):
                problems.append(f"keda: metadata {key} must be a string")
        if "endpoint" not in meta and meta.get("endpointFromEnv") not in env_names:
            problems.append("keda: needs endpoint, or an endpointFromEnv the pod has")
        if meta.get("apiKeyFromEnv", "TEMPORAL_API_KEY") not in env_names:
            problems.append("keda: apiKeyFromEnv names an env var the pod does not have")
        if meta.get("taskQueue") != config["SESSIONS_TASK_QUEUE"]:
            problems.append("keda: taskQueue differs from the workers' SESSIONS_TASK_QUEUE")
        if meta.get("namespace", "default") != config["TEMPORAL_NAMESPACE"]:
            problems.append("keda: namespace differs from the workers' TEMPORAL_NAMESPACE")
    return problems


def main() -> int:
    problems = check_compose() + check_collector() + check_kustomizations() + check_k8s()
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"check_deploy: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
