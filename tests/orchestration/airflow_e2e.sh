#!/usr/bin/env bash
# End-to-end runs of the rps_pipeline DAG with `airflow dags test`: the real stage binaries (on
# PATH), the real CSV fixture (tests/data), a local store in a temporary DVC workspace and the real
# MLflow server (RPS_TEST_MLFLOW_URI).
#   airflow_e2e.sh setup WORK  # Airflow home + DB, DVC workspace
#   airflow_e2e.sh good  WORK  # a run on clean data: exit 0, every output, a registered champion
#   airflow_e2e.sh drift WORK  # the next hour: a champion exists, so the real `rps-monitor drift` decides
#   airflow_e2e.sh bad   WORK  # a run whose new bars break OHLC: fails at validate, nothing lost
#   airflow_e2e.sh many  WORK  # on "many workers": an S3 store, three coins mapped, every task in a
#                              # fresh directory of its own, no working tree; then the drift branch
# Called by run.sh; WORK is shared between the phases (many needs only setup).
set -euo pipefail
phase=$1 work=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
pipe=$root/.venv/pipeline/bin
csv=${RPS_TEST_CSV:-$root/tests/data/btc-usd-hourly-bitstamp-2018-2022.csv.gz}

: "${RPS_TEST_MLFLOW_URI:?RPS_TEST_MLFLOW_URI is not set (eval \"\$(.ci/services start)\")}"
for b in rps-extract rps-validate rps-transform rps-train rps-serve rps-monitor; do
  command -v "$b" >/dev/null || { echo "$b is not on PATH (cargo build --release --workspace)" >&2; exit 1; }
done

e2e=$work/e2e
ws=$e2e/ws
export AIRFLOW_HOME=$e2e/airflow
export AIRFLOW__CORE__DAGS_FOLDER=$root/dags
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export PYTHONWARNINGS=ignore
export DVC_NO_ANALYTICS=1 DVC_SITE_CACHE_DIR=$e2e/dvc-site
export PATH="$pipe:$PATH"
# What the DAG reads (the same names compose sets for the workers).
export RPS_WORKDIR=$ws RPS_STORE=data RPS_SOURCE=csv
export MLFLOW_TRACKING_URI=$RPS_TEST_MLFLOW_URI
unset RPS_DVC_PUSH RPS_DVC_REMOTE RPS_GIT_COMMIT RPS_BIN_DIR RPS_REGISTRY RPS_START RPS_END RPS_COINS
export AWS_ACCESS_KEY_ID=rps-ci AWS_SECRET_ACCESS_KEY=rps-ci-secret AWS_REGION=us-east-1  # moto takes any
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-2}

# The model and experiment names are unique per test run (the MLflow server is shared).
# shellcheck source=/dev/null
if [ -f "$e2e/names" ]; then . "$e2e/names"; fi

mlflow_get() { curl -fsS -m 30 "$RPS_TEST_MLFLOW_URI/api/2.0/mlflow/$1"; }
model_versions() { mlflow_get "model-versions/search?filter=name%3D%27$RPS_MODEL_NAME%27" |
  python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("model_versions", [])))'; }
# sha256 of everything a failed run must not touch
protected_sums() {
  (cd "$ws" && find data/features models/latest reports/transform.json reports/train_metrics.json \
      reports/profile.html reports/drift.json reports/transform reports/profile dvc.lock -type f -print0 |
      sort -z | xargs -0 sha256sum)
}
# state and try number of each task of the newest run, from Airflow's own DB
task_states() {
  python3 - "$AIRFLOW_HOME/airflow.db" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
run_id = db.execute("select run_id from dag_run where dag_id='rps_pipeline' order by id desc limit 1").fetchone()[0]
for task, state, tries in db.execute(
        "select task_id, state, try_number from task_instance where dag_id='rps_pipeline' and run_id=? order by task_id",
        (run_id,)):
    print(f"{task}={state}:{tries}")
EOF
}
# a field of validate's BTC report (reports/validation/BTC.json): status | summary.rows | <check name>
# (-> status:count)
report_field() {
  python3 - "$ws/reports/validation/BTC.json" "$1" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
key = sys.argv[2]
if key == "status":
    print(r["status"])
elif key == "summary.rows":
    print(r["summary"]["rows"])
else:
    checks = [c for coin in r["coins"] for c in coin["checks"] if c["name"] == key]
    print(";".join(f'{c["status"]}:{c["count"]}' for c in checks))
EOF
}
expect_state() { # task state
  grep -qx "$1=$2:[0-9]*" "$e2e/states" || { echo "expected $1 $2; states:" >&2; cat "$e2e/states" >&2; exit 1; }
}

