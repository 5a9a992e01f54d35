"""The model comparison of the `test` branch workflow (.github/scripts/compare_models.py),
against the real MLflow server of `.ci/services start` (RPS_TEST_MLFLOW_URI).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".github" / "scripts" / "compare_models.py"


@pytest.fixture(scope="module")
def mlflow() -> str:
    uri = os.environ.get("RPS_TEST_MLFLOW_URI")
    if not uri:
        if os.environ.get("CI") == "true":
            pytest.fail("RPS_TEST_MLFLOW_URI is not set under CI=true (run .ci/services start)")
        pytest.skip("RPS_TEST_MLFLOW_URI not set (run .ci/services start)")
    return uri.rstrip("/")


def post(uri: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(
        f"{uri}/api/2.0/mlflow/{path}", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


@pytest.fixture(scope="module")
def model(mlflow) -> str:
    """A registered model with v1 (rmse 300, champion), v2 (rmse 290) and v3 (rmse 330)."""
    name = f"rps-compare-{uuid.uuid4().hex[:10]}"
    exp = post(mlflow, "experiments/create", {"name": name})["experiment_id"]
    post(mlflow, "registered-models/create", {"name": name})
    now = int(time.time() * 1000)
    for rmse in (300.0, 290.0, 330.0):
        run = post(mlflow, "runs/create", {"experiment_id": exp, "start_time": now})["run"]["info"]
        metrics = [
            {"key": "rmse_usd", "value": rmse, "timestamp": now, "step": 0},
            {"key": "skill", "value": 1 - rmse / 333.1, "timestamp": now, "step": 0},
        ]
        post(mlflow, "runs/log-batch", {"run_id": run["run_id"], "metrics": metrics})
        post(
            mlflow,
            "model-versions/create",
            {"name": name, "source": run["artifact_uri"] + "/model", "run_id": run["run_id"]},
        )
    return name


def run(mlflow: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60
    )


def compare(mlflow, model, tmp_path, *extra):
    report = tmp_path / "report.md"
    res = run(
        mlflow,
        "compare",
        "--model",
        model,
        "--metric",
        "rmse_usd",
        "--report",
        str(report),
        "--json",
        str(tmp_path / "d.json"),
        *extra,
    )
    text = report.read_text() if report.exists() else ""
    return res, text


def test_champion_prints_an_empty_version_until_the_alias_exists(mlflow, model):
    res = run(mlflow, "champion", "--model", model)
    assert (res.returncode, res.stdout.strip()) == (0, "version=")
    post(mlflow, "registered-models/alias", {"name": model, "alias": "champion", "version": "1"})
    res = run(mlflow, "champion", "--model", model)
    assert (res.returncode, res.stdout.strip()) == (0, "version=1")


def test_an_unknown_model_has_no_champion(mlflow):
    res = run(mlflow, "champion", "--model", f"no-such-model-{uuid.uuid4().hex[:8]}")
    assert (res.returncode, res.stdout.strip()) == (0, "version=")


def test_a_better_candidate_passes_with_a_table_of_both_runs(mlflow, model, tmp_path):
    res, text = compare(mlflow, model, tmp_path, "--baseline-version", "1", "--candidate-version", "2")
    assert res.returncode == 0, res.stderr
    assert "PASS" in text
    assert "| **rmse_usd** | 300 | 290 | -3.33% |" in text
    assert "| skill |" in text
    decision = json.loads((tmp_path / "d.json").read_text())
    assert decision == {
        "candidate": "2",
        "baseline": "1",
        "metric": "rmse_usd",
        "candidate_value": 290.0,
        "baseline_value": 300.0,
        "failed": False,
    }


def test_a_worse_candidate_fails_the_job(mlflow, model, tmp_path):
    res, text = compare(mlflow, model, tmp_path, "--baseline-version", "1", "--candidate-version", "latest")
    assert res.returncode == 1
    assert "FAIL" in text and "| **rmse_usd** | 300 | 330 | +10.00% |" in text


def test_the_tolerance_absorbs_a_small_loss(mlflow, model, tmp_path):
    res, _ = compare(
        mlflow, model, tmp_path, "--baseline-version", "1", "--candidate-version", "3", "--tolerance", "0.15"
    )
    assert res.returncode == 0


def test_higher_is_better_flips_the_decision(mlflow, model, tmp_path):
    report = tmp_path / "r.md"
    res = run(
        mlflow,
        "compare",
        "--model",
        model,
        "--metric",
        "skill",
        "--higher-is-better",
        "--baseline-version",
        "1",
        "--candidate-version",
        "2",
        "--report",
        str(report),
    )
    assert res.returncode == 0
    res = run(
        mlflow,
        "compare",
        "--model",
        model,
        "--metric",
        "skill",
        "--higher-is-better",
        "--baseline-version",
        "1",
        "--candidate-version",
        "3",
        "--report",
        str(report),
    )
    assert res.returncode == 1


def test_the_first_model_passes_without_a_champion(mlflow, model, tmp_path):
    res, text = compare(mlflow, model, tmp_path, "--baseline-version", "", "--candidate-version", "latest")
    assert res.returncode == 0 and "no champion yet" in text


def test_no_new_version_is_an_error_not_a_pass(mlflow, model, tmp_path):
    res, _ = compare(mlflow, model, tmp_path, "--baseline-version", "3", "--candidate-version", "latest")
    assert res.returncode == 2 and "no new version" in res.stderr


def test_a_candidate_of_the_ci_model_is_compared_with_the_production_champion(mlflow, model, tmp_path):
    ci_model = model + "-ci"
    exp = post(mlflow, "experiments/create", {"name": ci_model})["experiment_id"]
    post(mlflow, "registered-models/create", {"name": ci_model})
    now = int(time.time() * 1000)
    run = post(mlflow, "runs/create", {"experiment_id": exp, "start_time": now})["run"]["info"]
    post(
        mlflow,
        "runs/log-batch",
        {
            "run_id": run["run_id"],
            "metrics": [{"key": "rmse_usd", "value": 310.0, "timestamp": now, "step": 0}],
        },
    )
    post(
        mlflow,
        "model-versions/create",
        {"name": ci_model, "source": run["artifact_uri"] + "/model", "run_id": run["run_id"]},
    )
    # ci v1 (310) vs production v1 (300): worse; vs production v3 (330): better
    res, text = compare(mlflow, ci_model, tmp_path, "--baseline-model", model, "--baseline-version", "1")
    assert res.returncode == 1 and f"candidate `{ci_model}` vs champion `{model}`" in text
    res, _ = compare(mlflow, ci_model, tmp_path, "--baseline-model", model, "--baseline-version", "3")
    assert res.returncode == 0


def test_a_missing_decision_metric_is_an_error(mlflow, model, tmp_path):
    report = tmp_path / "r.md"
    res = run(
        mlflow,
        "compare",
        "--model",
        model,
        "--metric",
        "mape",
        "--baseline-version",
        "1",
        "--candidate-version",
        "2",
        "--report",
        str(report),
    )
    assert res.returncode == 2 and "logged no metric 'mape'" in res.stderr
