"""rps_pipeline: the hourly BTC forecasting pipeline, one task per stage binary.

extract -> validate -> transform -> drift_check -(branch)-> train | skip_train -> version

The stages are BashOperators running the binaries with the flags of dvc.yaml; drift_check is a
branch task that runs `rps-monitor drift` and picks train or skip_train; version records the outputs
with DVC.

Design decisions (see the README, section "Airflow"):

* Schedule: ``CronDataIntervalTimetable("0 * * * *")``. Airflow 3's default cron timetable gives
  ``data_interval_start == data_interval_end``; this one gives real hourly intervals, so a run at
  10:00 covers the bars opened in [09:00, 10:00). A manual run (``airflow dags test rps_pipeline
  2024-06-01T10:00``) gets the interval that ends at its logical date.
* Extract re-fetches ``overlap_hours`` before the interval as well. Extract is idempotent (keyed
  on coin+hour), so with ``catchup=False`` an API outage costs nothing: the task retries with
  exponential backoff, and the next successful run fills the hours the outage missed.
* Exit codes of the stages (crates/rps-core/src/exit.rs): 2 (bad input) and 3 (quality failure, gate
  refusal) fail the task at once - retrying cannot fix bad data - while 4 (an external service
  failed) and anything else is retried. No stage uses 99, and ``skip_on_exit_code=None`` makes
  sure no exit code is ever read as "skipped".
* Locations, URIs and secrets come only from the environment of the worker: RPS_WORKDIR,
  RPS_BIN_DIR, RPS_STORE, RPS_SOURCE, RPS_CSV_PATH, RPS_API_BASE, RPS_REGISTRY, RPS_MODEL_NAME,
  RPS_EXPERIMENT, MLFLOW_TRACKING_URI (+ MLFLOW_TRACKING_TOKEN/USERNAME/PASSWORD), AWS_*,
  LIVE_COIN_WATCH_API_KEY, RPS_DVC_PUSH, RPS_GIT_COMMIT. The binaries read the secrets themselves;
  this file never names a value.

The module does no work at import time beyond building the DAG object (DagBag parses it often).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, CronDataIntervalTimetable, Param, TriggerRule, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException

log = logging.getLogger(__name__)

DAG_ID = "rps_pipeline"

# Where the stages run when RPS_WORKDIR is unset: the repository that holds this dags/ folder
# (dvc.yaml, params.yaml, data/, reports/, models/ live there). Computed from __file__ only.
DEFAULT_WORKDIR = str(Path(__file__).resolve().parent.parent)

# Exit codes that a retry cannot fix (crates/rps-core/src/exit.rs).
NO_RETRY_EXIT_CODES = {2: "bad usage or bad input", 3: "data quality failure or gate refusal"}

# Defaults mirror params.yaml (dags/tests check that they agree); a run overrides them with
# `airflow dags trigger rps_pipeline -c '{"epochs": 5}'` or `dags test ... -c '{...}'`.
PARAMS = {
    "coins": Param("BTC", type="string", description="Comma-separated coin codes."),
    "overlap_hours": Param(
        23,
        type="integer",
        minimum=0,
        description="Hours before the data interval that extract fetches again "
        "(heals API outages; a long value backfills the first run).",
    ),
    "max_null_ratio": Param(0.01, type="number", minimum=0, maximum=1),
    "epochs": Param(30, type="integer", minimum=1),
    "hidden": Param(64, type="integer", minimum=1),
    "lookback": Param(48, type="integer", minimum=1),
    "batch_size": Param(64, type="integer", minimum=1),
    "lr": Param(0.001, type="number", exclusiveMinimum=0),
    "seed": Param(42, type="integer"),
    "max_train_rows": Param(
        0, type="integer", minimum=0, description="Most recent training windows used; 0 = all."
    ),
    "drift_window_hours": Param(168, type="integer", minimum=1),
    "drift_threshold": Param(0.2, type="number", exclusiveMinimum=0),
    "drift_share": Param(
        0.5,
        type="number",
        exclusiveMinimum=0,
        maximum=1,
        description="Share of features that must drift for a retrain.",
    ),
    "retrain_hour_utc": Param(
        0, type="integer", minimum=0, maximum=23, description="Hour of the daily retrain."
    ),
    "force_train": Param(False, type="boolean", description="Train this run whatever the drift check says."),
}

# Shared shell prelude: fail fast, run in the working tree, find the binaries.
# (No `${#...}` anywhere in these templates: `{#` opens a Jinja comment.)
PRELUDE = f"""set -euo pipefail
cd "${{RPS_WORKDIR:-{DEFAULT_WORKDIR}}}"
export PATH="${{RPS_BIN_DIR:+$RPS_BIN_DIR:}}$PATH"
export RPS_STORE="${{RPS_STORE:-data}}"
mkdir -p reports
"""

INTERVAL_END = "{{ data_interval_end.in_timezone('UTC').strftime('%Y-%m-%dT%H:%M:%SZ') }}"
EXTRACT_START = (
    "{{ (data_interval_start - macros.timedelta(hours=params.overlap_hours))"
    ".in_timezone('UTC').strftime('%Y-%m-%dT%H:%M:%SZ') }}"
)

EXTRACT = (
    PRELUDE
    + f"""rps-extract --store "$RPS_STORE" --source "${{RPS_SOURCE:-livecoinwatch}}" \\
  ${{RPS_CSV_PATH:+--path "$RPS_CSV_PATH"}} ${{RPS_API_BASE:+--api-base "$RPS_API_BASE"}} \\
  --coins "{{{{ params.coins }}}}" --start "{EXTRACT_START}" --end "{INTERVAL_END}"