case $phase in
setup)
  rm -rf "$e2e"; mkdir -p "$ws" "$AIRFLOW_HOME"
  tag=$(date +%s)-$$
  printf 'export RPS_MODEL_NAME=rps-e2e-%s RPS_EXPERIMENT=rps-e2e-%s\n' "$tag" "$tag" > "$e2e/names"
  # The DAG's working tree: a git + DVC checkout of the pipeline files.
  cp "$root/dvc.yaml" "$root/params.yaml" "$root/.dvcignore" "$ws/"
  mkdir -p "$ws/.dvc" && cp "$root/.dvc/config" "$root/.dvc/.gitignore" "$ws/.dvc/"
  (cd "$ws" && git init -q && git add -A && git -c user.email=ci@rps -c user.name=ci commit -qm init)
  # A DVC remote on the S3 test server for the version task's `dvc push`.
  : "${RPS_TEST_S3_ENDPOINT:?RPS_TEST_S3_ENDPOINT is not set (eval \"\$(.ci/services start)\")}"
  bucket=rps-e2e-dvc-$tag
  curl -fsS -m 30 -X PUT "$RPS_TEST_S3_ENDPOINT/$bucket" >/dev/null
  (cd "$ws" && dvc remote add ci "s3://$bucket/store" && dvc remote modify ci endpointurl "$RPS_TEST_S3_ENDPOINT")
  test -f "$csv" || { echo "CSV not found: $csv" >&2; exit 1; }
  airflow db migrate >"$e2e/migrate.log" 2>&1 || { tail -20 "$e2e/migrate.log" >&2; exit 1; }
  ;;

good)
  # Interval [2022-01-31 23:00, 2022-02-01 00:00) plus 1500 hours of history from the CSV.
  # No champion exists yet, so the branch trains. Small model: this checks wiring, not skill.
  # The version task pushes to the test S3 server (the later runs check the skip without it).
  export RPS_CSV_PATH=$csv RPS_DVC_PUSH=1 RPS_DVC_REMOTE=ci
  airflow dags test rps_pipeline 2022-02-01T00:00:00+00:00 \
    -c '{"overlap_hours": 1500, "epochs": 2, "hidden": 8, "max_train_rows": 1200}' >"$e2e/good.log" 2>&1 ||
    { grep -E "ERROR|error|Error|exit" "$e2e/good.log" | tail -30 >&2; echo "dags test failed" >&2; exit 1; }
  task_states >"$e2e/states"; cat "$e2e/states"
  for t in coins extract validate transform drift_check train version; do expect_state "$t" success; done
  expect_state skip_train skipped
  # the mapped tasks' per-coin reports, and dvc.yaml's all-coin ones (written by version)
  for f in data/raw/BTC.parquet data/features/BTC.parquet reports/validation/BTC.json \
           reports/transform/BTC.json reports/profile/BTC.html reports/validation.json reports/transform.json \
           reports/profile.html reports/train_metrics.json models/latest/model.safetensors \
           models/latest/metadata.json models/latest/MLmodel dvc.lock; do
    test -s "$ws/$f" || { echo "missing output $f" >&2; exit 1; }
  done
  # the version task recorded the outputs in dvc.lock and the DVC cache
  grep -q "path: data/raw" "$ws/dvc.lock" && grep -q "path: models/latest" "$ws/dvc.lock"
  (cd "$ws" && dvc status --quiet) || { echo "dvc status: outputs not committed" >&2; exit 1; }
  (cd "$ws" && dvc status --cloud --remote ci --quiet) || { echo "the version task did not push" >&2; exit 1; }
  # the model is registered in MLflow and is the champion (the first model)
  versions=$(model_versions)
  [ "$versions" -ge 1 ] || { echo "no registered version of $RPS_MODEL_NAME" >&2; exit 1; }
  champion=$(mlflow_get "registered-models/alias?name=$RPS_MODEL_NAME&alias=champion")
  echo "champion: $champion"
  grep -q '"version"' <<<"$champion"
  ;;

