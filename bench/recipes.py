"""Recipes that read the data: the 28x28 recipe's defaults against a grid of crops and threshold
counts, on MNIST and on 28 x 28 sets that break its shape (bench/variants.py).

    python bench/variants.py                  # data/mnist-{large,inverted,noisy,shifted}.h5
    python bench/recipes.py grid              # {crop 20, none} x {2, 4, 8 thresholds}, 10k steps
    python bench/recipes.py defaults          # the recipe's own choice (no --crop/--thresholds)
    python bench/recipes.py table             # rewrite the RESULTS.md section only

Every cell is one ``pylgn train`` run with the recipe's other settings given as flags (6 x 8,000
IWP gates, learned thresholds, tau 10, lr 0.02 cosine, batch 100), so the cells differ in the crop
and the thresholds only. Runs are checkpointed under runs/recipes/<data>-<cell>/ and resumed or
skipped when the script starts again; histories are copied to bench/out/recipes/.
"""
import argparse
import json
import os
import sys
import time

import mnist
from sections import replace_section

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RUNS = os.path.join(ROOT, "runs", "recipes")
OUT = os.path.join(HERE, "out", "recipes")
BEGIN, END = "<!-- recipes:begin -->", "<!-- recipes:end -->"
DATA = ("mnist", "large", "inverted", "noisy", "shifted")
#: The 28x28 recipe's settings other than the crop and thresholds, fixed in every cell.
FIXED = ["--layers=6", "--width=8000", "--tau=10", "--lr=0.02", "--lr-schedule=cosine",
         "--learn-thresholds", "--batch-size=100", "--seed=0"]
GRID = [(crop, n) for crop in (20, 0) for n in (2, 4, 8)]


def dataset(data, args):
    return "mnist" if data == "mnist" else os.path.join(
        os.path.relpath(args.data_dir, ROOT), f"mnist-{data}.h5")


def cell(crop, n):
    return f"crop{crop}-t{n}"


def train(name, data, flags, args):
    """Run (or resume, or skip when done) one ``pylgn train`` (bench/mnist.py's) of ``data``
    under runs/recipes/; keeps the settings it chose beside the history."""
    cmd = mnist.train(name, flags, args.steps, args, dataset=dataset(data, args), runs=RUNS,
                      out_dir=OUT)
    if not os.path.exists(os.path.join(OUT, f"{name}.meta.json")):
        _save_choice(name)
    return cmd


def _save_choice(name):
    """The settings the run trained with (crop, thresholds, tau, and the recipe's reasons when
    it chose them), kept beside the history."""
    ckpt = os.path.join(RUNS, name, "checkpoint.h5")
    if os.path.exists(ckpt):
        sys.path.insert(0, ROOT)
        import pylgn
        meta = pylgn.load(ckpt).meta
        keep = dict(settings=meta.get("settings", {}), recipe=meta.get("recipe"))
        with open(os.path.join(OUT, f"{name}.meta.json"), "w") as f:
            json.dump(keep, f, indent=1, default=str)


def history(name):
    return mnist._history(name, RUNS, OUT)


