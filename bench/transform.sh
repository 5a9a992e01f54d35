#!/usr/bin/env bash
# Benchmarks rps-transform against pandas computing the same features (bench/pandas_features.py)
# on the shared real file (33,259 hourly bars) and on that file replicated as 100 coins
# (3,325,900 bars). Prints wall time, CPU time, rows/s, peak RSS and minor page faults of each,
# the ratios, and the issue #3 targets (>= 20x pandas' wall time, peak RSS <= 25 % of pandas').
# Both sides do the same work: read raw/<COIN>.parquet, compute the 42 features and the two
# targets, and write one feature file per coin with the same Parquet settings (uncompressed,
# dictionary only on coin, statistics only on ts, 8,192-row row groups). Neither side
# writes a summary or the HTML profile (rps-transform only builds them when asked).
#
#   bench/transform.sh [WORKDIR]        # WORKDIR defaults to a temp dir, removed afterwards
#
# Env: RPS_BENCH_RUNS (default 3; the fastest run is reported), RPS_BENCH_RUNS_SMALL (runs of
# rps-transform on the 1-coin store, default 10: it takes tens of ms), RPS_BENCH_CSV (input file),
# RPS_TRANSFORM_JOBS (rps-transform --jobs, default one per CPU, at most 4; pandas is
# single-threaded).
# pandas/pyarrow live in .venv/bench (created here, pinned, on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CSV=${RPS_BENCH_CSV:-$ROOT/tests/data/btc-usd-hourly-bitstamp-2018-2022.csv.gz}
RUNS=${RPS_BENCH_RUNS:-3}
RUNS_SMALL=${RPS_BENCH_RUNS_SMALL:-10}
VENV=$ROOT/.venv/bench
PANDAS_VERSION=3.1.1
PYARROW_VERSION=25.0.1
NUMPY_VERSION=2.4.6

[ -f "$CSV" ] || { echo "error: input $CSV not found (set RPS_BENCH_CSV)" >&2; exit 2; }
command -v /usr/bin/time >/dev/null || { echo "error: /usr/bin/time (GNU time) is needed" >&2; exit 2; }

if ! "$VENV/bin/python" -c "import pandas, pyarrow" 2>/dev/null; then
  echo "# creating $VENV (pandas $PANDAS_VERSION, pyarrow $PYARROW_VERSION)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "pandas==$PANDAS_VERSION" "pyarrow==$PYARROW_VERSION" "numpy==$NUMPY_VERSION"
fi

echo "# building (release)" >&2
cargo build -q --release -p rps-transform --bin rps-transform --example gen_store
BIN=$ROOT/target/release/rps-transform
GEN=$ROOT/target/release/examples/gen_store

if [ $# -ge 1 ]; then WORK=$1; mkdir -p "$WORK"; else WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT; fi
echo "# generating input stores in $WORK" >&2
"$GEN" --csv "$CSV" --coins 1 --store "$WORK/s1" >&2
"$GEN" --csv "$CSV" --coins 100 --store "$WORK/s100" >&2

# measure RUNS CMD...: runs CMD RUNS times, keeps the fastest run. Prints
# "wall_s cpu_s rss_kb minor_faults" of that run. Wall time is taken with bash's
# EPOCHREALTIME (microseconds; GNU time's %e has 10 ms steps, too coarse for a 30 ms run),
# so it includes starting GNU time itself (~1 ms); CPU, RSS and faults come from GNU time.
measure() {
  local runs=$1 best="" line t0 t1
  shift
  for _ in $(seq "$runs"); do
    t0=$EPOCHREALTIME
    /usr/bin/time -f "%U %S %M %R" -o "$WORK/time.txt" "$@" >/dev/null 2>"$WORK/stderr.txt" \
      || { cat "$WORK/stderr.txt" >&2; exit 1; }
    t1=$EPOCHREALTIME
    line=$(awk -v t0="$t0" -v t1="$t1" '{printf "%.4f %.2f %d %d", t1 - t0, $1 + $2, $3, $4}' "$WORK/time.txt")
    if [ -z "$best" ] || awk -v a="${line%% *}" -v b="${best%% *}" 'BEGIN{exit !(a < b)}'; then
      best=$line
    fi
  done
  echo "$best"
}

printf '%-22s %-7s %9s %9s %12s %10s %9s\n' case tool wall_s cpu_s rows/s peak_MB faults
for n in 1 100; do
  store=$WORK/s$n
  rows=$((33259 * n))
  label="$((rows / 1000))k rows ($n coin$([ "$n" = 1 ] || echo s))"
  # A 1-coin run takes tens of milliseconds: more runs for a stable fastest one.
  runs=$RUNS
  [ "$n" != 1 ] || runs=$(( RUNS < RUNS_SMALL ? RUNS_SMALL : RUNS ))
  rust=$(measure "$runs" "$BIN" --store "$store" --log-format json)
  pandas=$(measure "$RUNS" "$VENV/bin/python" "$ROOT/bench/pandas_features.py" --store "$store" --out "$WORK/pandas$n")
  for tool in rust pandas; do
    read -r wall cpu rss faults <<<"${!tool}"
    awk -v l="$label" -v t="$tool" -v w="$wall" -v c="$cpu" -v r="$rows" -v m="$rss" -v f="$faults" \
      'BEGIN{printf "%-22s %-7s %9.3f %9.2f %12.0f %10.1f %9d\n", l, t, w, c, r / (w > 0 ? w : 0.001), m / 1024, f}'
  done
  read -r rw rc rm _ <<<"$rust"
  read -r pw pc pm _ <<<"$pandas"
  awk -v l="$label" -v rw="$rw" -v rc="$rc" -v rm="$rm" -v pw="$pw" -v pc="$pc" -v pm="$pm" \
    'BEGIN{
      x = pw / (rw > 0 ? rw : 0.001); share = 100 * rm / pm
      # GNU time reports CPU in 10 ms steps: no CPU ratio from a few steps.
      cpu = (rc >= 0.1 ? sprintf("%.1fx", pc / rc) : "n/a (rust < 0.1 s)")
      printf "%-22s ratio   pandas/rust: wall %.1fx, cpu %s; rust peak RSS = %.0f%% of pandas\n",
        l, x, cpu, share
      printf "%-22s target  (issue #3) wall >= 20x: %s; peak RSS <= 25%% of pandas: %s\n",
        l, (x >= 20 ? "met" : "NOT met"), (share <= 25 ? "met" : "NOT met")
    }'
done
"$VENV/bin/python" "$ROOT/bench/pandas_features.py" --compare \
  "$WORK/s1/features/BTC.parquet" "$WORK/pandas1/BTC.parquet"
"$VENV/bin/python" "$ROOT/bench/pandas_features.py" --compare \
  "$WORK/s100/features/C042.parquet" "$WORK/pandas100/C042.parquet"
for n in 1 100; do
  rb=$(du -sb "$WORK/s$n/features" | cut -f1)
  pb=$(du -sb "$WORK/pandas$n" | cut -f1)
  awk -v n="$n" -v r="$rb" -v p="$pb" \
    'BEGIN{printf "# feature files, %d coin(s): rust %.1f MB, pandas %.1f MB\n", n, r / 1e6, p / 1e6}'
done
jobs=${RPS_TRANSFORM_JOBS:-0}
[ "$jobs" != 0 ] || jobs="$(( $(nproc) < 4 ? $(nproc) : 4 )) (auto: one per CPU, at most 4)"
echo "# $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); rps-transform --jobs $jobs"
