"""Step time and training memory of learned wiring against random wiring, side by side.

    python bench/wiring_step.py [--steps 20] [--batch 100] [--threads 2]

For each arity (2: 4 x 8000 gates on 800 inputs; 6: 4 x 2000 gates), one training step
(``loss_and_grad`` + Adam) of random wiring and of learned wiring (straight-through) at
C = 4, 8 and 16 candidates, interleaved round by round so that load drifts hit every variant
alike; the median of ``--steps`` rounds. Memory: the estimate of ``pylgn info``
(``pylgn.conv.memory_estimate``) and the peak of numpy allocations in one step (tracemalloc),
both beside the parameters with Adam's state. Writes its section of bench/RESULTS.md.
"""
import argparse
import os
import sys
import time
import tracemalloc

import numpy as np

import pylgn
from pylgn.conv import memory_estimate
from sections import replace_section

BEGIN, END = "<!-- wiring-step:begin -->", "<!-- wiring-step:end -->"
SHAPES = {2: (800, 8000, 4), 6: (800, 2000, 4)}          # arity: (inputs, width, layers)


def model(arity, cand):
    inputs, width, depth = SHAPES[arity]
    kw = dict(connections="random") if cand is None else dict(connections="learned",
                                                            candidates=cand)
    layers = [pylgn.LogicLayer(inputs if i == 0 else width, width, arity=arity, **kw)
              for i in range(depth)]
    return pylgn.Sequential(layers + [pylgn.GroupSum(10, 6.0)], seed=0)


def step(m, opt, x, y):
    opt.zero_grad()
    m.loss_and_grad(x, y)
    opt.step()


def peak_bytes(m, opt, x, y):
    tracemalloc.start()
    step(m, opt, x, y)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args(argv)
    import numba
    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    lines = [BEGIN, "## Learned wiring: step time and training memory (issue: learned connections)",
             "", f"`python bench/wiring_step.py --steps {args.steps} --batch {args.batch} "
             f"--threads {args.threads}`, {time.strftime('%Y-%m-%d')}; load average "
             f"{os.getloadavg()[0]:.1f} at the start (a shared machine: compare within a row "
             f"group only). One step = loss_and_grad + Adam, batch {args.batch}, median of "
             f"{args.steps} interleaved rounds. Memory: `pylgn info`'s estimate (parameters x 4 "
             f"with Adam, activations kept, the largest transient) and the measured numpy peak of "
             f"one step (tracemalloc) on top of the parameters.", "",
             "| arity, gates | wiring | step (ms) | vs random | estimate (MiB) | measured step "
             "peak (MiB) |", "|---|---|---|---|---|---|"]
    for arity, (inputs, width, depth) in SHAPES.items():
        x = rng.random((args.batch, inputs)).astype(np.float32)
        y = rng.integers(0, 10, args.batch)
        variants = {c: model(arity, c) for c in (None, 4, 8, 16)}
        opts = {c: pylgn.Adam(m, lr=0.01) for c, m in variants.items()}
        times = {c: [] for c in variants}
        for c in variants:                                    # compile and warm up
            step(variants[c], opts[c], x, y)
        for _ in range(args.steps):
            for c, m in variants.items():
                t0 = time.perf_counter()
                step(m, opts[c], x, y)
                times[c].append(time.perf_counter() - t0)
        base = np.median(times[None])
        for c, m in variants.items():
            est = memory_estimate(m.layers, args.batch)["total"] / 2 ** 20
            peak = peak_bytes(m, opts[c], x, y) / 2 ** 20
            med = np.median(times[c])
            lines.append(f"| {arity}, {depth} x {width} | "
                         f"{'random' if c is None else f'learned, C = {c}'} | {1e3 * med:.1f} | "
                         f"{med / base:.2f}x | {est:.0f} | {peak:.0f} |")
            print(lines[-1], flush=True)
    lines.append(END)
    replace_section("\n".join(lines), BEGIN, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
