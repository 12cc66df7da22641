# E2B sandbox template `donmai-worker`: E2B's code-interpreter image plus the donmai runner.
# Build and publish it with E2B's build system v2 (see deploy/e2b/README.md), from the
# repository root, with the release asset's sha256:
#   python deploy/e2b/template.py --donmai-sha256 <sha256>
# or with the E2B CLI, after writing that sha256 into the DONMAI_SHA256 line below (the CLI's
# `template create` takes no build arguments):
#   e2b template create donmai-worker --dockerfile deploy/e2b/e2b.Dockerfile
#
# No start command (no CMD): E2B runs a template's start command once, when it builds the
# template, and snapshots it; it never sees the env a sandbox is created with, so it could not
# know its session. The runner is launched per session after create (pool `launchRunnerInline`,
# `sessions start --launch-runner-inline`), with the session's env.

# Pinned by digest: E2B publishes e2bdev/code-interpreter only as `latest`. To move it, resolve
# the current digest (`docker buildx imagetools inspect e2bdev/code-interpreter:latest`), test,
# and write it here; deploy/check_deploy.py refuses a base image without `@sha256:`.
FROM e2bdev/code-interpreter@sha256:442ec598ec8ca4ed01b5bb24ad6e4f2e6ac80fd88f1564ff9a01e82da18e1e3b

# The donmai release to bake in; bump it deliberately, together with DONMAI_SHA256.
ARG DONMAI_VERSION=v0.11.0
ARG DONMAI_ASSET=donmai_linux_amd64
# Required: the sha256 of ${DONMAI_ASSET} from the release's checksums. The build fails when it
# is empty, malformed, or does not match the download.
ARG DONMAI_SHA256=

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN if ! printf '%s' "${DONMAI_SHA256}" | grep -Eqx '[0-9a-f]{64}'; then \
        echo "DONMAI_SHA256 must be the 64-hex sha256 of ${DONMAI_ASSET} ${DONMAI_VERSION}" \
            "(from the release's checksums); got '${DONMAI_SHA256}'" >&2; \
        exit 1; \
    fi \
    && curl -fsSL --retry 3 -o /usr/local/bin/donmai \
        "https://github.com/renseiai/donmai/releases/download/${DONMAI_VERSION}/${DONMAI_ASSET}" \
    && echo "${DONMAI_SHA256}  /usr/local/bin/donmai" | sha256sum -c - \
    && chmod 0755 /usr/local/bin/donmai \
    && donmai --version
