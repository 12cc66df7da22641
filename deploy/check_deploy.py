"""Structural checks of the deploy files that no off-the-shelf linter makes.

Run by `deploy/lint.sh` (after hadolint and kubernetes-validate): the compose file (services,
pinned images, healthchecks, start order, two workers, env names from the contract), the
collector config, the kustomizations and KEDA's ScaledObject, which kubernetes-validate has no
schema for; the worker's memory request against the measured working set, the NetworkPolicies,
the `sessions web` manifests, the worker image's digest-pinned bases and its hash-locked
requirements (`deploy/requirements.lock`) against pyproject.toml. Prints one line per problem and
exits 1 if there is any.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, like lint.sh
sys.path.insert(1, str(Path(__file__).resolve().parent))  # check_monitoring.py, even on import
from check_monitoring import check_monitoring  # noqa: E402

import common.settings  # noqa: E402
from common.errors import ConfigError  # noqa: E402
from common.ids import CREATES_QUEUE_SUFFIX  # noqa: E402
from common.settings import (  # noqa: E402
    DEFAULT_DRAIN_SECONDS,
    WorkerSettings,
    variable_names,
    variable_prefixes,
)
from common.units import parse_duration  # noqa: E402

DEPLOY = Path(__file__).resolve().parent
K8S = DEPLOY / "k8s"
# The project the settings come from (this checkout; for a copy of deploy/ alone, the installed
# one): its pyproject.toml is what the lock must pin.
ROOT = Path(common.settings.__file__).resolve().parents[1]

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

# The `temporal` trigger's metadata, from KEDA's source: the struct tags of `temporalMetadata` in
# kedacore/keda pkg/scalers/temporal.go (`keda:"name=taskQueue, order=triggerMetadata;resolvedEnv"`;
# the struct KEDA 2.17 documents, at commit 7cb64871bdfabfa5ed3cb96bd997317c59eba821; the fields
# added up to 2.22 from its later versions and keda.sh/docs/2.22/scalers/temporal). KEDA's
# typed config (pkg/scalers/scalersconfig/typed_config.go, `configParamValue`) reads an
# `order=triggerMetadata` field under its own name, and an `order=...;resolvedEnv` one from the
# scale target's container env (env and envFrom, pkg/scaling/resolver/scale_resolvers.go)
# through the metadata key `<name>FromEnv`. `apiKey` is `authParams;resolvedEnv`: in metadata
# only as `apiKeyFromEnv`. (cert, key, keyPassword and ca are `authParams` only: a
# TriggerAuthentication's.)
# name: (read from the trigger's metadata, read through `<name>FromEnv`)
KEDA_TEMPORAL_FIELDS = {
    "endpoint": (True, True),
    "namespace": (True, True),
    "activationTargetQueueSize": (True, False),
    "targetQueueSize": (True, False),
    "taskQueue": (True, True),
    "queueTypes": (True, False),
    "buildId": (True, True),
    "workerDeploymentName": (True, True),
    "workerDeploymentBuildId": (True, True),
    "selectAllActive": (True, False),
    "selectUnversioned": (True, False),
    "includeRunningWorkflowCount": (True, False),
    "workflowTaskQueueForCount": (True, True),
    "apiKey": (False, True),
    "minConnectTimeout": (True, False),
    "unsafeSsl": (True, False),
    "tlsServerName": (True, False),
    "enableTLS": (True, False),
}
KEDA_TEMPORAL_METADATA = {n for n, (meta, _) in KEDA_TEMPORAL_FIELDS.items() if meta} | {
    f"{n}FromEnv" for n, (_, env) in KEDA_TEMPORAL_FIELDS.items() if env
}
# What the trigger must read from the workers' env rather than hard-code, and from which
# variable: the scaler then follows the ConfigMap. The task queue is the sessions one only: its
# rate-limited creates queue (`<queue>-creates`) drains at E2B's pace, whatever the pod count.
KEDA_FROM_ENV = {"namespace": "TEMPORAL_NAMESPACE", "taskQueue": "SESSIONS_TASK_QUEUE"}

# The worker's memory, measured (bench/results/parked-10000.json, `parked.default_cache`; see
# docs/performance.md): RSS 145,044 KiB idle, and 201.11 KiB more per cached session
# (547,256 KiB with the default 2,000 cached). The request must hold that working set for the
# configured SESSIONS_MAX_CACHED_WORKFLOWS plus a quarter for what the bench did not hold at
# once (200 activities in flight, replays after a rebalance, the allocator's high-water mark),
# and the limit at least one and a half times the working set.
IDLE_RSS_KIB = 145_044
RSS_KIB_PER_CACHED_SESSION = 201.11
MEMORY_REQUEST_HEADROOM = 1.25
MEMORY_LIMIT_HEADROOM = 1.5

# Where the worker may connect (TCP unless said) and who may connect to it: its NetworkPolicy.
# DNS (53, UDP and TCP), Temporal's frontend (7233), PostgreSQL (5432), the OpenTelemetry
# collector (OTLP gRPC 4317, HTTP 4318), E2B over HTTPS (443); in: nothing (metrics are pushed)
# (kubelet probes on 8080 are not subject to NetworkPolicy).
WORKER_EGRESS_PORTS = {53, 7233, 5432, 4317, 4318, 443}
WORKER_INGRESS_PORTS: set[int] = set()
# The inbox: the same minus E2B (it never calls E2B); in: its own port from the ingress only.
WEB_EGRESS_PORTS = {53, 7233, 5432, 4317, 4318}

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


SHUTDOWN_MARGIN = 30
"""Seconds between the drain's end and SIGKILL: telemetry flush and the process's exit."""


def check_grace(where: str, grace: float, drain: str | None) -> list[str]:
    """SIGKILL comes after the worker's drain (SESSIONS_DRAIN_TIMEOUT, else its default), and
    the drain covers a command at its default timeout: a rollout must not cut one short."""
    try:
        seconds = parse_duration(drain) if drain else DEFAULT_DRAIN_SECONDS
    except ConfigError as err:  # names the value
        return [f"{where}: SESSIONS_DRAIN_TIMEOUT: {err}"]
    problems = []
    if seconds < DEFAULT_DRAIN_SECONDS:
        problems.append(
            f"{where}: the drain ({seconds:g}s) is shorter than a command's default ceiling "
            f"({DEFAULT_DRAIN_SECONDS:g}s): a rollout would cut commands short"
        )
    if grace < seconds + SHUTDOWN_MARGIN:
        problems.append(
            f"{where} is {grace:g}s: it must be at least the {seconds:g}s drain plus "
            f"{SHUTDOWN_MARGIN}s, or SIGKILL ends commands the drain was letting finish"
        )
    return problems


def check_temporal_dynamic_config(worker_config: dict) -> list[str]:
    """The creates queue has one partition (the fleet's create rate is exact only then), and
    the file names the queue and namespace the workers use."""
    path = DEPLOY / "temporal" / "dynamic-config.yaml"
    config = yaml.safe_load(path.read_text()) or {}
    queue = worker_config.get("SESSIONS_TASK_QUEUE", "sandbox-sessions") + CREATES_QUEUE_SUFFIX
    namespace = worker_config.get("TEMPORAL_NAMESPACE", "default")
    problems = []
    for key in ("matching.numTaskqueueReadPartitions", "matching.numTaskqueueWritePartitions"):
        wanted = {"value": 1, "constraints": {"namespace": namespace, "taskQueueName": queue}}
        if wanted not in (config.get(key) or []):
            problems.append(
                f"temporal/dynamic-config.yaml: {key} must give {queue} (namespace {namespace}) "
                "one partition, or the server splits the fleet's create rate into bursts"
            )
    return problems


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
    env = worker.get("environment", {})
    problems += check_grace(
        "compose: worker stop_grace_period",
        _duration_seconds(worker.get("stop_grace_period", "0")),
        env.get("SESSIONS_DRAIN_TIMEOUT"),
    )
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
    problems += check_worker_resources(config, container)
    problems += check_temporal_dynamic_config(config)
    problems += check_grace(
        "k8s: terminationGracePeriodSeconds",
        deployment["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30),
        config.get("SESSIONS_DRAIN_TIMEOUT"),
    )
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    problems += check_network_policy(
        docs, "session-worker", labels, WORKER_EGRESS_PORTS, WORKER_INGRESS_PORTS
    )
    problems += check_web(docs, config)

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
        for name, variable in KEDA_FROM_ENV.items():
            if name in meta:
                problems.append(f"keda: {name} is hard-coded: use {name}FromEnv: {variable}")
            elif meta.get(f"{name}FromEnv") != variable:
                problems.append(f"keda: {name}FromEnv must name {variable}, the workers' own")
        for key, value in meta.items():
            if key.endswith("FromEnv") and value not in env_names:
                problems.append(f"keda: {key} names {value}, which the worker's env lacks")
    return problems


def _quantity_mib(value: object) -> float:
    """A Kubernetes memory quantity (`768Mi`, `1Gi`, `800M`, bytes) in MiB; 0 when unreadable."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(value).strip())
    if not match:
        return 0.0
    scale = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    scale |= {"T": 1e12, None: 1}
    return float(match.group(1)) * scale[match.group(2)] / 2**20


def worker_working_set_mib(cached: int) -> float:
    """The worker's measured RSS with `cached` sessions in its sticky cache, in MiB."""
    return (IDLE_RSS_KIB + RSS_KIB_PER_CACHED_SESSION * cached) / 1024


def check_worker_resources(config: dict, container: dict) -> list[str]:
    """The memory request holds the working set of the configured cache, with headroom."""
    default = WorkerSettings.model_fields["max_cached_workflows"].default
    cached = int(config.get("SESSIONS_MAX_CACHED_WORKFLOWS", default))
    working_set = worker_working_set_mib(cached)
    resources = container.get("resources", {})
    request = _quantity_mib(resources.get("requests", {}).get("memory"))
    limit = _quantity_mib(resources.get("limits", {}).get("memory"))
    problems = []
    if request < working_set * MEMORY_REQUEST_HEADROOM:
        problems.append(
            f"k8s: worker memory request {request:.0f}Mi is under the "
            f"{working_set * MEMORY_REQUEST_HEADROOM:.0f}Mi that {cached} cached sessions need "
            f"({working_set:.0f} MiB measured working set x {MEMORY_REQUEST_HEADROOM})"
        )
    if limit < max(request, working_set * MEMORY_LIMIT_HEADROOM):
        problems.append(
            f"k8s: worker memory limit {limit:.0f}Mi is under the request or "
            f"{MEMORY_LIMIT_HEADROOM}x the {working_set:.0f} MiB working set"
        )
    return problems


def _policy_ports(rules: list[dict]) -> set[int]:
    return {int(port["port"]) for rule in rules for port in rule.get("ports") or []}


def check_network_policy(
    docs: dict, name: str, labels: dict, egress: set[int], ingress: set[int]
) -> list[str]:
    """A NetworkPolicy `name` selects the pods, denies both ways by default and opens exactly
    the `egress` and `ingress` ports, each rule with ports (a rule without opens every port)."""
    policy = docs.get(("NetworkPolicy", name))
    if policy is None:
        return [f"k8s: no NetworkPolicy {name}"]
    spec = policy["spec"]
    problems = []
    if not spec.get("podSelector", {}).get("matchLabels", {}).items() <= labels.items():
        problems.append(f"networkpolicy {name}: podSelector does not select the {name} pods")
    if set(spec.get("policyTypes", [])) != {"Ingress", "Egress"}:
        problems.append(f"networkpolicy {name}: policyTypes must be Ingress and Egress")
    for direction, wanted in (("egress", egress), ("ingress", ingress)):
        rules = spec.get(direction) or []
        if any(not rule.get("ports") for rule in rules):
            problems.append(f"networkpolicy {name}: an {direction} rule opens every port")
        found = _policy_ports(rules)
        if found != wanted:
            problems.append(
                f"networkpolicy {name}: {direction} ports {sorted(found)}, not {sorted(wanted)}"
            )
    return problems


def check_web(docs: dict, worker_config: dict) -> list[str]:
    """`sessions web`: the inbox on the workers' Temporal namespace and task queue, listening
    beyond loopback on the port its Service, probes and NetworkPolicy use, its key a secret."""
    deployment = docs.get(("Deployment", "sessions-web"))
    configmap = docs.get(("ConfigMap", "sessions-web"))
    if deployment is None or configmap is None:
        return ["k8s: no sessions-web Deployment and ConfigMap (deploy/k8s/web)"]
    config = configmap["data"]
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e for e in container.get("env", [])}
    names = set(config) | set(env)
    problems = [f"web: env {n} not in the contract" for n in names if not env_name_ok(n)]
    problems += check_image("web: deployment", container["image"])
    if container.get("command") != ["sessions", "web"]:
        problems.append("web: the container must run `sessions web`")
    for key in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "SESSIONS_TASK_QUEUE"):
        if config.get(key) != worker_config.get(key):
            problems.append(f"web: {key} differs from the workers' ConfigMap")
    if config.get("SESSIONS_WEB_HOST", "127.0.0.1") in {"127.0.0.1", "localhost", "::1"}:
        problems.append("web: SESSIONS_WEB_HOST is loopback: the Service cannot reach it")
    if "SESSIONS_WEB_URL" not in config:
        problems.append("web: no SESSIONS_WEB_URL: the inbox answers no Host but loopback")
    secret = env.get("SESSIONS_WEB_SECRET", {}).get("valueFrom", {}).get("secretKeyRef")
    if secret is None or "SESSIONS_WEB_SECRET" in config:
        problems.append("web: SESSIONS_WEB_SECRET must come from a Secret (secretKeyRef)")
    port = int(config.get("SESSIONS_WEB_PORT", 8088))
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    if ports.get("http") != port:
        problems.append(f"web: containerPort http is not SESSIONS_WEB_PORT ({port})")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != "/healthz" or get.get("port") not in ("http", port):
            problems.append(f"web: {probe} must GET /healthz on the http port")
    service = docs.get(("Service", "sessions-web"))
    if service is None or any(
        p.get("targetPort") not in ("http", port) for p in service["spec"]["ports"]
    ):
        problems.append("web: the Service must target the http port")
    labels = pod["metadata"]["labels"]
    problems += check_network_policy(docs, "sessions-web", labels, WEB_EGRESS_PORTS, {port})
    return problems


