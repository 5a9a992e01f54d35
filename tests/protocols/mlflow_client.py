"""MLflow's own scoring-server client (the pinned MLflow in .venv/mlflow) against rps-serve's
/ping, /version and /invocations: every input form gives /predict's forecast."""

import io

import pandas as pd
import requests
from mlflow.pyfunc.scoring_server.client import ScoringServerClient

import common
from common import check

bars = common.window()
ref = common.reference(bars)
levels = [round(i["level"] * 100) for i in ref["intervals"]]


def same_as_predict(pred, how):
    check(len(pred) == 1, f"{how}: one prediction for the window")
    p = pred[0]
    check(p["ts"] == ref["for_hour"] and p["coin"] == "BTC", f"{how}: for {ref['for_hour']}")
    check(p["forecast"] == ref["forecast_close"], f"{how}: forecast == /predict's {ref['forecast_close']}")
    for lvl, i in zip(levels, ref["intervals"]):
        check(
            (p[f"lower_{lvl}"], p[f"upper_{lvl}"]) == (i["lower"], i["upper"]),
            f"{how}: {lvl}% interval == /predict's",
        )


client = ScoringServerClient(common.HOST, common.PORT)
client.wait_server_ready(timeout=10)
client.ping()
check(True, "ScoringServerClient.ping")
version = client.get_version()
check(version == common.get("/health")["version"], f"get_version: {version}")

df = pd.DataFrame(bars)
# The client's own encoding of a DataFrame: dataframe_split, with pandas' index.
resp = client.invoke(df)
same_as_predict(resp.get_predictions().to_dict(orient="records"), "invoke(DataFrame, unix seconds)")
utc = df.assign(ts=pd.to_datetime(df["ts"], unit="s", utc=True))
same_as_predict(client.invoke(utc).get_predictions().to_dict(orient="records"), "invoke(DataFrame, UTC datetimes)")
naive = df.assign(ts=pd.to_datetime(df["ts"], unit="s"))
same_as_predict(client.invoke(naive).get_predictions().to_dict(orient="records"), "invoke(DataFrame, naive datetimes)")

url = common.BASE + "/invocations"
records = [dict(b, ts=common.rfc3339(b["ts"])) for b in bars]
forms = {
    "dataframe_records": {"dataframe_records": records},
    "inputs (columns)": {"inputs": {k: [r[k] for r in records] for k in records[0]}},
    "inputs (records)": {"inputs": records},
}
for how, body in forms.items():
    r = requests.post(url, json=body, timeout=30)
    check(r.status_code == 200, f"{how}: 200")
    same_as_predict(r.json()["predictions"], how)

r = requests.post(url, data=df.to_csv(), headers={"Content-Type": "text/csv"}, timeout=30)
check(r.status_code == 200, "text/csv (pandas to_csv, with its index): 200")
same_as_predict(r.json()["predictions"], "text/csv")

# Bad input: MLflow's error shape, which its client reports.
try:
    client.invoke(df.drop(columns=["close"]))
    raise AssertionError("a window without close was accepted")
except Exception as e:  # the client raises a bare Exception with the response text
    check("error code 400" in str(e) and "BAD_REQUEST" in str(e), "invoke without close: 400 BAD_REQUEST")
mixed = df.assign(coin=["BTC"] * (len(df) - 1) + ["ETH"])
r = requests.post(url, data=mixed.to_csv(index=False), headers={"Content-Type": "text/csv"}, timeout=30)
body = r.json()
check(r.status_code == 400 and body["error_code"] == "BAD_REQUEST" and "coin" in body["message"], "mixed coins: 400 BAD_REQUEST")
r = requests.post(url, data="x", headers={"Content-Type": "text/plain"}, timeout=30)
check(r.status_code == 415, "text/plain: 415")
print("mlflow: all checks passed")
