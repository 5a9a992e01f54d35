#!/usr/bin/env bash
# The DVC pipeline from a clean checkout: every stage runs; a train param change re-runs only
# train; push to the CI S3 server (RPS_TEST_S3_ENDPOINT), drop the cache and the outputs, pull
# restores identical files.
#   dvc_roundtrip.sh repro    WORK
#   dvc_roundtrip.sh params   WORK
#   dvc_roundtrip.sh pushpull WORK
# Called by run.sh; WORK is shared between the phases. The stage binaries must be on PATH.
set -euo pipefail
phase=$1 work=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
d=$work/dvc
repo=$d/repo
export PATH="$root/.venv/pipeline/bin:$PATH"
export DVC_NO_ANALYTICS=1 DVC_SITE_CACHE_DIR=$d/site
# local registry inside the checkout; no MLflow: `dvc repro` must work on embedded defaults
unset MLFLOW_TRACKING_URI RPS_STORE RPS_REGISTRY RPS_SOURCE RPS_START RPS_END RPS_COINS RPS_CSV_PATH
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-2}
for b in rps-extract rps-validate rps-transform rps-train; do
  command -v "$b" >/dev/null || { echo "$b is not on PATH (cargo build --release --workspace)" >&2; exit 1; }
done

outs_sums() { (cd "$repo" && find data/raw data/features models/latest -type f -print0 | sort -z | xargs -0 sha256sum); }
ran() { grep -q "Running stage '$1'" "$2"; }

case $phase in
repro)
  rm -rf "$d"; mkdir -p "$repo/.dvc"
  cp "$root/dvc.yaml" "$root/params.yaml" "$root/.dvcignore" "$repo/"
  cp "$root/.dvc/config" "$root/.dvc/.gitignore" "$repo/.dvc/"
  cd "$repo"
  # Same pipeline, sized for CI: 50 days of synthetic bars, a tiny model.
  python3 - <<'EOF'
import yaml
p = yaml.safe_load(open("params.yaml"))
p["extract"]["start"] = "2024-11-12T00:00:00Z"
p["train"].update(epochs=2, hidden=8, max_train_rows=1000)
yaml.safe_dump(p, open("params.yaml", "w"), sort_keys=False)
EOF
  git init -q && git add -A && git -c user.email=ci@rps -c user.name=ci commit -qm "clean checkout"
  test "$(dvc config core.analytics)" = false
  dvc repro >"$d/repro1.log" 2>&1 || { tail -30 "$d/repro1.log" >&2; exit 1; }
  cat "$d/repro1.log"
  for s in extract validate transform train; do ran "$s" "$d/repro1.log" || { echo "stage $s did not run" >&2; exit 1; }; done
  for f in data/raw/BTC.parquet data/features/BTC.parquet models/latest/model.safetensors \
           reports/validation.json reports/transform.json reports/train_metrics.json dvc.lock; do
    test -s "$f" || { echo "missing $f" >&2; exit 1; }
  done
  dvc status --quiet || { dvc status >&2; echo "not up to date after repro" >&2; exit 1; }
  dvc metrics show
  ;;

params)
  cd "$repo"
  git add -A && git -c user.email=ci@rps -c user.name=ci commit -qm "first repro"
  before=$(cd "$repo" && find data/raw data/features -type f -print0 | sort -z | xargs -0 sha256sum)
  model_before=$(sha256sum models/latest/model.safetensors)
  python3 - <<'EOF'
import yaml
p = yaml.safe_load(open("params.yaml"))
p["train"]["hidden"] = 12  # a different network, so a different model file
yaml.safe_dump(p, open("params.yaml", "w"), sort_keys=False)
EOF
  dvc params diff | tee "$d/pdiff.log"
  grep -q "train.hidden" "$d/pdiff.log"
  dvc repro >"$d/repro2.log" 2>&1 || { tail -30 "$d/repro2.log" >&2; exit 1; }
  cat "$d/repro2.log"
  ran train "$d/repro2.log" || { echo "train did not re-run" >&2; exit 1; }
  for s in extract validate transform; do
    if ran "$s" "$d/repro2.log"; then echo "stage $s re-ran after a train-only change" >&2; exit 1; fi
  done
  after=$(find data/raw data/features -type f -print0 | sort -z | xargs -0 sha256sum)
  [ "$before" = "$after" ] || { echo "upstream outputs changed" >&2; exit 1; }
  [ "$model_before" != "$(sha256sum models/latest/model.safetensors)" ] || { echo "the model did not change" >&2; exit 1; }
  ;;

pushpull)
  : "${RPS_TEST_S3_ENDPOINT:?RPS_TEST_S3_ENDPOINT is not set (eval \"\$(.ci/services start)\")}"
  cd "$repo"
  bucket=rps-dvc-ci-$(date +%s)-$$
  curl -fsS -m 30 -X PUT "$RPS_TEST_S3_ENDPOINT/$bucket" >/dev/null
  export AWS_ACCESS_KEY_ID=rps-ci AWS_SECRET_ACCESS_KEY=rps-ci-secret
  dvc remote add --force ci "s3://$bucket/store"
  dvc remote modify ci endpointurl "$RPS_TEST_S3_ENDPOINT"
  dvc remote modify ci region us-east-1
  outs_sums >"$d/sums.before"
  dvc push --remote ci 2>&1 | tee "$d/push.log"
  dvc status --cloud --remote ci --quiet || { echo "remote is missing files after push" >&2; exit 1; }
  rm -rf .dvc/cache data/raw data/features models/latest
  dvc pull --remote ci 2>&1 | tee "$d/pull.log"
  outs_sums | diff "$d/sums.before" - || { echo "pulled files differ" >&2; exit 1; }
  dvc status --quiet || { dvc status >&2; exit 1; }
  ;;

*)
  echo "usage: $0 repro|params|pushpull WORK" >&2
  exit 2
  ;;
esac
echo "dvc $phase: ok"
