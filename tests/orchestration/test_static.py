"""Static checks of the delivery files that no schema catches: the compose file, .env.example,
the Dockerfile, the workflows and the DVC config agree with each other and with the repo.

Run by tests/orchestration/run.sh with the pipeline venv (PyYAML, pytest).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
WORKFLOWS = {p.name: p for p in sorted((ROOT / ".github" / "workflows").glob("*.yml"))}
ENV_EXAMPLE = (ROOT / ".env.example").read_text()
BINARIES = ["rps-extract", "rps-validate", "rps-transform", "rps-train", "rps-serve", "rps-monitor"]


def env_example_names() -> set[str]:
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE, flags=re.M))


def load_workflow(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


# --- compose + .env.example ------------------------------------------------------------------


def test_every_variable_compose_interpolates_is_documented_in_env_example():
    text = "\n".join(
        line for line in (ROOT / "compose.yaml").read_text().splitlines() if not line.lstrip().startswith("#")
    )
    used = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", text))
    assert used, "compose.yaml interpolates no variable?"
    assert used - env_example_names() == set()


def test_every_variable_the_dag_reads_is_documented_in_env_example():
    dag = (ROOT / "dags" / "rps_pipeline.py").read_text()
    read = set(re.findall(r"os\.environ(?:\.get)?[\[(]\"((?:RPS|MLFLOW|AWS|LIVE)_[A-Z0-9_]*)\"", dag))
    read |= set(re.findall(r"\$\{?((?:RPS|MLFLOW|AWS|LIVE)_[A-Z0-9_]*)", dag))
    assert "RPS_STORE" in read and "MLFLOW_TRACKING_URI" in read
    assert read - env_example_names() == set()


def test_env_example_holds_no_real_secret():
    for line in ENV_EXAMPLE.splitlines():
        if re.match(r"^[A-Z_]*(KEY|TOKEN|SECRET|PASSWORD)[A-Z_]*=", line):
            value = line.split("=", 1)[1]
            assert value == "" or value.startswith("change-me"), line


def test_compose_has_the_whole_stack():
    services = set(COMPOSE["services"])
    for name in (
        "minio",
        "minio-init",
        "postgres",
        "mlflow",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "prometheus",
        "grafana",
        "rps-serve",
    ):
        assert name in services, name


def test_compose_dependencies_name_existing_services():
    services = COMPOSE["services"]
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in services, f"{name} depends on unknown {dep}"


def test_compose_build_targets_exist_in_the_dockerfile():
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", (ROOT / "Dockerfile").read_text(), flags=re.M))
    for name, svc in COMPOSE["services"].items():
        target = (svc.get("build") or {}).get("target")
        if target:
            assert target in stages, f"{name}: no stage {target}"


def test_compose_mounts_files_that_exist_in_the_repo():
    missing = []
    for name, svc in COMPOSE["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./") and src != "./data":  # data/ is created by the pipeline
                if not (ROOT / src).exists():
                    missing.append(f"{name}: {src}")
    assert missing == []


def test_mlflow_keeps_runs_in_postgres_and_artifacts_in_minio():
    cmd = " ".join(COMPOSE["services"]["mlflow"]["command"])
    assert "--backend-store-uri=postgresql://" in cmd
    assert "--artifacts-destination=s3://mlflow/" in cmd
    init = COMPOSE["services"]["minio-init"]["command"][0]
    assert "mc mb --ignore-existing" in init and "local/mlflow" in init and "local/rps-dvc" in init


def test_prometheus_and_grafana_use_the_repo_monitoring_config():
    prom = COMPOSE["services"]["prometheus"]["volumes"]
    assert any(v.startswith("./monitoring/prometheus.yml:") for v in prom)
    assert any(v.startswith("./monitoring/alerts.yml:") for v in prom)
    graf = COMPOSE["services"]["grafana"]["volumes"]
    assert any(v.startswith("./monitoring/grafana/") for v in graf)


# --- Dockerfile -----------------------------------------------------------------------------------


def test_the_image_toolchain_matches_rust_toolchain_toml():
    channel = re.search(r'channel\s*=\s*"([^"]+)"', (ROOT / "rust-toolchain.toml").read_text()).group(1)
    arg = re.search(r"^ARG RUST_VERSION=(\S+)$", (ROOT / "Dockerfile").read_text(), flags=re.M).group(1)
    assert arg == channel


def test_the_runtime_image_has_every_binary_runs_unprivileged_and_checks_health():
    text = (ROOT / "Dockerfile").read_text()
    runtime = text[text.rindex("AS runtime") :]
    for b in BINARIES:
        assert f"-p {b}" in text and f"target/dist/{b}" in text, b
    assert "cargo chef cook --profile dist" in text and "cargo build --profile dist" in text
    assert re.search(r"^USER 10001", runtime, flags=re.M)
    assert "HEALTHCHECK" in runtime and "/health" in runtime
    # The HEALTHCHECK is the binary's own probe; the runtime image installs no curl.
    assert '"rps-serve", "probe"' in runtime
    assert not re.search(r"apt-get install[^\n]*\bcurl\b", runtime)
    assert 'CMD ["rps-serve", "serve", "--addr", "0.0.0.0:8000"]' in runtime
    assert text.rstrip().splitlines()[-1].startswith("CMD")  # runtime is the last (default) stage


def test_the_default_build_compiles_and_prebuilt_binaries_go_into_the_same_runtime_stage():
    # scripts/image/build (CI, podman) builds `--target runtime --build-arg BINARIES=prebuilt` from
    # a context holding only the host's stripped binaries; `docker build .` compiles them.
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BINARIES=builder$", text, flags=re.M)
    assert re.search(r"^FROM \$\{BINARIES\} AS binaries$", text, flags=re.M)
    prebuilt = re.search(r"^FROM scratch AS prebuilt\n(COPY .*)$", text, flags=re.M)
    assert prebuilt and prebuilt.group(1) == f"COPY {' '.join(BINARIES)} /out/"
    runtime = text[text.rindex("AS runtime") :]
    assert "COPY --from=binaries /out/ /usr/local/bin/" in runtime
    assert "--from=builder" not in text[text.index("AS binaries") :]  # every image takes `binaries`


def test_the_compose_test_override_only_changes_services_of_compose_yaml():
    override = (ROOT / "tests" / "image" / "compose.override.yaml").read_text()
    names = re.findall(r"^  ([a-z][\w-]*):$", override.split("\nvolumes:")[0], flags=re.M)
    assert names and set(names) <= set(COMPOSE["services"]), names


def test_the_build_context_keeps_out_build_output_and_venvs():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*")] == "*"  # allow-list: only what the build needs goes in
    assert "!crates/" in ignore and "!Cargo.lock" in ignore


# --- workflows -----------------------------------------------------------------------------------


def test_the_three_workflows_trigger_on_the_agreed_branches():
    ci, pipe, rel = (load_workflow(WORKFLOWS[n]) for n in ("ci.yml", "pipeline.yml", "release.yml"))
    assert ci["on"]["pull_request"]["branches"] == ["dev"]
    assert pipe["on"]["pull_request"]["branches"] == ["test"]
    assert rel["on"]["push"]["branches"] == ["master"]


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_workflows_default_to_read_only_permissions(name):
    wf = load_workflow(WORKFLOWS[name])
    assert wf["permissions"] == {"contents": "read"}
    for job_id, job in wf["jobs"].items():
        for scope, level in (job.get("permissions") or {}).items():
            assert scope in ("contents", "pull-requests") and (scope != "contents" or level == "read"), job_id


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_run_steps_are_valid_bash_without_inline_expressions_of_untrusted_data(name):
    wf = load_workflow(WORKFLOWS[name])
    for job_id, job in wf["jobs"].items():
        for step in job.get("steps", []):
            script = step.get("run")
            if not script:
                continue
            # secrets, step outputs and event payloads go through env:, never into the script text
            assert not re.search(r"\$\{\{\s*(secrets|steps|github\.event|inputs)\.", script), (job_id, step)
            plain = re.sub(r"\$\{\{[^}]*\}\}", "X", script)
            res = subprocess.run(["bash", "-n"], input=plain, text=True, capture_output=True)
            assert res.returncode == 0, (job_id, step.get("name"), res.stderr)


SHELLCHECK = ROOT / ".venv" / "lint" / "bin" / "shellcheck"


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_run_steps_pass_shellcheck(name):
    # what actionlint does for run: blocks; GitHub runs them with `bash -e {0}`
    if not SHELLCHECK.exists():
        pytest.fail(f"{SHELLCHECK} missing: run .ci/install-tools (lint venv)")
    wf = load_workflow(WORKFLOWS[name])
    for job_id, job in wf["jobs"].items():
        for step in job.get("steps", []):
            if step.get("run"):
                plain = "#!/bin/bash\n" + re.sub(r"\$\{\{[^}]*\}\}", "X", step["run"])
                res = subprocess.run([str(SHELLCHECK), "-"], input=plain, text=True, capture_output=True)
                assert res.returncode == 0, (job_id, step.get("name"), res.stdout)


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_actions_are_pinned_to_a_release(name):
    wf = load_workflow(WORKFLOWS[name])
    for job in wf["jobs"].values():
        for step in job.get("steps", []):
            if "uses" in step:
                assert re.match(r"^[\w.-]+/[\w./-]+@(v\d+(\.\d+)*|[0-9a-f]{40})$", step["uses"]), step["uses"]


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_files_the_workflows_run_exist(name):
    text = WORKFLOWS[name].read_text()
    dirs = r"\.ci|\.github/scripts|tests/orchestration|tests/image|dags/tests|scripts"
    for path in re.findall(rf"(?:^|\s)((?:{dirs})/[\w./-]*\w)", text):
        assert (ROOT / path).exists(), path


def test_the_dev_workflow_runs_fmt_clippy_tests_and_dag_tests():
    text = WORKFLOWS["ci.yml"].read_text()
    assert "cargo fmt --all -- --check" in text
    assert "-- -D warnings" in text
    assert "cargo test --release --workspace" in text
    assert "pytest -q dags/tests" in text


# --- DVC config ----------------------------------------------------------------------------------


def test_dvc_repo_config_turns_analytics_off_and_holds_no_credentials():
    text = "\n".join(
        line
        for line in (ROOT / ".dvc" / "config").read_text().splitlines()
        if not line.lstrip().startswith("#")
    )
    assert re.search(r"analytics\s*=\s*false", text)
    assert re.search(r"check_update\s*=\s*false", text)
    assert "endpointurl" in text
    for key in ("access_key_id", "secret_access_key", "session_token", "password"):
        assert key not in text, key


def test_dvc_stages_call_the_binaries_with_the_contract_flags():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert list(stages) == ["extract", "validate", "transform", "train"]
    assert stages["extract"]["cmd"].startswith("rps-extract ")
    assert "--report reports/validation.json" in stages["validate"]["cmd"]
    assert "--summary reports/transform.json" in stages["transform"]["cmd"]
    assert "--package-out models/latest" in stages["train"]["cmd"]
    metrics = {
        next(iter(m)) if isinstance(m, dict) else m for s in stages.values() for m in s.get("metrics", [])
    }
    assert metrics == {
        "reports/validation.json",
        "reports/transform.json",
        "reports/train_metrics.json",
        "reports/evaluation.json",
    }
