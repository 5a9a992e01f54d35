#!/usr/bin/env bash
# Brings up the part of compose.yaml whose images exist here - rps-serve (the runtime image) and
# Prometheus - with podman-compose (.venv/compose) and tests/image/compose.override.yaml, as the
# project rps-citest, then checks: rps-serve with no MLflow reachable stays up unready (/health
# 200, /ready 503); Prometheus scrapes it by its service name (target up) and has loaded every
# rule of monitoring/alerts.yml. Everything it started is removed on exit, also on failure.
#   tests/image/compose.sh IMAGE        (needs eval "$(scripts/image/podman-env)")
# The other services (MinIO, Postgres, MLflow, Airflow, Grafana) are checked statically
# (tests/orchestration/test_static.py, compose-lint).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export RPS_IMAGE=${1:?usage: tests/image/compose.sh IMAGE}
: "${CONTAINERS_STORAGE_CONF:?run: eval \"\$(scripts/image/podman-env)\"}"
pc=$root/.venv/compose/bin/podman-compose
[ -x "$pc" ] || { echo "compose: $pc missing: run .ci/install-tools" >&2; exit 2; }
project=rps-citest
override=tests/image/compose.override.yaml
port_of() { sed -n "s/^ *- \"127.0.0.1:\([0-9]*\):$1\"$/\1/p" "$override"; }
serve_port=$(port_of 8000) prom_port=$(port_of 9090)
[ -n "$serve_port" ] && [ -n "$prom_port" ] || { echo "compose: no 127.0.0.1 ports in $override" >&2; exit 2; }
# compose.yaml insists on these (${VAR:?}); none of the services started here uses them.
for v in MINIO_ROOT_USER MINIO_ROOT_PASSWORD POSTGRES_PASSWORD MLFLOW_DB_PASSWORD \
         AIRFLOW_DB_PASSWORD AIRFLOW_JWT_SECRET GRAFANA_ADMIN_PASSWORD; do
  export "$v=compose-test-not-a-secret"
done
compose() { "$pc" --in-pod false -p "$project" -f compose.yaml -f "$override" "$@"; }
t0=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/rps-compose.XXXXXX")
cleanup() {
  local rc=$?
  if [ $rc -ne 0 ]; then
    for s in rps-serve prometheus; do
      echo "--- $s log (last 20 lines)" >&2
      podman logs --tail 20 "${project}_${s}_1" 2>&1 | cut -c1-300 >&2 || true
    done
  fi
  compose down -v > "$work/down.log" 2>&1 || true
  # whatever `down` left (a failed `up` half-way)
  local ids
  mapfile -t ids < <(podman ps -aq --filter "label=io.podman.compose.project=$project" 2>/dev/null || true)
  [ ${#ids[@]} -eq 0 ] || podman rm -f "${ids[@]}" >/dev/null 2>&1 || true
  podman network rm -f "${project}_default" >/dev/null 2>&1 || true
  mapfile -t ids < <(podman volume ls -q --filter "label=io.podman.compose.project=$project" 2>/dev/null || true)
  [ ${#ids[@]} -eq 0 ] || podman volume rm -f "${ids[@]}" >/dev/null 2>&1 || true
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
fail() { echo "compose FAILED: $*" >&2; exit 1; }
ok() { printf 'compose ok  [%3ss] %s\n' $((SECONDS - t0)) "$*"; }

podman image inspect "$RPS_IMAGE" >/dev/null 2>&1 || fail "no image $RPS_IMAGE (scripts/image/build)"
compose down -v > /dev/null 2>&1 || true   # a run killed before its cleanup
if ! compose up -d --no-build --no-deps rps-serve prometheus > "$work/up.log" 2>&1; then
  grep -v 'level=error msg="unable to get systemd connection' "$work/up.log" | tail -n 30 >&2
  fail "podman-compose up of rps-serve and prometheus failed (log above)"
fi
ok "podman-compose $("$pc" --version 2>/dev/null | sed -n 's/^podman-compose version //p' | head -1): rps-serve + prometheus up (project $project)"

get() { curl -sS -m 5 -o "$work/body" -w '%{http_code}' "$1" 2>/dev/null || true; }
wait_for() { # url status seconds [jq filter that must print true]
  local code=""
  for _ in $(seq 1 "$3"); do
    code=$(get "$1")
    if [ "$code" = "$2" ] && { [ -z "${4:-}" ] || [ "$(jq -r "$4" "$work/body" 2>/dev/null)" = true ]; }; then
      return 0
    fi
    sleep 1
  done
  fail "GET $1: '${code:-no answer}'${4:+, not $4,} within $3 s: $(head -c 400 "$work/body" 2>/dev/null)"
}
serve=http://127.0.0.1:$serve_port prom=http://127.0.0.1:$prom_port
# Without MLflow, rps-serve answers once its registry lookup has given up (5 attempts, ~25 s).
wait_for "$serve/health" 200 60
wait_for "$serve/ready" 503 10
ok "rps-serve without MLflow: /health 200, /ready 503 ($(head -c 120 "$work/body"))"

wait_for "$prom/-/ready" 200 30
# The first scrape comes within one scrape_interval (15 s) of the start.
wait_for "$prom/api/v1/targets" 200 60 \
  '[.data.activeTargets[] | select(.labels.job == "rps-serve" and .health == "up" and (.scrapeUrl | contains("//rps-serve:8000/")))] | length == 1'
ok "Prometheus scrapes rps-serve:8000 by service name: target up"

mapfile -t expected < <(sed -n 's/^ *- alert: *\([A-Za-z0-9_]*\).*/\1/p' monitoring/alerts.yml | sort -u)
[ ${#expected[@]} -gt 0 ] || fail "no alert rules found in monitoring/alerts.yml"
wait_for "$prom/api/v1/rules" 200 10
mapfile -t loaded < <(jq -r '.data.groups[].rules[] | select(.type == "alerting") | .name' "$work/body" | sort -u)
missing=$(comm -23 <(printf '%s\n' "${expected[@]}") <(printf '%s\n' "${loaded[@]}"))
[ -z "$missing" ] || fail "rules of monitoring/alerts.yml not loaded by Prometheus: $(echo "$missing" | tr '\n' ' ')"
bad=$(jq -r '.data.groups[].rules[] | select(.health == "err") | "\(.name): \(.lastError)"' "$work/body")
[ -z "$bad" ] || fail "rules failing to evaluate: $bad"
ok "Prometheus loaded all ${#expected[@]} alert rules of monitoring/alerts.yml"

wait_for "$prom/api/v1/query?query=up%7Bjob%3D%22rps-serve%22%7D" 200 5 '.data.result[0].value[1] == "1"'
ok "up{job=\"rps-serve\"} = 1"
echo "compose test passed in $((SECONDS - t0))s"
