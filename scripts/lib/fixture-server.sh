# Sourced, not run: trains a small model on 120 days of the committed real-data fixture
# (tests/data/btc-usd-hourly-bitstamp-2018-2022.csv.gz) into a local store and registry under
# a work directory, then serves the registry champion on a free port. Used by
# scripts/fuzz-api and tests/protocols/run.sh (one way to get a served model for the
# black-box tests). The caller sets `bin` (the release binaries' folder) and `work` (a
# directory it removes), and kills $serve_pid on exit (fixture_stop does it).
#   fixture_train                   # extract, validate, transform, train (--force-promote)
#   fixture_serve [serve flags...]  # sets serve_port, serve_pid; waits for /ready
#   fixture_stop

fixture_check_bins() {
  local b
  for b in rps-extract rps-validate rps-transform rps-train rps-serve; do
    [ -x "$bin/$b" ] || { echo "$b is missing in $bin: cargo build --release" >&2; return 2; }
  done
}

fixture_train() {
  export RPS_STORE=$work/store RPS_REGISTRY=$work/registry RPS_COINS=BTC RUST_LOG=${RUST_LOG:-warn}
  local start=2021-11-01T00:00:00Z end=2022-03-01T00:00:00Z
  echo "training a small model on the fixture ($start .. $end)"
  "$bin/rps-extract" --source csv --path tests/data/btc-usd-hourly-bitstamp-2018-2022.csv.gz \
    --start "$start" --end "$end"
  "$bin/rps-validate" --end "$end" --report "$work/validation.json"
  "$bin/rps-transform" --validation-report "$work/validation.json" --summary "$work/transform.json"
  "$bin/rps-train" --epochs 2 --hidden 8 --force-promote --package-out "$work/model" \
    --report-dir "$work/reports" --metrics "$work/train.json" >/dev/null
}

fixture_serve() {
  serve_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$bin/rps-serve" serve --addr "127.0.0.1:$serve_port" "$@" > "$work/serve.log" 2>&1 &
  serve_pid=$!
  local _
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$serve_port/ready" >/dev/null 2>&1 && return 0
    kill -0 "$serve_pid" 2>/dev/null || { cat "$work/serve.log" >&2; echo "rps-serve exited" >&2; return 1; }
    sleep 0.2
  done
  curl -fsS "http://127.0.0.1:$serve_port/ready" >/dev/null || { cat "$work/serve.log" >&2; return 1; }
}

fixture_stop() {
  if [ -n "${serve_pid:-}" ]; then
    kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
    serve_pid=
  fi
  return 0
}