def choice(name):
    path = os.path.join(OUT, f"{name}.meta.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return None


def final(name, steps=10000):
    """The run's last evaluation, once it has reached ``steps`` (None before)."""
    h = history(name)
    if not h or not h["step"] or h["step"][-1] < steps:
        return None
    return dict(discrete=h["test_accuracy_discrete"][-1], steps=h["step"][-1],
                seconds=h["seconds"][-1])


#: The grid's fixed flags as the settings a run stores.
SAME = dict(layers=6, width=8000, tau=10.0, lr=0.02, lr_schedule="cosine", learn_thresholds=True,
            batch_size=100, seed=0)


def _as_cell(data, crop, n):
    """A defaults run (of the current rules, or of the first thresholds rule) as grid cell
    (crop, n) when it chose that cell with the grid's other settings (then the two commands
    train the same network step for step)."""
    for run in (f"{data}-defaults", f"{data}-defaults-rule1"):
        d, ch = final(run), choice(run)
        if not d or not ch:
            continue
        s = ch["settings"]
        if (s.get("crop") or 0, s.get("thresholds")) != (crop, n):
            continue
        if any(s.get(k) != v for k, v in SAME.items()):
            continue
        return dict(d, same=True)
    return None


def rule_choice(data, args):
    """(crop or 0, thresholds) that the current rules read from dataset ``data``."""
    sys.path.insert(0, ROOT)
    from pylgn.data import load_dataset
    from pylgn.recipes import read_data, recipe
    ds = (load_dataset(os.path.join(ROOT, dataset(data, args)), args.data_dir)
          if data != "mnist" else load_dataset("mnist", args.data_dir))
    name, cfg = recipe(ds.shape, len(ds.y_train))
    read_data(cfg, ds, set(), name)
    return cfg["crop"] or 0, cfg["thresholds"]


def runs(group, only):
    """{name: (data, flags)} of a group."""
    out = {}
    for data in only or DATA:
        if group == "grid" and data == "mnist":     # MNIST's own cell is its defaults run
            continue
        if group == "grid":
            for crop, n in GRID:
                out[f"{data}-{cell(crop, n)}"] = (data, FIXED + [f"--crop={crop}",
                                                                  f"--thresholds={n}"])
        elif group == "defaults":
            out[f"{data}-defaults"] = (data, [])
        elif group == "tau" and data == "mnist":
            # the tau rule off the recipe's width: 6 x 2,000 gates (200 per class) get tau
            # 10 x sqrt(200 / 800) = 5; against the unscaled 10 and a lower 3.5
            for tau in (None, 10, 3.5):
                flag = [] if tau is None else [f"--tau={tau}"]
                out[f"mnist-w2000-tau{tau or 'rule'}"] = (data, ["--width=2000"] + flag)
    return out


def table(args):
    lines = [BEGIN, "## Recipes that read the data (issue: defaults for any 28 x 28 dataset)", "",
             f"Written {time.strftime('%Y-%m-%d')} by `python bench/recipes.py` (load average "
             f"{os.getloadavg()[0]:.1f} when written). Discretized test accuracy at "
             f"{args.steps} steps, one seed, on MNIST (its own test set) and on four 28 x 28 sets "
             f"made from MNIST's training images by `bench/variants.py` (train: the first "
             f"50,000, test: the last 10,000). Grid cells: 6 x 8,000 IWP gates, learned "
             f"thresholds, tau 10, lr 0.02 cosine, with the crop and threshold count of the "
             f"column. *defaults*: `pylgn train --dataset D --steps {args.steps}` with no other "
             f"flag (the recipe's choice in brackets; *the cell of*: no defaults run of the "
             f"current rules yet, so the grid cell they choose, which is the same command "
             f"step for step); (d): a defaults run is that cell (it chose that crop and count, "
             f"and its other settings are the grid's).", "",
             "| data | " + " | ".join(f"crop {c or 'none'}, {n} thr." for c, n in GRID)
             + " | best cell | defaults | defaults - best |",
             "|---|" + "---|" * (len(GRID) + 3)]
    for data in DATA:
        accs = [final(f"{data}-{cell(c, n)}") or _as_cell(data, c, n) for c, n in GRID]
        d, ch = final(f"{data}-defaults"), choice(f"{data}-defaults")
        if not d and any(accs):                   # no defaults run of the current rules yet:
            rc = rule_choice(data, args)           # the grid cell they choose (the same run)
            if rc in GRID and accs[GRID.index(rc)]:
                d = accs[GRID.index(rc)]
                ch = dict(settings=dict(crop=rc[0], thresholds=rc[1]), cell=True)
        if not any(accs) and not d:
            continue
        row = [(f"{100 * a['discrete']:.2f} %" + (" (d)" if a.get("same") else "")) if a else ""
               for a in accs]
        done = [(a["discrete"], i) for i, a in enumerate(accs) if a] or [(float("nan"), 0)]
        best, bi = max(done)
        picked = ""
        if ch:
            s = ch["settings"]
            picked = (f" ({'the cell of ' if ch.get('cell') else ''}crop "
                      f"{s.get('crop') or 'none'}, {s.get('thresholds')} thr.)")
        dtxt = f"{100 * d['discrete']:.2f} %{picked}" if d else ""
        diff = f"{100 * (d['discrete'] - best):+.2f}" if d and best == best else ""
        besttxt = (f"{100 * best:.2f} % ({GRID[bi][0] or 'none'}, {GRID[bi][1]})"
                   if best == best else "")
        lines.append(f"| {data} | " + " | ".join(row) + f" | {besttxt} | {dtxt} | {diff} |")
    first = [(data, final(f"{data}-defaults-rule1"), choice(f"{data}-defaults-rule1"))
             for data in DATA]
    first = [(d, f, c) for d, f, c in first if f and c]
    if first:
        lines += ["", "The first thresholds rule (the fewest levels keeping >= 95 % of the *total* "
                  "pixel variance) chose more levels where the variance is not label signal: "
                  + "; ".join(f"{d}: {c['settings']['thresholds']} thresholds, "
                              f"{100 * f['discrete']:.2f} %" for d, f, c in first)
                  + ". The current rule counts the label-explained variance (>= 85 %) and "
                  "chooses 2 on every set here."]
    taus = [(n, final(n), choice(n)) for n in ("mnist-w2000-taurule", "mnist-w2000-tau10",
                                                "mnist-w2000-tau3.5")]
    if any(f for _, f, _ in taus):
        lines += ["", "**tau off the recipe's width** (`python bench/recipes.py tau`): MNIST, "
                  "`pylgn train --dataset mnist --width 2000 --steps 10000` (6 x 2,000 gates, "
                  "200 per class; crop and thresholds read as above):", "",
                  "| tau | discretized |", "|---|---|"]
        for n, f, ch in taus:
            if f:
                tau = ch["settings"]["tau"] if ch else "?"
                how = " (the rule: 10 x sqrt(200 / 800))" if n.endswith("rule") else ""
                lines.append(f"| {tau}{how} | {100 * f['discrete']:.2f} % |")
    lines += _tables_lines()
    lines += ["", "Commands (each resumable): `python bench/variants.py`, then "
              f"`python bench/recipes.py grid` and `python bench/recipes.py defaults`; a cell is "
              f"`pylgn train --dataset=data/mnist-<data>.h5 {' '.join(FIXED)} --crop=C "
              f"--thresholds=N --steps={args.steps}`.", END]
    replace_section("\n".join(lines), BEGIN, END)


# tables: the CSV recipe against the base settings ---------------------------------------------

TABLES = ("breast_cancer", "wine", "iris", "digits")


def table_fold(cfg, ds, threads):
    """Discretized test accuracy of one ``pylgn train`` run (the CLI's model, optimizer,
    schedule and encoding) with settings ``cfg`` on TableDataset ``ds``."""
    from functools import partial
    import numpy as np
    from pylgn.cli import _inputs, build_layers
    from pylgn.model import Sequential
    from pylgn.optim import Adam, scheduled_lr
    from pylgn.train import Trainer, evaluate
    model = Sequential(build_layers(cfg, ds.shape, ds.num_classes), seed=cfg["seed"])
    trainer = Trainer(model, Adam(model, lr=cfg["lr"], weight_decay=cfg["weight_decay"]),
                      batch_size=cfg["batch_size"], seed=cfg["seed"],
                      lr_schedule=partial(scheduled_lr, cfg["lr"], total=cfg["steps"],
                                          kind=cfg["lr_schedule"], warmup=cfg["warmup"]))
    trainer.fit(_inputs(ds, ds.x_train, cfg), np.asarray(ds.y_train), cfg["steps"],
                eval_every=cfg["steps"], progress=False)
    return evaluate(model, _inputs(ds, ds.x_test, cfg), np.asarray(ds.y_test))["discrete"]


def tables(args):
    """5-fold cross-validated accuracy (stratified, unshuffled: scikit-learn's cv=5, as
    bench/sklearn_tables.py) of the base settings and of the table recipe on scikit-learn's
    bundled tables; returns {table: {variant: (mean, std, seconds, settings)}}."""
    import numpy as np
    import sklearn.datasets
    from sklearn.model_selection import StratifiedKFold
    sys.path.insert(0, ROOT)
    from pylgn.data import TableDataset
    from pylgn.recipes import BASE, read_data, recipe
    out = {}
    for name in TABLES:
        X, y = getattr(sklearn.datasets, f"load_{name}")(return_X_y=True)
        classes = [str(c) for c in np.unique(y)]
        res = {}
        for variant in args.variants:
            accs, t0, shown = [], time.perf_counter(), None
            for tr, te in StratifiedKFold(5).split(X, y):
                ds = TableDataset(name, X[tr], y[tr], X[te], y[te], classes, 1,
                                  feature_names=[f"x{j}" for j in range(X.shape[1])])
                if variant == "base":          # the width rounded up to the classes (2000
                    cfg = dict(BASE)             # for 3 classes was refused before)
                    cfg["width"] = -(-cfg["width"] // len(classes)) * len(classes)
                else:
                    rname, cfg = recipe(ds.shape, len(tr))
                    read_data(cfg, ds, set(), rname)
                accs.append(table_fold(cfg, ds, args.threads))
                shown = shown or {k: cfg[k] for k in ("thresholds", "layers", "width", "tau",
                                                      "batch_size", "steps", "lr")}
            res[variant] = (float(np.mean(accs)), float(np.std(accs)),
                            (time.perf_counter() - t0) / 5, shown)
            print(f"{name:14s} {variant:7s} {100 * res[variant][0]:6.2f} % "
                  f"+- {100 * res[variant][1]:.2f}  {res[variant][2]:.1f} s/fold  {shown}",
                  flush=True)
        out[name] = res
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "tables.json")
    old = json.load(open(path)) if os.path.exists(path) else {}
    for name, res in out.items():
        old.setdefault(name, {}).update(res)
    with open(path, "w") as f:
        json.dump(old, f, indent=1)
    return old


def _tables_lines():
    path = os.path.join(OUT, "tables.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        res = json.load(f)
    lines = ["", "**Tables** (`python bench/recipes.py tables --threads 1`): 5-fold "
             "cross-validated discretized accuracy (stratified, unshuffled folds, as `bench/sklearn_tables.py`) "
             "of `pylgn train` on a CSV with the base settings it used before (3 thresholds, "
             "4 x 2,000 gates rounded up to the classes, tau 10, lr 0.01 constant, 3,000 steps) "
             "and with the table recipe (the settings it read in brackets); fit seconds per "
             "fold with 1 thread.", "",
             "| table | base | table recipe | recipe - base |", "|---|---|---|---|"]
    both = []
    for name in TABLES:
        r = res.get(name, {})
        if "base" not in r or "recipe" not in r:
            continue
        b, t = r["base"], r["recipe"]
        both.append((b[0], t[0]))
        sh = t[3]
        lines.append(f"| {name} | {100 * b[0]:.2f} +- {100 * b[1]:.2f} % ({b[2]:.1f} s) | "
                     f"{100 * t[0]:.2f} +- {100 * t[1]:.2f} % ({t[2]:.1f} s; {sh['thresholds']} "
                     f"thr., {sh['layers']} x {sh['width']}, tau {sh['tau']}, batch "
                     f"{sh['batch_size']}, {sh['steps']} steps) | {100 * (t[0] - b[0]):+.2f} |")
    if both:
        mb, mt = (sum(v) / len(both) for v in zip(*both))
        lines.append(f"| **mean** | {100 * mb:.2f} % | {100 * mt:.2f} % | {100 * (mt - mb):+.2f} |")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("group", choices=("grid", "defaults", "tau", "tables", "table"))
    p.add_argument("--only", nargs="+", choices=DATA, help="these datasets only")
    p.add_argument("--cells", nargs="+", help="these grid cells only (e.g. crop20-t2)")
    p.add_argument("--reverse", action="store_true", help="the runs in reverse order (a second "
                   "runner beside the first)")
    p.add_argument("--steps", type=int, default=10000)
    p.add_argument("--variants", nargs="+", default=["base", "recipe"], help="tables: which")
    p.add_argument("--eval-every", type=int, default=5000)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--data-dir", default=os.path.join(ROOT, "data"))
    args = p.parse_args(argv)
    if args.group == "tables":
        tables(args)
    elif args.group != "table":
        todo = list(runs(args.group, args.only).items())
        for name, (data, flags) in (todo[::-1] if args.reverse else todo):
            if args.cells and not any(name.endswith(c) for c in args.cells):
                continue
            crop, n = ((int(f.split("=")[1]) for f in flags[-2:]) if args.group == "grid"
                       else (None, None))
            if args.group == "grid" and _as_cell(data, crop, n):
                continue                                # the defaults run is this cell
            train(name, data, flags, args)
            table(args)
    table(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
