"""Circuit inference: pylgn's bit-packed numba kernel vs the same circuit's exported C.

Two circuits: (a) a small digits model trained here with the core API (64 pixels x 3 thermometer
bits -> 4 x 2000 gates -> GroupSum(10)), (b) a random 784 -> 4 x 16,000 two-input net with
GroupSum(10). Each runs two ways on the same packed inputs, interleaved round by round:

* pylgn: ``Circuit.predict`` on PackedBits (one numba kernel for every circuit, parallel);
* C: ``Circuit.to_c()`` compiled with ``gcc -O3 -march=native -shared`` (straight-line code, one
  64-sample word per call, the CompiledLogicNet way), called through ctypes from two Python
  threads (ctypes releases the GIL), then argmax in numpy.

Reported: images/s and gate-samples/s (gates x images / s) for predict (gates + GroupSum) and for
the gates alone (output bits), medians over rounds; build times (pylgn: Circuit -> plan; C: code
generation + gcc); gates before/after ``simplify`` on the trained model. Compiled libraries are
cached under ~/.cache/pylgn/c_cache by source hash (the cached gcc time is the one measured when
it was built). A section is appended to bench/RESULTS.md.

    python bench/inference.py [--rounds 7] [--large-width 16000] [--no-write]
"""
import argparse
import ctypes
import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

import pylgn
from pylgn.circuit import Circuit
from pylgn.data import load_digits

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "pylgn",
                     "c_cache")
THREADS = 2


def train_digits(steps, seed=0):
    """(circuit, test accuracy of the discretized model, encoded test bits, train seconds)."""
    ds = load_digits(seed=seed)
    xtr, xte = ds.encode(ds.x_train, 3).astype(np.float32), ds.encode(ds.x_test, 3)
    model = pylgn.Sequential([pylgn.LogicLayer(192, 2000), pylgn.LogicLayer(2000, 2000),
                              pylgn.LogicLayer(2000, 2000), pylgn.LogicLayer(2000, 2000),
                              pylgn.GroupSum(10, tau=20.0)], seed=seed)
    opt = pylgn.Adam(model, lr=0.02)
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    for _ in range(steps):
        idx = rng.integers(0, len(xtr), size=128)
        model.train()
        loss, dlogits = pylgn.softmax_cross_entropy(model.forward(xtr[idx]), ds.y_train[idx])
        opt.zero_grad()
        model.backward(dlogits)
        opt.step()
    seconds = time.perf_counter() - t
    acc = float((model.eval().forward(xte.astype(np.float32)).argmax(1) == ds.y_test).mean())
    return model.to_circuit(), acc, xte.astype(bool), seconds


def random_net(in_dim, width, depth, k, seed=0):
    rng = np.random.default_rng(seed)
    layers, w = [], in_dim
    for _ in range(depth):
        layers.append((rng.integers(0, w, size=(2, width)),
                       rng.integers(0, 2, size=(width, 4)).astype(np.uint8)))
        w = width
    return Circuit(in_dim, layers, k=k)


