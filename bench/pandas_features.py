#!/usr/bin/env python3
"""The pandas baseline for bench/transform.sh: the same features as rps-transform
(rps_core::features, spec version 1), computed the idiomatic vectorised pandas way.

Reads <store>/raw/<COIN>.parquet for every coin, writes <out>/<COIN>.parquet with the same
columns (ts, coin, close, 42 features, target_logret_1h, target_close_1h) and the same
Parquet settings as rps-transform's feature files (uncompressed, dictionary only on coin,
statistics only on ts, row groups of 8,192 rows), so both sides write the same bytes' worth. A row is kept only when its 169-hour window is gap-free, exactly as in
Rust: rolling windows are computed over the whole series, then rows whose window crosses a
break (a missing hour, a duplicate, an unusable price) are dropped, so no kept value ever
mixes hours across a gap.

    python bench/pandas_features.py --store DIR --out DIR
    python bench/pandas_features.py --compare RUST.parquet PANDAS.parquet
"""

import argparse
import math
import pathlib
import sys
import time

import numpy as np
import pandas as pd

HOUR_MS = 3_600_000
WARMUP = 168
EPS = np.finfo(np.float64).eps


def features(raw: pd.DataFrame) -> pd.DataFrame:
    df = raw.sort_values("ts", kind="stable").reset_index(drop=True)
    ts = df["ts"].dt.as_unit("ms").astype("int64")  # ms since the epoch
    close, high, low = df["close"], df["high"], df["low"]
    usable = np.isfinite(close) & (close > 0) & np.isfinite(high) & np.isfinite(low)
    brk = (ts.diff() != HOUR_MS) | ~usable | ~usable.shift(1, fill_value=False)
    seg = brk.cumsum()
    pos = df.groupby(seg).cumcount()
    keep = usable & (pos >= WARMUP)

    logret = np.log(close / close.shift(1))
    out = pd.DataFrame({"ts": df["ts"], "coin": df["coin"], "close": close})
    out["lag_1"] = close.shift(1)
    out["rolling_mean_5"] = close.rolling(5).mean()
    when = df["ts"].dt.tz_convert("UTC")
    hour = when.dt.hour.astype("float64")
    dow = when.dt.day_of_week.astype("float64")
    out["hour"] = hour
    out["logret"] = logret
    for k in range(1, 25):
        out[f"logret_lag_{k}"] = logret.shift(k)
    for w in (6, 24, 168):
        out[f"logret_mean_{w}"] = logret.rolling(w).mean()
    for w in (6, 24, 168):
        out[f"logret_std_{w}"] = logret.rolling(w).std()
    for w in (24, 168):
        out[f"close_rel_mean_{w}"] = close / close.rolling(w).mean() - 1.0
    out["range_rel"] = (high - low) / close
    vol = df["volume"].astype("float64")
    roll = vol.rolling(168, min_periods=1)
    vmean, vstd, vcount = roll.mean(), roll.std(), roll.count()
    ok = np.isfinite(vol) & (vcount >= 2) & (vstd > 16 * EPS * vmean.abs())
    out["volume_z_168"] = np.where(ok, (vol - vmean) / vstd, 0.0)
    out["hour_sin"] = np.sin(2 * math.pi * hour / 24)
    out["hour_cos"] = np.cos(2 * math.pi * hour / 24)
    out["dow_sin"] = np.sin(2 * math.pi * dow / 7)
    out["dow_cos"] = np.cos(2 * math.pi * dow / 7)
    pk = np.log(high / low) ** 2 / (4 * math.log(2))
    out["parkinson"] = pk
    for w in (6, 24, 168):
        out[f"parkinson_mean_{w}"] = pk.rolling(w).mean()
    same_next = (seg.shift(-1) == seg) & usable.shift(-1, fill_value=False)
    out["target_logret_1h"] = logret.shift(-1).where(same_next)
    out["target_close_1h"] = close.shift(-1).where(same_next)
    return out[keep].reset_index(drop=True)


def run(store: pathlib.Path, out: pathlib.Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows_in = rows_out = 0
    t0 = time.perf_counter()
    for path in sorted((store / "raw").glob("*.parquet")):
        raw = pd.read_parquet(path)
        feats = features(raw)
        feats.to_parquet(
            out / path.name,
            index=False,
            compression="none",
            use_dictionary=["coin"],
            write_statistics=["ts"],
            row_group_size=8192,
        )
        rows_in += len(raw)
        rows_out += len(feats)
    secs = time.perf_counter() - t0
    print(f"pandas: {rows_in} rows in, {rows_out} out, {secs:.2f}s", file=sys.stderr)


def compare(rust: pathlib.Path, pandas_file: pathlib.Path) -> None:
    a = pd.read_parquet(rust)
    b = pd.read_parquet(pandas_file)
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        sys.exit(f"different shape: {a.shape} {list(a.columns)[:5]} vs {b.shape}")
    if not (a["ts"] == b["ts"]).all() or not (a["coin"] == b["coin"]).all():
        sys.exit("ts or coin columns differ")
    worst, worst_col = 0.0, ""
    for c in a.columns[2:]:
        x, y = a[c].to_numpy("float64"), b[c].to_numpy("float64")
        if (np.isnan(x) != np.isnan(y)).any():
            sys.exit(f"{c}: missing values differ")
        both = ~np.isnan(x)
        # Relative difference, with a floor for values that are zero up to rounding.
        d = np.abs(x - y)[both] / np.maximum(np.abs(y[both]), 1e-9)
        if d.max(initial=0.0) > worst:
            worst, worst_col = float(d.max()), c
    print(
        f"rust vs pandas: {len(a)} rows x {len(a.columns)} columns, "
        f"max relative difference {worst:.1e} ({worst_col or '-'})"
    )
    if worst > 1e-6:
        sys.exit("the two implementations disagree")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", type=pathlib.Path, help="store with raw/<COIN>.parquet")
    p.add_argument("--out", type=pathlib.Path, help="directory for the feature files")
    p.add_argument("--compare", nargs=2, type=pathlib.Path, metavar=("RUST", "PANDAS"))
    args = p.parse_args()
    if args.compare:
        compare(*args.compare)
    elif args.store and args.out:
        run(args.store, args.out)
    else:
        p.error("give --store and --out, or --compare")


if __name__ == "__main__":
    main()
