#!/usr/bin/env python3
"""Compares a newly trained model version with the champion through MLflow's REST API.

Used by .github/workflows/pipeline.yml (pull requests to `test`); standard library only, so it
runs on any Python 3.9+ without installing anything (the plot needs matplotlib, optional).

  compare_models.py champion --model rps-forecaster
      prints `version=<n>` (empty when there is no champion) for $GITHUB_OUTPUT
  compare_models.py compare --model rps-forecaster-ci --baseline-model rps-forecaster \
      --baseline-version 3 --candidate-version latest --metric rmse_usd --report report.md \
      [--plot plot.png] [--higher-is-better] [--tolerance 0.0]
      writes a Markdown table of every metric both runs logged; exit 1 when the candidate is
      worse than the baseline on --metric by more than --tolerance (relative), 0 otherwise.
      CI trains under its own model name so a pull request never moves the production alias.

Server and credentials from MLFLOW_TRACKING_URI and MLFLOW_TRACKING_TOKEN or
MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD. Exit 2: bad usage or missing data.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import sys
import urllib.error
import urllib.parse
import urllib.request


class CompareError(Exception):
    """A problem the user must fix (exit 2)."""


def api(path: str, params: dict | None = None) -> dict:
    uri = os.environ.get("MLFLOW_TRACKING_URI", "").rstrip("/")
    if not uri.startswith(("http://", "https://")):
        raise CompareError("MLFLOW_TRACKING_URI must be the http(s) URL of the MLflow server")
    url = f"{uri}/api/2.0/mlflow/{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    req = urllib.request.Request(url)
    if os.environ.get("MLFLOW_TRACKING_TOKEN"):
        req.add_header("Authorization", "Bearer " + os.environ["MLFLOW_TRACKING_TOKEN"])
    elif os.environ.get("MLFLOW_TRACKING_USERNAME"):
        cred = f"{os.environ['MLFLOW_TRACKING_USERNAME']}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}"
        req.add_header("Authorization", "Basic " + base64.b64encode(cred.encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as err:
        body = err.read().decode(errors="replace")
        raise MlflowHttpError(err.code, body, path) from err


class MlflowHttpError(Exception):
    def __init__(self, status: int, body: str, path: str):
        super().__init__(f"MLflow {path}: HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body


def champion_version(model: str, alias: str) -> str | None:
    try:
        return api("registered-models/alias", {"name": model, "alias": alias})["model_version"]["version"]
    except MlflowHttpError as err:
        # unknown model -> 404; unknown alias -> 400 "... not found" (MLflow 3.17)
        if err.status == 404 or (err.status == 400 and "not found" in err.body):
            return None
        raise


def latest_version(model: str) -> str | None:
    versions, token = [], None
    while True:
        params = {"filter": f"name='{model}'", "max_results": 1000}
        if token:
            params["page_token"] = token
        page = api("model-versions/search", params)
        versions += [int(v["version"]) for v in page.get("model_versions", [])]
        token = page.get("next_page_token")
        if not token:
            break
    return str(max(versions)) if versions else None


def version_metrics(model: str, version: str) -> tuple[dict, dict[str, float]]:
    mv = api("model-versions/get", {"name": model, "version": version})["model_version"]
    if not mv.get("run_id"):
        raise CompareError(f"{model} version {version} has no run_id")
    run = api("runs/get", {"run_id": mv["run_id"]})["run"]
    metrics = {}
    for m in run.get("data", {}).get("metrics", []):
        value = m["value"]
        metrics[m["key"]] = float(value)  # "NaN" strings become nan
    return mv, metrics


def worse(candidate: float, baseline: float, higher_is_better: bool, tolerance: float) -> bool:
    if math.isnan(candidate):
        return True
    if math.isnan(baseline):
        return False
    slack = abs(baseline) * tolerance
    return candidate < baseline - slack if higher_is_better else candidate > baseline + slack


def fmt(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.6g}"


def render_report(
    model, base_model, metric, base, cand, base_m, cand_m, verdict, higher, tolerance, plot
) -> str:
    arrow = "higher is better" if higher else "lower is better"
    lines = [
        f"## Model comparison: candidate `{model}` vs champion `{base_model}`",
        "",
        f"Decision metric **{metric}** ({arrow}, tolerance {tolerance:.1%}): **{verdict}**",
        "",
        f"| metric | champion v{base['version'] if base else '–'} | candidate v{cand['version']} | change |",
        "|---|---:|---:|---:|",
    ]
    for key in sorted(set(base_m) | set(cand_m)):
        b, c = base_m.get(key), cand_m.get(key)
        change = "–"
        if b is not None and c is not None and b != 0 and not (math.isnan(b) or math.isnan(c)):
            change = f"{(c - b) / abs(b):+.2%}"
        name = f"**{key}**" if key == metric else key
        lines.append(f"| {name} | {fmt(b)} | {fmt(c)} | {change} |")
    lines += [
        "",
        f"Candidate run `{cand['run_id']}`" + (f", champion run `{base['run_id']}`" if base else ""),
    ]
    if plot:
        lines += ["", f"![metrics]({plot})"]
    return "\n".join(lines) + "\n"


def write_plot(path: str, base_m: dict, cand_m: dict, base_v: str | None, cand_v: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return False
    keys = sorted(
        k for k in cand_m if k in base_m and not math.isnan(cand_m[k]) and not math.isnan(base_m[k])
    )
    if not keys:
        return False
    fig, ax = plt.subplots(figsize=(max(6, len(keys) * 0.9), 4))
    x = range(len(keys))
    ax.bar([i - 0.2 for i in x], [base_m[k] for k in keys], width=0.4, label=f"champion v{base_v}")
    ax.bar([i + 0.2 for i in x], [cand_m[k] for k in keys], width=0.4, label=f"candidate v{cand_v}")
    ax.set_xticks(list(x))
    ax.set_xticklabels(keys, rotation=30, ha="right")
    ax.set_yscale("symlog")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def cmd_champion(args) -> int:
    version = champion_version(args.model, args.alias)
    print(f"version={version or ''}")
    return 0


def cmd_compare(args) -> int:
    cand_v = latest_version(args.model) if args.candidate_version == "latest" else args.candidate_version
    if not cand_v:
        raise CompareError(f"model {args.model} has no version: did training register one?")
    base_model = args.baseline_model or args.model
    if args.baseline_version and base_model == args.model and cand_v == args.baseline_version:
        raise CompareError(f"no new version: the newest version {cand_v} is the baseline itself")
    cand, cand_m = version_metrics(args.model, cand_v)
    if args.metric not in cand_m:
        raise CompareError(
            f"candidate v{cand_v} logged no metric {args.metric!r} (has: {', '.join(sorted(cand_m))})"
        )
    base, base_m = (None, {})
    if args.baseline_version:
        base, base_m = version_metrics(base_model, args.baseline_version)
    if base is None:
        verdict, failed = "PASS (no champion yet: the first model)", False
    elif args.metric not in base_m:
        verdict, failed = f"PASS (champion has no {args.metric})", False
    elif worse(cand_m[args.metric], base_m[args.metric], args.higher_is_better, args.tolerance):
        verdict, failed = "FAIL: the candidate is worse than the champion", True
    else:
        verdict, failed = "PASS: the candidate is at least as good as the champion", False
    plot = None
    if (
        args.plot
        and base is not None
        and write_plot(args.plot, base_m, cand_m, args.baseline_version, cand_v)
    ):
        plot = args.plot
    report = render_report(
        args.model,
        base_model,
        args.metric,
        base,
        cand,
        base_m,
        cand_m,
        verdict,
        args.higher_is_better,
        args.tolerance,
        plot,
    )
    with open(args.report, "w", encoding="utf-8") as fh:
        fh.write(report)
    print(report)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                {
                    "candidate": cand_v,
                    "baseline": args.baseline_version or None,
                    "metric": args.metric,
                    "candidate_value": cand_m[args.metric],
                    "baseline_value": base_m.get(args.metric),
                    "failed": failed,
                },
                fh,
            )
    return 1 if failed else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("champion", help="print the version the alias points at")
    c.add_argument("--model", required=True)
    c.add_argument("--alias", default="champion")
    k = sub.add_parser("compare", help="compare the candidate version with the baseline version")
    k.add_argument("--model", required=True)
    k.add_argument(
        "--baseline-model", default="", help="model the baseline version belongs to (default: --model)"
    )
    k.add_argument("--baseline-version", default="", help="champion version before training (empty: none)")
    k.add_argument("--candidate-version", default="latest", help="a version number, or `latest`")
    k.add_argument("--metric", required=True, help="decision metric logged by rps-train")
    k.add_argument("--higher-is-better", action="store_true")
    k.add_argument("--tolerance", type=float, default=0.0, help="relative slack, e.g. 0.01 = 1%%")
    k.add_argument("--report", required=True, help="Markdown report path")
    k.add_argument("--plot", default="", help="PNG path for a bar chart (needs matplotlib)")
    k.add_argument("--json", default="", help="also write the decision as JSON here")
    args = p.parse_args(argv)
    try:
        return cmd_champion(args) if args.cmd == "champion" else cmd_compare(args)
    except (CompareError, MlflowHttpError, urllib.error.URLError) as err:
        print(f"compare_models: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
