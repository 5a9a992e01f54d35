#!/usr/bin/env bash
# Training benchmark (prints figures; not a test).
#   bench/train.sh            # rps-train on the shared 33k-hour file with default params,
#                             # then candle vs PyTorch at identical shapes
# 1. rps-train, default params, on features of the shared Bitstamp file (built with the real
#    stages: rps-extract --source csv, rps-transform): seconds per epoch, total wall time,
#    peak RSS (GNU time), and the evaluation summary.
# 2. The fused-op LSTM (`rps-model` example epoch_speed) and PyTorch (bench/torch_lstm.py,
#    1 thread) on the same synthetic shapes: docs/CANDLE.md reference shape (20k windows x 24
#    steps x 4 inputs, hidden 64, batch 64) and rps-train's default shape (48 steps x 39
#    inputs). PyTorch runs only if a Python with torch is available: TORCH_PYTHON=/path/python,
#    or RPS_BENCH_INSTALL_TORCH=1 to create a venv at $RPS_BENCH_TORCH_VENV (default
#    ~/.cache/rps-bench-torch; PyPI's default wheel is the CUDA build, ~5.4 GB, several
#    minutes: never done by CI). A venv already at that path is used without asking.
# Wall-clock figures are only meaningful on a quiet machine: the script prints the load
# average and the SIMD level the kernels use (AVX-512 when the CPU has it, else AVX2/FMA).
# Environment: RAYON_NUM_THREADS=1 (rps-train sets it itself when unset).
set -euo pipefail
cd "$(dirname "$0")/.."
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-1}
csv=${RPS_BENCH_CSV:-tests/data/btc-usd-hourly-bitstamp-2018-2022.csv.gz}
work=$(mktemp -d -t rps-bench-train.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== building (release)" >&2
cargo build --release -q -p rps-extract -p rps-transform -p rps-train
cargo build --release -q -p rps-model --example epoch_speed
bin=${CARGO_TARGET_DIR:-target}/release
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), kernels: $(if grep -qw avx512f /proc/cpuinfo; then echo AVX-512; elif grep -qw avx2 /proc/cpuinfo; then echo AVX2/FMA; else echo scalar; fi)"

echo "== features of $csv" >&2
"$bin/rps-extract" --store "$work/data" --source csv --path "$csv" --coins BTC >/dev/null 2>&1
"$bin/rps-transform" --store "$work/data" --coins BTC >/dev/null 2>&1

# RPS_BENCH_TRAIN_ARGS: extra rps-train flags, split on whitespace.
read -r -a extra_args <<<"${RPS_BENCH_TRAIN_ARGS:-}"
echo "== rps-train, default params (local registry)" >&2
timefmt='%e %M'
/usr/bin/time -f "$timefmt" -o "$work/time" \
  "$bin/rps-train" --store "$work/data" --registry "$work/registry" --report-dir "$work/reports" \
  --metrics "$work/metrics.json" --package-out "$work/model" "${extra_args[@]}" \
  >"$work/stdout" 2>"$work/stderr"
read -r wall rss_kb <"$work/time"
python3 - "$work/metrics.json" "$wall" "$rss_kb" <<'PY'
import json, sys
m = json.load(open(sys.argv[1])); t = m["training"]
print(f"rps-train default params: {t['epochs_run']} epochs (best {t['best_epoch']}), "
      f"{t['seconds_per_epoch']:.2f} s/epoch, training {t['seconds']:.1f} s, "
      f"total wall {float(sys.argv[2]):.1f} s, peak RSS {int(sys.argv[3]) / 1024:.0f} MiB")
te = m["test"]
print(f"  test {te['model']['rows']} h: RMSE {te['model']['rmse']:.2f} USD vs persistence "
      f"{te['persistence']['rmse']:.2f} (skill {te['model']['skill']:+.4f}), "
      f"90% coverage {m['intervals']['90']['coverage'] * 100:.1f}%")
PY
grep -E "epoch [0-9]+/" "$work/stderr" | sed 's/^/  /' | head -3 >&2

python=${TORCH_PYTHON:-}
venv=${RPS_BENCH_TORCH_VENV:-$HOME/.cache/rps-bench-torch}
if [ -z "$python" ] && [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  python=$venv/bin/python
fi
if [ -z "$python" ] && [ "${RPS_BENCH_INSTALL_TORCH:-0}" = 1 ]; then
  if [ ! -x "$venv/bin/python" ]; then
    echo "== installing torch into $venv (PyPI CUDA wheel, ~5 GB)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q torch
  fi
  python=$venv/bin/python
fi

shape() { # label windows steps inputs hidden batch epochs
  local label=$1; shift
  local c t=""
  c=$("$bin/examples/epoch_speed" "$@")
  echo "$label candle(fused op): $c"
  if [ -n "$python" ]; then
    t=$("$python" bench/torch_lstm.py "$@" 1)
    echo "$label pytorch(1 thread): $t"
    python3 - "$c" "$t" <<'PY'
import json, sys
c, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"  ratio candle/pytorch: epoch {c['s_per_epoch_median'] / t['s_per_epoch_median']:.2f}x, "
      f"batch-1 inference {c['infer_us_batch1'] / t['infer_us_batch1']:.2f}x")
PY
  fi
}
echo "== same shape, candle vs pytorch (median of 3 epochs)" >&2
shape "CANDLE.md shape (20k x 24 x 4, h64, b64):" 20000 24 4 64 64 3
shape "rps-train shape (23k x 48 x 39, h64, b64):" 23000 48 39 64 64 3
[ -n "$python" ] || echo "pytorch: skipped (set TORCH_PYTHON or RPS_BENCH_INSTALL_TORCH=1)"