"""
)

VALIDATE = (
    PRELUDE
    + f"""rps-validate --store "$RPS_STORE" --coins "{{{{ params.coins }}}}" --end "{INTERVAL_END}" \\
  --max-null-ratio "{{{{ params.max_null_ratio }}}}" --report reports/validation.json
"""
)

TRANSFORM = (
    PRELUDE
    + """rps-transform --store "$RPS_STORE" --coins "{{ params.coins }}" \\
  --summary reports/transform.json --profile reports/profile.html \\
  --validation-report reports/validation.json
"""
)

# Registry, model name and experiment come from RPS_REGISTRY / RPS_MODEL_NAME / RPS_EXPERIMENT
# and MLFLOW_TRACKING_URI (set -> MLflow registry, unset -> local registry directory).
TRAIN = (
    PRELUDE
    + """rps-train --store "$RPS_STORE" --coins "{{ params.coins }}" \\
  --epochs "{{ params.epochs }}" --hidden "{{ params.hidden }}" --lookback "{{ params.lookback }}" \\
  --batch-size "{{ params.batch_size }}" --lr "{{ params.lr }}" --seed "{{ params.seed }}" \\
  --max-train-rows "{{ params.max_train_rows }}" \\
  --metrics reports/train_metrics.json --package-out models/latest \\
  --report-dir reports --profile reports/profile.html
"""
)

# Records this run's outputs in dvc.lock and the DVC cache, then pushes them to the remote.
# Only stages whose outputs exist here are committed (with an object-store RPS_STORE the Parquet
# files are not local; when train has never run there is no models/latest).
VERSION = (
    PRELUDE
    + """if [ ! -f dvc.yaml ] || [ ! -d .dvc ]; then
  echo "RPS_WORKDIR=$PWD is not a DVC repository (no dvc.yaml/.dvc): cannot version outputs" >&2
  exit 2
fi
export DVC_NO_ANALYTICS=1
stages=""
case "$RPS_STORE" in
  data | ./data | "$PWD/data")
    [ -e data/raw ] && stages="$stages extract validate"
    [ -e data/features ] && stages="$stages transform"
    ;;
  *) echo "store $RPS_STORE is outside this DVC workspace: only the model package is versioned here" ;;
esac
[ -e models/latest ] && stages="$stages train"
if [ -z "$stages" ]; then
  echo "no DVC-tracked output exists under $PWD (store is $RPS_STORE): nothing to version"
  exit 0
fi
# shellcheck disable=SC2086 # $stages is a word list on purpose
dvc commit --force $stages
echo "versioned stages:$stages for run {{ run_id }}"
grep -E '^ *(md5|path):' dvc.lock || true
if [ -n "${RPS_DVC_PUSH:-}" ]; then
  dvc push ${RPS_DVC_REMOTE:+--remote "$RPS_DVC_REMOTE"}
else
  echo "RPS_DVC_PUSH is not set: skipping dvc push (outputs are in the local DVC cache)"
