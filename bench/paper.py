"""The Light-DLGN paper's experiments at a scale a small CPU machine runs, one subcommand each.

    python bench/paper.py memory       # params + Adam state, peak RSS: IWP vs OP (Fig. 1)
    python bench/paper.py timing       # fwd / bwd time at batch 1, 16, 256 (§4.4, Fig. 5)
    python bench/paper.py convergence  # steps for IWP+RI to reach OP+RI's best (Fig. 9: 8.5x)
    python bench/paper.py depth        # 4 / 12 / 40 layers: discretized accuracy, gap (Figs. 4, 8)
    python bench/paper.py gradnorm     # gradient norm per layer, 40 layers, at init (Figs. 7, 18)

Data: scikit-learn's digits (pylgn.data.load_digits, 8x8, thermometer-encoded with 3 thresholds
-> 192 bits); the models are random-wired DLGNs (LogicLayer stacks + GroupSum(10)). Each command
writes bench/out/<name>.md (a markdown table with the command line) and bench/out/<name>.png.
--steps / --seeds / --width / --depths scale the runs up; the defaults take a few minutes each on
one thread (--threads, default 1).
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numba
import numpy as np

import pylgn
from pylgn import diagnostics
from pylgn.data import load_digits

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
SUFFIX = [""]          # --suffix: appended to output file names (set by main)
VARIANTS = {"IWP+RI": ("iwp", "residual", None), "OP+RI": ("op", "residual", None),
            "OP+gauss": ("op", "gaussian", None), "IWP+gauss": ("iwp", "gaussian", None),
            "IWP+gauss s=1": ("iwp", "gaussian", 1.0)}     # (param, init, sigma; None = default)


# shared helpers ------------------------------------------------------------------------------

def digits(thresholds=3):
    """(x_train, y_train, x_test, y_test): thermometer bits (N, 64 * thresholds) uint8."""
    ds = load_digits()
    return (ds.encode(ds.x_train, thresholds), ds.y_train,
            ds.encode(ds.x_test, thresholds), ds.y_test)


def make_model(variant, in_dim, width, depth, seed=0, classes=10, tau=None, dtype=np.float32):
    """depth LogicLayers of ``width`` gates (variant: a VARIANTS key) + GroupSum(classes, tau);
    tau defaults to sqrt(width / classes), the CDLGN rule of thumb."""
    param, init, sigma = VARIANTS[variant]
    tau = tau or max(1.0, np.sqrt(width / classes))
    dims = [in_dim] + [width] * depth
    layers = [pylgn.LogicLayer(a, b, param=param, init=init, sigma=sigma)
              for a, b in zip(dims, dims[1:])]
    return pylgn.Sequential(layers + [pylgn.GroupSum(classes, tau)], seed=seed, dtype=dtype)


def write_table(name, title, header, rows, notes=()):
    """bench/out/<name>.md: title, the command that produced it, the machine, the table."""
    os.makedirs(OUT, exist_ok=True)
    lines = [f"### {title}", "", f"`python {' '.join(['bench/paper.py'] + sys.argv[1:])}` — "
             f"{cpu_name()}, {numba.get_num_threads()} threads, "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    lines += [""] + [f"- {n}" for n in notes]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(OUT, f"{name}{SUFFIX[0]}.md"), "w") as f:
        f.write(text)
    print(text)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def figure(width=6.4, height=4.0, cols=1):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=90)
    return fig, [fig.add_subplot(1, cols, i + 1) for i in range(cols)]


def save(fig, name):
    fig.tight_layout()
    path = os.path.join(OUT, f"{name}{SUFFIX[0]}.png")
    fig.savefig(path)
    print(f"wrote {path}")


def train(variant, data, width, depth, steps, seed, eval_every, lr=0.01, batch=100):
    """Trainer history of one run on ``data`` (digits bits)."""
    xtr, ytr, xte, yte = data
    model = make_model(variant, xtr.shape[1], width, depth, seed=seed)
    trainer = pylgn.Trainer(model, pylgn.Adam(model, lr=lr), batch_size=batch, seed=seed)
    return trainer.fit(xtr, ytr, steps, eval_data=(xte, yte), eval_every=eval_every,
                       progress=False)


# 1. memory -----------------------------------------------------------------------------------

def rss_child(args):
    """(subprocess) Warm up on a tiny model of the same variant (kernels loaded), reset the
    kernel's peak-RSS mark (/proc/self/clear_refs, "5"), then build the model and run one training
    step; print the state bytes, the process peak (getrusage) and the step's own peak above the
    warmed-up process (VmHWM - VmRSS before the model existed)."""
    def step(width, depth, in_dim):
        x = (np.random.default_rng(0).random((args.batch, in_dim)) < 0.3).astype(np.float32)
        model = make_model(args.variant, in_dim, width, depth)
        opt = pylgn.Adam(model)
        _, d = pylgn.softmax_cross_entropy(model.forward(x), np.arange(args.batch) % 10)
        model.backward(d)
        opt.step()
        return model, opt
    step(20, 1, 20)
    base = _proc_status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    model, opt = step(args.width, args.depth, args.in_dim)
    print(json.dumps(dict(state=model.params.nbytes + opt.m.nbytes + opt.v.nbytes,
                          params=model.params.nbytes, step_peak=_proc_status("VmHWM") - base,
                          maxrss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)))


def _proc_status(key):
    """Bytes of a kB field of /proc/self/status (VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key + ":"))


