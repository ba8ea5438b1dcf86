"""Circuit inference: pylgn's bit-packed numba kernel vs the same circuit's exported C, per core.

Circuits: (a) a trained MNIST DLGN-small (800 thermometer bits of a 20 x 20 crop -> 6 x 8,000
gates -> GroupSum(10)), read from a checkpoint (``--checkpoint``; default the newest
runs/mnist-bench/*/checkpoint.h5), simplified; (b) a random 784 -> 4 x 16,000 two-input net with
GroupSum(10), as built; (c) the digits model trained here (4 x 2,000 gates), for the simplify
report. Each runs on the same inputs, the variants interleaved round by round:

* pylgn bits: ``Circuit.evaluate_packed`` (gates alone, every output word written out);
* pylgn predict: ``Circuit.predict`` on PackedBits (gates + GroupSum + argmax in the kernel);
* pylgn raw (MNIST): ``Circuit.predict_raw`` on the uint8 test images (thermometer encoding and
  centre crop fused into the kernel), and the unfused path ``Dataset.encode`` + ``pack`` +
  ``predict`` for comparison;
* C bits / C predict: ``Circuit.to_c()`` compiled with ``gcc -O3 -march=native -shared``
  (straight-line code, one 64-sample word per call), called through ctypes, then argmax in numpy.

Per core: 1 thread each (numba threads = 1; C called from the main thread), timed by CPU time
(``time.process_time``) so that other jobs on a shared machine do not count against either side,
and by wall time. All cores: ``--threads`` threads each (numba / ctypes threads), wall time.
Medians over rounds; the speed-up is the median of per-round ratios. Build times: pylgn simplify
+ plan, C code generation + gcc (compiled libraries are cached under ~/.cache/pylgn/c_cache by
source hash; the gcc time is the one measured when it was built).

    python bench/inference.py [--rounds 7] [--checkpoint PATH] [--write]
"""
import argparse
import ctypes
import glob
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
from pylgn.circuit import Circuit, Thermometer
from pylgn.data import load_dataset, load_digits
from pylgn.kernels import packed

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "pylgn",
                     "c_cache")


def train_digits(steps, seed=0):
    """(circuit, test accuracy of the discretized model)."""
    ds = load_digits(seed=seed)
    xtr, xte = ds.encode(ds.x_train, 3).astype(np.float32), ds.encode(ds.x_test, 3)
    model = pylgn.Sequential([pylgn.LogicLayer(192, 2000), pylgn.LogicLayer(2000, 2000),
                              pylgn.LogicLayer(2000, 2000), pylgn.LogicLayer(2000, 2000),
                              pylgn.GroupSum(10, tau=20.0)], seed=seed)
    opt = pylgn.Adam(model, lr=0.02)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = rng.integers(0, len(xtr), size=128)
        model.train()
        loss, dlogits = pylgn.softmax_cross_entropy(model.forward(xtr[idx]), ds.y_train[idx])
        opt.zero_grad()
        model.backward(dlogits)
        opt.step()
    acc = float((model.eval().forward(xte.astype(np.float32)).argmax(1) == ds.y_test).mean())
    return model.to_circuit(), acc


def random_net(in_dim, width, depth, k, seed=0):
    rng = np.random.default_rng(seed)
    layers, w = [], in_dim
    for _ in range(depth):
        layers.append((rng.integers(0, w, size=(2, width)),
                       rng.integers(0, 2, size=(width, 4)).astype(np.uint8)))
        w = width
    return Circuit(in_dim, layers, k=k)


