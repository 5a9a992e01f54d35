"""Integrity tests of the rps_pipeline DAG: it imports, has the agreed shape and retry policy,
renders the stage commands Airflow will run, and decides training as specified.

Run: `.venv/pipeline/bin/pytest dags/tests` (needs no Airflow DB; the MLflow test needs
RPS_TEST_MLFLOW_URI from `.ci/services start`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path

import pendulum
import pytest
import yaml

DAGS_DIR = Path(__file__).resolve().parent.parent
REPO = DAGS_DIR.parent
DAG_FILE = DAGS_DIR / "rps_pipeline.py"

EXPECTED_EDGES = {
    ("extract", "validate"),
    ("validate", "transform"),
    ("transform", "drift_check"),
    ("drift_check", "train"),
    ("drift_check", "skip_train"),
    ("train", "version"),
    ("skip_train", "version"),
}


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_DIR))


@pytest.fixture(scope="session")
def dag(dagbag):
    return dagbag.dags["rps_pipeline"]


@pytest.fixture(scope="session")
def module():
    spec = importlib.util.spec_from_file_location("rps_pipeline_under_test", DAG_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def render(dag, task_id: str, end: str, **param_overrides) -> str:
    """Renders a task's bash_command as a run for the hourly interval ending at `end` would."""
    from airflow.sdk.execution_time import macros

    task = dag.get_task(task_id)
    end_dt = pendulum.parse(end)
    params = {k: v.value if hasattr(v, "value") else v for k, v in dag.params.items()}
    params.update(param_overrides)
    context = {
        "data_interval_start": end_dt - timedelta(hours=1),
        "data_interval_end": end_dt,
        "params": params,
        "macros": macros,
        "run_id": "scheduled__test",
    }
    return task.render_template(task.bash_command, context, jinja_env=dag.get_template_env())


# --- imports and shape ---------------------------------------------------------------------


def test_the_dag_folder_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "rps_pipeline" in dagbag.dag_ids
    # .airflowignore keeps the test modules out of the dag-processor
    assert [s.file for s in dagbag.dagbag_stats] == ["rps_pipeline.py"]


def test_the_tasks_run_in_the_agreed_order(dag):
    edges = {(up, t.task_id) for t in dag.tasks for up in t.upstream_task_ids}
    assert edges == EXPECTED_EDGES
    assert {t.task_id for t in dag.tasks} == {a for e in EXPECTED_EDGES for a in e}


def test_the_graph_has_no_cycle(dag):
    dag.check_cycle()  # raises on a cycle
    order = [t.task_id for t in dag.topological_sort()]
    assert order.index("extract") < order.index("validate") < order.index("transform")
    assert order.index("drift_check") < order.index("train") < order.index("version")


def test_it_runs_hourly_on_real_intervals_without_catchup(dag):
    from airflow.sdk import CronDataIntervalTimetable

    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.timetable.expression == "0 * * * *"
    assert dag.catchup is False
    assert dag.max_active_runs == 1  # the stages share a store and dvc.lock


def test_every_task_retries_with_exponential_backoff(dag):
    for t in dag.tasks:
        assert t.retries >= 2, t.task_id
        assert t.retry_exponential_backoff > 1, t.task_id
        assert t.max_retry_delay is not None and t.retry_delay < t.max_retry_delay, t.task_id
        assert t.execution_timeout is not None, t.task_id


def test_no_stage_reads_exit_code_99_as_skipped(dag):
    for t in dag.tasks:
        if hasattr(t, "skip_on_exit_code"):
            assert t.skip_on_exit_code == [] or t.skip_on_exit_code is None, t.task_id


def test_version_runs_after_train_or_after_skipping_it(dag):
    assert str(dag.get_task("version").trigger_rule) in (
        "none_failed_min_one_success",
        "TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS",
    )


