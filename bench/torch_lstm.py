#!/usr/bin/env python3
"""PyTorch reference for bench/train.sh: the same network shape as rps-model's LSTM
(1-layer LSTM, batch_first, linear head on the last hidden state, AdamW, MSE) on synthetic
AR(1) data of a given shape. Prints one JSON line like the candle `epoch_speed` example.

    python bench/torch_lstm.py WINDOWS STEPS INPUTS HIDDEN BATCH EPOCHS [THREADS]

CPU only, 1 thread by default (2 threads can spin on a busy 2-core machine).
"""
import json
import math
import sys
import time

import torch


def main() -> None:
    a = [int(x) for x in sys.argv[1:]]
    get = lambda i, d: a[i] if len(a) > i else d  # noqa: E731
    windows, steps, inputs, hidden, batch, epochs = (
        get(0, 20_000), get(1, 24), get(2, 4), get(3, 64), get(4, 64), get(5, 3))
    torch.set_num_threads(get(6, 1))
    torch.manual_seed(7)
    rows = windows + steps
    state, xs = 0.1, []
    for r in range(rows):
        noise = math.modf(math.sin(r * 12.9898) * 43758.547)[0] * 2 - 1
        state = 0.3 * state + noise
        xs.append([state * (1 + k * 0.01) for k in range(inputs)])
    series = torch.tensor(xs, dtype=torch.float32)
    x = series.unfold(0, steps, 1)[: rows - steps].permute(0, 2, 1).contiguous()  # [N, T, F]
    y = series[steps:, 0].contiguous()
    split = len(x) * 9 // 10

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(inputs, hidden, batch_first=True)
            self.head = torch.nn.Linear(hidden, 1)

        def forward(self, xb: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(xb)
            return self.head(out[:, -1, :]).squeeze(1)

    net = Net()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-2)
    loss_fn = torch.nn.MSELoss()
    per_epoch = []
    t_all = time.perf_counter()
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(split)
        net.train()
        for i in range(0, split, batch):
            idx = perm[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x[idx]), y[idx])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
        with torch.inference_mode():
            val = loss_fn(net(x[split:]), y[split:]).item()
        per_epoch.append(time.perf_counter() - t0)
    total = time.perf_counter() - t_all
    n = 2000
    with torch.inference_mode():
        w = x[:1]
        t0 = time.perf_counter()
        for _ in range(n):
            net(w)
        infer_us = (time.perf_counter() - t0) / n * 1e6
    print(json.dumps({
        "impl": f"pytorch-{torch.__version__}", "threads": torch.get_num_threads(), "windows": split,
        "steps": steps, "inputs": inputs, "hidden": hidden, "batch": batch, "epochs": epochs,
        "s_per_epoch_median": round(sorted(per_epoch)[len(per_epoch) // 2], 3),
        "s_per_epoch": [round(s, 3) for s in per_epoch], "total_s": round(total, 2),
        "val_loss": round(val, 4), "infer_us_batch1": round(infer_us, 1),
    }))


if __name__ == "__main__":
    main()
