#!/usr/bin/env bash
# Checks the monitoring configuration with promtool (Debian package `prometheus`):
# the Prometheus config, the alert rules, and the alert unit tests in tests/.
# The same checks run in `cargo test -p rps-serve` (tests/monitoring.rs), which also starts a
# real Prometheus against the server and runs every dashboard query.
set -euo pipefail
cd "$(dirname "$0")"
command -v promtool >/dev/null || { echo "promtool missing: apt-get install prometheus (.ci/install-tools)" >&2; exit 2; }
promtool check config prometheus.yml
promtool check rules alerts.yml
promtool test rules tests/*.yml