fi
if [ -n "${RPS_GIT_COMMIT:-}" ]; then
  git add dvc.lock reports/*.json
  git commit -m "data: rps_pipeline {{ run_id }} ({{ data_interval_end }})" || echo "nothing new to commit"
fi
"""
)


class StageOperator(BashOperator):
    """Runs one stage binary; exits 2 and 3 fail at once, other failures use the retries."""

    def __init__(self, **kwargs):
        kwargs.setdefault("skip_on_exit_code", None)  # 99 is an ordinary failure, never "skipped"
        kwargs.setdefault("append_env", True)
        super().__init__(**kwargs)

    def execute(self, context):
        try:
            return super().execute(context)
        except AirflowFailException:
            raise
        except AirflowException as err:
            proc = self.subprocess_hook.sub_process
            code = proc.returncode if proc is not None else None
            if code in NO_RETRY_EXIT_CODES:
                raise AirflowFailException(
                    f"{self.task_id} exited {code} ({NO_RETRY_EXIT_CODES[code]}); not retried"
                ) from err
            raise


def _workdir() -> Path:
    return Path(os.environ.get("RPS_WORKDIR") or DEFAULT_WORKDIR)


def _binary(name: str) -> str:
    """The stage binary from RPS_BIN_DIR, else PATH (as the bash tasks resolve it)."""
    bin_dir = os.environ.get("RPS_BIN_DIR")
    path = os.pathsep.join(p for p in (bin_dir, os.environ.get("PATH", "")) if p)
    found = shutil.which(name, path=path)
    if found is None:
        raise AirflowFailException(f"{name} not found in RPS_BIN_DIR or PATH")
    return found


def champion_exists(model_name: str, alias: str = "champion") -> bool:
    """Whether the registry has `model_name@alias`: MLflow REST when MLFLOW_TRACKING_URI is set,
    else the local registry layout `<RPS_REGISTRY>/models/<name>/aliases/<alias>`."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        registry = Path(os.environ.get("RPS_REGISTRY") or "registry")
        if not registry.is_absolute():
            registry = _workdir() / registry
        return (registry / "models" / model_name / "aliases" / alias).is_file()
    query = urllib.parse.urlencode({"name": model_name, "alias": alias})
    req = urllib.request.Request(f"{uri.rstrip('/')}/api/2.0/mlflow/registered-models/alias?{query}")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    elif os.environ.get("MLFLOW_TRACKING_USERNAME"):
        cred = f"{os.environ['MLFLOW_TRACKING_USERNAME']}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}"
        req.add_header("Authorization", "Basic " + base64.b64encode(cred.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return "model_version" in json.load(resp)
    except urllib.error.HTTPError as err:
        body = err.read().decode(errors="replace")
        # Unknown model -> 404; unknown alias -> 400 "... alias champion not found" (MLflow 3.17).
        if err.code == 404 or (err.code == 400 and "not found" in body):
            return False
        raise AirflowException(f"MLflow alias lookup failed: HTTP {err.code}: {body[:300]}") from err


def decide_training(
    *, force: bool, hour: int, retrain_hour: int, has_champion: bool, run_drift
) -> tuple[str, str]:
    """Returns (task_id, reason). `run_drift()` -> exit code of `rps-monitor drift`, called only when
    the cheaper reasons did not already decide."""
    if force:
        return "train", "force_train param set"
    if not has_champion:
        return "train", "no champion model registered yet"
    if hour == retrain_hour:
        return "train", f"daily retrain hour ({retrain_hour:02d}:00 UTC)"
    code = run_drift()
    if code == 3:
        return "train", "rps-monitor drift detected data drift (exit 3)"
    if code == 0:
        return "skip_train", "no drift, champion exists, not the retrain hour"
    raise AirflowException(f"rps-monitor drift failed with exit code {code}")


with DAG(
    dag_id=DAG_ID,
    description="Hourly BTC pipeline: extract, validate, transform, drift check, train, DVC version.",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    # Early on purpose: a run for a historical hour (a backfill over the CSV export, the CI test
    # on 2022 data) gets no task instances when its logical date precedes start_date. With
    # catchup=False the scheduler itself only ever runs the latest interval.
    start_date=pendulum.datetime(2018, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # stages share one store, reports/ and dvc.lock
    dagrun_timeout=timedelta(hours=3),
    default_args={
        "owner": "rps",
        "retries": 3,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": 2.0,  # 2, 4, 8 minutes
        "max_retry_delay": timedelta(minutes=30),
        "execution_timeout": timedelta(minutes=30),
    },
    params=PARAMS,
    tags=["rps", "btc"],
    doc_md=__doc__,
) as dag:
    extract = StageOperator(task_id="extract", bash_command=EXTRACT)
    validate = StageOperator(task_id="validate", bash_command=VALIDATE)
    transform = StageOperator(task_id="transform", bash_command=TRANSFORM)

    @task.branch(task_id="drift_check")
    def drift_check(params=None, data_interval_end=None) -> str:
        """Train when forced, when no champion exists, at the daily retrain hour, or on drift."""
        model_name = os.environ.get("RPS_MODEL_NAME") or "rps-forecaster"

        def run_drift() -> int:
            env = dict(os.environ)
            env.setdefault("RPS_STORE", "data")
            flags = {
                "--store": env["RPS_STORE"],
                "--coins": str(params["coins"]),
                "--model-name": model_name,
                "--window-hours": str(params["drift_window_hours"]),
                "--threshold": str(params["drift_threshold"]),
                "--share": str(params["drift_share"]),
                "--end": data_interval_end.in_timezone("UTC").strftime("%Y-%m-%dT%H:%M:%SZ"),
                "--report": "reports/drift.json",
            }
            cmd = [_binary("rps-monitor"), "drift", *(x for pair in flags.items() for x in pair)]
            workdir = _workdir()
            (workdir / "reports").mkdir(exist_ok=True)
            log.info("running %s", " ".join(cmd))
            proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=1800)
            for line in (proc.stdout + proc.stderr).splitlines():
                log.info("rps-monitor drift: %s", line)
            return proc.returncode

        choice, reason = decide_training(
            force=bool(params["force_train"]),
            hour=data_interval_end.in_timezone("UTC").hour,
            retrain_hour=int(params["retrain_hour_utc"]),
            has_champion=champion_exists(model_name),
            run_drift=run_drift,
        )
        log.info("decision: %s (%s)", choice, reason)
        return choice

    decision = drift_check()
    train = StageOperator(task_id="train", bash_command=TRAIN, execution_timeout=timedelta(hours=2))
    skip_train = EmptyOperator(task_id="skip_train")
    version = StageOperator(
        task_id="version", bash_command=VERSION, trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS
    )

    extract >> validate >> transform >> decision >> [train, skip_train] >> version
