"""Training-step benchmark on the CPU: forward, backward and Adam, IWP vs OP, against the memory floor.

Model 784 -> 4 x 16,000 gates -> GroupSum(10), batch 256, float32 (paper-style MNIST-sized DLGN);
IWP at arity 4 and 6 with the same parameter count per layer as IWP arity 2 (4,000 and 1,000
gates). The memory-traffic floor of each kernel is the bytes it must move at least (each input
row read once, each output row written once, parameters and Adam state once) divided by the copy
bandwidth measured in the same run with the same threads.

    python bench/train_step.py [--threads 2] [--repeats 7] [--batch 256]
"""
import argparse
import time

import numba
import numpy as np

import pylgn
from pylgn.kernels import cpu


@numba.njit(parallel=True, cache=True)
def _copy(src, dst):
    for i in numba.prange(src.shape[0]):
        dst[i] = src[i]


def copy_bandwidth(nbytes=512 << 20, repeats=5):
    """Bytes/s of a parallel copy (counts read + write), median of ``repeats``."""
    src = np.ones(nbytes // 8, dtype=np.float64)
    dst = np.empty_like(src)
    _copy(src, dst)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        _copy(src, dst)
        times.append(time.perf_counter() - t)
    return 2 * nbytes / np.median(times)


def build(param, arity, width, layers=4, in_dim=784, batch=256, seed=0):
    dims = [in_dim] + [width] * layers
    model = pylgn.Sequential([pylgn.LogicLayer(a, b, arity=arity, param=param)
                              for a, b in zip(dims[:-1], dims[1:])] + [pylgn.GroupSum(10, tau=30)],
                             seed=seed)
    rng = np.random.default_rng(seed)
    x = (rng.random((batch, in_dim)) < 0.3).astype(np.float32)
    y = rng.integers(0, 10, batch)
    return model, pylgn.Adam(model), x, y


def floor_bytes(model, batch):
    """Least bytes each phase must move (float32): activations once, parameters/state once."""
    f = b = 0
    for layer in model.logic_layers:
        rows = (layer.in_dim + layer.out_dim) * batch * 4
        table = layer.out_dim * 2 ** layer.arity * 4
        f += rows + table
        b += rows + table + (layer.in_dim * batch * 4 if layer is not model.layers[0] else 0)
    adam = 7 * model.params.size * 4
    return f, b, adam


def time_step(model, opt, x, y):
    t0 = time.perf_counter()
    logits = model.forward(x)
    t1 = time.perf_counter()
    _, d = pylgn.softmax_cross_entropy(logits, y)
    opt.zero_grad()
    model.backward(d)
    t2 = time.perf_counter()
    opt.step()
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


def bench(name, param, arity, width, args, bandwidth):
    model, opt, x, y = build(param, arity, width, batch=args.batch)
    time_step(model, opt, x, y)                                   # compile / warm up
    times = np.median([time_step(model, opt, x, y) for _ in range(args.repeats)], axis=0)
    fb, bb, ab = floor_bytes(model, args.batch)
    floors = np.array([fb, bb, ab]) / bandwidth
    total = times.sum()
    gs = model.num_gates * args.batch / total
    state = (model.params.nbytes + opt.m.nbytes + opt.v.nbytes) / 2 ** 20
    print(f"{name:<14} {times[0]*1e3:8.1f} {times[1]*1e3:9.1f} {times[2]*1e3:7.2f} "
          f"{total*1e3:8.1f} {gs/1e9:9.3f} {state:10.2f} "
          f"{times[0]/floors[0]:6.1f} {times[1]/floors[1]:6.1f} {total/floors.sum():6.1f}")
    return total, state


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args()
    numba.set_num_threads(args.threads)
    bw = copy_bandwidth()
    print(f"threads {args.threads}, batch {args.batch}, copy bandwidth {bw/1e9:.2f} GB/s "
          f"(read+write), median of {args.repeats}")
    print(f"{'model':<14} {'fwd ms':>8} {'bwd ms':>9} {'adam ms':>7} {'step ms':>8} "
          f"{'G gate-s/s':>9} {'state MiB':>10} {'fwd/fl':>6} {'bwd/fl':>6} {'step/fl':>6}")
    res = {}
    for name, param, arity, width in [("IWP n=2", "iwp", 2, 16000), ("OP n=2", "op", 2, 16000),
                                      ("IWP n=4", "iwp", 4, 4000), ("IWP n=6", "iwp", 6, 1000)]:
        res[name] = bench(name, param, arity, width, args, bw)
    (ti, si), (to, so) = res["IWP n=2"], res["OP n=2"]
    print(f"OP/IWP step time {to/ti:.2f}x, OP/IWP parameter+Adam state {so/si:.2f}x")


if __name__ == "__main__":
    main()
