"""The comparison server of bench/serve.sh: FastAPI + uvicorn doing the same work as rps-serve.

- GET /health, GET /ready
- POST /predict {"coin", "bars"?}: with bars, validate them (pydantic types, positive prices,
  on the hour, ascending, consecutive, at least min_bars), compute the model's 39 input
  features for the last `lookback` rows (same formulas as rps_core::features), standardise,
  run the LSTM (numpy, float32, same weights from model.safetensors) and return the forecast
  with its conformal intervals. Without bars, serve the forecast for the newest stored bar,
  computed once at start-up (rps-serve's cache) from --bars-json.

Run: uvicorn-style, e.g.
  RPS_BENCH_MODEL=models/latest RPS_BENCH_BARS=tail.json \
    .venv/bench-serve/bin/uvicorn --app-dir bench fastapi_app:app --port 8001 --workers 2
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Union

import numpy as np
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from safetensors.numpy import load_file

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
TAU = 2.0 * math.pi
WARMUP = 168  # rps_core::features::spec().warmup (longest window 169 bars)


class Model:
    def __init__(self, pkg: Path):
        meta = json.loads((pkg / "metadata.json").read_text())
        w = load_file(str(pkg / "model.safetensors"))
        self.meta = meta
        self.inputs: list[str] = meta["inputs"]
        self.lookback: int = meta["lookback"]
        self.min_bars = WARMUP + self.lookback
        sc = meta["scaler"]
        self.mean = np.asarray(sc["mean"], dtype=np.float64)
        self.std = np.asarray(sc["std"], dtype=np.float64)
        self.t_mean, self.t_std = sc["target_mean"], sc["target_std"]
        self.w_ih_t = np.ascontiguousarray(w["lstm.weight_ih_l0"].T)  # [F, 4H]
        self.w_hh_t = np.ascontiguousarray(w["lstm.weight_hh_l0"].T)  # [H, 4H]
        self.bias = w["lstm.bias_ih_l0"] + w["lstm.bias_hh_l0"]
        self.head_w = w["head.weight"].reshape(-1)
        self.head_b = float(w["head.bias"].reshape(-1)[0])
        self.hidden = self.w_hh_t.shape[0]
        self.conformal = [(c["level"], c["q"]) for c in meta["conformal"]]
        self.ref = {"name": meta["name"], "version": meta.get("version", ""), "run_id": meta["run_id"]}

    def features(self, ts: np.ndarray, high, low, close, volume) -> np.ndarray:
        """The model inputs for the last `lookback` rows, [lookback, F]."""
        n, lb = len(close), self.lookback
        logret = np.full(n, np.nan)
        logret[1:] = np.log(close[1:] / close[:-1])
        rows = np.arange(n - lb, n)
        out = np.empty((lb, len(self.inputs)))

        def win(x, w):  # [lb, w] windows ending at each row
            return np.lib.stride_tricks.sliding_window_view(x, w)[rows - w + 1]

        hours = (ts[rows] // HOUR_MS) % 24
        dows = (ts[rows] // DAY_MS + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        for j, name in enumerate(self.inputs):
            if name == "logret":
                v = logret[rows]
            elif name.startswith("logret_lag_"):
                v = logret[rows - int(name.rsplit("_", 1)[1])]
            elif name.startswith("logret_mean_"):
                v = win(logret, int(name.rsplit("_", 1)[1])).mean(axis=1)
            elif name.startswith("logret_std_"):
                v = win(logret, int(name.rsplit("_", 1)[1])).std(axis=1, ddof=1)
            elif name.startswith("close_rel_mean_"):
                v = close[rows] / win(close, int(name.rsplit("_", 1)[1])).mean(axis=1) - 1.0
            elif name == "range_rel":
                v = (high[rows] - low[rows]) / close[rows]
            elif name == "volume_z_168":
                ww = win(volume, 168)
                m = np.nanmean(ww, axis=1)
                s = np.nanstd(ww, axis=1, ddof=1)
                cnt = np.isfinite(ww).sum(axis=1)
                cur = volume[rows]
                ok = np.isfinite(cur) & (cnt >= 2) & (s > 16 * np.finfo(float).eps * np.abs(m))
                v = np.where(ok, (cur - m) / np.where(ok, s, 1.0), 0.0)
            elif name == "hour_sin":
                v = np.sin(TAU * hours / 24.0)
            elif name == "hour_cos":
                v = np.cos(TAU * hours / 24.0)
            elif name == "dow_sin":
                v = np.sin(TAU * dows / 7.0)
            elif name == "dow_cos":
                v = np.cos(TAU * dows / 7.0)
            else:
                raise ValueError(f"feature {name} is not implemented here")
            out[:, j] = v
        return out

    def predict_logret(self, x: np.ndarray) -> float:
        xs = ((x - self.mean) / self.std).astype(np.float32)
        h = np.zeros(self.hidden, dtype=np.float32)
        c = np.zeros(self.hidden, dtype=np.float32)
        proj = xs @ self.w_ih_t + self.bias  # [T, 4H]
        H = self.hidden
        for t in range(xs.shape[0]):
            g = proj[t] + h @ self.w_hh_t
            i = 1.0 / (1.0 + np.exp(-g[:H]))
            f = 1.0 / (1.0 + np.exp(-g[H : 2 * H]))
            gg = np.tanh(g[2 * H : 3 * H])
            o = 1.0 / (1.0 + np.exp(-g[3 * H :]))
            c = f * c + i * gg
            h = o * np.tanh(c)
        y = float(h @ self.head_w) + self.head_b
        return y * self.t_std + self.t_mean

    def forecast(self, coin: str, ts, high, low, close, volume, source: str) -> dict:
        x = self.features(ts, high, low, close, volume)
        if not np.isfinite(x).all():
            raise ValueError("a feature is not finite")
        lr = self.predict_logret(x)
        last = float(close[-1])
        fc = last * math.exp(lr)
        return {
            "coin": coin,
            "based_on": iso(int(ts[-1])),
            "for_hour": iso(int(ts[-1]) + HOUR_MS),
            "for_hour_ms": int(ts[-1]) + HOUR_MS,
            "last_close": last,
            "forecast_close": fc,
            "forecast_logret": lr,
            "intervals": [
                {"level": lv, "lower": last * math.exp(lr - q), "upper": last * math.exp(lr + q)}
                for lv, q in self.conformal
            ],
            "model": self.ref,
            "source": source,
            "cached": False,
        }


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ts(v: Union[int, str]) -> int:
    if isinstance(v, int):
        return v
    return int(datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() * 1000)


class BarIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ts: Union[int, str]
    open: float
    high: float
    low: float
    close: float
    volume: Optional[float] = None


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    coin: str
    bars: Optional[list[BarIn]] = None


def error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


MODEL = Model(Path(os.environ.get("RPS_BENCH_MODEL", "models/latest")))
CACHE: dict[str, dict] = {}
if os.environ.get("RPS_BENCH_BARS"):
    stored = json.loads(Path(os.environ["RPS_BENCH_BARS"]).read_text())
    arr = lambda k: np.asarray([b[k] if b.get(k) is not None else np.nan for b in stored], dtype=np.float64)
    ts0 = np.asarray([parse_ts(b["ts"]) for b in stored], dtype=np.int64)
    CACHE["BTC"] = MODEL.forecast("BTC", ts0, arr("high"), arr("low"), arr("close"), arr("volume"), "store")

app = FastAPI(title="rps fastapi comparison")


@app.get("/health")
async def health():
    return {"status": "ok"}


@app.get("/ready")
async def ready():
    return {"ready": True, "model_version": MODEL.ref["version"]}


@app.post("/predict")
def predict(req: PredictRequest):
    coin = req.coin.strip().upper()
    if coin not in ("BTC",):
        return error(422, "unknown_coin", f"coin: '{coin}' is unknown")
    if req.bars is None:
        f = CACHE.get(coin)
        if f is None:
            return error(422, "no_data", f"no bars for {coin}")
        return {**f, "cached": True}
    bars = req.bars
    if len(bars) < MODEL.min_bars:
        return error(422, "invalid_request", f"bars: need at least {MODEL.min_bars}, got {len(bars)}")
    ts = np.empty(len(bars), dtype=np.int64)
    for i, b in enumerate(bars):
        t = parse_ts(b.ts)
        if t % HOUR_MS:
            return error(422, "invalid_request", f"bars[{i}].ts: not on the hour")
        for k in ("open", "high", "low", "close"):
            v = getattr(b, k)
            if not (math.isfinite(v) and v > 0):
                return error(422, "invalid_request", f"bars[{i}].{k}: must be a positive finite price")
        if b.low > min(b.open, b.close) or b.high < max(b.open, b.close):
            return error(422, "invalid_request", f"bars[{i}]: low and high must bracket open and close")
        if i and t != ts[i - 1] + HOUR_MS:
            return error(422, "invalid_request", f"bars[{i}].ts: not the hour after bars[{i - 1}]")
        ts[i] = t
    high = np.fromiter((b.high for b in bars), np.float64, len(bars))
    low = np.fromiter((b.low for b in bars), np.float64, len(bars))
    close = np.fromiter((b.close for b in bars), np.float64, len(bars))
    volume = np.fromiter((np.nan if b.volume is None else b.volume for b in bars), np.float64, len(bars))
    try:
        return MODEL.forecast(coin, ts, high, low, close, volume, "request")
    except ValueError as e:
        return error(422, "cannot_forecast", str(e))
