#!/usr/bin/env bash
# Orchestration and delivery checks: the Airflow DAG (integrity + two end-to-end runs), the DVC
# pipeline (repro, param change, push/pull), the model comparison of the `test` workflow, and
# lint of the Dockerfile, the compose file and the GitHub workflows.
#
# Needs: the stage binaries on PATH or in target/release (cargo build --release --workspace),
# the venvs .venv/pipeline and .venv/lint (.ci/install-tools), and the test services
# (eval "$(.ci/services start)": RPS_TEST_MLFLOW_URI, RPS_TEST_S3_ENDPOINT).
# Ends with `N passed, N failed`; exits 1 when any check failed. RPS_KEEP_WORK=1 keeps the
# temporary directory (logs, Airflow home, DVC checkout) for debugging.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root" || exit 1
pipe=$root/.venv/pipeline/bin
lint=$root/.venv/lint/bin
if [ -x "$root/target/release/rps-extract" ]; then export PATH="$root/target/release:$PATH"; fi
export DVC_NO_ANALYTICS=1 PYTHONWARNINGS=ignore NO_COLOR=1

work=$(mktemp -d "${TMPDIR:-/tmp}/rps-orchestration.XXXXXX")
mkdir -p "$work/logs"
cleanup() { if [ -n "${RPS_KEEP_WORK:-}" ]; then echo "work dir kept: $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

passed=0 failed=0 failures=()
t0=$(date +%s)
check() { # name command...
  local name=$1 log=$work/logs/$1.log start=$SECONDS
  shift
  if "$@" >"$log" 2>&1; then
    passed=$((passed + 1))
    printf 'PASS  %-26s %4ss\n' "$name" $((SECONDS - start))
  else
    failed=$((failed + 1))
    failures+=("$name")
    printf 'FAIL  %-26s %4ss  (log: last lines below)\n' "$name" $((SECONDS - start))
    tail -n 40 "$log" | sed 's/^/      | /'
  fi
}
need() { # path what
  [ -x "$1" ] || { echo "missing $1 ($2): run .ci/install-tools" >&2; return 1; }
}

pytest_q() { need "$pipe/pytest" "pipeline venv" && "$pipe/pytest" -q -p no:cacheprovider "$@"; }

# --- static: fast, no services ------------------------------------------------------------------
check dag-integrity pytest_q dags/tests
check delivery-static pytest_q tests/orchestration/test_static.py
check hadolint "$pipe/hadolint" Dockerfile
workflow_lint() {
  need "$lint/check-jsonschema" "lint venv" || return 1
  "$lint/check-jsonschema" --builtin-schema vendor.github-workflows .github/workflows/*.yml &&
    "$lint/check-jsonschema" --builtin-schema custom.github-workflows-require-timeout .github/workflows/*.yml
}
check workflow-lint workflow_lint
compose_lint() {
  need "$lint/check-jsonschema" "lint venv" || return 1
  "$lint/check-jsonschema" --builtin-schema vendor.compose-spec compose.yaml
}
check compose-lint compose_lint
python_lint() {
  need "$lint/ruff" "lint venv" || return 1
  local cfg=tests/orchestration/ruff.toml py=(dags tests/orchestration .github/scripts)
  "$lint/ruff" check --no-cache --config "$cfg" "${py[@]}" && "$lint/ruff" format --no-cache --check --config "$cfg" "${py[@]}"
}
check python-lint python_lint
shell_lint() { need "$lint/shellcheck" "lint venv" && "$lint/shellcheck" tests/orchestration/*.sh; }
check shellcheck shell_lint

# --- against the test services -------------------------------------------------------------------
check compare-models pytest_q tests/orchestration/test_compare_models.py
check airflow-setup "$here/airflow_e2e.sh" setup "$work"
check airflow-good-run "$here/airflow_e2e.sh" good "$work"
check airflow-drift-branch-run "$here/airflow_e2e.sh" drift "$work"
check airflow-bad-data-run "$here/airflow_e2e.sh" bad "$work"
check airflow-many-workers-run "$here/airflow_e2e.sh" many "$work"
check dvc-repro "$here/dvc_roundtrip.sh" repro "$work"
check dvc-train-param-change "$here/dvc_roundtrip.sh" params "$work"
check dvc-push-pull "$here/dvc_roundtrip.sh" pushpull "$work"

echo "orchestration checks took $(($(date +%s) - t0))s"
[ "$failed" -eq 0 ] || echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
