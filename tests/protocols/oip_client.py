"""Triton's HTTP client (tritonclient[http], pinned in .venv/oip) against rps-serve's Open
Inference Protocol v2 routes: liveness, readiness, metadata and infer give /predict's
forecast."""

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import common
from common import check

bars = common.window()
ref = common.reference(bars)
name = common.get("/model")["name"]

client = httpclient.InferenceServerClient(url=f"{common.HOST}:{common.PORT}")
check(client.is_server_live(), "is_server_live")
check(client.is_server_ready(), "is_server_ready")
check(client.is_model_ready(name), f"is_model_ready({name})")
check(not client.is_model_ready("no-such-model"), "is_model_ready(no-such-model) is false")
server = client.get_server_metadata()
check(server["name"] == "rps-serve" and server["extensions"] == [], f"get_server_metadata: {server}")
meta = client.get_model_metadata(name)
check(meta["name"] == name and meta["platform"] == "rps", "get_model_metadata: name, platform")
inputs = {t["name"]: t for t in meta["inputs"]}
check(set(inputs) == {"ts", "open", "high", "low", "close", "volume", "coin"}, "metadata inputs")
k = len(ref["intervals"])
outputs = {t["name"]: t for t in meta["outputs"]}
check(outputs["lower"]["shape"] == [1, k] and outputs["forecast"]["shape"] == [1], "metadata output shapes")


def tensors(ts_as_text):
    n = len(bars)
    out = []
    if ts_as_text:
        t = httpclient.InferInput("ts", [n], "BYTES")
        t.set_data_from_numpy(np.array([common.rfc3339(b["ts"]) for b in bars], dtype=object), binary_data=False)
    else:
        t = httpclient.InferInput("ts", [n], "INT64")
        t.set_data_from_numpy(np.array([b["ts"] for b in bars], dtype=np.int64), binary_data=False)
    out.append(t)
    for col in ["open", "high", "low", "close", "volume"]:
        t = httpclient.InferInput(col, [n], "FP64")
        t.set_data_from_numpy(np.array([b[col] for b in bars], dtype=np.float64), binary_data=False)
        out.append(t)
    coin = httpclient.InferInput("coin", [1], "BYTES")
    coin.set_data_from_numpy(np.array(["BTC"], dtype=object), binary_data=False)
    out.append(coin)
    return out


wanted = [httpclient.InferRequestedOutput(o, binary_data=False) for o in ["forecast", "lower", "upper", "levels", "ts"]]
for how, as_text in [("INT64 unix seconds", False), ("BYTES RFC 3339", True)]:
    res = client.infer(name, tensors(as_text), outputs=wanted, request_id="r1")
    f = res.as_numpy("forecast")
    check(f.shape == (1,) and f[0] == ref["forecast_close"], f"infer ({how}): forecast == /predict's {ref['forecast_close']}")
    lower, upper = res.as_numpy("lower"), res.as_numpy("upper")
    check(lower.shape == (1, k) and upper.shape == (1, k), f"infer ({how}): lower/upper [1, {k}]")
    check(list(lower[0]) == [i["lower"] for i in ref["intervals"]] and list(upper[0]) == [i["upper"] for i in ref["intervals"]],
          f"infer ({how}): intervals == /predict's")
    check(list(res.as_numpy("levels")) == [i["level"] for i in ref["intervals"]], f"infer ({how}): levels")
    check(int(res.as_numpy("ts")[0]) * 1000 == ref["for_hour_ms"], f"infer ({how}): ts is the forecast hour")
    check(res.get_response()["id"] == "r1", f"infer ({how}): the request id is echoed")

# Every output by default (the client then asks for binary data; the server answers JSON).
res = client.infer(name, tensors(False))
check(res.as_numpy("forecast")[0] == ref["forecast_close"], "infer without requested outputs")
version = meta["versions"][0]
res = client.infer(name, tensors(False), model_version=version, outputs=wanted)
check(res.as_numpy("forecast")[0] == ref["forecast_close"], f"infer on version {version}")

for what, call in [
    ("unknown model", lambda: client.infer("no-such-model", tensors(False), outputs=wanted)),
    ("a window without close", lambda: client.infer(name, [t for t in tensors(False) if t.name() != "close"], outputs=wanted)),
]:
    try:
        call()
        raise AssertionError(f"{what} was accepted")
    except InferenceServerException as e:
        status = {"unknown model": "404", "a window without close": "400"}[what]
        check(str(e.status()) == status and e.message(), f"{what}: {status} with an error message ({e.message()[:60]}...)")
print("oip: all checks passed")
