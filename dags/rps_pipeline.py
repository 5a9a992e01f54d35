"""rps_pipeline: the hourly BTC forecasting pipeline, one task per stage binary.

coins -> extract[coin] -> validate[coin] -> transform[coin] -> drift_check -(branch)->
train | skip_train -> version

The stages are BashOperators running the binaries with the flags of dvc.yaml. ``coins`` turns the
``coins`` param into the coin list, and extract, validate and transform are mapped over it
(dynamic task mapping: one task instance per coin, each with ``MAPPED_COIN``); drift_check joins
them, runs `rps-monitor drift` over all coins and picks train or skip_train; train trains on
all coins; version records the outputs with DVC.

Where the tasks run and how they communicate depends on the store (RPS_STORE):

* An object store (a URL: S3 or MinIO, ``s3`` + ``://bucket/prefix``): the tasks may run on different hosts
  (CeleryExecutor, KubernetesExecutor) and share only the store and MLflow. Every task runs in
  a fresh scratch directory of its own (``mktemp -d`` under TMPDIR, removed when it ends) and
  reads nothing a previous task wrote locally: the per-coin reports go to the store
  (``<store>/reports/validation/<COIN>.json``, ``reports/transform/<COIN>.json``,
  ``reports/profile/<COIN>.html``), the model, its evaluation reports and plots to MLflow
  (MLFLOW_TRACKING_URI is then required: a local registry would stay in a scratch directory).
* A local directory (the default ``data``): one host, every task in the working tree RPS_WORKDIR
  (LocalExecutor, ``dvc repro``'s layout): per-coin reports under ``reports/<kind>/``.

version is the only task that needs a Git working tree (RPS_WORKDIR: a checkout with dvc.yaml
and .dvc/). Without one it fails, except with an object store, where it is skipped and says why.
On one host it first writes dvc.yaml's all-coin reports (reports/validation.json,
reports/transform.json, reports/profile.html) with the stages' own commands, then
``dvc commit``s the stages whose outputs are in the tree.

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
  LIVE_COIN_WATCH_API_KEY, RPS_DVC_PUSH, RPS_GIT_COMMIT, TMPDIR (where scratch directories go).
  The binaries read the secrets themselves; this file never names a value.

The module does no work at import time beyond building the DAG object (DagBag parses it often).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, CronDataIntervalTimetable, Param, TriggerRule, task
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

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

# Shared shell prelude: fail fast, find the binaries, pick the working directory. With an object
# store each task runs in a fresh scratch directory (removed at exit) and writes its reports to
# the store; with a local store, in the working tree. `$reports` is where reports go.
# (No `${#...}` anywhere in these templates: `{#` opens a Jinja comment.)
PRELUDE = f"""set -euo pipefail
export PATH="${{RPS_BIN_DIR:+$RPS_BIN_DIR:}}$PATH"
export RPS_STORE="${{RPS_STORE:-data}}"
case "$RPS_STORE" in
  *://*)
    scratch=$(mktemp -d "${{TMPDIR:-/tmp}}/rps-task.XXXXXX")
    trap 'rm -rf "$scratch"' EXIT
    cd "$scratch"
    reports="$RPS_STORE/reports"
    ;;
  *)
    scratch=""
    cd "${{RPS_WORKDIR:-{DEFAULT_WORKDIR}}}"
    reports=reports
    ;;
esac
mkdir -p reports
echo "working directory $PWD${{scratch:+ (fresh, removed at exit)}}; store $RPS_STORE; reports $reports"
"""

# The per-coin stages run once per coin of the run. MAPPED_COIN is set by the mapping, not by the
# worker's environment (so, on purpose, not an RPS_* name: those are settings and binary flags).
PER_COIN = (
    PRELUDE
    + """: "${MAPPED_COIN:?MAPPED_COIN is not set (set by the coin mapping)}"
"""
)

INTERVAL_END = "{{ data_interval_end.in_timezone('UTC').strftime('%Y-%m-%dT%H:%M:%SZ') }}"
EXTRACT_START = (
    "{{ (data_interval_start - macros.timedelta(hours=params.overlap_hours))"
    ".in_timezone('UTC').strftime('%Y-%m-%dT%H:%M:%SZ') }}"
)

EXTRACT = (
    PER_COIN
    + f"""rps-extract --store "$RPS_STORE" --source "${{RPS_SOURCE:-livecoinwatch}}" \\
  ${{RPS_CSV_PATH:+--path "$RPS_CSV_PATH"}} ${{RPS_API_BASE:+--api-base "$RPS_API_BASE"}} \\
  --coins "$MAPPED_COIN" --start "{EXTRACT_START}" --end "{INTERVAL_END}"
"""
)

VALIDATE = (
    PER_COIN
    + f"""rps-validate --store "$RPS_STORE" --coins "$MAPPED_COIN" --end "{INTERVAL_END}" \\
  --max-null-ratio "{{{{ params.max_null_ratio }}}}" --report "$reports/validation/$MAPPED_COIN.json"
