#!/usr/bin/env bash
# The image step of scripts/test: the runtime image is built with podman from the repository's
# Dockerfile out of the host's release binaries, smoke-tested, and the compose subset that can run
# here is brought up. Needs root, `.ci/install-tools` (podman, buildah, runc, mmdebstrap, the
# compose venv) and `cargo build --release --workspace`.
#   1. scripts/image/podman-env     podman config and storage under .ci-state/podman
#   2. scripts/image/stand-ins      debian:bookworm-slim and prom/prometheus: pulled, or built
#                                   from Debian packages when the registry cannot be reached
#                                   (kept in the storage: built once per machine)
#   3. scripts/image/build          the runtime stage, binaries prebuilt (no cargo in the build)
#   4. tests/image/smoke.sh         the release smoke test (the release workflow runs it with docker)
#   5. tests/image/compose.sh       rps-serve + Prometheus with podman-compose
# RPS_IMAGE_TAG (rps:ci) names the image; RPS_IMAGE_MAX_MB makes a bigger image a failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
t0=$SECONDS
tag=${RPS_IMAGE_TAG:-rps:ci}
step() { printf -- '--- [%3ss] %s\n' $((SECONDS - t0)) "$*"; }

lint=$root/.venv/lint/bin/shellcheck
if [ -x "$lint" ]; then
  "$lint" scripts/image/podman-env scripts/image/stand-ins scripts/image/build tests/image/*.sh \
    || { echo "image: shellcheck found problems in the image scripts" >&2; exit 1; }
fi
env_out=$(scripts/image/podman-env) || { echo "image: podman setup failed" >&2; exit 1; }
eval "$env_out"
step "base images (scripts/image/stand-ins)"
scripts/image/stand-ins
step "runtime image from the release binaries (scripts/image/build $tag)"
scripts/image/build "$tag"
step "release smoke test with podman (tests/image/smoke.sh)"
RPS_CONTAINER=podman tests/image/smoke.sh "$tag"
step "compose subset with podman-compose (tests/image/compose.sh)"
tests/image/compose.sh "$tag"
step "image checks passed in $((SECONDS - t0))s"