drift)
  # Interval [00:00, 01:00): one new bar. Not the retrain hour and a champion exists, so the branch
  # runs the real `rps-monitor drift`. The threshold is set out of reach, so the answer is known:
  # no drift, skip training (the exit-3 -> train mapping is covered in dags/tests).
  export RPS_CSV_PATH=$csv
  airflow dags test rps_pipeline 2022-02-01T01:00:00+00:00 -c '{"overlap_hours": 2, "drift_threshold": 1000}' \
    >"$e2e/drift.log" 2>&1 || { grep -E "ERROR|rror|exit" "$e2e/drift.log" | tail -30 >&2; echo "dags test failed" >&2; exit 1; }
  task_states >"$e2e/states"; cat "$e2e/states"
  for t in extract validate transform drift_check skip_train version; do expect_state "$t" success; done
  expect_state train skipped
  grep -q "rps-monitor drift" "$e2e/drift.log" || { echo "the drift check did not run rps-monitor drift" >&2; exit 1; }
  grep -q "decision: skip_train (no drift" "$e2e/drift.log"
  test -s "$ws/reports/drift.json"
  model_versions >"$e2e/versions"
  report_field summary.rows >"$e2e/rows"
  protected_sums >"$e2e/sums"
  ;;

bad)
  # Three new hours whose High is below the Close: extract accepts them, validate must refuse.
  test -f "$e2e/sums" || { echo "run the good and drift phases first" >&2; exit 1; }
  bad=$e2e/bad.csv
  {
    echo "unix,Date,Symbol,Open,High,Low,Close,Volume BTC,Volume USD"
    echo "1643684400,2022-02-01 03:00:00,BTC/USD,38550.0,38450.0,38350.0,38650.0,10.0,386500.0"
    echo "1643680800,2022-02-01 02:00:00,BTC/USD,38500.0,38400.0,38300.0,38600.0,10.0,386000.0"
    echo "1643677200,2022-02-01 01:00:00,BTC/USD,38450.0,38350.0,38300.0,38500.0,10.0,385000.0"
  } >"$bad"
  export RPS_CSV_PATH=$bad
  raw_before=$(stat -c %s "$ws/data/raw/BTC.parquet")
  set +e
  airflow dags test rps_pipeline 2022-02-01T04:00:00+00:00 -c '{"overlap_hours": 2}' >"$e2e/bad.log" 2>&1
  rc=$?
  set -e
  [ "$rc" -ne 0 ] || { echo "a run with bad bars exited 0" >&2; exit 1; }
  task_states >"$e2e/states"; cat "$e2e/states"
  expect_state extract success
  # failed at once: exit 3 is not retried
  grep -qx "validate=failed:1" "$e2e/states" || { echo "validate did not fail on its first try" >&2; exit 1; }
  for t in transform drift_check train version; do expect_state "$t" upstream_failed; done
  grep -q "exited 3" "$e2e/bad.log" || { echo "no 'exited 3' in the log" >&2; exit 1; }
  # nothing the good run produced changed, and the stored bars were kept (extract only adds)
  protected_sums | diff "$e2e/sums" - || { echo "a failed run changed earlier outputs" >&2; exit 1; }
  [ "$(stat -c %s "$ws/data/raw/BTC.parquet")" -ge "$raw_before" ]
  # validate's report names the failed check; the stored bars are the earlier ones plus the 3 new
  [ "$(report_field status)" = fail ] && [ "$(report_field ohlc)" = fail:3 ] ||
    { echo "validation report does not show the ohlc failure" >&2; exit 1; }
  [ "$(report_field summary.rows)" = $(($(cat "$e2e/rows") + 3)) ] || { echo "stored rows changed unexpectedly" >&2; exit 1; }
  [ "$(model_versions)" = "$(cat "$e2e/versions")" ] || { echo "a failed run registered a model" >&2; exit 1; }
  ;;