"""
)

TRANSFORM = (
    PER_COIN
    + """rps-transform --store "$RPS_STORE" --coins "$MAPPED_COIN" \\
  --summary "$reports/transform/$MAPPED_COIN.json" --profile "$reports/profile/$MAPPED_COIN.html" \\
  --validation-report "$reports/validation/$MAPPED_COIN.json"
"""
)

# Registry, model name and experiment come from RPS_REGISTRY / RPS_MODEL_NAME / RPS_EXPERIMENT
# and MLFLOW_TRACKING_URI (set -> MLflow registry, unset -> local registry directory). The
# metrics, reports and package written here are logged to the run; in a scratch directory they
# go with it. rps-train logs one local data profile: a one-coin run on a local store hands over
# its coin's profile (an object-store profile or several coins: none).
TRAIN = (
    PRELUDE
    + """if [ -n "$scratch" ] && [ -z "${MLFLOW_TRACKING_URI:-}" ]; then
  echo "store $RPS_STORE is shared and this directory is not: set MLFLOW_TRACKING_URI" \\
    "(a local registry would be removed with $scratch)" >&2
  exit 2
fi
profile="reports/profile/{{ params.coins | trim | upper }}.html"
if [ -n "$scratch" ] || [ ! -f "$profile" ]; then profile=""; fi
rps-train --store "$RPS_STORE" --coins "{{ params.coins }}" \\
  --epochs "{{ params.epochs }}" --hidden "{{ params.hidden }}" --lookback "{{ params.lookback }}" \\
  --batch-size "{{ params.batch_size }}" --lr "{{ params.lr }}" --seed "{{ params.seed }}" \\
  --max-train-rows "{{ params.max_train_rows }}" \\
  --metrics reports/train_metrics.json --package-out models/latest \\
  --report-dir reports ${profile:+--profile "$profile"}
"""
)

# Records this run's outputs in dvc.lock and the DVC cache, then pushes them to the remote. Runs
# in the Git working tree RPS_WORKDIR (VersionOperator checks there is one). dvc.yaml's validate
# and transform stages write one report over all coins where the mapped tasks wrote one per coin:
# those are written first, with the stages' own commands (validate only reads; transform
# rewrites the same feature bytes). Only stages whose outputs exist here are committed (with an
# object-store RPS_STORE the Parquet files are not local; when train has never run there is no
# models/latest).
VERSION = f"""set -euo pipefail
export PATH="${{RPS_BIN_DIR:+$RPS_BIN_DIR:}}$PATH"
export RPS_STORE="${{RPS_STORE:-data}}"
cd "${{RPS_WORKDIR:-{DEFAULT_WORKDIR}}}"
mkdir -p reports
echo "Git working tree $PWD"
export DVC_NO_ANALYTICS=1
stages=""
case "$RPS_STORE" in
  data | ./data | "$PWD/data")
    if [ -e data/raw ]; then
      rps-validate --store data --coins "{{{{ params.coins }}}}" --end "{INTERVAL_END}" \\
        --max-null-ratio "{{{{ params.max_null_ratio }}}}" --report reports/validation.json
      stages="$stages extract validate"
    fi
    if [ -e data/features ]; then
      rps-transform --store data --coins "{{{{ params.coins }}}}" \\
        --summary reports/transform.json --profile reports/profile.html \\
        --validation-report reports/validation.json
      stages="$stages transform"
    fi
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
echo "versioned stages:$stages for run {{{{ run_id }}}}"
grep -E '^ *(md5|path):' dvc.lock || true
if [ -n "${{RPS_DVC_PUSH:-}}" ]; then
  dvc push ${{RPS_DVC_REMOTE:+--remote "$RPS_DVC_REMOTE"}}
else
  echo "RPS_DVC_PUSH is not set: skipping dvc push (outputs are in the local DVC cache)"