def xor_reduced(c):
    """c's gates plus a balanced tree of XOR gates over its outputs, down to one output: the same
    gates, nearly nothing written out (for timing gates without the output stores)."""
    nodes, arity, src = [int(o) for o in c.outputs], list(c.arity), list(c.src)
    codes, next_id = list(c.codes), c.in_dim + c.num_gates
    while len(nodes) > 1:
        new = []
        for i in range(0, len(nodes) - 1, 2):
            arity.append(2)
            src += [nodes[i], nodes[i + 1]]
            codes.append(6)
            new.append(next_id)
            next_id += 1
        nodes = new + nodes[len(nodes) - len(nodes) % 2:]
    return Circuit.from_graph(c.in_dim, arity, src, np.asarray(codes, dtype=np.uint64), nodes)


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
        for fn in ("pylgn_scores", "pylgn_circuit") if circuit.k else ("pylgn_circuit",):
            getattr(self.dll, fn).argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        self.c = circuit
        self.pools = {}

    def _map(self, fn, words, threads):
        cuts = [int(v) for v in np.linspace(0, words, threads + 1)]
        parts = list(zip(cuts[:-1], cuts[1:]))
        if threads == 1:
            fn(parts[0])
            return
        if threads not in self.pools:
            self.pools[threads] = ThreadPoolExecutor(threads)
        list(self.pools[threads].map(fn, parts))

    def predict(self, cin, n, threads):
        """cin: (words, in_dim) sample-major packed inputs; argmax of pylgn_scores."""
        scores = np.empty((n, self.c.k), dtype=np.int32)
        row = cin.strides[0]

        def part(w):
            a, b = w
            m = min(n, 64 * b) - 64 * a
            if m > 0:
                self.dll.pylgn_scores(cin.ctypes.data + a * row,
                                      scores.ctypes.data + 64 * a * scores.strides[0], m)
        self._map(part, cin.shape[0], threads)
        return scores.argmax(axis=1)

    def bits(self, cin, out, threads):
        def part(w):
            a, b = w
            self.dll.pylgn_circuit(cin.ctypes.data + a * cin.strides[0],
                                   out.ctypes.data + a * out.strides[0], b - a)
        self._map(part, cin.shape[0], threads)


def timed(runs, rounds, clock):
    """{name: [seconds per round]}, the variants run back to back in each round."""
    times = {k: [] for k in runs}
    for fn in runs.values():                     # warm-up (compilation, pools, caches)
        fn()
    for _ in range(rounds):
        for key, fn in runs.items():
            t = clock()
            fn()
            times[key].append(clock() - t)
    return times


def compare(name, c, x, rounds, threads, raw=None, reduced=None):
    """Interleaved rounds of pylgn and C (bits, predict, and with ``raw`` = (uint8 images,
    Thermometer, Dataset, thresholds, crop) the fused and unfused end-to-end predict; with
    ``reduced`` = xor_reduced(c) its one output bit), at 1 thread (CPU time and wall) and
    ``threads`` threads (wall). Checks agreement first."""
    px = c.pack(x)
    if reduced is not None:
        cr = CompiledC(reduced)
        r_out = np.empty((px.words.shape[1], 1), dtype=np.uint64)
        r_py = np.empty((1, px.words.shape[1]), dtype=np.uint64)
    cin = np.ascontiguousarray(px.words.T)
    t = time.perf_counter()
    Circuit.from_graph(c.in_dim, c.arity, c.src, c.codes, c.outputs, k=c.k, tau=c.tau).plan()
    build_py = time.perf_counter() - t
    cc = CompiledC(c)
    n = x.shape[0]
    ref = c.predict(px)
    if not np.array_equal(cc.predict(cin, n, 1), ref):
        raise RuntimeError(f"{name}: C and pylgn predictions differ")
    if raw is not None:
        imgs, enc, ds, nthr, crop = raw
        if not np.array_equal(c.predict_raw(imgs, enc), ref):
            raise RuntimeError(f"{name}: predict_raw differs from predict on encoded bits")
    if reduced is not None:
        r_c = np.empty((px.words.shape[1], 1), dtype=np.uint64)
        cr.bits(cin, r_c, 1)
        if not np.array_equal(reduced.evaluate_packed(px).words[0], r_c[:, 0] & _mask(n)):
            raise RuntimeError(f"{name}: C and pylgn XOR-reduced outputs differ")
    out = np.empty((cin.shape[0], c.num_outputs), dtype=np.uint64)     # both write in place
    py_out = np.empty((c.num_outputs, cin.shape[0]), dtype=np.uint64)
    res = dict(name=name, gates=c.num_gates, n=n, build_py_s=build_py, codegen_s=cc.codegen_s,
               gcc_s=cc.gcc_s, per={}, reduced_gates=reduced.num_gates if reduced else None)
    for th, clock, label in ((1, time.process_time, "1 thread, CPU time"),
                             (1, time.perf_counter, "1 thread, wall"),
                             (threads, time.perf_counter, f"{threads} threads, wall")):
        runs = dict(py_bits=lambda: c.evaluate_packed(px, out=py_out),
                    c_bits=lambda: cc.bits(cin, out, th),
                    py_pred=lambda: c.predict(px), c_pred=lambda: cc.predict(cin, n, th))
        if reduced is not None:
            runs["py_gates"] = lambda: reduced.evaluate_packed(px, out=r_py)
            runs["c_gates"] = lambda: cr.bits(cin, r_out, th)
        if raw is not None:
            runs["py_raw"] = lambda: c.predict_raw(imgs, enc)
            runs["py_unfused"] = lambda: c.predict(c.pack(ds.encode(imgs, nthr, crop=crop)))
        numba.set_num_threads(th)
        times = timed(runs, rounds, clock)
        med = {k: float(np.median(v)) for k, v in times.items()}
        ratio = {k: float(np.median(np.array(times["c_" + k]) / np.array(times["py_" + k])))
                 for k in ("bits", "pred", "gates") if "c_" + k in times}
        gates = {k: (reduced.num_gates if k.endswith("_gates") else c.num_gates) for k in med}
        res["per"][label] = dict(median_s=med, speedup=ratio,
                                 images_per_s={k: n / v for k, v in med.items()},
                                 gate_samples_per_s={k: gates[k] * n / v for k, v in med.items()})
        print(f"  {name} [{label}]: " + ", ".join(f"{k} {n / v / 1e6:.2f} M img/s"
                                                  for k, v in med.items())
              + f"; pylgn/C bits {ratio['bits']:.2f}x, predict {ratio['pred']:.2f}x", flush=True)
    return res


