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
import tempfile
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
    ("coins", "extract"),
    ("coins", "validate"),
    ("coins", "transform"),
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


PER_COIN_TASKS = ("extract", "validate", "transform")


def bash_command(task) -> str:
    """The bash_command of a task, mapped (kept in its partial kwargs) or not."""
    partial = getattr(task, "partial_kwargs", None)
    return partial["bash_command"] if partial is not None else task.bash_command


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
    return dag.get_template_env().from_string(bash_command(task)).render(context)


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
    checked = 0
    for t in dag.tasks:
        partial = getattr(t, "partial_kwargs", None)
        if partial is not None and "bash_command" in partial:
            assert partial.get("skip_on_exit_code", 99) is None, t.task_id
            checked += 1
        elif hasattr(t, "skip_on_exit_code"):
            assert t.skip_on_exit_code == [] or t.skip_on_exit_code is None, t.task_id
            checked += 1
    assert checked == 5  # extract, validate, transform, train, version


def test_the_per_coin_stages_are_mapped_over_the_coin_list(dag):
    coins = dag.get_task("coins")
    for task_id in PER_COIN_TASKS:
        t = dag.get_task(task_id)
        assert t.is_mapped, task_id
        assert t.upstream_task_ids >= {"coins"}, task_id
        # one task instance per coin, with the coin in its environment and as its label
        assert t.partial_kwargs["map_index_template"] == "{{ task.env['MAPPED_COIN'] }}", task_id
        assert t.partial_kwargs["append_env"] is True, task_id
        (mapped,) = t.expand_input.value.values()
        assert mapped.operator is coins, task_id
    for task_id in ("drift_check", "train", "skip_train", "version"):
        assert not dag.get_task(task_id).is_mapped, task_id


def test_the_coin_list_gives_one_environment_per_coin_by_the_rules_of_coins(dag):
    from airflow.sdk.exceptions import AirflowFailException

    coin_list = dag.get_task("coins").python_callable
    assert coin_list(params={"coins": "BTC"}) == [{"MAPPED_COIN": "BTC"}]
    assert coin_list(params={"coins": " btc, eth ,BTC,sol_2,"}) == [
        {"MAPPED_COIN": "BTC"},
        {"MAPPED_COIN": "ETH"},
        {"MAPPED_COIN": "SOL_2"},
    ]
    for bad in ("BTC/USD", " , ", "A" * 17):
        with pytest.raises(AirflowFailException):
            coin_list(params={"coins": bad})


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
    assert '--coins "$MAPPED_COIN"' in cmd


def test_a_run_conf_changes_the_rendered_flags(dag):
    cmd = render(dag, "train", "2024-06-01T10:00:00+00:00", epochs=3, coins="BTC,ETH")
    assert '--epochs "3"' in cmd and '--coins "BTC,ETH"' in cmd
    assert 'profile="reports/profile/BTC,ETH.html"' in cmd  # no such file: no --profile
    assert "--package-out models/latest" in cmd and "--metrics reports/train_metrics.json" in cmd


def test_validate_and_transform_use_the_contract_flags(dag):
    v = render(dag, "validate", "2024-06-01T10:00:00+00:00")
    assert '--end "2024-06-01T10:00:00Z"' in v and '--report "$reports/validation/$MAPPED_COIN.json"' in v
    assert '--max-null-ratio "0.01"' in v and '--coins "$MAPPED_COIN"' in v
    t = render(dag, "transform", "2024-06-01T10:00:00+00:00")
    assert '--summary "$reports/transform/$MAPPED_COIN.json"' in t
    assert '--validation-report "$reports/validation/$MAPPED_COIN.json"' in t
    # on one host, version writes dvc.yaml's all-coin reports with the stages' own flags
    ver = render(dag, "version", "2024-06-01T10:00:00+00:00")
    assert "--report reports/validation.json" in ver and "--summary reports/transform.json" in ver
    assert "--profile reports/profile.html" in ver and "--validation-report reports/validation.json" in ver


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
        return drift_code, (["coverage"] if drift_code == 3 else [])

    args = {"force": False, "hour": 5, "retrain_hour": 0, "has_champion": True, **kw}
    choice, _reason = module.decide_training(run_drift=run_drift, **args)
    return choice, len(calls)