def test_importing_the_dag_file_runs_no_process_and_opens_no_connection(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError(f"top-level work at import: {args[:1]}")

    monkeypatch.setattr(subprocess, "Popen", forbidden)
    monkeypatch.setattr(subprocess, "run", forbidden)
    monkeypatch.setattr(socket.socket, "connect", forbidden)
    monkeypatch.setattr(urllib.request, "urlopen", forbidden)
    spec = importlib.util.spec_from_file_location("rps_pipeline_import_probe", DAG_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.dag.dag_id == "rps_pipeline"


def test_the_dag_file_holds_no_secret_or_location():
    text = DAG_FILE.read_text()
    for needle in ("minioadmin", "AKIA", "http://", "https://", "s3://", "password=", "api_key="):
        assert needle not in text, needle


# --- parameters and rendered commands --------------------------------------------------------


def test_dag_defaults_match_params_yaml(dag):
    p = yaml.safe_load((REPO / "params.yaml").read_text())
    expect = {
        "coins": p["coins"],
        "max_null_ratio": p["validate"]["max_null_ratio"],
        "drift_window_hours": p["drift"]["window_hours"],
        "drift_threshold": p["drift"]["threshold"],
        "drift_share": p["drift"]["share"],
        "retrain_hour_utc": p["schedule"]["retrain_hour_utc"],
        "overlap_hours": p["schedule"]["overlap_hours"],
        **{
            k: p["train"][k]
            for k in ("epochs", "hidden", "lookback", "batch_size", "lr", "seed", "max_train_rows")
        },
    }
    got = {k: dag.params[k] for k in expect}
    assert got == expect


def test_extract_gets_the_interval_plus_the_overlap_in_rfc3339(dag):
    cmd = render(dag, "extract", "2024-06-01T10:00:00+00:00")
    assert 'rps-extract --store "$RPS_STORE" --source "${RPS_SOURCE:-livecoinwatch}"' in cmd
    # interval [09:00, 10:00) re-fetched from 23 hours earlier
    assert '--start "2024-05-31T10:00:00Z" --end "2024-06-01T10:00:00Z"' in cmd
    assert '--coins "BTC"' in cmd


def test_a_run_conf_changes_the_rendered_flags(dag):
    cmd = render(dag, "train", "2024-06-01T10:00:00+00:00", epochs=3, coins="BTC,ETH")
    assert '--epochs "3"' in cmd and '--coins "BTC,ETH"' in cmd
    assert "--package-out models/latest" in cmd and "--metrics reports/train_metrics.json" in cmd


def test_validate_and_transform_use_the_contract_flags(dag):
    v = render(dag, "validate", "2024-06-01T10:00:00+00:00")
    assert '--end "2024-06-01T10:00:00Z"' in v and "--report reports/validation.json" in v
    assert '--max-null-ratio "0.01"' in v
    t = render(dag, "transform", "2024-06-01T10:00:00+00:00")
    assert "--summary reports/transform.json" in t and "--validation-report reports/validation.json" in t


def test_rendered_commands_are_valid_bash(dag):
    for task_id in ("extract", "validate", "transform", "train", "version"):
        cmd = render(dag, task_id, "2024-06-01T10:00:00+00:00")
        subprocess.run(["bash", "-n", "-c", cmd], check=True)


def test_rendered_commands_pass_shellcheck(dag):
    shellcheck = REPO / ".venv" / "lint" / "bin" / "shellcheck"
    if not shellcheck.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{shellcheck} missing under CI=true (run .ci/install-tools)")
        pytest.skip("shellcheck not installed (.venv/lint)")
    for task_id in ("extract", "validate", "transform", "train", "version"):
        script = "#!/bin/bash\n" + render(dag, task_id, "2024-06-01T10:00:00+00:00")
        res = subprocess.run([str(shellcheck), "-"], input=script, text=True, capture_output=True)
        assert res.returncode == 0, (task_id, res.stdout)


def test_the_version_task_skips_push_without_rps_dvc_push(dag):
    cmd = render(dag, "version", "2024-06-01T10:00:00+00:00")
    assert 'if [ -n "${RPS_DVC_PUSH:-}" ]' in cmd and "dvc commit --force" in cmd


# --- behaviour of the operator and the branch --------------------------------------------------


def run_stage(module, script: str):
    op = module.StageOperator(task_id="probe", bash_command=script)
    return op.execute({})


@pytest.mark.parametrize("code", [2, 3])
def test_bad_input_and_quality_failures_are_not_retried(module, code):
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match=f"exited {code}"):
        run_stage(module, f"exit {code}")


@pytest.mark.parametrize("code", [1, 4, 99])
def test_service_failures_and_bugs_fail_retryably_and_99_is_not_a_skip(module, code):
    from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

    with pytest.raises(AirflowException) as info:
        run_stage(module, f"exit {code}")
    assert not isinstance(info.value, (AirflowFailException, AirflowSkipException))


def test_a_successful_stage_returns_its_last_line(module):
    assert run_stage(module, "echo first; echo last") == "last"


def decide(module, drift_code=0, **kw):
    """(choice, how many times the drift command ran)."""
    calls = []

    def run_drift():
        calls.append(1)
        return drift_code

    args = {"force": False, "hour": 5, "retrain_hour": 0, "has_champion": True, **kw}
    choice, _reason = module.decide_training(run_drift=run_drift, **args)
    return choice, len(calls)


def test_drift_detected_trains(module):
    assert decide(module, drift_code=3) == ("train", 1)


def test_no_drift_skips_training(module):
    assert decide(module, drift_code=0) == ("skip_train", 1)


def test_the_daily_retrain_hour_trains_without_a_drift_check(module):
    assert decide(module, hour=0, retrain_hour=0) == ("train", 0)


def test_a_missing_champion_trains_without_a_drift_check(module):
    assert decide(module, has_champion=False) == ("train", 0)


def test_force_train_trains(module):
    assert decide(module, force=True) == ("train", 0)


@pytest.mark.parametrize("code", [1, 2, 4])
def test_a_failing_drift_check_fails_the_task(module, code):
    from airflow.sdk.exceptions import AirflowException

    with pytest.raises(AirflowException, match=f"exit code {code}"):
        decide(module, drift_code=code)


@pytest.mark.parametrize(("exit_code", "choice"), [(3, "train"), (0, "skip_train")])
def test_the_branch_runs_rps_monitor_drift_with_the_interval_and_follows_its_exit_code(
    dag, tmp_path, monkeypatch, exit_code, choice
):
    # A stand-in for the binary that records its arguments: this checks the DAG's glue (binary
    # lookup via RPS_BIN_DIR, flags, working directory, exit-code mapping); the real
    # `rps-monitor drift` runs in tests/orchestration/airflow_e2e.sh.
    bin_dir, work = tmp_path / "bin", tmp_path / "work"
    bin_dir.mkdir()
    work.mkdir()
    fake = bin_dir / "rps-monitor"
    fake.write_text(f'#!/bin/sh\necho "$PWD $@" > "{tmp_path}/args"\nexit {exit_code}\n')
    fake.chmod(0o755)
    (work / "registry" / "models" / "rps-forecaster" / "aliases").mkdir(parents=True)
    (work / "registry" / "models" / "rps-forecaster" / "aliases" / "champion").write_text("1")
    monkeypatch.setenv("RPS_BIN_DIR", str(bin_dir))
    monkeypatch.setenv("RPS_WORKDIR", str(work))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RPS_REGISTRY", raising=False)
    monkeypatch.delenv("RPS_MODEL_NAME", raising=False)
    monkeypatch.setenv("RPS_STORE", "data")
    params = {k: dag.params[k] for k in dag.params}
    got = dag.get_task("drift_check").python_callable(
        params=params, data_interval_end=pendulum.datetime(2024, 6, 1, 10, tz="UTC")
    )
    assert got == choice
    args = (tmp_path / "args").read_text().split()
    assert args[0] == str(work)
    assert args[1:] == [
        "drift",
        "--store",
        "data",
        "--coins",
        "BTC",
        "--model-name",
        "rps-forecaster",
        "--window-hours",
        "168",
        "--threshold",
        "0.2",
        "--share",
        "0.5",
        "--end",
        "2024-06-01T10:00:00Z",
        "--report",
        "reports/drift.json",
    ]


def test_the_local_registry_champion_is_found_by_its_alias_file(module, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("RPS_REGISTRY", str(tmp_path))
    assert module.champion_exists("rps-forecaster") is False
    alias = tmp_path / "models" / "rps-forecaster" / "aliases"
    alias.mkdir(parents=True)
    (alias / "champion").write_text("1\n")
    assert module.champion_exists("rps-forecaster") is True
    assert module.champion_exists("other-model") is False


def mlflow_uri() -> str | None:
    uri = os.environ.get("RPS_TEST_MLFLOW_URI")
    if not uri and os.environ.get("CI") == "true":
        pytest.fail("RPS_TEST_MLFLOW_URI is not set under CI=true (run .ci/services start)")
    return uri


def mlflow_post(uri: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def test_the_mlflow_champion_is_found_through_the_rest_api(module, monkeypatch):
    uri = mlflow_uri()
    if not uri:
        pytest.skip("RPS_TEST_MLFLOW_URI not set (run .ci/services start)")
    name = f"rps-dagtest-{uuid.uuid4().hex[:10]}"
    exp = mlflow_post(uri, "experiments/create", {"name": name})["experiment_id"]
    run = mlflow_post(
        uri, "runs/create", {"experiment_id": exp, "start_time": 1_700_000_000_000, "run_name": "probe"}
    )["run"]["info"]
    mlflow_post(uri, "registered-models/create", {"name": name})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert module.champion_exists(name) is False  # model without the alias
    assert module.champion_exists(name + "-missing") is False  # no such model
    mv = mlflow_post(
        uri,
        "model-versions/create",
        {"name": name, "source": run["artifact_uri"] + "/model", "run_id": run["run_id"]},
    )["model_version"]
    mlflow_post(uri, "registered-models/alias", {"name": name, "alias": "champion", "version": mv["version"]})
    assert module.champion_exists(name) is True


def test_an_unreachable_mlflow_fails_the_check_instead_of_training(module, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    with pytest.raises((urllib.error.URLError, OSError)):
        module.champion_exists("rps-forecaster")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