def run_child(variant, width, depth, batch, in_dim):
    cmd = [sys.executable, os.path.abspath(__file__), "_rss", "--variant", variant, "--width",
           str(width), "--depth", str(depth), "--batch", str(batch), "--in-dim", str(in_dim)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def memory(args):
    configs = [("DLGN-M shape: 4 x 128,000, in 9,216 bits", 128000, 4, 100, 9216),
               ("deep: 20 x 8,000, in 192 bits", 8000, 20, 16, 192)]
    rows, bars = [], []
    mib = lambda b: b / 2**20                                          # noqa: E731
    for label, width, depth, batch, in_dim in configs:
        res = {v: run_child(v, width, depth, batch, in_dim) for v in ("IWP+RI", "OP+RI")}
        for v, r in res.items():
            rows.append([label, v, f"batch {batch}", f"{mib(r['params']):.1f}",
                         f"{mib(r['state']):.1f}", f"{mib(r['step_peak']):.0f}",
                         f"{mib(r['maxrss']):.0f}"])
        op, iwp = res["OP+RI"], res["IWP+RI"]
        rows.append([label, "OP/IWP", "", *(f"{op[k] / iwp[k]:.2f}x" for k in
                                            ("params", "state", "step_peak", "maxrss"))])
        bars.append((label.split(":")[0], iwp, op))
    write_table("memory", "Memory: IWP vs OP (float32, one training step in a fresh process)",
                ["model", "variant", "step", "params MiB", "params+Adam MiB",
                 "step peak RSS MiB", "process peak RSS MiB"], rows,
                ["step peak = VmHWM after building the model and one forward/backward/Adam step, "
                 "minus VmRSS of the warmed-up process (peak mark reset via /proc/self/clear_refs)",
                 "process peak = resource.getrusage ru_maxrss (includes the interpreter, numpy, "
                 "numba and the compiled kernels, ~180 MiB)",
                 "the step peak also holds the activations kept for backward (batch x gates x 4 B "
                 "per layer), the same for both parametrizations"])
    fig, (ax,) = figure(6.4, 3.6)
    for i, (name, iwp, op) in enumerate(bars):
        for j, (v, r) in enumerate((("IWP", iwp), ("OP", op))):
            ax.bar(3 * i + j, mib(r["state"]), color=f"C{j}", label=v if i == 0 else None)
            ax.bar(3 * i + j, mib(r["step_peak"] - r["state"]), bottom=mib(r["state"]),
                   color=f"C{j}", alpha=0.35)
    ax.set_xticks([0.5, 3.5], [b[0] for b in bars])
    ax.set_ylabel("MiB")
    ax.set_title("solid: params + Adam state; light: rest of the step's peak RSS", fontsize=9)
    ax.legend()
    save(fig, "memory")


# 2. timing -----------------------------------------------------------------------------------

def time_phases(models, x, y, repeats):
    """{name: (median forward s, median backward s)}; the models alternate pass by pass (so load
    from other jobs hits both alike), after one warm-up pass each. Backward = loss gradient +
    model.backward."""
    times = {v: [] for v in models}
    for r in range(repeats + 1):
        for v, model in models.items():
            t0 = time.perf_counter()
            logits = model.forward(x)
            t1 = time.perf_counter()
            _, d = pylgn.softmax_cross_entropy(logits, y)
            model.backward(d)
            if r:
                times[v].append((t1 - t0, time.perf_counter() - t1))
    return {v: np.median(t, axis=0) for v, t in times.items()}


def timing(args):
    width, depth = args.width or 8000, 20
    models = {v: make_model(v, 192, width, depth) for v in ("IWP+RI", "OP+RI")}
    rng = np.random.default_rng(0)
    rows, res = [], {}
    for batch in (1, 16, 256):
        x = (rng.random((batch, 192)) < 0.3).astype(np.float32)
        f = res[batch] = time_phases(models, x, rng.integers(0, 10, batch), args.repeats)
        rows.append([batch, *(f"{f[v][0] * 1e3:.2f}" for v in models),
                     *(f"{f[v][1] * 1e3:.2f}" for v in models),
                     f"{f['OP+RI'][0] / f['IWP+RI'][0]:.2f}x",
                     f"{f['OP+RI'][1] / f['IWP+RI'][1]:.2f}x"])
    write_table("timing", f"Forward/backward time, {depth} layers x {width} gates, float32 (ms)",
                ["batch", "fwd IWP", "fwd OP", "bwd IWP", "bwd OP", "fwd OP/IWP", "bwd OP/IWP"],
                rows, [f"median of {args.repeats} passes per model after one warm-up, IWP and OP "
                       "alternating pass by pass; backward = loss gradient + model.backward",
                       "paper (GPU, 80 x 128k): bwd OP/IWP 1.86x at batch 1, ~1.65x at 8, "
                       "~1.45x at 64, ~1.15x at 256; fwd ~1.1x at batch 1"])
    fig, axes = figure(8.0, 3.4, cols=2)
    for ax, phase, name in ((axes[0], 0, "forward"), (axes[1], 1, "backward")):
        for v in models:
            ax.loglog([1, 16, 256], [res[b][v][phase] * 1e3 for b in (1, 16, 256)], "o-", label=v)
        ax.set_xlabel("batch")
        ax.set_ylabel("ms")
        ax.set_title(name)
        ax.legend()
    save(fig, "timing")


# 3. convergence ------------------------------------------------------------------------------

def running_max(values):
    return np.maximum.accumulate(np.array(values, dtype=np.float64))


def convergence(args):
    data = digits()
    width, depth, steps = args.width or 1000, args.depth or 12, args.steps or 1500
    rows, curves, ratios = [], {}, []
    for seed in range(args.seeds):
        h = {v: train(v, data, width, depth, steps, seed, args.eval_every)
             for v in ("IWP+RI", "OP+RI")}
        step = np.array(h["OP+RI"]["step"])
        best_op = running_max(h["OP+RI"]["test_accuracy_discrete"])
        iwp = running_max(h["IWP+RI"]["test_accuracy_discrete"])
        op_step = int(step[np.argmax(best_op >= best_op[-1])])
        reached = np.nonzero(iwp >= best_op[-1])[0]
        iwp_step = int(step[reached[0]]) if reached.size else None
        ratio = op_step / iwp_step if iwp_step else None
        ratios.append(ratio)
        rows.append([seed, f"{best_op[-1]:.3f}", op_step, f"{iwp[-1]:.3f}",
                     iwp_step if iwp_step else f"not within {steps}",
                     f"{ratio:.1f}x" if ratio else "-"])
        curves[seed] = (step, iwp, best_op)
    done = [r for r in ratios if r]
    write_table("convergence", f"Convergence on digits: {depth} layers x {width} gates, batch 100, "
                f"lr 0.01, {steps} steps, discretized test accuracy (running max)",
                ["seed", "OP+RI best", "OP+RI step of best", "IWP+RI best",
                 "IWP+RI step reaching OP best", "OP/IWP steps"], rows,
                [f"median ratio over seeds that reached it: {np.median(done):.1f}x"
                 if done else "IWP+RI never reached OP+RI's best",
                 f"evaluated every {args.eval_every} steps on the 359 test digits; paper "
                 "(CIFAR-100, 80 x 128k, 250k steps): 8.5x"])
    fig, (ax,) = figure()
    for seed, (step, iwp, op) in curves.items():
        ax.plot(step, iwp, "-", color="C0", alpha=0.8, label="IWP+RI" if seed == 0 else None)
        ax.plot(step, op, "--", color="C1", alpha=0.8, label="OP+RI" if seed == 0 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("best discretized test accuracy so far")
    ax.legend()
    save(fig, "convergence")


# 4. depth scaling ----------------------------------------------------------------------------

def depth(args):
    data = digits()
    width, steps = args.width or 1000, args.steps or 1000
    variants = ("IWP+RI", "OP+RI", "OP+gauss")
    rows, res = [], {}
    for d in args.depths:
        for v in variants:
            accs = []
            for seed in range(args.seeds):
                h = train(v, data, width, d, steps, seed, steps)
                accs.append((h["test_accuracy_relaxed"][-1], h["test_accuracy_discrete"][-1]))
            rel, dis = np.mean(accs, axis=0)
            res[(d, v)] = dis
            rows.append([d, v, f"{rel:.3f}", f"{dis:.3f}", f"{rel - dis:+.3f}"])
    write_table("depth", f"Depth scaling on digits: width {width}, {steps} steps, batch 100, "
                f"lr 0.01, mean of {args.seeds} seed(s)",
                ["layers", "variant", "test relaxed", "test discretized", "gap"], rows,
                ["paper (CIFAR-100, width 128k, 250k steps): IWP+RI holds with depth, "
                 "OP+RI plateaus/degrades, OP+gauss fails deep"])
    fig, (ax,) = figure()
    for v in variants:
        ax.plot(args.depths, [res[(d, v)] for d in args.depths], "o-", label=v)
    ax.set_xscale("log")
    ax.set_xticks(args.depths, [str(d) for d in args.depths])
    ax.set_xlabel("layers")
    ax.set_ylabel("discretized test accuracy")
    ax.legend()
    save(fig, "depth")


# 5. gradient norms at init -------------------------------------------------------------------

def gradnorm(args):
    from pylgn import plots
    xtr, ytr, _, _ = digits()
    layers_n, width = args.depth or 40, args.width or 1000
    diags = {}
    for v in VARIANTS:
        model = make_model(v, xtr.shape[1], width, layers_n, dtype=np.float64)
        diags[v] = diagnostics.collect(model, xtr[:100], ytr[:100])
    rows = []
    for v, d in diags.items():
        p = [l["param_grad_norm"] for l in d["layers"][:-1]]
        rows.append([v, *(f"{p[i]:.1e}" for i in (0, len(p) // 4, len(p) // 2, len(p) - 1)),
                     f"{d['layers'][0]['input_grad_norm']:.1e}"])
    write_table("gradnorm", f"Parameter-gradient norm per layer at init: {layers_n} layers x "
                f"{width} gates, float64, one digits batch of 100",
                ["variant", "layer 0", f"layer {layers_n // 4}", f"layer {layers_n // 2}",
                 f"layer {layers_n - 1}", "norm of dL/d(model input)"], rows,
                ["paper (40 layers, CIFAR-100): OP+gauss ~1e-34 at the input side, "
                 "IWP+gauss ~1e-16, IWP+RI and OP+RI 1e-8..1e-5 with IWP+RI higher",
                 "gauss: OP logits N(0, 1); IWP W ~ N(0, 0.25) (the authors' code) or N(0, 1) "
                 "(s=1, paper Fig. 13a)"])
    path = os.path.join(OUT, f"gradnorm{SUFFIX[0]}.png")
    plots.grad_norms(diags, path, key="param_grad_norm",
                     title=f"parameter-gradient norm at init, {layers_n} x {width}")
    print(f"wrote {path}")


# ---------------------------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment", choices=["memory", "timing", "convergence", "depth", "gradnorm",
                                          "_rss"])
    p.add_argument("--threads", type=int, default=1,
                   help="numba threads (default 1: on a machine shared with other jobs, parallel "
                        "kernels on oversubscribed cores run several times slower)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--depth", type=int, default=None)
    p.add_argument("--depths", type=int, nargs="+", default=[4, 12, 40])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--suffix", default="", help="appended to the output file names")
    p.add_argument("--variant", default="IWP+RI", choices=list(VARIANTS))   # _rss only
    p.add_argument("--batch", type=int, default=100)                         # _rss only
    p.add_argument("--in-dim", type=int, default=192)                        # _rss only
    args = p.parse_args()
    SUFFIX[0] = args.suffix
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    if args.seeds is None:
        args.seeds = 3 if args.experiment == "convergence" else 1
    if args.experiment == "_rss":
        return rss_child(args)
    t0 = time.perf_counter()
    globals()[args.experiment](args)
    print(f"{args.experiment}: {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
