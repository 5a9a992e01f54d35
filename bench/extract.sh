#!/usr/bin/env bash
# Extract-stage figures: rows/s for the CSV import of the shared 33,259-row file (the real
# binary end to end, Parquet write included, and the parse alone), observations/s for
# resampling 1 M synthetic price observations into hourly bars, and peak RSS of each run
# (GNU time -v); then peak RSS of a 2 GB CSV and of a 2 GB NUL-filled file (streamed import,
# bounded memory). Criterion benches of the same paths:
#   cargo bench --profile release -p rps-extract --bench extract
#   usage: bench/extract.sh [CSV]   (default tests/data/btc-usd-hourly-bitstamp-2018-2022.csv.gz, the committed fixture)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
csv=${1:-$root/tests/data/btc-usd-hourly-bitstamp-2018-2022.csv.gz}
[ -f "$csv" ] || { echo "bench/extract.sh: no CSV at $csv" >&2; exit 2; }

if [ ! -x /usr/bin/time ]; then
  echo "[bench] installing GNU time (Debian package 'time') for peak RSS" >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
  else sudo apt-get install -y -qq time >/dev/null; fi
fi

echo "[bench] building (release)..." >&2
cargo build --release -q -p rps-extract --bin rps-extract --example throughput
target=${CARGO_TARGET_DIR:-$root/target}
bin=$target/release/rps-extract
ex=$target/release/examples/throughput
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Runs a command under GNU time; prints its stdout, then "peak_rss_mb=.. wall_s=..".
timed() {
  /usr/bin/time -v -o "$work/time.txt" "$@" >"$work/out.txt" 2>"$work/err.txt" || {
    cat "$work/err.txt" >&2; return 1; }
  local rss wall
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2/1024}' "$work/time.txt")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time.txt" | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  echo "$(cat "$work/out.txt") peak_rss_mb=$rss wall_s=$wall"
}

rows=$(($(gzip -cdf "$csv" | wc -l) - 1))
echo "== CSV import, rps-extract binary end to end (parse, check, merge, Parquet write): $rows rows"
line=$(timed "$bin" --store "$work/store" --source csv --path "$csv" --log-format json)
wall=$(sed -E 's/.*wall_s=([0-9.]+).*/\1/' <<<"$line")
echo "$line" | sed -E 's/^extract .*(peak_rss_mb=)/\1/' | sed "s/^/  /"
awk -v r="$rows" -v w="$wall" 'BEGIN { if (w > 0) printf "  rows_per_s=%.0f (whole process, startup included)\n", r / w }'

echo "== CSV parse + check only (library)"
echo "  $(timed "$ex" csv "$csv")"

echo "== Resample 1,000,000 synthetic price observations into hourly bars"
echo "  $(timed "$ex" resample 1000000)"
echo "  (peak RSS includes generating the observations; the figure is for resampling alone)"

# Bounded memory on hostile-sized inputs: the import streams, so peak RSS follows the distinct
# (coin, hour) bars kept, not the file's size. Needs ~2.2 GB free in $TMPDIR (skipped otherwise).
big_bytes=$((2 * 1000 * 1000 * 1000))
free_kb=$(df -Pk "$work" | awk 'NR == 2 { print $4 }')
if [ "$free_kb" -lt $((big_bytes / 1000 + 200000)) ]; then
  echo "== 2 GB inputs: skipped (needs ~2.2 GB free in $work, has $((free_kb / 1000)) MB)"
else
  echo "== 2 GB CSV: the fixture's rows repeated until 2 GB (every repeat an exact duplicate)"
  big=$work/big.csv
  gzip -cdf "$csv" | sed -n 1p >"$big"  # sed reads to the end: no SIGPIPE under pipefail
  gzip -cdf "$csv" | tail -n +2 >"$work/rows.csv"
  while [ "$(stat -c %s "$big")" -lt "$big_bytes" ]; do cat "$work/rows.csv" >>"$big"; done
  echo "  file_mb=$(($(stat -c %s "$big") / 1000000)) rows=$(($(wc -l <"$big") - 1))"
  line=$(timed "$bin" --store "$work/big-store" --source csv --path "$big" --log-format json)
  echo "$line" | sed -E 's/^extract .*(peak_rss_mb=)/\1/' | sed "s/^/  /"
  rm -f "$big"

  echo "== 2 GB sparse file (NUL bytes, no line break): refused at the 64 KiB record cap"
  truncate -s "$big_bytes" "$work/sparse.csv"
  rc=0
  /usr/bin/time -v -o "$work/time.txt" "$bin" --store "$work/big-store" --source csv \
    --path "$work/sparse.csv" >/dev/null 2>"$work/err.txt" || rc=$?
  echo "  exit=$rc error_line_bytes=$(grep '^error: ' "$work/err.txt" | wc -c)" \
    "peak_rss_mb=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2/1024}' "$work/time.txt")" \
    "wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time.txt")"
  rm -f "$work/sparse.csv"
fi
