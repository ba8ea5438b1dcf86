"""Gate kernels of two versions side by side: the CPU kernels of a git revision against the
working tree's, in one process, timings interleaved (old, new, old, new, ...), medians.

Shapes as in bench/train_step.py (float32): arity 2 on 16,000 -> 16,000 gates, arity 6 on
16,000 -> 1,000 gates, plus the digits default layer (2,000 -> 2,000 gates, arity 2, batch 100)
where the per-call overhead shows most. Each at 256-sample rows (the untiled step's parallel
kernels) and on 16-sample tiles (the tiled step's serial ``*_range`` kernels, all gates).

    python bench/arity_kernels.py --before 88c2c52 [--repeats 15] [--threads 2]
"""
import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import numba
import numpy as np

from pylgn.kernels import cpu
from pylgn.wiring import reverse_index

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = [("n=2 16k", 2, 16000, 16000, 256), ("n=6 1k", 6, 16000, 1000, 256),
         ("digits n=2", 2, 2000, 2000, 100)]


def load_before(rev):
    """pylgn/kernels/cpu.py at ``rev`` as the module pylgn.kernels._cpu_before (a stable file
    path per revision, so numba's cache serves reruns)."""
    src = subprocess.run(["git", "show", f"{rev}:pylgn/kernels/cpu.py"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    path = os.path.join(tempfile.gettempdir(), f"pylgn_cpu_before_{rev}.py")
    if not os.path.exists(path) or open(path).read() != src:
        with open(path, "w") as f:
            f.write(src)
    spec = importlib.util.spec_from_file_location("pylgn.kernels._cpu_before", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def calls(k, n, in_dim, gates, batch, tile, rng):
    """{kernel: zero-argument call} for kernel set ``k``: parallel kernels on all rows, or with
    ``tile`` the serial range kernels over all gates/inputs of one tile-wide block."""
    B = tile or batch
    x = rng.random((in_dim, B)).astype(np.float32)
    conn = rng.integers(0, in_dim, (n, gates)).astype(np.int32)
    table = rng.random((gates, 2 ** n)).astype(np.float32)
    dy = rng.standard_normal((gates, B)).astype(np.float32)
    rev = reverse_index(conn, in_dim)
    y, dt, dx = (np.empty((gates, B), np.float32), np.zeros((gates, 2 ** n), np.float32),
                 np.empty((in_dim, B), np.float32))
    if tile:
        return {"forward": lambda: k.gate_forward_range(x, conn, table, y, 0, gates),
                "table": lambda: k.gate_backward_table_range(x, conn, dy, dt, 0, gates),
                "inputs": lambda: k.gate_backward_inputs_range(x, conn, *rev, table, dy, 1.0, dx,
                                                               0, in_dim)}
    return {"forward": lambda: k.gate_forward(x, conn, table, y),
            "table": lambda: k.gate_backward_table(x, conn, dy, dt),
            "inputs": lambda: k.gate_backward_inputs(x, conn, *rev, table, dy, 1.0, dx)}


def timed(f, inner):
    t = time.perf_counter()
    for _ in range(inner):
        f()
    return (time.perf_counter() - t) / inner


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="git revision of the old kernels")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    numba.set_num_threads(args.threads)
    old = load_before(args.before)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load "
          f"{os.getloadavg()[0]:.2f}, threads {args.threads}, before {args.before}, "
          f"median of {args.repeats} interleaved repeats")
    print(f"{'case':<12} {'path':<10} {'kernel':<8} {'before us':>10} {'after us':>10} {'ratio':>6}")
    for name, n, in_dim, gates, batch in CASES:
        for tile in (0, 16):
            a = calls(old, n, in_dim, gates, batch, tile, np.random.default_rng(0))
            b = calls(cpu, n, in_dim, gates, batch, tile, np.random.default_rng(0))
            for kern in a:
                a[kern](), b[kern]()                              # compile / warm up
                t0 = time.perf_counter()
                a[kern]()
                inner = max(1, int(0.02 / max(time.perf_counter() - t0, 1e-6)))
                ta, tb = [], []
                for _ in range(args.repeats):
                    ta.append(timed(a[kern], inner))
                    tb.append(timed(b[kern], inner))
                ma, mb = np.median(ta) * 1e6, np.median(tb) * 1e6
                path = f"tile {tile}" if tile else f"rows {batch}"
                print(f"{name:<12} {path:<10} {kern:<8} {ma:10.1f} {mb:10.1f} {mb / ma:6.2f}",
                      flush=True)
    print(f"# load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