@numba.njit
def _phases(x, raw64, enc, n, words, buf, t, planes, tmp, acc, vt64, plan, k, upto):
    """The kernel's phases on every block of the batch, stopping after phase ``upto``:
    0 load inputs (packed, or from raw uint8 when raw64 has n rows), 1 gates, 2 group counts
    (carry-save planes), 3 counts read out of the planes."""
    op, ptr, src, dst, arity, table, out = plan
    m = out.shape[0] // k
    L = max(4, int(np.ceil(np.log2(m + 1))) + 1)
    for blk in range(-(-n // (64 * words))):
        if raw64.shape[0] == n:
            packed.load_raw(raw64, 64 * words * blk, enc, buf, vt64)
        else:
            packed.load_packed(x, blk * words, buf)
        if upto >= 1:
            packed._run_block(buf, t, op, ptr, src, dst, arity, table)
        for cls in range(k if upto >= 2 else 0):
            packed._count_group(buf, out, cls * m, (cls + 1) * m, planes, tmp, L)
            if upto >= 3:
                packed._plane_counts(planes, L, acc)


def breakdown(c, px, imgs, enc, rounds):
    """ns per image of each kernel phase (1 thread, CPU time, the default block width)."""
    from pylgn.circuit import _read_inputs, _words64
    p = c.plan()
    n = px.n
    words = packed.block_words(p["n_slots"], px.words.shape[1], 1)
    g, v, ptr, thr, slot = enc.plan(_read_inputs(c))
    e = (g, v, ptr, enc.cut_table(imgs)[thr], slot)
    raw64 = _words64(enc.raw(imgs))
    scratch = (packed.aligned_empty((-(-p["n_slots"] // 8) * 8, words)),
               packed.aligned_empty((32, words)), packed.aligned_empty((packed.MAX_LEVELS, words)),
               np.empty((16, words), np.uint64), np.empty(64 * words, np.int32),
               np.empty((8 * len(g), 8 * words), np.uint64))
    plan = (p["op"], p["ptr"], p["src"], p["dst"], p["arity"], p["table"], p["out"])
    none = np.zeros((0, 1), np.uint64)
    runs = {f"{src_}{upto}": (lambda r=r_, u=upto: _phases(px.words, r, e, n, words, *scratch,
                                                            plan, c.k, u))
            for src_, r_ in (("packed", none), ("raw", raw64)) for upto in range(4)}
    med = {k: float(np.median(v)) / n * 1e9 for k, v in timed(runs, rounds,
                                                                time.process_time).items()}
    return dict(words=words, load_packed=med["packed0"], load_raw=med["raw0"],
                gates=med["packed1"] - med["packed0"], count=med["packed2"] - med["packed1"],
                readout=med["packed3"] - med["packed2"])


def _mask(n):
    """Per word, the bits of real samples (the last word's tail past n is zero)."""
    m = np.full(-(-n // 64), ~np.uint64(0), dtype=np.uint64)
    if n % 64:
        m[-1] = np.uint64((1 << (n % 64)) - 1)
    return m


def mnist_checkpoint(path):
    if path is None:
        found = sorted(glob.glob(os.path.join(HERE, "..", "runs", "mnist-bench", "*",
                                              "checkpoint.h5")), key=os.path.getmtime)
        if not found:
            raise SystemExit("no MNIST checkpoint under runs/mnist-bench/*/; train one with "
                             "pylgn train --dataset mnist --data-dir data --steps 3000 --out DIR "
                             "and pass --checkpoint DIR/checkpoint.h5")
        path = found[-1]
    return os.path.normpath(path), pylgn.load(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=300, help="digits training steps")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--data-dir", default=os.path.join(HERE, "..", "data"))
    ap.add_argument("--large-width", type=int, default=16000)
    ap.add_argument("--write", action="store_true", help="replace the section in RESULTS.md")
    args = ap.parse_args(argv)
    env = dict(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), rounds=args.rounds,
               load_before=os.getloadavg(), cpu=_cpu(), threads=args.threads,
               command="python bench/inference.py " + " ".join(argv or sys.argv[1:]))
    ck_path, ck = mnist_checkpoint(args.checkpoint)
    ds = load_dataset("mnist", data_dir=args.data_dir)
    nthr, crop = ck.meta["thresholds"], ck.meta.get("crop") or None
    full = ck.model.to_circuit()
    t = time.perf_counter()
    mnist = full.simplify()
    simplify_s = time.perf_counter() - t
    enc = Thermometer(ds.shape, nthr, crop=crop, max_value=ds.max_value)
    reps = -(-(1 << 16) // len(ds.x_test))
    imgs = np.ascontiguousarray(np.concatenate([ds.x_test] * reps)[:1 << 16])
    labels = np.concatenate([ds.y_test] * reps)[:1 << 16]
    bits = ds.encode(imgs, nthr, crop=crop)
    acc = float((mnist.predict_raw(ds.x_test, enc) == ds.y_test).mean())
    print(f"MNIST {ck_path}: {full.num_gates} -> {mnist.num_gates} gates, test accuracy {acc:.4f}")
    results = [compare("MNIST 800 -> 6 x 8,000, simplified", mnist, bits, args.rounds,
                       args.threads, raw=(imgs, enc, ds, nthr, crop), reduced=xor_reduced(mnist))]
    numba.set_num_threads(1)
    phases = breakdown(mnist, mnist.pack(bits), imgs, enc, args.rounds)
    print("phases (ns/img):", phases)
    t = timed(dict(full=lambda: full.predict_raw(imgs, enc)), args.rounds, time.process_time)
    unsimplified_ips = len(imgs) / float(np.median(t["full"]))
    w = args.large_width
    big = random_net(784, w, 4, 10)
    xb = np.random.default_rng(1).integers(0, 2, size=(1 << 15, 784)).astype(bool)
    results.append(compare(f"random 784 -> 4 x {w:,}", big, xb, args.rounds, args.threads))
    digits_c, digits_acc = train_digits(args.steps)
    env["load_after"] = os.getloadavg()
    extra = dict(phases=phases, mnist_report=mnist.report, mnist_path=ck_path, mnist_acc=acc,
                 mnist_step=ck.step if hasattr(ck, "step") else None, simplify_s=simplify_s,
                 unsimplified_ips=unsimplified_ips, digits_report=digits_c.simplify().report,
                 digits_acc=digits_acc, steps=args.steps, labels_ok=bool(len(labels)))
    text = markdown(results, extra, env)
    print(text)
    if args.write:
        _replace_section(os.path.join(HERE, "RESULTS.md"), text)


def markdown(results, extra, env):
    la = lambda v: "/".join(f"{x:.1f}" for x in v)
    lines = [f"## Circuit inference (`bench/inference.py`), {env['date']}\n",
             f"    {env['command']}\n",
             f"Machine: {env['cpu']}. **Loaded while measuring**: other engineers' training jobs "
             f"ran on the same 2 cores (`uptime` load average {la(env['load_before'])} before, "
             f"{la(env['load_after'])} after, 1/5/15 min). So the per-core numbers are timed "
             f"by CPU time of the single benchmark thread (`time.process_time`), which does not "
             f"count the time the core spent on other jobs (it does include their cache "
             f"interference); wall-clock numbers are given beside them. pylgn and C run the "
             f"same circuit on the same inputs, alternating within each of {env['rounds']} "
             f"rounds; medians, speed-up = median of per-round ratios.\n",
             "| circuit | gates | threads, clock | "
             "gates, XOR-reduced output: pylgn G gate-samples/s | "
             "C | pylgn / C | gates, all outputs written: pylgn G gate-samples/s | C | pylgn / C | "
             "pylgn predict img/s | C predict img/s | pylgn / C | "
             "pylgn from uint8, fused img/s | unfused (encode + pack + predict) img/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for label, p in r["per"].items():
            ips, gps = p["images_per_s"], p["gate_samples_per_s"]
            fused = f"{ips['py_raw']:,.0f}" if "py_raw" in ips else "-"
            unf = f"{ips['py_unfused']:,.0f}" if "py_unfused" in ips else "-"
            red = (f"{gps['py_gates'] / 1e9:.0f} | {gps['c_gates'] / 1e9:.0f} | "
                   f"{p['speedup']['gates']:.2f}x" if "py_gates" in gps else "- | - | -")
            lines.append(f"| {r['name']} | {r['gates']:,} | {label} | {red} | "
                         f"{gps['py_bits'] / 1e9:.0f} | "
                         f"{gps['c_bits'] / 1e9:.0f} | {p['speedup']['bits']:.2f}x | "
                         f"{ips['py_pred']:,.0f} | {ips['c_pred']:,.0f} | "
                         f"{p['speedup']['pred']:.2f}x | {fused} | {unf} |")
    lines += ["", "Build: " + "; ".join(
        f"{r['name']}: pylgn plan {r['build_py_s']:.3f} s, C codegen {r['codegen_s']:.1f} s + "
        f"gcc -O3 {r['gcc_s']:.0f} s" for r in results) +
        f". MNIST simplify: {extra['simplify_s']:.1f} s."]
    m, d = extra["mnist_report"], extra["digits_report"]
    rep = lambda r: (f"{r['gates_before']:,} -> {r['gates_after']:,} gates (constant "
                     f"{r['constant']}, pass-through {r['pass_through']}, negation "
                     f"{r['negation']}, merged {r['merged']}, dead {r['dead']}, outputs "
                     f"materialized {r['outputs_materialized']}; per level "
                     f"{r['per_level_before']} -> {r['per_level_after']})")
    lines += ["", f"`simplify()` on the trained MNIST model (`{extra['mnist_path']}`, discretized "
              f"test accuracy {extra['mnist_acc']:.4f}, unchanged by simplify): {rep(m)}. The "
              f"unsimplified 48K-gate circuit runs {extra['unsimplified_ips']:,.0f} img/s end to "
              f"end from uint8 (1 thread, CPU time).",
              "", "Where the time goes (simplified MNIST net, 1 thread, CPU time, "
              f"{extra['phases']['words']}-word blocks, ns per image): " + ", ".join(
                  f"{k.replace('_', ' ')} {v:.1f}" for k, v in extra["phases"].items()
                  if k != "words") + ".",
              f"On the digits model trained here ({extra['steps']} steps, accuracy "
              f"{extra['digits_acc']:.3f}): {rep(d)}."]
    return "\n".join(lines) + "\n"


def _replace_section(path, text):
    """Replace the '## Circuit inference' section of RESULTS.md (up to the next '## ')."""
    with open(path) as f:
        doc = f.read()
    start = doc.find("## Circuit inference")
    if start < 0:
        doc = doc.rstrip("\n") + "\n\n" + text
    else:
        end = doc.find("\n## ", start + 3)
        end = len(doc) if end < 0 else end + 1
        doc = doc[:start] + text + ("\n" + doc[end:] if end < len(doc) else "")
    with open(path, "w") as f:
        f.write(doc)


def _cpu():
    try:
        with open("/proc/cpuinfo") as f:
            name = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        name = "unknown CPU"
    from pylgn.kernels.packed import cache_sizes
    l2, l3 = cache_sizes()
    return f"{name}, {os.cpu_count()} cores, L2 {l2 >> 10} KiB/core, L3 {l3 >> 20} MiB"


if __name__ == "__main__":
    main()
