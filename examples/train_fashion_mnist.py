"""A plain training script, as a researcher would write one: trains the small ResNet on
Fashion-MNIST and saves a checkpoint every N steps. It knows nothing of the probes pipeline,
which probes its checkpoints afterwards (or while it runs: ``probes watch``).

Run:  python examples/train_fashion_mnist.py --data DIR --out examples/run/ckpts [--steps 600 --every 100]
DIR holds Fashion-MNIST's four IDX files (plain or .gz), e.g. Debian's dataset-fashion-mnist.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from small_resnet import build  # noqa: E402


def read_idx(directory: Path, name: str) -> np.ndarray:
    path = directory / name
    raw = gzip.open(f"{path}.gz").read() if not path.exists() else path.read_bytes()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="directory of the Fashion-MNIST IDX files")
    ap.add_argument("--out", type=Path, required=True, help="directory to write step<N>.pt checkpoints into")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--every", type=int, default=100, help="save a checkpoint every this many steps (and at 0)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    x = torch.from_numpy(((read_idx(a.data, "train-images-idx3-ubyte") - 127.5) / 255).astype(np.float32))[:, None]
    y = torch.from_numpy(read_idx(a.data, "train-labels-idx1-ubyte").astype(np.int64))
    model = build(a.width)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)
    a.out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    for step in range(a.steps + 1):
        if step % a.every == 0:
            torch.save({"model_state_dict": model.state_dict(), "step": step}, a.out / f"step{step}.pt")
            print(f"step {step}: saved {a.out / f'step{step}.pt'}", flush=True)
        if step == a.steps:
            break
        idx = torch.from_numpy(rng.integers(0, len(x), a.batch_size))
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            print(f"step {step}: loss {loss.item():.4f}", flush=True)


if __name__ == "__main__":
    main()