def check_worker_image() -> list[str]:
    """Every base of the worker image pinned by digest, and the lock it installs complete."""
    problems = []
    stages: set[str] = set()
    for line in (DEPLOY / "worker.Dockerfile").read_text().splitlines():
        words = line.split()
        if not words or words[0].upper() != "FROM":
            continue
        image = next(w for w in words[1:] if not w.startswith("--"))
        if image not in stages and "@sha256:" not in image:
            problems.append(f"worker.Dockerfile: base {image} is not pinned by digest")
        if len(words) >= 4 and words[-2].upper() == "AS":
            stages.add(words[-1])
    return problems + check_lock(DEPLOY / "requirements.lock", ROOT / "pyproject.toml")


_LOCK_LINE = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(===|==|>=|<=|~=|!=|>|<)?\s*([^\s;]*)")


def _lock_entries(text: str) -> dict[str, tuple[str, str, list[str]]]:
    """`name: (operator, version, hashes)` of a pip requirements file, continuations joined."""
    entries = {}
    for entry in re.sub(r"\\\n", " ", text).splitlines():
        entry = entry.split("#", 1)[0].strip()
        if not entry or entry.startswith("-"):
            continue
        match = _LOCK_LINE.match(entry)
        if match:
            hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})\b", entry)
            name = canonicalize_name(match.group(1))
            entries[name] = (match.group(2) or "", match.group(3), hashes)
    return entries