class CompiledC:
    """The circuit's to_c() built with gcc -O3 -march=native, cached by source hash."""

    def __init__(self, circuit):
        t = time.perf_counter()
        src = circuit.to_c()
        self.codegen_s = time.perf_counter() - t
        key = hashlib.sha256(src.encode()).hexdigest()[:16]
        os.makedirs(CACHE, exist_ok=True)
        lib, meta = os.path.join(CACHE, key + ".so"), os.path.join(CACHE, key + ".json")
        if not (os.path.exists(lib) and os.path.exists(meta)):
            path = os.path.join(CACHE, key + ".c")
            with open(path, "w") as f:
                f.write(src)
            t = time.perf_counter()
            subprocess.run(["gcc", "-O3", "-march=native", "-shared", "-fPIC", "-o", lib + ".tmp",
                            path], check=True)
            os.replace(lib + ".tmp", lib)
            with open(meta, "w") as f:
                json.dump(dict(gcc_s=time.perf_counter() - t), f)
            os.remove(path)
        with open(meta) as f:
            self.gcc_s = json.load(f)["gcc_s"]
        self.dll = ctypes.CDLL(lib)
        for fn in (self.dll.pylgn_scores, self.dll.pylgn_circuit):
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        self.c = circuit
        self.pool = ThreadPoolExecutor(THREADS)

    def _split(self, words):
        cuts = [int(v) for v in np.linspace(0, words, THREADS + 1)]
        return list(zip(cuts[:-1], cuts[1:]))

    def predict(self, cin, n):
        """cin: (words, in_dim) sample-major packed inputs; argmax of pylgn_scores."""
        scores = np.empty((n, self.c.k), dtype=np.int32)
        row = cin.strides[0]

        def part(w):
            a, b = w
            m = min(n, 64 * b) - 64 * a
            if m > 0:
                self.dll.pylgn_scores(cin.ctypes.data + a * row,
                                      scores.ctypes.data + 64 * a * scores.strides[0], m)
        list(self.pool.map(part, self._split(cin.shape[0])))
        return scores.argmax(axis=1)

    def bits(self, cin, out):
        def part(w):
            a, b = w
            self.dll.pylgn_circuit(cin.ctypes.data + a * cin.strides[0],
                                   out.ctypes.data + a * out.strides[0], b - a)
        list(self.pool.map(part, self._split(cin.shape[0])))


def pylgn_build(c):
    """Seconds from a fresh Circuit (same arrays) to a ready plan."""
    fresh = Circuit.from_graph(c.in_dim, c.arity, c.src, c.codes, c.outputs, k=c.k, tau=c.tau)
    t = time.perf_counter()
    fresh.plan()
    return time.perf_counter() - t


def compare(name, c, x, rounds):
    """Interleaved rounds: pylgn predict, C predict, pylgn bits, C bits. Checks agreement."""
    px = c.pack(x)
    cin = np.ascontiguousarray(px.words.T)
    build_py = [pylgn_build(c) for _ in range(3)]
    cc = CompiledC(c)
    n = x.shape[0]
    ref = c.predict(px)
    if not np.array_equal(cc.predict(cin, n), ref):
        raise RuntimeError(f"{name}: C and pylgn predictions differ")
    out = np.empty((cin.shape[0], c.num_outputs), dtype=np.uint64)     # both write in place
    py_out = np.empty((c.num_outputs, cin.shape[0]), dtype=np.uint64)
    runs = dict(py_pred=lambda: c.predict(px), c_pred=lambda: cc.predict(cin, n),
                py_bits=lambda: c.evaluate_packed(px, out=py_out), c_bits=lambda: cc.bits(cin, out))
    times = {k: [] for k in runs}
    for _ in range(rounds):
        for key, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    ratio = {k: float(np.median(np.array(times["c_" + k]) / np.array(times["py_" + k])))
             for k in ("pred", "bits")}
    return dict(name=name, gates=c.num_gates, n=n, build_py_s=float(np.median(build_py)),
                codegen_s=cc.codegen_s, gcc_s=cc.gcc_s, median_s=med, speedup=ratio,
                images_per_s={k: n / v for k, v in med.items()},
                gate_samples_per_s={k: c.num_gates * n / v for k, v in med.items()})


