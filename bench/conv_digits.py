"""Conv DLGN (LogicTreeNet-style) vs dense DLGN of similar gate count on scikit-learn digits.

Digits are 8x8 with values 0..16, thermometer-encoded with 3 thresholds into 3 channels
(input (batch, 3, 8, 8) flattened channel-major = 192 bits). Both nets train with Adam
(lr 0.05), batch 100, the same number of steps; reported: discretized test accuracy (exact 0/1
gates) and training steps per second (after one warm-up step, so compilation is excluded).
tau of each net is the best of a small sweep at 1000 steps, seed 0 (conv: 3, 5, 10, 20 -> 5;
dense: 10, 20, 40 -> 10).

    .venv/bin/python bench/conv_digits.py --steps 2000 --seeds 0 1 2
"""
import argparse
import time

import numpy as np

import pylgn
from pylgn.conv import LogicConv2d, OrPool2d, gate_count
from pylgn.data import load_digits


def conv_layers():
    """conv 3->32 (3x3 trees, depth 3) + OR pool, conv 32->64 + OR pool, dense 256->2000->1000."""
    return [LogicConv2d(3, 32, 8), OrPool2d(32, 8), LogicConv2d(32, 64, 4), OrPool2d(64, 4),
            pylgn.LogicLayer(256, 2000), pylgn.LogicLayer(2000, 1000), pylgn.GroupSum(10, tau=5.0)]


def dense_layers():
    """Four random dense layers 192 -> 8000 -> 7000 -> 6000 -> 4000 (about the conv net's gates)."""
    dims = [192, 8000, 7000, 6000, 4000]
    return [pylgn.LogicLayer(a, b) for a, b in zip(dims[:-1], dims[1:])] + \
        [pylgn.GroupSum(10, tau=10.0)]


def run(layers, data, steps, seed, batch=100):
    x, y, xt, yt = data
    model = pylgn.Sequential(layers, seed=seed)
    opt = pylgn.Adam(model, lr=0.05)
    rng = np.random.default_rng(seed)
    t0 = None
    for step in range(steps + 1):
        if step == 1:
            t0 = time.perf_counter()
        i = rng.integers(0, len(x), batch)
        opt.zero_grad()
        model.backward(pylgn.softmax_cross_entropy(model.forward(x[i]), y[i])[1])
        opt.step()
    rate = steps / (time.perf_counter() - t0)
    acc = float((model.eval().forward(xt).argmax(1) == yt).mean())
    return acc, rate, gate_count(layers)["total"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = ap.parse_args()
    ds = load_digits()
    enc = lambda a: ds.encode(a, 3).astype(np.float32)
    data = (enc(ds.x_train), ds.y_train, enc(ds.x_test), ds.y_test)
    for name, make in (("conv", conv_layers), ("dense", dense_layers)):
        res = [run(make(), data, args.steps, s) for s in args.seeds]
        accs = [r[0] for r in res]
        print(f"{name:5s} gates={res[0][2]:6d} disc_test_acc={np.mean(accs):.4f} "
              f"(seeds {args.seeds}: {', '.join(f'{a:.4f}' for a in accs)}) "
              f"steps/s={np.mean([r[1] for r in res]):.1f}", flush=True)


if __name__ == "__main__":
    main()
