"""Packed-circuit inference of a trained conv net from uint8 pixels, per core: the checkpoint's
discretized model as a Circuit (simplified), ``Circuit.predict_raw`` with the checkpoint's
encoder (crop and thermometer fused into the kernel) on the 10,000 MNIST test images, one numba
thread, medians of repeats by CPU time and by wall time; the accuracy is checked against the
labels (it is the discretized test accuracy).

    python bench/conv_inference.py [CHECKPOINT] [--repeats 5]
"""
import argparse
import gzip
import os
import time

import numba
import numpy as np

import pylgn
from pylgn.encoders import from_checkpoint

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "shared", "data", "mnist")
DEFAULT = os.path.join(HERE, "..", "runs", "mnist-bench", "cdlgn-mnist-s", "checkpoint.h5")


def idx(name, offset, shape):
    with gzip.open(os.path.join(SHARED, name), "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset).reshape(shape)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("checkpoint", nargs="?", default=DEFAULT)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    numba.set_num_threads(1)
    x = idx("t10k-images-idx3-ubyte.gz", 16, (-1, 1, 28, 28))
    y = idx("t10k-labels-idx1-ubyte.gz", 8, (-1,))
    ckpt = pylgn.load(args.checkpoint)
    enc = from_checkpoint(ckpt)
    t0 = time.perf_counter()
    circuit = ckpt.model.eval().to_circuit()
    simple = circuit.simplify()
    build_s = time.perf_counter() - t0
    pred = simple.predict_raw(x, enc)
    cpu, wall = [], []
    for _ in range(args.repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        simple.predict_raw(x, enc)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    n = len(x)
    print(f"{args.checkpoint}: step {ckpt.step}, {circuit.num_gates} gates "
          f"({simple.num_gates} after simplify, {build_s:.1f} s), accuracy {np.mean(pred == y):.4f}")
    print(f"packed predict_raw (uint8, 1 thread): {n / np.median(cpu) / 1e6:.3f} M images/s per "
          f"core by CPU time, {n / np.median(wall) / 1e6:.3f} M by wall time")


if __name__ == "__main__":
    main()