def test_drift_detected_trains(module):
    assert decide(module, drift_code=3) == ("train", 1)


def test_the_reason_names_the_signals_that_fired(module):
    choice, reason = module.decide_training(
        force=False,
        hour=5,
        retrain_hour=0,
        has_champion=True,
        run_drift=lambda: (3, ["page_hinkley", "coverage"]),
    )
    assert choice == "train"
    assert reason == "rps-monitor drift: page_hinkley, coverage fired (exit 3)"


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


def fake_binaries(
    bin_dir: Path, record: Path, names=("rps-extract", "rps-validate", "rps-transform", "rps-train")
):
    """Stand-ins for the stage binaries that append `<name> <cwd> <args>` to `record`."""
    bin_dir.mkdir(exist_ok=True)
    for name in names:
        fake = bin_dir / name
        fake.write_text(f'#!/bin/sh\necho "{name} $PWD $*" >> "{record}"\n')
        fake.chmod(0o755)


def run_rendered(dag, task_id: str, env: dict) -> subprocess.CompletedProcess:
    cmd = render(dag, task_id, "2024-06-01T10:00:00+00:00")
    return subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True, check=True)


def test_with_an_object_store_each_stage_runs_in_a_fresh_directory_and_reports_to_the_store(dag, tmp_path):
    # What makes the DAG run on many workers: no task reads what another wrote locally. Each
    # runs in its own scratch directory under TMPDIR, gone when it ends; reports are objects.
    record, scratch_root, bin_dir = tmp_path / "calls", tmp_path / "tmp", tmp_path / "bin"
    scratch_root.mkdir()
    fake_binaries(bin_dir, record)
    env = {
        "PATH": os.environ["PATH"],
        "RPS_BIN_DIR": str(bin_dir),
        "TMPDIR": str(scratch_root),
        "RPS_STORE": "s3://bucket/rps",
        "RPS_WORKDIR": str(tmp_path / "no-such-tree"),
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:1",
        "RPS_SOURCE": "synthetic",
    }
    for coin in ("BTC", "ETH"):
        for task_id in PER_COIN_TASKS:
            run_rendered(dag, task_id, {**env, "MAPPED_COIN": coin})
    run_rendered(dag, "train", env)
    calls = [line.split(" ", 2) for line in record.read_text().splitlines()]
    assert [c[0] for c in calls] == [*("rps-extract", "rps-validate", "rps-transform") * 2, "rps-train"]
    dirs = [c[1] for c in calls]
    assert len(set(dirs)) == len(dirs), dirs  # a fresh directory each
    assert all(Path(d).parent == scratch_root and Path(d).name.startswith("rps-task.") for d in dirs)
    assert list(scratch_root.iterdir()) == []  # each removed when its task ended
    args = {(c[0], c[2].split("--coins ")[1].split()[0]): c[2] for c in calls}
    assert "--report s3://bucket/rps/reports/validation/ETH.json" in args["rps-validate", "ETH"]
    assert (
        "--summary s3://bucket/rps/reports/transform/BTC.json "
        "--profile s3://bucket/rps/reports/profile/BTC.html "
        "--validation-report s3://bucket/rps/reports/validation/BTC.json"
    ) in args["rps-transform", "BTC"]
    assert "--profile" not in args["rps-train", "BTC"]  # the store's profiles are not local


