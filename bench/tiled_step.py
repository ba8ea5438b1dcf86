"""Tiled vs untiled CPU training step: forward + loss + backward + Adam, side by side.

old: model.forward, softmax_cross_entropy, model.backward, Adam.step (layer by layer, whole batch)
new: model.loss_and_grad (tile by tile over the batch, pylgn/tiling.py), Adam.step

The two alternate step by step on the same model (so machine load hits both alike); medians of
``--repeats``. The floor of the new step is the bytes it must move from DRAM at least (parameters
read once to build the tables; tables, connections and reverse index read once; each thread's
dL/domega accumulator zeroed and read once; gradients read and written once; the input batch read
once; Adam: params, grads, m, v read and params, m, v written) over the copy bandwidth measured
in the same run with the same threads. Activations are not counted: they stay in cache.

    python bench/tiled_step.py [--threads 2] [--repeats 9] [--tiles 16 32 64]
"""
import argparse
import os
import sys
import time

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pylgn  # noqa: E402
from pylgn import tiling  # noqa: E402
from train_step import build, copy_bandwidth  # noqa: E402

SHAPES = [("784 -> 4 x 16,000", 784, 16000, 4, 256),
          ("400 -> 6 x 8,000", 400, 8000, 6, 100),
          ("400 -> 20 x 8,000", 400, 8000, 20, 100)]


def old_step(model, opt, x, y):
    opt.zero_grad()
    _, d = pylgn.softmax_cross_entropy(model.forward(x), y)
    model.backward(d)
    opt.step()


def new_step(model, opt, x, y, tile=None):
    opt.zero_grad()
    model.loss_and_grad(x, y, tiled=True, tile=tile)
    opt.step()


def timed(f, *args, **kw):
    t = time.perf_counter()
    f(*args, **kw)
    return time.perf_counter() - t


def floor_bytes(model, batch, threads, x):
    """Least DRAM bytes of one tiled step + Adam (see the module docstring)."""
    size = model.dtype.itemsize
    total = x.nbytes + 7 * model.params.size * size          # input; Adam
    total += 3 * model.params.size * size                    # params -> tables; grads r + w
    for layer in model.logic_layers:
        table = layer.out_dim * 2 ** layer.arity * size
        index = (2 * layer.arity * layer.out_dim + layer.in_dim + 1) * 4
        total += table + index + 2 * threads * table         # table; conn + rev; accumulators
    return total


def bench(name, in_dim, width, depth, batch, args, bw):
    model, opt, x, y = build("iwp", 2, width, layers=depth, in_dim=in_dim, batch=batch)
    tiles = [None] + [t for t in args.tiles]
    for t in tiles:                                          # compile / warm up
        new_step(model, opt, x, y, t)
    old_step(model, opt, x, y)
    times = {t: [] for t in ["old"] + tiles}
    for _ in range(args.repeats):
        times["old"].append(timed(old_step, model, opt, x, y))
        for t in tiles:
            times[t].append(timed(new_step, model, opt, x, y, t))
    med = {k: np.median(v) * 1e3 for k, v in times.items()}
    plan = tiling.plan(model)
    auto = "none" if plan is None else plan.tile             # none: the untiled fallback ran
    fl = floor_bytes(model, batch, args.threads, x) / bw * 1e3
    print(f"{name:<20} {batch:>5} {med['old']:8.1f} {med[None]:8.1f} {auto:>5} "
          f"{med['old'] / med[None]:6.2f}x {fl:7.2f} {med[None] / fl:6.1f}  "
          + "  ".join(f"t={t}: {med[t]:.1f}" for t in args.tiles))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--tiles", type=int, nargs="*", default=[], help="also time these tile sizes")
    p.add_argument("--shapes", type=int, nargs="*", default=None, help="indices into SHAPES")
    args = p.parse_args()
    numba.set_num_threads(args.threads)
    bw = copy_bandwidth(256 << 20, 3)
    caches = tiling.cache_sizes()
    print(f"threads {args.threads}, copy bandwidth {bw / 1e9:.2f} GB/s (read+write), caches "
          f"L2 {caches[2] >> 10} KiB L3 {caches[3] >> 20} MiB, load average "
          f"{os.getloadavg()[0]:.2f}, median of {args.repeats}, float32 IWP arity 2")
    print(f"{'model':<20} {'batch':>5} {'old ms':>8} {'new ms':>8} {'tile':>5} {'speedup':>7} "
          f"{'floor':>7} {'x floor':>6}")
    for i in (range(len(SHAPES)) if args.shapes is None else args.shapes):
        bench(*SHAPES[i], args, bw)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