def markdown(results, digits, env):
    lines = [f"\n## Circuit inference (`bench/inference.py`), {env['date']}\n",
             f"Machine: {env['cpu']}, {THREADS} threads (numba) / {THREADS} ctypes threads (C). "
             f"**Shared with other helpers while measuring** (load average {env['load_before']} "
             f"before, {env['load_after']} after): absolute numbers are noisy; each round runs "
             f"the four variants back to back and the speed-up is the median of per-round "
             f"ratios. Medians of {env['rounds']} rounds. Command: `{env['command']}`.\n",
             "| circuit | gates | batch | pylgn predict img/s | C predict img/s | speed-up | "
             "pylgn gates-only gate-samples/s | C gates-only gate-samples/s | speed-up | "
             "pylgn build | C build (codegen + gcc -O3) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        ips, gps = r["images_per_s"], r["gate_samples_per_s"]
        lines.append(f"| {r['name']} | {r['gates']:,} | {r['n']:,} | {ips['py_pred']:,.0f} | "
                     f"{ips['c_pred']:,.0f} | {r['speedup']['pred']:.2f}x | "
                     f"{gps['py_bits']:.3g} | {gps['c_bits']:.3g} | {r['speedup']['bits']:.2f}x | "
                     f"{r['build_py_s']:.3f} s | {r['codegen_s']:.1f} s + {r['gcc_s']:.1f} s |")
    rep = digits["report"]
    lines += ["", f"Trained digits model: {digits['steps']} steps in {digits['train_s']:.0f} s, "
              f"discretized test accuracy {digits['acc']:.3f}. `simplify()`: "
              f"{rep['gates_before']:,} -> {rep['gates_after']:,} gates "
              f"(per level {rep['per_level_before']} -> {rep['per_level_after']}; "
              f"constant {rep['constant']}, pass-through {rep['pass_through']}, negation "
              f"{rep['negation']}, merged {rep['merged']}, dead {rep['dead']}); simplified "
              f"circuit: {digits['simplified_ips']:,.0f} img/s in pylgn."]
    return "\n".join(lines) + "\n" + env["verdict"] + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--large-width", type=int, default=16000)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
    env = dict(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), rounds=args.rounds,
               load_before=os.getloadavg()[0], cpu=_cpu(),
               command="python bench/inference.py " + " ".join(argv or sys.argv[1:]))
    digits_c, acc, xte, train_s = train_digits(args.steps)
    print(f"digits: trained {args.steps} steps in {train_s:.0f} s, test accuracy {acc:.3f}")
    rng = np.random.default_rng(1)
    xd = xte[rng.integers(0, len(xte), size=1 << 16)]
    simple = digits_c.simplify()
    results = [compare("digits 192 -> 4 x 2000", digits_c, xd, args.rounds)]
    ps = simple.pack(xd)
    simple.predict(ps)
    t = [time.perf_counter()]
    for _ in range(args.rounds):
        simple.predict(ps)
        t.append(time.perf_counter())
    w = args.large_width
    big = random_net(784, w, 4, 10)
    xb = rng.integers(0, 2, size=(1 << 15, 784)).astype(bool)
    results.append(compare(f"random 784 -> 4 x {w:,}", big, xb, args.rounds))
    env["load_after"] = os.getloadavg()[0]
    digits = dict(report=simple.report, steps=args.steps, train_s=train_s, acc=acc,
                  simplified_ips=len(xd) / float(np.median(np.diff(t))))
    env["verdict"] = _verdict(results)
    text = markdown(results, digits, env)
    print(text)
    if not args.no_write:
        with open(os.path.join(HERE, "RESULTS.md"), "a") as f:
            f.write(text)


def _verdict(results):
    big = results[-1]
    fast = all(r["speedup"]["pred"] >= 1.5 for r in results)
    gates = all(r["speedup"]["bits"] >= 1.5 for r in results)
    build = (big["codegen_s"] + big["gcc_s"]) / big["build_py_s"]
    return (f"Targets: >= 1.5x the compiled-C predict throughput: "
            f"{'met' if fast else 'NOT met'} (" +
            ", ".join(f"{r['speedup']['pred']:.2f}x" for r in results) + "); gates alone: "
            f"{'met' if gates else 'NOT met'} (" +
            ", ".join(f"{r['speedup']['bits']:.2f}x" for r in results) + "); build time >= 10x "
            f"shorter on the large net: {'met' if build >= 10 else 'NOT met'} ({build:,.0f}x).")


def _cpu():
    try:
        with open("/proc/cpuinfo") as f:
            name = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        name = "unknown CPU"
    return f"{name}, {os.cpu_count()} cores"


if __name__ == "__main__":
    main()
