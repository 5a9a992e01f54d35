#!/usr/bin/env bash
# Backtest benchmark and figures (prints; not a test).
#   bench/backtest.sh        # train on the first 80 % of the shared Bitstamp file, backtest the rest
# With the real stages (rps-extract --source csv, rps-transform, rps-train) a persistence model
# and an LSTM (RPS_BENCH_EPOCHS, default 5, other params default) are trained on the hours
# before the cut; `rps-monitor backtest` then replays the last 20 % (6,651 hours) through the
# serving path. Prints each backtest's summary, wall time, hours per second and peak RSS
# (GNU time). Wall-clock figures are only meaningful on a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-1}
csv=${RPS_BENCH_CSV:-tests/data/btc-usd-hourly-bitstamp-2018-2022.csv.gz}
cut=${RPS_BENCH_CUT:-2021-05-27T21:00:00Z}   # bar 26,607 of 33,259: the first 80 %
epochs=${RPS_BENCH_EPOCHS:-5}
work=$(mktemp -d -t rps-bench-backtest.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== building (release)" >&2
cargo build --release -q -p rps-extract -p rps-transform -p rps-train -p rps-monitor
bin=${CARGO_TARGET_DIR:-target}/release
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

"$bin/rps-extract" --store "$work/train" --source csv --path "$csv" --coins BTC --end "$cut" >/dev/null 2>&1
"$bin/rps-transform" --store "$work/train" --coins BTC >/dev/null 2>&1
"$bin/rps-extract" --store "$work/all" --source csv --path "$csv" --coins BTC >/dev/null 2>&1

for kind in persistence lstm; do
  echo "== $kind: training on the hours before $cut" >&2
  "$bin/rps-train" --store "$work/train" --registry "$work/registry-$kind" --report-dir "$work/reports-$kind" \
    --model-kind "$kind" --epochs "$epochs" --force-promote --no-persistence-champion \
    --package-out "$work/model-$kind" >"$work/train-$kind.log" 2>&1
  echo "== $kind: rps-monitor backtest from $cut"
  /usr/bin/time -f '%e %M' -o "$work/time" \
    "$bin/rps-monitor" backtest --store "$work/all" --coins BTC --package "$work/model-$kind" \
    --start "$cut" --report "$work/bt-$kind.json" --rows "$work/rows-$kind.csv" 2>/dev/null
  read -r secs rss <"$work/time"
  rows=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['rows'])" "$work/bt-$kind.json")
  python3 - "$secs" "$rss" "$rows" <<'PY'
import sys
secs, rss, rows = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
print(f"  {rows} hours in {secs:.2f} s wall (load, features, replay, report): "
      f"{rows / max(secs, 1e-3):,.0f} hours/s, peak RSS {rss / 1024:.1f} MB")
PY
done