fi
if [ -n "${{RPS_GIT_COMMIT:-}}" ]; then
  git add dvc.lock reports/*.json
  git commit -m "data: rps_pipeline {{{{ run_id }}}} ({{{{ data_interval_end }}}})" ||
    echo "nothing new to commit"
fi
"""


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


class VersionOperator(StageOperator):
    """The version task: the only one that needs a Git working tree (RPS_WORKDIR, a checkout
    with dvc.yaml and .dvc/). It checks for one on the worker it runs on, before running DVC:
    without one it fails, or, when the store is an object store (the tasks share nothing but
    the store and MLflow, so no other task needs the tree), it is skipped, saying why."""

    def execute(self, context):
        tree = _workdir()
        missing = [name for name in (".git", ".dvc", "dvc.yaml") if not (tree / name).exists()]
        if missing:
            why = (
                f"the version task needs a Git working tree with DVC (RPS_WORKDIR={tree}: "
                f"no {', '.join(missing)} there)"
            )
            store = os.environ.get("RPS_STORE") or "data"
            if _is_object_store(store):
                log.warning("%s; store %s is an object store: skipped, nothing versioned", why, store)
                raise AirflowSkipException(f"{why}: skipped")
            raise AirflowFailException(f"{why}: cannot version outputs")
        return super().execute(context)


def _workdir() -> Path:
    return Path(os.environ.get("RPS_WORKDIR") or DEFAULT_WORKDIR)


def _is_object_store(store: str) -> bool:
    """Whether RPS_STORE is an object store (the tasks then share nothing else)."""
    return "://" in store


def parse_coins(text: str) -> list[str]:
    """The coins of a `coins` param, by the rules of `--coins` (rps_core::schema::parse_coins):
    comma-separated, upper-cased, de-duplicated, order kept, letters/digits/_ up to 16."""
    out: list[str] = []
    for part in text.split(","):
        coin = part.strip().upper()
        if not coin:
            continue
        if len(coin) > 16 or not all(c.isascii() and (c.isalnum() or c == "_") for c in coin):
            raise AirflowFailException(f"'{part}' is not a coin code (letters and digits, e.g. BTC)")
        if coin not in out:
            out.append(coin)
    if not out:
        raise AirflowFailException("no coin given (param coins, e.g. BTC,ETH)")
    return out


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
    """Returns (task_id, reason). `run_drift()` -> (exit code of `rps-monitor drift`, the signals
    its report says fired: psi_share, page_hinkley, coverage), called only when the cheaper
    reasons did not already decide."""
    if force:
        return "train", "force_train param set"
    if not has_champion:
        return "train", "no champion model registered yet"
    if hour == retrain_hour:
        return "train", f"daily retrain hour ({retrain_hour:02d}:00 UTC)"
    code, fired = run_drift()
    if code == 3:
        return "train", f"rps-monitor drift: {', '.join(fired) or 'drift'} fired (exit 3)"
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
    max_active_runs=1,  # runs share one store (on one host also reports/ and dvc.lock)
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

    @task(task_id="coins")
    def coin_list(params=None) -> list[dict[str, str]]:
        """The run's coins (param `coins`), as the environment of one mapped task instance each."""
        coins = parse_coins(str(params["coins"]))
        log.info("coins: %s", ",".join(coins))
        return [{"MAPPED_COIN": c} for c in coins]

    coins = coin_list()

    def per_coin(task_id: str, bash_command: str):
        """A stage mapped over the coins: one task instance per coin, labelled with it."""
        return StageOperator.partial(
            task_id=task_id,
            bash_command=bash_command,
            skip_on_exit_code=None,
            append_env=True,
            map_index_template="{{ task.env['MAPPED_COIN'] }}",
        ).expand(env=coins)

    extract = per_coin("extract", EXTRACT)
    validate = per_coin("validate", VALIDATE)
    transform = per_coin("transform", TRANSFORM)

    @task.branch(task_id="drift_check")
    def drift_check(params=None, data_interval_end=None) -> str:
        """Train when forced, when no champion exists, at the daily retrain hour, or on drift."""
        model_name = os.environ.get("RPS_MODEL_NAME") or "rps-forecaster"
        store = os.environ.get("RPS_STORE") or "data"
        if _is_object_store(store) and not os.environ.get("MLFLOW_TRACKING_URI"):
            raise AirflowFailException(
                f"store {store} is shared and the task directories are not: set MLFLOW_TRACKING_URI "
                "(a local registry would not be seen by the other tasks)"
            )

        def run_drift() -> tuple[int, list[str]]:
            env = dict(os.environ)
            env.setdefault("RPS_STORE", "data")
            if _is_object_store(env["RPS_STORE"]):
                # Shares nothing with the other tasks: a scratch directory, its report logged.
                with tempfile.TemporaryDirectory(prefix="rps-task.") as scratch:
                    return drift_in(Path(scratch), env, log_report=True)
            return drift_in(_workdir(), env, log_report=False)

        def drift_in(workdir: Path, env: dict, log_report: bool) -> tuple[int, list[str]]:
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
            (workdir / "reports").mkdir(exist_ok=True)
            log.info("running %s in %s", " ".join(cmd), workdir)
            proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=1800)
            for line in (proc.stdout + proc.stderr).splitlines():
                log.info("rps-monitor drift: %s", line)
            report = workdir / "reports" / "drift.json"
            fired: list[str] = []
            if report.is_file():
                try:
                    fired = [str(s) for s in json.loads(report.read_text()).get("fired", [])]
                except ValueError:
                    fired = []
            if log_report and report.is_file():
                # rps-monitor writes its report to a local file only; here it is kept in the log,
                # on one line.
                text = report.read_text()
                try:
                    text = json.dumps(json.loads(text), separators=(",", ":"))
                except ValueError:
                    text = " ".join(text.split())
                log.info("drift report: %s", text)
            return proc.returncode, fired

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
    version = VersionOperator(
        task_id="version", bash_command=VERSION, trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS
    )

    extract >> validate >> transform >> decision >> [train, skip_train] >> version
