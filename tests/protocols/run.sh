#!/usr/bin/env bash
# The serving protocols with the ecosystems' own clients: trains a small model on the committed
# fixture and serves it on a free port (scripts/lib/fixture-server.sh, shared with
# scripts/fuzz-api), then runs MLflow's ScoringServerClient (.venv/mlflow) against /ping,
# /version and /invocations, and Triton's tritonclient[http] (.venv/oip) against the Open
# Inference Protocol v2 routes. Each asserts its forecasts equal /predict's for the same bars.
# scripts/test runs it; both venvs come from .ci/install-tools.
#   tests/protocols/run.sh            # uses target/release binaries (cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
for py in mlflow oip; do
  [ -x "$root/.venv/$py/bin/python" ] || { echo "protocols: .venv/$py is missing: run .ci/install-tools" >&2; exit 2; }
done
bin=${CARGO_TARGET_DIR:-$root/target}/release
. scripts/lib/fixture-server.sh
fixture_check_bins || exit 2

work=$(mktemp -d)
serve_pid=
cleanup() {
  fixture_stop
  rm -rf "$work"
}
trap cleanup EXIT

fixture_train
fixture_serve
export RPS_BASE=http://127.0.0.1:$serve_port
rc=0
echo "protocols: MLflow scoring protocol (mlflow $("$root/.venv/mlflow/bin/python" -c 'import mlflow; print(mlflow.__version__)'))"
"$root/.venv/mlflow/bin/python" tests/protocols/mlflow_client.py || rc=1
echo "protocols: Open Inference Protocol v2 (tritonclient $("$root/.venv/oip/bin/python" -c 'import importlib.metadata as m; print(m.version("tritonclient"))'))"
"$root/.venv/oip/bin/python" tests/protocols/oip_client.py || rc=1
if [ $rc -ne 0 ]; then
  echo "protocols: FAILED; server log tail:" >&2
  tail -20 "$work/serve.log" >&2
fi
exit $rc