many)
  # The DAG as it runs on many workers (CeleryExecutor, KubernetesExecutor), as far as one machine
  # can show it: the store on the S3 test server, MLflow, nothing else shared. Every task runs in a
  # fresh scratch directory of its own under TMPDIR (removed when it ends), RPS_WORKDIR names no
  # directory, and `airflow dags test` runs in an empty one: a task that read what an earlier one
  # wrote locally would fail. Three coins of the synthetic source, each stage mapped over them.
  : "${RPS_TEST_S3_ENDPOINT:?RPS_TEST_S3_ENDPOINT is not set (eval \"\$(.ci/services start)\")}"
  m=$e2e/many
  rm -rf "$m"; mkdir -p "$m/tmp" "$m/cwd"
  bucket=rps-e2e-many-$(date +%s)-$$
  curl -fsS -m 30 -X PUT "$RPS_TEST_S3_ENDPOINT/$bucket" >/dev/null
  export RPS_STORE=s3://$bucket/rps RPS_SOURCE=synthetic RPS_WORKDIR=$m/no-working-tree TMPDIR=$m/tmp
  export AWS_ENDPOINT_URL=$RPS_TEST_S3_ENDPOINT
  export RPS_MODEL_NAME=$RPS_MODEL_NAME-many RPS_EXPERIMENT=$RPS_EXPERIMENT-many
  unset RPS_CSV_PATH
  coins=(BTC ETH SOL)
  s3_get() { # an object of the store, by a signed GET as the binaries read it
    curl -fsS -m 30 --aws-sigv4 "aws:amz:$AWS_REGION:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
      "$RPS_TEST_S3_ENDPOINT/$bucket/rps/$1"
  }
  # task[map index:label]=state for the newest run, and whether each stage started after the
  # last instance of the one before it ended
  mapped_states() {
    python3 - "$AIRFLOW_HOME/airflow.db" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
run_id = db.execute("select run_id from dag_run where dag_id='rps_pipeline' order by id desc limit 1").fetchone()[0]
rows = db.execute(
    "select task_id, map_index, rendered_map_index, state, start_date, end_date from task_instance "
    "where dag_id='rps_pipeline' and run_id=? order by task_id, map_index", (run_id,)).fetchall()
for task, index, label, state, _, _ in rows:
    print(f"{task}[{index}:{label or ''}]={state}")
span = {}
for task, _, _, state, start, end in rows:
    if state == "success":
        s, e = span.get(task, (start, end))
        span[task] = (min(s, start), max(e, end))
chain = ["coins", "extract", "validate", "transform", "drift_check", "train"]
for up, down in zip(chain, chain[1:]):
    if up in span and down in span:
        print(f"order {up}<{down}={'ok' if span[up][1] <= span[down][0] else 'WRONG'}")
EOF
  }
  expect_many() { # a line of mapped_states
    grep -qxF "$1" "$m/states" || { echo "expected $1; got:" >&2; cat "$m/states" >&2; exit 1; }
  }
  # every stage's working directory, from the log: fresh ones under TMPDIR, none used twice
  scratch_dirs() { grep -oE "(working directory|drift [^ ]* in|in) $m/tmp/rps-task\.[A-Za-z0-9_]+" "$1" |
    awk '{print $NF}' | sort | uniq -c; }
  fresh_dirs() { # the uniq -c list: ten directories, each used once
    [ "$(wc -l <"$1")" = 10 ] || return 1
    if grep -qvE '^ *1 ' "$1"; then return 1; fi
  }

  (cd "$m/cwd" && airflow dags test rps_pipeline 2024-06-01T00:00:00+00:00 \
    -c '{"coins": "btc,ETH,SOL", "overlap_hours": 700, "epochs": 2, "hidden": 8, "max_train_rows": 600}') \
    >"$m/first.log" 2>&1 ||
    { grep -E "ERROR|rror|exit" "$m/first.log" | tail -30 >&2; echo "dags test failed" >&2; exit 1; }
  mapped_states >"$m/states"; cat "$m/states"
  expect_many "coins[-1:]=success"
  for t in extract validate transform; do
    for i in 0 1 2; do expect_many "${t}[$i:${coins[$i]}]=success"; done
    [ "$(grep -c "^$t\[" "$m/states")" = 3 ] || { echo "$t: not three task instances" >&2; exit 1; }
  done
  for t in drift_check train; do expect_many "${t}[-1:]=success"; done
  expect_many "skip_train[-1:]=skipped"
  expect_many "version[-1:]=skipped"
  for o in coins\<extract extract\<validate validate\<transform transform\<drift_check drift_check\<train; do
    expect_many "order $o=ok"
  done
  grep -q "the version task needs a Git working tree with DVC (RPS_WORKDIR=$m/no-working-tree" "$m/first.log" ||
    { echo "version did not say why it was skipped" >&2; exit 1; }
  # ten stage processes (3 x 3 per-coin + train), ten different fresh directories, all removed
  scratch_dirs "$m/first.log" >"$m/dirs"; cat "$m/dirs"
  fresh_dirs "$m/dirs" || { echo "the stages did not each run in a fresh directory" >&2; exit 1; }
  [ -z "$(find "$m/tmp" -maxdepth 1 -name 'rps-task.*')" ] || { echo "a scratch directory was left" >&2; exit 1; }
  [ -z "$(ls -A "$m/cwd")" ] || { echo "a task wrote into the directory of airflow dags test" >&2; exit 1; }
  # the store holds each coin's bars, features and reports, written by this run
  for c in "${coins[@]}"; do
    for key in "raw/$c.parquet" "features/$c.parquet" "reports/profile/$c.html"; do
      s3_get "$key" >/dev/null || { echo "$key is not in the store" >&2; exit 1; }
    done
    s3_get "reports/validation/$c.json" | python3 -c '
import json, sys
r, coin = json.load(sys.stdin), sys.argv[1]
assert r["settings"]["end"] == "2024-06-01T00:00:00Z" and r["status"] != "fail", r["status"]
assert [c["coin"] for c in r["coins"]] == [coin] and r["summary"]["rows"] > 700, r["summary"]' "$c"
    s3_get "reports/transform/$c.json" | python3 -c '
import json, sys
s = json.load(sys.stdin)
assert list(s["coins"]) == [sys.argv[1]] and s["rows_out"] > 500, s["coins"]' "$c"
    # the profile shows the validation report, read back from the store (HTML escapes `/`)
    html=$(s3_get "reports/profile/$c.html" | sed 's|&#x2f;|/|g')
    grep -qF "From $RPS_STORE/reports/validation/$c.json: " <<<"$html" ||
      { echo "profile of $c does not show its validation report" >&2; exit 1; }
  done
  # the model stage trained on the three coins and registered a champion in MLflow
  champion=$(mlflow_get "registered-models/alias?name=$RPS_MODEL_NAME&alias=champion")
  run_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["model_version"]["run_id"])' <<<"$champion")
  mlflow_get "runs/get?run_id=$run_id" | python3 -c '
