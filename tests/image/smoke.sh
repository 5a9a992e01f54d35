#!/usr/bin/env bash
# Release smoke test of the runtime image, with docker or podman (the GitHub release workflow
# runs it with docker, scripts/test through tests/image/run.sh with podman):
#   RPS_CONTAINER=podman tests/image/smoke.sh IMAGE
# Checks: every binary answers --version; the image runs as uid 10001 and declares a
# HEALTHCHECK by `rps-serve probe`; a tiny synthetic pipeline (extract, validate, transform,
# train into the local registry) runs in a volume; the server started on that volume answers
# /health and /ready 200 and /predict, its HEALTHCHECK passes, it runs as uid 10001. Prints the
# image size; RPS_IMAGE_MAX_MB makes a larger image a failure. RPS_SMOKE_PORT: host port (18000).
# Whatever it starts is removed on exit, also on failure.
set -euo pipefail
image=${1:?usage: tests/image/smoke.sh IMAGE}
c=${RPS_CONTAINER:-docker}
port=${RPS_SMOKE_PORT:-18000}
name=rps-smoke-$$
vol=rps-smoke-$$
t0=$SECONDS
command -v "$c" >/dev/null || { echo "smoke: $c missing" >&2; exit 2; }
# podman times HEALTHCHECKs with systemd timers; CI machines have no systemd, and podman logs
# two errors for each container (on stderr, mixed with the output). The one-off containers run
# without their HEALTHCHECK; the server keeps it, and it is run on demand (podman healthcheck run).
once=("$c" run --rm)
[ "$c" = podman ] && once+=(--no-healthcheck)
command -v curl >/dev/null || { echo "smoke: curl missing" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/rps-smoke.XXXXXX")
started=""
cleanup() {
  local rc=$?
  if [ -n "$started" ]; then
    if [ $rc -ne 0 ]; then echo "--- server log (last 30 lines)" >&2; "$c" logs "$name" 2>&1 | tail -n 30 >&2; fi
    "$c" rm -f "$name" >/dev/null 2>&1 || true
  fi
  "$c" volume rm -f "$vol" >/dev/null 2>&1 || true
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
fail() { echo "smoke FAILED: $*" >&2; exit 1; }
ok() { printf 'smoke ok  [%3ss] %s\n' $((SECONDS - t0)) "$*"; }

"$c" image inspect "$image" >/dev/null 2>&1 || fail "no image $image"

for b in rps-extract rps-validate rps-transform rps-train rps-serve rps-monitor; do
  v=$("${once[@]}" "$image" "$b" --version 2>&1) || fail "$b --version in the image: $v"
  case $v in "$b "*) ;; *) fail "$b --version printed '$v'" ;; esac
done
ok "every binary answers --version ($v)"

user=$("$c" image inspect --format '{{.Config.User}}' "$image")
[ "$user" = 10001:10001 ] || fail "image user is '$user', not 10001:10001"
uid=$("${once[@]}" "$image" id -u)
[ "$uid" = 10001 ] || fail "a container of the image runs as uid $uid, not 10001"
# podman keeps the HEALTHCHECK under .HealthCheck, docker under .Config.Healthcheck (an OCI-format
# image has none at all: build with --format docker).
hc_field='{{json .Config.Healthcheck}}'
[ "$c" = podman ] && hc_field='{{json .HealthCheck}}'
hc=$("$c" image inspect --format "$hc_field" "$image")
case $hc in *'"rps-serve","probe"'*/health*) ;; *) fail "image HEALTHCHECK is '$hc', not rps-serve probe on /health" ;; esac
ok "runs as uid 10001, HEALTHCHECK: rps-serve probe"

"$c" volume create "$vol" >/dev/null
# shellcheck disable=SC2016 # the script runs in the container's shell
if ! "${once[@]}" -v "$vol:/app" "$image" sh -ec '
    end=2025-01-01T00:00:00Z
    rps-extract --source synthetic --coins BTC --start 2024-11-01T00:00:00Z --end "$end"
    rps-validate --coins BTC --end "$end" --report reports/validation.json
    rps-transform --coins BTC --summary reports/transform.json --profile reports/profile.html
    rps-train --coins BTC --epochs 1 --hidden 8 --metrics reports/train_metrics.json --package-out models/latest' \
    > "$work/pipeline.log" 2>&1; then
  tail -n 30 "$work/pipeline.log" >&2
  fail "the synthetic pipeline in the image failed (log above)"
fi
ok "synthetic pipeline: extract, validate, transform, train into the volume"

"$c" run -d --name "$name" -v "$vol:/app" -p "127.0.0.1:$port:8000" "$image" > "$work/run.log" 2>&1 \
  || { cat "$work/run.log" >&2; fail "could not start the server container"; }
started=1
get() { curl -sS -m 5 -o "$work/body" -w '%{http_code}' "http://127.0.0.1:$port$1" 2>/dev/null || true; }
wait_for() { # path status seconds
  local code=""
  for _ in $(seq 1 "$3"); do
    code=$(get "$1")
    [ "$code" = "$2" ] && return 0
    [ "$("$c" inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" = true ] || fail "the server exited"
    sleep 1
  done
  fail "GET $1 answered '${code:-nothing}', not $2, within $3 s: $(head -c 300 "$work/body" 2>/dev/null)"
}
wait_for /health 200 30
wait_for /ready 200 30
code=$(curl -sS -m 5 -o "$work/body" -w '%{http_code}' "http://127.0.0.1:$port/predict" \
  -H 'content-type: application/json' -d '{"coin":"BTC"}' || true)
if [ "$code" != 200 ] || ! grep -q '"forecast_close"' "$work/body"; then
  fail "POST /predict answered $code: $(head -c 300 "$work/body")"
fi
ok "server: /health 200, /ready 200, /predict a forecast"

if [ "$c" = podman ]; then
  podman healthcheck run "$name" > "$work/hc.log" 2>&1 || { cat "$work/hc.log" >&2; fail "podman healthcheck run: unhealthy"; }
else
  "$c" exec "$name" rps-serve probe --url http://127.0.0.1:8000/health --timeout 4s > "$work/hc.log" 2>&1 \
    || { cat "$work/hc.log" >&2; fail "the HEALTHCHECK command fails in the container"; }
fi
uid=$("$c" exec "$name" id -u)
[ "$uid" = 10001 ] || fail "the server runs as uid $uid"
[ "$("$c" inspect --format '{{.State.Running}}' "$name")" = true ] || fail "the server is not running"
ok "HEALTHCHECK passes, server runs as uid 10001"

size=$("$c" image inspect --format '{{.Size}}' "$image")
mb=$(awk -v s="$size" 'BEGIN {printf "%.1f", s / 1e6}')
if [ -n "${RPS_IMAGE_MAX_MB:-}" ] && awk -v m="$mb" -v x="$RPS_IMAGE_MAX_MB" 'BEGIN {exit !(m > x)}'; then
  fail "image $image is $mb MB, over RPS_IMAGE_MAX_MB=$RPS_IMAGE_MAX_MB"
fi
ok "image $image: $mb MB${RPS_IMAGE_MAX_MB:+ (limit $RPS_IMAGE_MAX_MB MB)}"
echo "smoke test passed in $((SECONDS - t0))s"
