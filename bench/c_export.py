"""The C export at conv-net size: cdlgn-mnist (111K gates) as pylgn_predict, raw pixels in.

Builds cdlgn-mnist as `pylgn train --dataset mnist --arch cdlgn-mnist` does (2 thresholds, the
20 x 20 centre crop), with random gate tables (every gate kept: the unsimplified circuit is the
worst case for the compiler), exports the whole classifier to C (table-driven form), compiles it
with `cc -O2 -shared` (timed) and times on one core, side by side, median of --repeats runs:
  C        pylgn_predict on the 10,000 MNIST test images as float32 (ctypes call)
  packed   Circuit.predict_raw on the same images as uint8 (numba, 1 thread, encoder fused)
and checks that both give the same class for every image.

    flock /tmp/pylgn-bench.lock python bench/c_export.py [--words 8] [--repeats 5]
"""
import argparse
import ctypes
import gzip
import os
import re
import subprocess
import tempfile
import time

import numba
import numpy as np

import pylgn
from pylgn.conv import build_arch
from pylgn.encoders import Thermometer

MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist",
                     "t10k-images-idx3-ubyte.gz")


def mnist_test_images():
    with gzip.open(MNIST, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--words", type=int, help="uint64 words per node per pass (default: by the slots)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--opt", default="-O2")
    args = p.parse_args()
    numba.set_num_threads(1)
    x = mnist_test_images()
    enc = Thermometer((1, 28, 28), 2, crop=20)
    model = pylgn.Sequential(build_arch("cdlgn-mnist", in_channels=2, classes=10), seed=0)
    model.params[:] = np.random.default_rng(0).normal(size=model.params.shape) * 3
    c = model.eval().to_circuit()
    t0 = time.perf_counter()
    src = c.to_c(enc, form="tables") if args.words is None else \
        __import__("pylgn.export", fromlist=["x"]).to_c_classifier(c, enc, form="tables",
                                                                   words=args.words)
    gen_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as d:
        cf, so = os.path.join(d, "m.c"), os.path.join(d, "m.so")
        open(cf, "w").write(src)
        t0 = time.perf_counter()
        subprocess.run(["cc", args.opt, "-shared", "-fPIC", "-o", so, cf], check=True)
        build_s = time.perf_counter() - t0
        lib = ctypes.CDLL(so)
        xf = np.ascontiguousarray(x, dtype=np.float32)
        out = np.empty(len(x), np.int32)
        call = lambda: lib.pylgn_predict(xf.ctypes.data_as(ctypes.c_void_p),
                                         ctypes.c_size_t(len(x)),
                                         out.ctypes.data_as(ctypes.c_void_p))
        call()
        c_s = median_time(call, args.repeats)
        ref = c.predict_raw(x, enc)
        packed_s = median_time(lambda: c.predict_raw(x, enc), args.repeats)
        agree = bool(np.array_equal(out, ref))
    n = len(x)
    print(f"cdlgn-mnist: {c.num_gates} gates, depth {c.depth}, {c.in_dim} input bits; C source "
          f"{len(src) / 2 ** 20:.1f} MiB generated in {gen_s:.1f} s")
    words = re.search(r"#define PYLGN_W (\d+)", src).group(1)
    print(f"cc {args.opt}: {build_s:.1f} s; words per pass {words}")
    print(f"C pylgn_predict (float32 pixels): {n / c_s / 1e6:.3f} M images/s per core")
    print(f"packed predict_raw (uint8, 1 thread): {n / packed_s / 1e6:.3f} M images/s per core")
    print(f"C / packed: {packed_s / c_s:.2f}x; same class on all {n} images: {agree}")


if __name__ == "__main__":
    main()
