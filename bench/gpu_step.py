"""GPU training-step benchmark: forward, backward and Adam on device="cuda", IWP vs OP.

Models: the CIFAR-10 "M" DLGN of the paper (9,216 inputs -> 4 x 128,000 gates of arity 2 ->
GroupSum(10, tau=100), batch 100) and its 20-fold-depth version (80 layers; paper-notes 3.1, 4.1,
4.4). Each phase is timed with CUDA events, median of ``--steps`` steps after ``--warmup``.
The run first checks one training step against the CPU on a small model, measures the device's
copy bandwidth (a CuPy copy of a 1 GiB array: bytes read + written / time), and times every
kernel on one 128,000-gate layer (GroupSum on the last layer, Adam on all parameters) against its
memory-traffic floor: the bytes the kernel must move at least (each input row read once, each
output written once, parameters and state once) divided by that bandwidth. Issue 12's goal is a
ratio <= 2 per kernel. Each step is also timed on the host (wall, synchronised at the step's end):
wall minus the device phases is host overhead (launches, argument wrapping, syncs).

Installs nothing: needs numba (with its CUDA target, e.g. numba-cuda), cupy and h5py present.

    python bench/gpu_step.py                      # on a GPU, about 1-2 minutes
    NUMBA_ENABLE_CUDASIM=1 python bench/gpu_step.py --tiny   # end-to-end on the CUDA simulator
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import pylgn                                                 # noqa: E402
from pylgn.backend import get_backend                        # noqa: E402

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
FULL = dict(in_dim=9216, width=128_000, layers=4, deep_layers=80, classes=10, tau=100.0, batch=100)
TINY = dict(in_dim=24, width=24, layers=2, deep_layers=4, classes=3, tau=3.0, batch=5)


class Clock:
    """CUDA events on the GPU (what the device spent between two marks); perf_counter under the
    simulator, where numpy stands in for cupy."""

    def __init__(self, xp):
        self.cupy = None if xp is np else xp

    def mark(self):
        if self.cupy is None:
            return time.perf_counter()
        ev = self.cupy.cuda.Event()
        ev.record()
        return ev

    def ms(self, a, b):
        if self.cupy is None:
            return (b - a) * 1e3
        b.synchronize()
        return self.cupy.cuda.get_elapsed_time(a, b)


def copy_bandwidth(xp, clock, nbytes, repeats=10):
    """Bytes/s of ``dst[...] = src`` on the device (read + write), median of ``repeats``."""
    src = xp.ones(nbytes // 4, dtype=np.float32)
    dst = xp.empty_like(src)
    dst[...] = src
    times = []
    for _ in range(repeats):
        a = clock.mark()
        dst[...] = src
        times.append(clock.ms(a, clock.mark()))
    return 2 * nbytes / (np.median(times) * 1e-3)


def dlgn(size, depth, param, device, dtype=np.float32):
    dims = [size["in_dim"]] + [size["width"]] * depth
    layers = [pylgn.LogicLayer(a, b, arity=2, param=param) for a, b in zip(dims[:-1], dims[1:])]
    return pylgn.Sequential(layers + [pylgn.GroupSum(size["classes"], tau=size["tau"])],
                            seed=0, device=device, dtype=dtype)


def batch_data(xp, size, seed=0):
    """A thermometer-like 0/1 batch and labels, already on the device."""
    rng = np.random.default_rng(seed)
    x = (rng.random((size["batch"], size["in_dim"])) < 0.5).astype(np.float32)
    return xp.asarray(x), xp.asarray(rng.integers(0, size["classes"], size["batch"]))


def rel_err(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


def verify_first_step():
    """One step (forward, loss, backward, Adam) on cuda and on cpu, IWP and OP, on a small model
    with a batch that is not a multiple of a warp: max rel err of the float32 logits and
    gradients, and of the float64 parameters after Adam (in float32, Adam turns rounding noise in
    a gradient that cancels to ~0 into a step of up to lr, so weights are compared in float64)."""
    size = dict(TINY, width=96, batch=33) if not SIMULATED else TINY
    errs = dict(logits=0.0, grads=0.0, params=0.0)
    for param in ("iwp", "op"):
        for dtype in (np.float32, np.float64):
            out = []
            for device in ("cpu", "cuda"):
                model = dlgn(size, 3, param, device, dtype)
                opt, host = pylgn.Adam(model, lr=0.01), model.backend.to_host
                x, y = batch_data(model.backend.xp, size)
                logits = model.forward(x)
                model.backward(pylgn.softmax_cross_entropy(logits, y)[1])
                grads = host(model.grads).copy()
                opt.step()
                out.append(dict(logits=host(logits), grads=grads, params=host(model.params)))
            for key in (("logits", "grads") if dtype == np.float32 else ("params",)):
                errs[key] = max(errs[key], rel_err(out[1][key], out[0][key]))
    return errs


def time_steps(model, opt, x, y, clock, steps, warmup):
    """Median ms of forward, loss, backward and Adam over ``steps`` steps after ``warmup`` (device
    time between CUDA events), and ``wall``: host time of a whole step, synchronised at its end
    (wall well above the phases' sum is host overhead: launches, argument wrapping, syncs)."""
    rows = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        m0 = clock.mark()
        logits = model.forward(x)
        m1 = clock.mark()
        _, d = pylgn.softmax_cross_entropy(logits, y)
        m2 = clock.mark()
        model.backward(d)
        m3 = clock.mark()
        opt.step()
        m4 = clock.mark()
        phases = [clock.ms(m0, m1), clock.ms(m1, m2), clock.ms(m2, m3), clock.ms(m3, m4)]
        if i >= warmup:
            rows.append(phases + [(time.perf_counter() - t0) * 1e3])
    return dict(zip(("forward", "loss", "backward", "adam", "wall"),
                    np.median(rows, axis=0).tolist()))


def layer_kernels(layer, batch, xp):
    """(name, call, floor bytes) for every kernel of one layer's step, float32, batch ``batch``."""
    k = layer.backend.kernels
    G, I, n, f = layer.out_dim, layer.in_dim, layer.arity, 4
    rng = np.random.default_rng(1)
    x = xp.asarray((rng.random((I, batch)) < 0.5).astype(np.float32))
    dy = xp.asarray(rng.standard_normal((G, batch)).astype(np.float32))
    y, dx = xp.empty((G, batch), np.float32), xp.empty((I, batch), np.float32)
    table = xp.ascontiguousarray(layer.table(), dtype=np.float32)
    dtable = xp.empty_like(table)
    w, conn, (rev_ptr, rev_idx) = layer.weights, layer.connections, layer._rev
    rows_in, rows_out, tab, wire = I * batch * f, G * batch * f, table.size * f, n * G * 4
    calls = [
        ("gate_forward", lambda: k.gate_forward(x, conn, table, y), rows_in + tab + wire + rows_out),
        ("gate_forward_discrete", lambda: k.gate_forward_discrete(x, conn, table, y),
         rows_in + tab + wire + rows_out),
        ("gate_backward_table", lambda: k.gate_backward_table(x, conn, dy, dtable),
         rows_in + rows_out + wire + tab),
        ("gate_backward_inputs", lambda: k.gate_backward_inputs(
            x, conn, rev_ptr, rev_idx, table, dy, 1.0, dx),
         2 * rows_in + rows_out + tab + wire + (I + 1) * 4),
    ]
    if layer.param == "op":
        soft, omega, dw = xp.empty_like(w), xp.empty((G, 4), np.float32), xp.empty_like(w)
        calls += [("op_table", lambda: k.op_table(w, layer._op_tables, soft, omega),
                   2 * w.size * f + tab),
                  ("op_table_backward", lambda: k.op_table_backward(
                      soft, layer._op_tables, table, dw), 2 * w.size * f + tab)]
    return calls


def time_kernels(model, opt, batch, clock, bandwidth, repeats):
    """Median ms per kernel on the model's second layer (and Adam on all parameters) and the
    ratio to its floor: time / (floor bytes / copy bandwidth)."""
    xp = model.backend.xp
    calls = layer_kernels(model.logic_layers[1], batch, xp)
    k, last, gs = model.backend.kernels, model.logic_layers[-1], model.layers[-1]
    h = xp.asarray(np.random.default_rng(2).random((last.out_dim, batch)), dtype=np.float32)
    logits, dh = xp.empty((gs.k, batch), np.float32), xp.empty_like(h)
    calls += [("group_sum", lambda: k.group_sum(h, gs.tau, logits), (h.size + logits.size) * 4),
              ("group_sum_backward", lambda: k.group_sum_backward(logits, gs.tau, dh),
               (h.size + logits.size) * 4)]
    p, g = model.params, model.grads
    calls.append(("adam_step", lambda: k.adam_step(
        p, g, opt.m, opt.v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1), 7 * p.size * 4))
    out = {}
    for name, call, floor in calls:
        call()
        times = []
        for _ in range(repeats):
            a = clock.mark()
            call()
            times.append(clock.ms(a, clock.mark()))
        ms = float(np.median(times))
        out[name] = dict(ms=ms, floor_ms=floor / bandwidth * 1e3, ratio=ms / (floor / bandwidth * 1e3))
    return out


def free(xp):
    if xp is not np:
        xp.get_default_memory_pool().free_all_blocks()


def device_name(xp):
    if xp is np:
        return "numba CUDA simulator (numpy arrays; timings say nothing about a GPU)"
    props = xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)
    return props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny models (runs under the simulator)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 20; tiny 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; tiny 1)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    size = TINY if args.tiny else FULL
    steps = args.steps or (2 if args.tiny else 20)
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 3)
    xp = get_backend("cuda").xp
    clock = Clock(xp)
    res = dict(device=device_name(xp), size=size, steps=steps, warmup=warmup)

    res["first_step_rel_err"] = errs = verify_first_step()
    print(f"device: {res['device']}")
    print("first step vs CPU: max rel err " + ", ".join(f"{k} {v:.2e}" for k, v in errs.items())
          + " (logits, gradients float32; weights after Adam float64; IWP and OP)")
    if not max(errs.values()) < 1e-4:
        sys.exit(f"the cuda step differs from the cpu step ({errs}): not timing it")
    res["copy_bandwidth"] = bw = copy_bandwidth(xp, clock, (1 << 30) if not args.tiny else (1 << 20))
    print(f"copy bandwidth: {bw / 1e9:.1f} GB/s (read + write)")

    res["models"] = {}
    for depth in (size["layers"], size["deep_layers"]):
        for param in ("iwp", "op"):
            name = f"{depth}x{size['width']}-{param}"
            t0 = time.perf_counter()
            model = dlgn(size, depth, param, "cuda")
            opt = pylgn.Adam(model, lr=0.01)
            x, y = batch_data(xp, size)
            built = time.perf_counter() - t0
            entry = dict(build_s=built, steps=time_steps(model, opt, x, y, clock, steps, warmup))
            if depth == size["layers"]:
                entry["kernels"] = time_kernels(model, opt, size["batch"], clock, bw, steps)
            res["models"][name] = entry
            report(name, entry)
            del model, opt, x, y
            free(xp)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return res


def report(name, entry):
    s = entry["steps"]
    device = s["forward"] + s["loss"] + s["backward"] + s["adam"]
    print(f"{name}: forward {s['forward']:.3f} ms  loss {s['loss']:.3f} ms  backward "
          f"{s['backward']:.3f} ms  adam {s['adam']:.3f} ms  step {device:.3f} ms device, "
          f"{s['wall']:.3f} ms wall (median; built in {entry['build_s']:.1f} s)")
    for k, v in entry.get("kernels", {}).items():
        print(f"    {k:24s} {v['ms']:9.4f} ms  floor {v['floor_ms']:9.4f} ms  ratio {v['ratio']:6.2f}")


if __name__ == "__main__":
    main()