import json, sys
params = {p["key"]: p["value"] for p in json.load(sys.stdin)["run"]["data"]["params"]}
assert params.get("coins") == "BTC,ETH,SOL", params.get("coins")'

  # The next hour: a champion exists, so the drift check runs the real `rps-monitor drift` over
  # the three coins, in a scratch directory too (threshold out of reach: no drift, skip training).
  (cd "$m/cwd" && airflow dags test rps_pipeline 2024-06-01T01:00:00+00:00 \
    -c '{"coins": "BTC,ETH,SOL", "overlap_hours": 2, "drift_threshold": 1000}') >"$m/second.log" 2>&1 ||
    { grep -E "ERROR|rror|exit" "$m/second.log" | tail -30 >&2; echo "dags test failed" >&2; exit 1; }
  mapped_states >"$m/states"; cat "$m/states"
  for t in extract validate transform; do
    for i in 0 1 2; do expect_many "${t}[$i:${coins[$i]}]=success"; done
  done
  expect_many "drift_check[-1:]=success"
  expect_many "train[-1:]=skipped"
  expect_many "skip_train[-1:]=success"
  grep -q "decision: skip_train (no drift" "$m/second.log"
  grep -q 'drift report: {' "$m/second.log" || { echo "the drift report was not kept in the log" >&2; exit 1; }
  scratch_dirs "$m/second.log" >"$m/dirs"; cat "$m/dirs"
  fresh_dirs "$m/dirs" || { echo "the tasks did not each run in a fresh directory" >&2; exit 1; }
  [ -z "$(find "$m/tmp" -maxdepth 1 -name 'rps-task.*')" ] && [ -z "$(ls -A "$m/cwd")" ] ||
    { echo "a task left files behind" >&2; exit 1; }
  ;;

*)
  echo "usage: $0 setup|good|drift|bad|many WORK" >&2
  exit 2
  ;;
esac
echo "airflow e2e $phase: ok"
