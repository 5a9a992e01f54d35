#!/usr/bin/env bash
# Serving benchmark (prints figures; not a test).
#   bench/serve.sh                  # model: $RPS_BENCH_MODEL, else models/latest, else a
#                                   # production-shaped model trained here (1 epoch)
# Measures rps-serve and a FastAPI + uvicorn server doing the same work (bench/fastapi_app.py:
# same validation rules, the same 39 features, the same LSTM weights in numpy) on loopback:
# - throughput and p50/p99 latency with wrk at 16 and 64 connections for $RPS_BENCH_DURATION
#   (default 10s) against GET /health, POST /predict {"coin":"BTC"} (the store forecast, cached
#   per newest bar) and POST /predict with the newest bars in the body (features + LSTM on
#   every request);
# - cold start: process start to the first 200 on /ready (median of 5);
# - RSS: peak resident memory (VmHWM after each load; summed over uvicorn's worker processes).
# Both servers get the machine's cores, as each would be deployed on one machine: rps-serve
# with `--workers $(nproc)` (its default) and uvicorn with one worker process per core
# (`--workers $(nproc)`, uvloop + httptools from uvicorn[standard]; FastAPI's own advice for a
# single host). RPS_BENCH_WORKERS overrides the rps-serve worker threads (e.g. 1 to leave wrk
# a core).
# wrk runs on the same machine, so the figures include its CPU use; on a shared machine they
# vary from run to run (the load average is printed).
# Needs: wrk (Debian package; .ci/install-tools installs it), python3 with venv. The FastAPI
# venv is .venv/bench-serve, pinned by bench/requirements-serve.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-1}
csv=${RPS_BENCH_CSV:-tests/data/btc-usd-hourly-bitstamp-2018-2022.csv.gz}
dur=${RPS_BENCH_DURATION:-10s}
conns=(16 64)
cores=$(nproc)
work=$(mktemp -d -t rps-bench-serve.XXXXXX)
server_pid=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap 'stop_server; rm -rf "$work"' EXIT

command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk (or .ci/install-tools)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "GNU time is missing: apt-get install time" >&2; exit 2; }
[ -f "$csv" ] || { echo "no data file $csv (set RPS_BENCH_CSV)" >&2; exit 2; }

echo "== building (release)" >&2
cargo build --release -q -p rps-serve -p rps-extract -p rps-transform -p rps-train
bin=$root/target/release

venv=$root/.venv/bench-serve
stamp=$(sha256sum bench/requirements-serve.txt | cut -c1-16)
if [ ! -f "$venv/.stamp" ] || [ "$(cat "$venv/.stamp")" != "$stamp" ]; then
  echo "== creating $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r bench/requirements-serve.txt
  echo "$stamp" > "$venv/.stamp"
fi

echo "== store: the shared CSV imported with rps-extract" >&2
"$bin/rps-extract" --store "$work/data" --source csv --path "$csv" --coins BTC >/dev/null 2>&1

model=${RPS_BENCH_MODEL:-}
if [ -z "$model" ] && [ -f models/latest/metadata.json ]; then model=models/latest; fi
if [ -z "$model" ]; then
  echo "== model: none given; training a production-shaped one (default hidden/lookback, 1 epoch)" >&2
  "$bin/rps-transform" --store "$work/data" --coins BTC >/dev/null 2>&1
  "$bin/rps-train" --store "$work/data" --coins BTC --registry "$work/registry" \
    --report-dir "$work/reports" --package-out "$work/model" --epochs 1 --max-train-rows 4000 \
    >/dev/null 2>&1
  model=$work/model
fi
model=$(cd "$model" && pwd)

# Request bodies: the newest min_bars bars of the store, as clients would send them.
python3 - "$csv" "$model" "$work" <<'EOF'
import csv, gzip, json, sys
src, model, work = sys.argv[1:4]
meta = json.load(open(f"{model}/metadata.json"))
need = 168 + meta["lookback"]
rows = sorted(csv.DictReader((gzip.open if src.endswith(".gz") else open)(src, "rt")), key=lambda r: int(r["unix"]))[-need:]
bars = [{"ts": int(r["unix"]) * 1000, "open": float(r["Open"]), "high": float(r["High"]),
         "low": float(r["Low"]), "close": float(r["Close"]), "volume": float(r["Volume USD"])}
        for r in rows]
json.dump(bars, open(f"{work}/tail.json", "w"))
json.dump({"coin": "BTC", "bars": bars}, open(f"{work}/bars.json", "w"))
json.dump({"coin": "BTC"}, open(f"{work}/store.json", "w"))
for name in ("bars", "store"):
    open(f"{work}/{name}.lua", "w").write(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'local f = io.open("{work}/{name}.json")\nwrk.body = f:read("*a")\nf:close()\n')