def check_lock(lock: Path, pyproject: Path) -> list[str]:
    """Every runtime dependency of pyproject.toml pinned `==` in the lock to a version its
    specifier allows, with at least one sha256 hash (what `pip --require-hashes` demands)."""
    if not lock.exists():
        return [f"{lock.name}: missing (the worker image installs from it)"]
    entries = _lock_entries(lock.read_text())
    problems = []
    for spec in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        if name not in entries:
            problems.append(f"{lock.name}: does not pin {req.name}, a runtime dependency")
            continue
        op, version, hashes = entries[name]
        if op != "==":
            problems.append(f"{lock.name}: {req.name} is not pinned with ==")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{lock.name}: {req.name}=={version} does not satisfy {spec!r}")
    problems += [f"{lock.name}: {n} has no sha256 hash" for n, e in entries.items() if not e[2]]
    return problems


# The E2B CLI's options for the `template` commands, as its source declares them (e2b-dev/E2B
# packages/cli, @e2b/cli 2.21: src/commands/template/create.ts, build.ts, src/options.ts). An
# instruction in deploy/e2b with a flag outside these is one the real CLI rejects.
E2B_TEMPLATE_OPTIONS = {
    "create": {
        *("-p", "--path", "-d", "--dockerfile", "-c", "--cmd", "--ready-cmd"),
        *("--cpu-count", "--memory-mb", "--no-cache"),
    },
    "build": {  # build system v1: deprecated, hidden in current CLIs
        *("-p", "--path", "-d", "--dockerfile", "-n", "--name", "-c", "--cmd", "--ready-cmd"),
        *("-t", "--team", "--config", "--cpu-count", "--memory-mb", "--build-arg", "--no-cache"),
    },
}
_E2B_COMMAND = re.compile(r"e2b\s+template\s+([\w-]+)([^`\n]*)")


