"""The discretization gap: Gumbel-noise training and learnable thresholds against the baseline.

    python bench/gap.py [--seeds 0 1 2] [--mnist-steps 6000] [--skip-mnist]

Every run is one in-process ``pylgn train`` (the CLI, so the recipe of the data applies), with
evaluation every 250 steps (digits) or 1,000 steps (MNIST). Reported per setting: the relaxed and
discretized test accuracy at the last step, their gap, and the first evaluated step whose
discretized accuracy reaches a fixed target. Writes bench/out/gap.json and the "Discretization
gap" section of bench/RESULTS.md.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

from sections import replace_section

HERE = os.path.dirname(os.path.abspath(__file__))
BEGIN, END = "<!-- gap:begin -->", "<!-- gap:end -->"
VARIANTS = {"baseline": [], "gumbel T=1": ["--gumbel", "1.0"],
            "learned thresholds": ["--learn-thresholds"]}
#: (name, flags, steps, eval every, target discretized accuracy, variants)
MODELS = [
    ("digits 4 x 2000", [], 3000, 250, 0.95, tuple(VARIANTS)),
    ("digits 24 x 1000 (deep)", ["--layers", "24", "--width", "1000"], 2000, 250, 0.9,
     ("baseline", "gumbel T=1")),
    ("digits cdlgn-digits (conv)", ["--arch", "cdlgn-digits", "--tau", "5", "--lr", "0.05"], 2000,
     250, 0.9, ("baseline", "gumbel T=1")),
]


def run(flags, steps, every, seed, data_dir):
    from pylgn.cli import main
    with tempfile.TemporaryDirectory() as out:
        argv = ["train", *flags, "--steps", str(steps), "--eval-every", str(every), "--seed",
                str(seed), "--out", out, "--no-progress"]
        if data_dir:
            argv += ["--data-dir", data_dir]
        t = time.perf_counter()
        if main(argv) != 0:
            raise RuntimeError(f"pylgn train {' '.join(argv)} failed")
        with open(os.path.join(out, "history.json")) as f:
            h = json.load(f)
    h["wall"] = time.perf_counter() - t
    return h


def first_step(h, target):
    return next((s for s, a in zip(h["step"], h["test_accuracy_discrete"]) if a >= target), None)


def rows_for(name, flags, steps, every, target, variants, seeds, data_dir, results):
    for v in variants:
        hs = [run(flags + VARIANTS[v], steps, every, s, data_dir) for s in seeds]
        d = np.array([h["test_accuracy_discrete"][-1] for h in hs]) * 100
        r = np.array([h["test_accuracy_relaxed"][-1] for h in hs]) * 100
        reach = [first_step(h, target) for h in hs]
        results.append(dict(model=name, variant=v, steps=steps, seeds=list(seeds),
                            discrete=d.tolist(), relaxed=r.tolist(), reach=reach, target=target,
                            wall=[h["wall"] for h in hs]))
        print(f"{name} / {v}: discrete {d.mean():.2f} relaxed {r.mean():.2f} reach {reach}",
              flush=True)


def table(results, argv):
    lines = [BEGIN, f"## Discretization gap: Gumbel noise and learnable thresholds "
             f"(`bench/gap.py`), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", "",
             f"Command: `python bench/gap.py {' '.join(argv)}`; machine: 2-core AMD EPYC, "
             f"load average {os.getloadavg()[0]:.1f} at the end (other jobs ran beside it). "
             "Accuracies are the test set's at the last step, mean +- std over seeds; gap = "
             "relaxed - discretized; 'reaches' = first evaluated step with the discretized "
             "accuracy at the target, per seed (- = never).", "",
             "| model | variant | seeds | discretized % | relaxed % | gap (points) | reaches target at |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        d, rel = np.array(r["discrete"]), np.array(r["relaxed"])
        sd = f" +- {d.std(ddof=1):.2f}" if len(d) > 1 else ""
        reach = ", ".join("-" if s is None else str(s) for s in r["reach"])
        lines.append(f"| {r['model']} | {r['variant']} | {len(d)} | {d.mean():.2f}{sd} | "
                     f"{rel.mean():.2f} | {np.mean(rel - d):+.2f} | {100 * r['target']:.0f} %: "
                     f"{reach} |")
    lines.append(END)
    replace_section("\n".join(lines), BEGIN, END)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--mnist-steps", type=int, default=6000)
    p.add_argument("--skip-mnist", action="store_true")
    p.add_argument("--data-dir", default=os.path.join(os.path.dirname(HERE), "data"))
    args = p.parse_args(argv)
    results = []
    for name, flags, steps, every, target, variants in MODELS:
        rows_for(name, flags, steps, every, target, variants, args.seeds, None, results)
    if not args.skip_mnist:
        rows_for(f"MNIST recipe (6 x 8000, 20x20)", ["--dataset", "mnist"], args.mnist_steps,
                 1000, 0.97, tuple(VARIANTS), args.seeds[:1], args.data_dir, results)
    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "gap.json"), "w") as f:
        json.dump(results, f, indent=1)
    table(results, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
