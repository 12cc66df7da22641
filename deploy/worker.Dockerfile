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

FROM python:3.11.14-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md worker.py ./
COPY common ./common
COPY provider ./provider
COPY ledger ./ledger
COPY telemetry ./telemetry
COPY activities ./activities
COPY workflows ./workflows
COPY sessions ./sessions
# The project's wheel plus a wheel for every dependency, resolved once, here.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .


FROM builder AS builder-local

COPY emulator ./emulator
RUN pip wheel --no-cache-dir --wheel-dir /wheels-local '.[local]'


FROM python:3.11.14-slim-bookworm AS local-tools

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


FROM python:3.11.14-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="session-worker" \
      org.opencontainers.image.description="Temporal worker running E2B sandbox sessions" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SESSIONS_TASK_QUEUE=sandbox-sessions \
    SESSIONS_HEALTH_PORT=8080 \
    SESSIONS_METRICS_PORT=9464 \
    SESSIONS_DATA_DIR=/tmp/sessions

# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify it without a name lookup.
RUN groupadd --system --gid 10001 sessions \
    && useradd --system --uid 10001 --gid sessions --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin sessions

# Offline install from the builder's wheels; the bind mount keeps them out of every layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/session_worker-*.whl

WORKDIR /tmp
USER 10001:10001

# 8080: GET /healthz (alive) and /readyz (connected and polling); 9464: Prometheus metrics.
EXPOSE 8080 9464

# The worker drains on SIGTERM: in-flight activities get 30 s to finish, so give the container
# more than that before SIGKILL (compose: stop_grace_period; Kubernetes:
# terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM

HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SESSIONS_HEALTH_PORT', '8080'), timeout=2)"]

CMD ["sessions", "worker"]