print(f"model: hidden {meta['hidden']}, lookback {meta['lookback']}, {len(meta['inputs'])} inputs; "
      f"bars body: {len(bars)} bars, {len(json.dumps({'coin': 'BTC', 'bars': bars}))} bytes", file=sys.stderr)
EOF

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_server NAME PORT: starts it in the background (sets server_pid).
start_server() {
  local name=$1 port=$2 cmd
  mapfile -t cmd < <(server_cmd "$name" "$port")
  RUST_LOG=warn RPS_BENCH_MODEL=$model RPS_BENCH_BARS=$work/tail.json "${cmd[@]}" \
    >/dev/null 2>"$work/$name.log" &
  server_pid=$!
}

# server_cmd NAME PORT: the command line of a server (one word per line).
server_cmd() {
  local name=$1 port=$2
  if [ "$name" = rust ]; then
    printf '%s\n' "$bin/rps-serve" serve --addr "127.0.0.1:$port" --model-dir "$model" \
      --store "$work/data" --poll-interval 1h --store-poll-interval 1h \
      --workers "${RPS_BENCH_WORKERS:-$cores}"
  else
    printf '%s\n' "$venv/bin/uvicorn" --app-dir bench fastapi_app:app --host 127.0.0.1 \
      --port "$port" --workers "$cores" --log-level warning --no-access-log
  fi
}

# cold_start NAME: median milliseconds from process start to the first 200 on /ready (a
# Python poller retrying every 0.5 ms, so the figure is not curl's start-up time).
cold_start() {
  local name=$1 cmd
  mapfile -t cmd < <(server_cmd "$name" PORT)
  RUST_LOG=warn RPS_BENCH_MODEL=$model RPS_BENCH_BARS=$work/tail.json python3 - "$name" "${cmd[@]}" <<'PY'
import http.client, socket, statistics, subprocess, sys, time
name, template = sys.argv[1], sys.argv[2:]
runs = []
for _ in range(5):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    cmd = [a.replace("PORT", str(port)) for a in template]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/ready")
            if c.getresponse().status == 200:
                break
        except OSError:
            pass
        if p.poll() is not None:
            sys.exit(f"{name} exited during start-up")
        time.sleep(0.0005)
    runs.append((time.monotonic() - t0) * 1000)
    p.terminate(); p.wait()
print(round(statistics.median(runs)))
PY
}

# rss_of PID [FIELD]: KiB of FIELD (VmRSS: resident now, default; VmHWM: peak resident) of the
# process and its children, summed.
rss_of() {
  local total=0 p field=${2:-VmRSS}
  for p in $1 $(pgrep -P "$1" || true); do
    total=$(( total + $(awk -v f="$field:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null || echo 0) ))
  done
  echo "$total"
}

# cpu_ticks PID: user+system clock ticks used so far by the process and its children (workers).
cpu_ticks() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    total=$(( total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0) ))
  done
  echo "$total"
}

# load NAME URL [LUA] CONNS: runs wrk, prints "req/s p50 p99 non2xx peak_MB server_us wrk_us"
# (the last two: CPU microseconds per request of the server and of wrk). The peak RSS is
# read after the run from the kernel's high-water mark (VmHWM, summed over uvicorn's workers):
# sampling during the run forked pgrep/awk every half second on the 2 busy cores, and those
# bursts alone pushed the p99 at 16 connections from ~0.6 ms to ~1 ms.
load() {
  local url=$2 lua=${3:-} c=$4 out peak t0 t1
  local args=(-t2 -c"$c" -d"$dur" --latency)
  [ -n "$lua" ] && args+=(-s "$lua")
  t0=$(cpu_ticks "$server_pid")
  /usr/bin/time -f "%U %S" -o "$work/wrk.time" wrk "${args[@]}" "$url" > "$work/wrk.out" 2>&1
  t1=$(cpu_ticks "$server_pid")
  peak=$(rss_of "$server_pid" VmHWM)
  out=$(cat "$work/wrk.out")
  local rps p50 p99 bad
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  bad=$(awk '/Non-2xx/ {print $NF}' <<<"$out"); bad=${bad:-0}
  local n hz cpu_us
  n=$(awk '/requests in/ {print $1}' <<<"$out"); hz=$(getconf CLK_TCK)
  cpu_us=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v n="$n" -v w="$(cat "$work/wrk.time")" \
    'BEGIN {split(w, a, " "); printf "%.1f %.1f", t / hz * 1e6 / n, (a[1] + a[2]) * 1e6 / n}')
  echo "$rps $p50 $p99 $bad $((peak / 1024)) $cpu_us"
}

