# The session worker image: `sessions worker` polling the `sandbox-sessions` task queue.
#
# Build from the repository root (the compose file does this for you):
#   docker build -f deploy/worker.Dockerfile -t session-worker:0.1.0 .
#
# The builder turns the worker's packages and their dependencies into wheels; the runtime stage
# (the last, so the default target) installs those wheels offline into a slim Python, so no
# compiler, pip cache or source tree ends up in the image, and nothing a worker does not run:
# no E2B emulator, no benchmark, no Temporal dev server. The `local-tools` target adds the
# emulator (and the `local` extra) for compose's dry run:
#   docker build -f deploy/worker.Dockerfile --target local-tools -t session-worker-local:0.1.0 .
# `deploy/worker.Dockerfile.dockerignore` keeps the context small.
#
# Reproducible: every base image is pinned by tag *and* by the digest of its multi-architecture
# index (so amd64 and arm64 builds both resolve; `check_deploy.py` refuses a FROM without one),
# and the worker's dependencies come from `deploy/requirements.lock`, every version pinned with
# its sha256 hashes (`pip --require-hashes`); the header of that file is the command that
# regenerates it. To move the base image, change tag and digest together:
#   docker buildx imagetools inspect python:3.11.14-slim-bookworm   # "Digest:" of the index

FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# The locked dependencies first (a layer that changes only with the lock): binary wheels only,
# each checked against the lock's hashes. The lock goes along with them for the runtime stage.
COPY deploy/requirements.lock ./deploy/
RUN pip download --no-cache-dir --require-hashes --no-deps --only-binary=:all: \
        --dest /wheels -r deploy/requirements.lock \
    && cp deploy/requirements.lock /wheels/requirements.lock
COPY pyproject.toml README.md worker.py ./
COPY common ./common
COPY provider ./provider
COPY ledger ./ledger
COPY telemetry ./telemetry
COPY activities ./activities
COPY workflows ./workflows
COPY sessions ./sessions
# The project's own wheel, without dependencies: those are the lock's, above.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .


FROM builder AS builder-local

COPY emulator ./emulator
RUN pip wheel --no-cache-dir --wheel-dir /wheels-local '.[local]'


FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS local-tools

LABEL org.opencontainers.image.title="session-worker-local" \
      org.opencontainers.image.description="The E2B emulator and sessions dev, for dry runs" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 sessions \
    && useradd --system --uid 10001 --gid sessions --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin sessions

RUN --mount=type=bind,from=builder-local,source=/wheels-local,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels "$(ls /wheels/session_worker-*.whl)[local]"

WORKDIR /tmp
USER 10001:10001
EXPOSE 49982 49983
CMD ["sessions", "emulator", "--host", "0.0.0.0"]


FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS runtime

LABEL org.opencontainers.image.title="session-worker" \
      org.opencontainers.image.description="Temporal worker running E2B sandbox sessions" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SESSIONS_TASK_QUEUE=sandbox-sessions \
    SESSIONS_HEALTH_PORT=8080 \
    SESSIONS_DATA_DIR=/tmp/sessions

# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify it without a name lookup.
RUN groupadd --system --gid 10001 sessions \
    && useradd --system --uid 10001 --gid sessions --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin sessions

# Offline install from the builder's wheels; the bind mount keeps them out of every layer. The
# dependencies exactly as locked (hashes checked again), the project's wheel without resolving
# anything, then `pip check`: a dependency missing from the lock fails the build here.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels \
        --require-hashes --no-deps -r /wheels/requirements.lock \
    && pip install --no-cache-dir --no-index --no-deps /wheels/session_worker-*.whl \
    && pip check

WORKDIR /tmp
USER 10001:10001

# 8080: GET /healthz (alive) and /readyz (connected and polling). Metrics are pushed over OTLP
# (OTEL_EXPORTER_OTLP_ENDPOINT), the Temporal SDK's included: nothing to scrape here.
EXPOSE 8080

# The worker drains on SIGTERM: running activities get SESSIONS_DRAIN_TIMEOUT (11 min by
# default) to finish, so give the container that and 30 s more before SIGKILL (compose:
# stop_grace_period; Kubernetes: terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM

HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SESSIONS_HEALTH_PORT', '8080'), timeout=2)"]

CMD ["sessions", "worker"]
