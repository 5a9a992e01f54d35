"""What both protocol clients share: the server's address, a window of the committed fixture's
bars and /predict's forecast of it (the reference every protocol must reproduce). Standard
library only, so it runs in either venv."""

import csv
import gzip
import json
import os
import urllib.request
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURE = os.path.join(ROOT, "tests", "data", "btc-usd-hourly-bitstamp-2018-2022.csv.gz")
BASE = os.environ["RPS_BASE"]  # http://127.0.0.1:<port>, set by run.sh
HOST, PORT = BASE.rsplit("//", 1)[1].split(":")
# Inside the 120 days the served model was trained on (run.sh), not its newest stored hour.
NEWEST = int(datetime(2022, 2, 20, 12, tzinfo=timezone.utc).timestamp())


def get(path):
    with urllib.request.urlopen(BASE + path, timeout=30) as r:
        return json.load(r)


def post(path, body):
    req = urllib.request.Request(
        BASE + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def window():
    """The `min_bars` (GET /model) consecutive hourly bars ending at NEWEST, oldest first,
    as dicts with unix-second `ts`."""
    n = get("/model")["min_bars"]
    rows = {}
    with gzip.open(FIXTURE, "rt") as f:
        for r in csv.DictReader(f):
            ts = int(r["unix"])
            if NEWEST - (n - 1) * 3600 <= ts <= NEWEST:
                rows[ts] = {
                    "ts": ts,
                    "open": float(r["Open"]),
                    "high": float(r["High"]),
                    "low": float(r["Low"]),
                    "close": float(r["Close"]),
                    "volume": float(r["Volume USD"]),
                }
    bars = [rows[t] for t in sorted(rows)]
    assert len(bars) == n and all(
        b["ts"] - a["ts"] == 3600 for a, b in zip(bars, bars[1:])
    ), f"the fixture has no {n} consecutive hours ending at {NEWEST}"
    return bars


def rfc3339(ts):
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def reference(bars):
    """/predict's forecast of the same bars (millisecond times, as /predict takes them)."""
    body = {"coin": "BTC", "bars": [dict(b, ts=b["ts"] * 1000) for b in bars]}
    return post("/predict", body)


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"  ok  {what}")