echo "== machine: $cores cores, load average $(cut -d' ' -f1-3 /proc/loadavg); rps-serve --workers ${RPS_BENCH_WORKERS:-$cores}, uvicorn --workers $cores" >&2
results=$work/results.txt
: > "$results"
for name in rust fastapi; do
  echo "== $name: cold start" >&2
  cold=$(cold_start "$name")
  echo "cold_start $name $cold" >> "$results"
  port=$(free_port)
  start_server "$name" "$port"
  until curl -fs -o /dev/null "http://127.0.0.1:$port/ready"; do sleep 0.01; done
  base=http://127.0.0.1:$port
  curl -fs -X POST -H 'content-type: application/json' --data @"$work/bars.json" "$base/predict" > "$work/$name.forecast.json"
  curl -fs -X POST -H 'content-type: application/json' --data @"$work/store.json" "$base/predict" > /dev/null
  echo "rss_idle $name $(( $(rss_of "$server_pid") / 1024 ))" >> "$results"
  for ep in health store bars; do
    for c in "${conns[@]}"; do
      echo "== $name: $ep at $c connections for $dur" >&2
      case $ep in
        health) r=$(load "$name" "$base/health" "" "$c") ;;
        *) r=$(load "$name" "$base/predict" "$work/$ep.lua" "$c") ;;
      esac
      echo "load $name $ep $c $r" >> "$results"
    done
  done
  stop_server
done

python3 - "$results" "$work" <<'EOF'
import json, sys
res, work = sys.argv[1:3]
rows, cold, idle = [], {}, {}
for line in open(res):
    f = line.split()
    if f[0] == "cold_start": cold[f[1]] = int(f[2])
    elif f[0] == "rss_idle": idle[f[1]] = int(f[2])
    else: rows.append(f[1:])
a = json.load(open(f"{work}/rust.forecast.json"))["forecast_close"]
b = json.load(open(f"{work}/fastapi.forecast.json"))["forecast_close"]
names = {"health": "GET /health", "store": "POST /predict (store, cached)", "bars": "POST /predict (bars: features+LSTM)"}
print(f"\nSame work check: forecast_close rust {a:.4f} vs fastapi {b:.4f} (relative difference {abs(a-b)/a:.1e})")
print(f"\n{'endpoint':38} {'conns':>5} | {'rust req/s':>10} {'p50':>9} {'p99':>9} {'RSS MB':>6} | {'fastapi req/s':>13} {'p50':>9} {'p99':>9} {'RSS MB':>6} | {'ratio':>6}")
by = {(r[0], r[1], r[2]): r[3:] for r in rows}
for ep in ("health", "store", "bars"):
    for c in ("16", "64"):
        ru, fa = by[("rust", ep, c)], by[("fastapi", ep, c)]
        ratio = float(ru[0]) / float(fa[0]) if float(fa[0]) else float("inf")
        bad = "" if ru[3] == "0" and fa[3] == "0" else f"  (non-2xx: rust {ru[3]}, fastapi {fa[3]})"
        print(f"{names[ep]:38} {c:>5} | {float(ru[0]):>10.0f} {ru[1]:>9} {ru[2]:>9} {ru[4]:>6} | {float(fa[0]):>13.0f} {fa[1]:>9} {fa[2]:>9} {fa[4]:>6} | {ratio:>5.1f}x{bad}")
print("\nCPU per request, microseconds (server incl. its kernel time / wrk), from /proc/<pid>/stat and GNU time:")
for ep in ("health", "store", "bars"):
    for c in ("16", "64"):
        ru, fa = by[("rust", ep, c)], by[("fastapi", ep, c)]
        print(f"{names[ep]:38} {c:>5} | rust {ru[5]:>8} / wrk {ru[6]:>5} | fastapi {fa[5]:>8} / wrk {fa[6]:>5}")
print(f"\nCold start (process start -> first 200 on /ready, median of 5): rust {cold['rust']} ms, fastapi {cold['fastapi']} ms")
print(f"RSS after warm-up: rust {idle['rust']} MB, fastapi {idle['fastapi']} MB (all workers)")
def ms(t):
    return float(t[:-2]) if t.endswith("ms") else float(t[:-2]) / 1000 if t.endswith("us") else float(t[:-1]) * 1000
st = by[("rust", "store", "16")]
worst = max(float(by[("rust", ep, c)][0]) / float(by[("fastapi", ep, c)][0]) for ep in ("health", "store", "bars") for c in ("16", "64"))
least = min(float(by[("rust", ep, c)][0]) / float(by[("fastapi", ep, c)][0]) for ep in ("health", "store", "bars") for c in ("16", "64"))
peak = max(int(by[("rust", ep, c)][4]) for ep in ("health", "store", "bars") for c in ("16", "64"))
print(f"\nIssue #5 targets: throughput >= 20x FastAPI -> {least:.1f}x..{worst:.1f}x; "
      f"p99 <= 1 ms at 16 connections (store) -> {ms(st[2]):.2f} ms; "
      f"cold start <= 100 ms -> {cold['rust']} ms; RSS <= 50 MB -> peak {peak} MB")
EOF
