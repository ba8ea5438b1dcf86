"""Learned wiring on full MNIST: the variants side by side at equal gates and steps, and the goals.

    python bench/wiring.py variants [--scale 1]   # random vs learned (ste / softmax, C = 4, 8, 16,
                                                  # all layers vs the first), arity 6, 4 x 2000
    python bench/wiring.py goals                  # the issue's goal runs (longer)
    python bench/wiring.py table                  # rewrite the RESULTS.md section only

Every run is one ``pylgn train`` command (bench/mnist.py's ``train``: checkpointed under
runs/mnist-bench/<name>/ and resumed when started again); the table reads their histories.
Data: data/mnist.h5 (``python data_scripts/prepare_mnist.py --source ../shared/data/mnist``).
"""
import argparse
import os
import sys
import time

import mnist
from sections import replace_section

BEGIN, END = "<!-- wiring:begin -->", "<!-- wiring:end -->"
LUT6 = ["--arity=6", "--layers=4", "--width=2000", "--tau=6", "--lr=0.01"]


def runs(group):
    """{name: (flags, steps, what)}; every flag not given comes from the 28x28 recipe."""
    if group == "variants":
        out = {"wiring6-random": (LUT6, 6000, "random wiring")}
        for c in (4, 8, 16):
            out[f"wiring6-ste-c{c}"] = (LUT6 + ["--connections=learned", f"--candidates={c}"],
                                        6000, f"learned, straight-through, C = {c}, all layers")
        out["wiring6-softmax-c8"] = (LUT6 + ["--connections=learned", "--candidates=8",
                                             "--choice=softmax"], 6000,
                                     "learned, softmax mixture, C = 8, all layers")
        out["wiring6-ste-c16-first"] = (LUT6 + ["--connections=learned", "--candidates=16",
                                                "--learned-layers=first"], 6000,
                                        "learned, straight-through, C = 16, first layer only")
        out["wiring6-ste-c32"] = (LUT6 + ["--connections=learned", "--candidates=32"], 6000,
                                  "learned, straight-through, C = 32, all layers")
        out["wiring6-ste-c16-t4"] = (LUT6 + ["--connections=learned", "--candidates=16",
                                             "--thresholds=4"], 6000,
                                     "learned, straight-through, C = 16, 4 thresholds")
        out["wiring6-ste-c16-last500"] = (LUT6 + ["--connections=learned", "--candidates=16",
                                                  "--last-width=500"], 6000,
                                          "learned, straight-through, C = 16, last layer 500")
        return out
    if group == "goals":
        return {"goal-lut6-8k-learned": (LUT6 + ["--connections=learned", "--candidates=16"],
                                         30000, "arity 6, 8K gates, learned C = 16")}
    raise ValueError(group)


def _encoding(name):
    """", learned thresholds" when the run's checkpoint says so (the 28x28 recipe's default
    since learned thresholds reached the exports; the first variants ran before that)."""
    path = os.path.join(mnist.RUNS, name, "checkpoint.h5")
    if not os.path.exists(path):
        return ""
    import pylgn
    settings = pylgn.load(path).meta.get("settings", {})
    return ", learned thresholds" if settings.get("learn_thresholds") else ", fixed thresholds"


def table(commands, args):
    lines = [BEGIN, "## Learned wiring on MNIST (issue: learned connections)", "",
             f"Written {time.strftime('%Y-%m-%d')} by `python bench/wiring.py`; threads "
             f"{args.threads}; load average {os.getloadavg()[0]:.1f} when written (the machine "
             f"was shared with other jobs, so wall times overstate an idle run; compare them "
             f"within this table only). Discretized = the circuit's accuracy on the 10,000 test "
             f"images at the final step.", "",
             "| run | wiring | steps | wall time | discretized (final) | relaxed | gap | best |",
             "|---|---|---|---|---|---|---|---|"]
    for name, (what, cmd) in sorted(commands.items()):
        s = mnist.summary(name)
        if s is None:
            continue
        what = what + _encoding(name)
        lines.append(f"| {name} | {what} | {s['steps']} | {s['seconds'] / 60:.1f} min | "
                     f"{100 * s['discrete']:.2f} % | {100 * s['relaxed']:.2f} % | "
                     f"{100 * s['gap']:+.2f} | {100 * s['best']:.2f} % |")
    lines += ["", "Commands (each resumable):", ""]
    lines += [f"- {name}: `{' '.join(cmd)}`" for name, (_, cmd) in sorted(commands.items())]
    lines.append(END)
    replace_section("\n".join(lines), BEGIN, END)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("group", choices=("variants", "goals", "table"))
    p.add_argument("--only", nargs="+", help="run only these names of the group")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every run's steps")
    p.add_argument("--eval-every", type=int, default=2000)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--data-dir", default=os.path.join(mnist.ROOT, "data"))
    args = p.parse_args(argv)
    commands = {}
    for group in ("variants", "goals"):
        for name, (flags, steps, what) in runs(group).items():
            steps = max(1, int(steps * args.scale))
            if group == args.group and (not args.only or name in args.only):
                commands[name] = (what, mnist.train(name, flags, steps, args))
                table(commands, args)
            elif mnist.summary(name):
                commands[name] = (what, ["pylgn", "train", "--dataset=mnist", *flags,
                                         f"--steps={steps}"])
    table(commands, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
