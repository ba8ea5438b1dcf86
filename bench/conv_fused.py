"""Fused tree + OR-pool kernels vs the unfused path (im2col + tree levels + OrPool2d), same
architecture, parameters and batch: training step time (forward + loss + backward + Adam,
medians of interleaved steps) and training memory (pylgn.conv.memory_estimate, and the
tracemalloc peak of numpy allocations during one step).

    python bench/conv_fused.py [--arch cdlgn-mnist] [--batch 100] [--steps 30]
"""
import argparse
import time
import tracemalloc

import numpy as np

import pylgn
from pylgn.conv import build_arch, memory_estimate


def model_pair(arch, batch, seed=0):
    """(fused, unfused) Sequentials of ``arch`` on 20 x 20 inputs with 2 thresholds, the same
    parameters and leaves (the unfused one built from the fused one's)."""
    models = []
    for fuse in (True, False):
        layers = build_arch(arch, in_channels=2, fuse=fuse)
        models.append(pylgn.Sequential(layers, seed=seed))
    fused, plain = models
    fconv = [l for l in fused.layers if isinstance(l, pylgn.LogicConv2d)]
    pconv = [l for l in plain.layers if isinstance(l, pylgn.LogicConv2d)]
    plain.params[...] = fused.params
    for f, p in zip(fconv, pconv):
        p.bind(plain.backend, p.weights, p.grad, f.leaves)
    return fused, plain


def step(model, opt, x, y):
    model.zero_grad()
    loss, d = pylgn.softmax_cross_entropy(model.forward(x), y)
    model.backward(d)
    opt.step()
    return loss


def peak_bytes(model, opt, x, y):
    tracemalloc.start()
    step(model, opt, x, y)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--arch", default="cdlgn-mnist")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--steps", type=int, default=30)
    args = p.parse_args(argv)
    fused, plain = model_pair(args.arch, args.batch)
    rng = np.random.default_rng(0)
    x = (rng.random((args.batch, fused.in_dim)) > 0.5).astype(np.float32)
    y = rng.integers(0, 10, args.batch)
    opts = {m: pylgn.Adam(m, lr=0.01) for m in (fused, plain)}
    np.testing.assert_allclose(fused.forward(x), plain.forward(x), rtol=1e-5, atol=1e-5)
    for m in (fused, plain):                                     # compile, warm up
        step(m, opts[m], x, y)
        step(m, opts[m], x, y)
    times = {fused: [], plain: []}
    for _ in range(args.steps):                                  # interleaved
        for m in (fused, plain):
            t = time.perf_counter()
            step(m, opts[m], x, y)
            times[m].append(time.perf_counter() - t)
    tf, tp = (np.median(times[m]) * 1e3 for m in (fused, plain))
    ef, ep = (memory_estimate(m.layers, args.batch)["total"] / 2 ** 20 for m in (fused, plain))
    pf, pp = (peak_bytes(m, opts[m], x, y) / 2 ** 20 for m in (fused, plain))
    print(f"{args.arch} ({fused.num_gates} gates), batch {args.batch}, {args.steps} interleaved "
          f"steps, medians")
    print(f"  step time   fused {tf:7.1f} ms   unfused {tp:7.1f} ms   ratio {tp / tf:.2f}x")
    print(f"  memory est. fused {ef:7.1f} MiB  unfused {ep:7.1f} MiB  ratio {ep / ef:.2f}x")
    print(f"  step peak   fused {pf:7.1f} MiB  unfused {pp:7.1f} MiB  ratio {pp / pf:.2f}x "
          f"(tracemalloc, numpy allocations during one step)")


if __name__ == "__main__":
    main()
