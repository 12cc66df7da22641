# E2B sandbox template `donmai-worker`: E2B's code-interpreter image plus the donmai runner.
# Build and publish it with the E2B CLI (see deploy/e2b/README.md):
#   e2b template build --name donmai-worker --dockerfile deploy/e2b/e2b.Dockerfile \
#     --start-cmd "donmai agent run"

# E2B publishes e2bdev/code-interpreter under the `latest` tag only (no version tags), so the
# only way to pin it is by digest: resolve the current one with
#   docker buildx imagetools inspect e2bdev/code-interpreter:latest
# and write `FROM e2bdev/code-interpreter:latest@sha256:<digest>` below before publishing.
# hadolint ignore=DL3007
FROM e2bdev/code-interpreter:latest

# The donmai release to bake in; bump it deliberately, with DONMAI_SHA256 from the release's
# checksums file (an empty DONMAI_SHA256 skips the check).
ARG DONMAI_VERSION=v0.11.0
ARG DONMAI_ASSET=donmai_linux_amd64
ARG DONMAI_SHA256=""

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN curl -fsSL --retry 3 -o /usr/local/bin/donmai \
        "https://github.com/renseiai/donmai/releases/download/${DONMAI_VERSION}/${DONMAI_ASSET}" \
    && if [ -n "${DONMAI_SHA256}" ]; then \
        echo "${DONMAI_SHA256}  /usr/local/bin/donmai" | sha256sum -c -; \
    fi \
    && chmod 0755 /usr/local/bin/donmai \
    && donmai --version

# The platform's E2B provider boots a sandbox from this template; the start command runs the
# in-box runner, which reads its session from the environment the platform injects.
CMD ["donmai", "agent", "run"]