def _dockerfile_steps(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    steps, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip().rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            op, _, args = current.strip().partition(" ")
            steps.append((op.upper(), args.strip()))
            current = ""
    return steps


def check_e2b_cli_commands(where: str, text: str) -> list[str]:
    """Every `e2b template <command> ...` written in `text` uses only the real CLI's options."""
    problems = []
    joined = re.sub(r"\\\n\s*#?", " ", text)  # shell continuations, in code or in comments
    for match in _E2B_COMMAND.finditer(joined):
        command, rest = match.group(1), match.group(2)
        options = E2B_TEMPLATE_OPTIONS.get(command)
        if options is None:
            problems.append(f"{where}: `e2b template {command}` is not a command of the E2B CLI")
            continue
        flags = {word.split("=", 1)[0] for word in rest.split() if word.startswith("-")}
        problems += [
            f"{where}: `e2b template {command}` has no option {flag}"
            for flag in sorted(flags - options)
        ]
        # create.ts: "Both start and ready commands must be provided."
        if command == "create" and flags & {"-c", "--cmd"} and "--ready-cmd" not in flags:
            problems.append(f"{where}: `e2b template create` refuses --cmd without --ready-cmd")
    return problems


def _checksum_guard_holds(guard: str) -> bool:
    """Run what the download step does before `curl` (with the ARGs as E2B and Docker give
    them): it must fail for an empty or malformed DONMAI_SHA256 and pass for a well-formed one."""
    guard = guard.rstrip()
    script = f"{guard} true" if guard.endswith("&&") else f"{guard}\ntrue"

    def passes(sha: str) -> bool:
        env = {"PATH": "/usr/bin:/bin", "DONMAI_SHA256": sha, "DONMAI_ASSET": "a"}
        run = subprocess.run(["bash", "-c", script], env={**env, "DONMAI_VERSION": "v"},
                             capture_output=True, timeout=10)  # fmt: skip
        return run.returncode == 0

    return passes("0" * 64) and not passes("") and not passes("0" * 63) and not passes("z" * 64)


def check_e2b_template() -> list[str]:
    """deploy/e2b: instructions the real CLI accepts, a base pinned by digest, a checksum that
    must be given, and no start command (E2B runs it at build time, without the session)."""
    e2b = DEPLOY / "e2b"
    dockerfile = (e2b / "e2b.Dockerfile").read_text()
    problems = check_e2b_cli_commands("e2b/README.md", (e2b / "README.md").read_text())
    problems += check_e2b_cli_commands("e2b/e2b.Dockerfile", dockerfile)
    steps = _dockerfile_steps(dockerfile)
    for op, args in steps:
        image = args.split()[0] if args else ""
        if op == "FROM" and "$" in image:
            problems.append(f"e2b.Dockerfile: FROM {image}: E2B's parser does not expand ARGs")
        elif op == "FROM" and not re.search(r"@sha256:[0-9a-f]{64}$", image):
            problems.append(f"e2b.Dockerfile: base {image} is not pinned by digest")
        if op in ("CMD", "ENTRYPOINT"):
            problems.append(
                f"e2b.Dockerfile: {op} becomes the template's start command, which E2B runs at "
                "build time, never with a session's env: launch the runner inline instead"
            )
    declared = [args for op, args in steps if op == "ARG" and args.startswith("DONMAI_SHA256")]
    if not declared:
        problems.append("e2b.Dockerfile: no ARG DONMAI_SHA256 (the download's checksum)")
    fetch = next((args for op, args in steps if op == "RUN" and "curl" in args), "")
    if not _checksum_guard_holds(fetch.split("curl", 1)[0]):
        problems.append(
            "e2b.Dockerfile: an empty or malformed DONMAI_SHA256 must fail the build before "
            "the download"
        )
    verified = r"\$\{?DONMAI_SHA256\}?\s+/usr/local/bin/donmai\"?\s*\|\s*sha256sum -c"
    if not re.search(verified, fetch):
        problems.append("e2b.Dockerfile: the donmai download is not verified with sha256sum -c")
    return problems


def main() -> int:
    problems = check_compose() + check_collector() + check_kustomizations() + check_k8s()
    problems += check_worker_image()
    problems += check_e2b_template()
    worker_config = yaml.safe_load((K8S / "base" / "configmap.yaml").read_text())["data"]
    problems += check_monitoring(worker_config)  # the collector, PodMonitor, alerts, dashboards
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"check_deploy: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
