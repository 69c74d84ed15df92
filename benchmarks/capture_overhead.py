"""Hook capture (capture.py) against a hand-written forward returning every probe point (the
convnet's former ``forward_points``): CPU seconds to compute the paper's 10 points of the MNIST
convnet over N images in batches, one thread, the two alternated, medians of repeats.

Run:  python benchmarks/capture_overhead.py [--images 5000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from probes.capture import capture
from probes.factory import build_model


def hand_points(m, x):
    out = {"input": x, "conv1_preact": m.conv1_preact(x)}
    out["conv1_postact"] = F.relu(out["conv1_preact"])
    out["conv1_postpool"] = F.max_pool2d(out["conv1_postact"], 2)
    out["conv2_preact"] = m.conv2_preact(out["conv1_postpool"])
    out["conv2_postact"] = F.relu(out["conv2_preact"])
    out["conv2_postpool"] = F.max_pool2d(out["conv2_postact"], 2)
    out["fc1_preact"] = m.fc1_preact(out["conv2_postpool"].flatten(1))
    out["fc1_postact"] = F.relu(out["fc1_preact"])
    out["logits"] = m.logits(out["fc1_postact"])
    return {k: v.flatten(1) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model({"factory": "probes.models:MnistConvnet"}).eval()
    x = torch.randn(a.images, 1, 28, 28)
    points = list(model.points)
    methods = {
        "hand-written forward": lambda b: hand_points(model, b),
        "hooks (capture)": lambda b: capture(model, points, b)[0],
    }
    times: dict[str, list[float]] = {k: [] for k in methods}
    with torch.no_grad():
        for _ in range(a.repeats):
            for name, fn in methods.items():
                t0 = time.process_time()
                for i in range(0, a.images, a.batch):
                    fn(x[i : i + a.batch])
                times[name].append(time.process_time() - t0)
    base = statistics.median(times["hand-written forward"])
    for name, ts in times.items():
        print(
            f"{name:22s} median {statistics.median(ts):.3f} s CPU ({a.images} images, {a.repeats} repeats; "
            f"{statistics.median(ts) / base:.3f}x)"
        )


if __name__ == "__main__":
    main()