def test_with_a_local_store_the_stages_share_the_working_tree(dag, tmp_path):
    record, work, bin_dir = tmp_path / "calls", tmp_path / "work", tmp_path / "bin"
    work.mkdir()
    fake_binaries(bin_dir, record)
    env = {
        "PATH": os.environ["PATH"],
        "RPS_BIN_DIR": str(bin_dir),
        "RPS_STORE": "data",
        "RPS_WORKDIR": str(work),
    }
    run_rendered(dag, "validate", {**env, "MAPPED_COIN": "BTC"})
    (work / "reports" / "profile").mkdir(parents=True)
    (work / "reports" / "profile" / "BTC.html").write_text("<html></html>")
    run_rendered(dag, "train", env)
    validate, train = (line.split(" ", 2) for line in record.read_text().splitlines())
    assert validate[1] == train[1] == str(work)
    assert "--report reports/validation/BTC.json" in validate[2]
    assert "--profile reports/profile/BTC.html" in train[2]  # a one-coin run hands its profile over


def test_train_with_an_object_store_and_no_mlflow_fails_before_training(dag, tmp_path):
    record, bin_dir = tmp_path / "calls", tmp_path / "bin"
    fake_binaries(bin_dir, record)
    env = {"PATH": os.environ["PATH"], "RPS_BIN_DIR": str(bin_dir), "RPS_STORE": "s3://bucket/rps"}
    cmd = render(dag, "train", "2024-06-01T10:00:00+00:00")
    res = subprocess.run(
        ["bash", "-c", cmd], env={**env, "TMPDIR": str(tmp_path)}, capture_output=True, text=True
    )
    assert res.returncode == 2 and "set MLFLOW_TRACKING_URI" in res.stderr
    assert not record.exists()


@pytest.mark.parametrize(("store", "outcome"), [("s3://bucket/rps", "skipped"), ("data", "failed")])
def test_version_without_a_git_working_tree_says_so_and_is_skipped_only_with_an_object_store(
    module, tmp_path, monkeypatch, store, outcome
):
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    monkeypatch.setenv("RPS_WORKDIR", str(tmp_path))
    monkeypatch.setenv("RPS_STORE", store)
    op = module.VersionOperator(task_id="version_probe", bash_command="echo ran")
    want = AirflowSkipException if outcome == "skipped" else AirflowFailException
    with pytest.raises(want, match="needs a Git working tree with DVC") as info:
        op.execute({})
    assert "no .git, .dvc, dvc.yaml there" in str(info.value)
    for name in (".git", ".dvc"):
        (tmp_path / name).mkdir()
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    assert op.execute({}) == "ran"


def test_the_drift_check_with_an_object_store_runs_in_a_scratch_directory(dag, tmp_path, monkeypatch, caplog):
    bin_dir, scratch_root = tmp_path / "bin", tmp_path / "tmp"
    bin_dir.mkdir()
    scratch_root.mkdir()
    fake = bin_dir / "rps-monitor"
    fake.write_text(
        f'#!/bin/sh\necho "$PWD" > "{tmp_path}/cwd"\necho \'{{"drifted": 0}}\' > reports/drift.json\nexit 0\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("RPS_BIN_DIR", str(bin_dir))
    monkeypatch.setenv("RPS_STORE", "s3://bucket/rps")
    monkeypatch.setenv("RPS_WORKDIR", str(tmp_path / "no-such-tree"))
    monkeypatch.setenv("TMPDIR", str(scratch_root))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    callable_ = dag.get_task("drift_check").python_callable
    params = {k: dag.params[k] for k in dag.params}
    end = pendulum.datetime(2024, 6, 1, 10, tz="UTC")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="set MLFLOW_TRACKING_URI"):
        callable_(params=params, data_interval_end=end)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    module = sys.modules[callable_.__module__]
    monkeypatch.setattr(module, "champion_exists", lambda _name: True)
    with caplog.at_level("INFO"):
        assert callable_(params=params, data_interval_end=end) == "skip_train"
    cwd = Path((tmp_path / "cwd").read_text().strip())
    assert cwd.parent == scratch_root and cwd.name.startswith("rps-task.")
    assert list(scratch_root.iterdir()) == []
    assert 'drift report: {"drifted":0}' in caplog.text  # the whole report, on one line


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
