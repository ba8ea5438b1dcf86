"""Trained MNIST networks on an FPGA, by Yosys: LUTs, logic levels and accuracy, beside published
LUT networks.

    python bench/fpga.py [--runs dense48k-s0 lut6-8k cdlgn-mnist] [--lut 6] [--target generic]
                         [--verify 64] [--timeout 3600]
    python bench/fpga.py --table        # rewrite the RESULTS.md section from bench/out/fpga.json

For each checkpoint that exists under runs/mnist-bench/<name>/ (written by bench/mnist.py; the
accuracy is its history.json's last discretized test accuracy): ``model.to_circuit()``,
``Circuit.simplify()``, pylgn.fpga's LUT Verilog (popcount + argmax in logic, combinational),
Yosys ``synth -flatten -lut 6``, then the mapped netlist simulated with Icarus on the first
``--verify`` MNIST test images against ``Circuit.predict``. Work files: runs/fpga-bench/<name>/.
One synthesis at a time (the machine is shared).
"""
import argparse
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RUNS = os.path.join(ROOT, "runs", "mnist-bench")
WORK = os.path.join(ROOT, "runs", "fpga-bench")
OUT = os.path.join(HERE, "out", "fpga.json")
RESULTS = os.path.join(HERE, "RESULTS.md")
BEGIN, END = "<!-- fpga:begin -->", "<!-- fpga:end -->"

#: Published FPGA LUT networks on MNIST, as recalled from the papers (NOT verified here: the search
#: tool returned the papers' abstracts, not their tables). (name, LUTs, latency, accuracy %).
PUBLISHED = [("DWN (Bacellar et al., ICML 2024), LUT6, xcvu9p", "~2.1K", "~9 ns", "97.8"),
             ("PolyLUT (Andronic & Constantinides, FPT 2023)", "~70K", "~16 ns", "96"),
             ("NeuraLUT (Andronic & Constantinides, FPL 2024)", "~55K", "~12 ns", "96")]


def accuracy(name):
    with open(os.path.join(RUNS, name, "history.json")) as f:
        h = json.load(f)
    return h["test_accuracy_discrete"][-1], h["step"][-1]


def verify(name, ckpt, circuit, rep, n):
    """Mapped netlist vs Circuit.predict on the first n MNIST test images; None when skipped."""
    import numpy as np
    from pylgn import fpga
    from pylgn.data import load_dataset
    if n <= 0 or ckpt.model.encoder is not None:
        return None
    ds = load_dataset("mnist", os.path.join(ROOT, "data"))
    x = ds.encode(ds.x_test[:n], ckpt.meta["thresholds"], ckpt.meta.get("crop") or None)
    x = x.astype(bool)
    out = fpga.simulate([rep["netlist"]] + fpga.simulation_models(rep["target"]), circuit, x,
                        rep["latency_cycles"], timeout=7200)
    same = int((out["cls"] == circuit.predict(x)).sum())
    print(f"  {name}: mapped netlist vs Circuit.predict on {n} test images: {same}/{n} equal",
          flush=True)
    return dict(samples=n, equal=same, labels_correct=int((out["cls"] == ds.y_test[:n]).sum()))


def run(args):
    import pylgn
    from pylgn import fpga
    results = _load()
    for name in args.runs:
        path = os.path.join(RUNS, name, "checkpoint.h5")
        if not os.path.exists(path):
            print(f"{name}: no checkpoint at {path}; skipped", flush=True)
            continue
        acc, step = accuracy(name)
        ckpt = pylgn.load(path)
        circuit = ckpt.model.to_circuit()
        t0 = time.perf_counter()
        print(f"{name}: {circuit} -> yosys ({args.target}, LUT{args.lut}) ...", flush=True)
        rep = fpga.synthesize(circuit, lut=args.lut, target=args.target, timeout=args.timeout,
                              workdir=os.path.join(WORK, name),
                              primitives=not args.no_primitives)
        rep.update(name=name, accuracy=acc, step=step, outputs=circuit.num_outputs, arities=sorted(rep["gates_by_arity"]),
                   verify=verify(name, ckpt, circuit.simplify(), rep, args.verify),
                   total_seconds=round(time.perf_counter() - t0, 1))
        rep.pop("cells")
        simple = circuit.simplify()                # the gates alone: no popcount, no argmax
        bare = pylgn.Circuit.from_graph(simple.in_dim, simple.arity, simple.src, simple.codes,
                                        simple.outputs)
        g = fpga.synthesize(bare, lut=args.lut, target=args.target, timeout=args.timeout,
                            simplify=False, primitives=not args.no_primitives)
        rep.update(gates_only=dict(luts=g["luts"], logic_levels=g["logic_levels"],
                                   seconds=g["seconds"]), primitives=not args.no_primitives)
        print(f"  {rep['luts']} LUTs {rep['luts_by_size']}, {rep['logic_levels']} levels, "
              f"{rep['seconds']} s", flush=True)
        results[f"{name}/{args.target}/lut{args.lut}"] = rep
        _save(results)
    write_table(results)


def _load():
    if os.path.exists(OUT):
        with open(OUT) as f:
            return json.load(f)
    return {}


def _save(results):
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(results, f, indent=1)


def table_lines(results):
    lines = [BEGIN, "## FPGA: Yosys LUT counts and logic levels of the trained MNIST networks "
             "(`bench/fpga.py`)", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared); Yosys 0.23 "
             "(Debian), Icarus Verilog. Command: `python bench/fpga.py` (defaults: generic "
             "`synth -flatten -lut 6`, combinational, `--verify 64`). Each network is "
             "`model.to_circuit().simplify()`, emitted by `pylgn.fpga.to_lut_verilog` (3..6-input "
             "gates as LUT primitives with their INIT where the row says *prim.* (kept one to one "
             "by Yosys), else as truth-table expressions; 2-input gates as expressions for ABC to "
             "pack, the "
             "GroupSum popcount as an adder tree and the argmax as a comparator tournament, all "
             "inside the design: the output is the class index). *Logic levels* = LUTs on the "
             "longest input-to-output path of the mapped netlist (popcount and argmax included). "
             "*Gates alone* = the same gates synthesized without the popcount and argmax (outputs = "
             "the last layer's bits). *Equal* = the Yosys netlist simulated with Icarus gives `Circuit.predict`'s class on "
             "that many MNIST test images.", "",
             "| network | step | test acc. (discretized) | gates trained -> simplified (arity) | "
             "gate depth | LUTs (by inputs) | logic levels | gates alone: LUTs / levels | "
             "Yosys s | netlist = predict |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in results.items():
        sizes = ", ".join(f"{c} x {n}" for n, c in sorted(r["luts_by_size"].items(),
                                                          key=lambda kv: -int(kv[0])))
        v = r.get("verify")
        ver = f"{v['equal']}/{v['samples']}" if v else "not run"
        key = key + (" (prim.)" if r.get("primitives") else "")
        lines.append(f"| {key} | {r['step']} | {100 * r['accuracy']:.2f} % | "
                     f"{r['gates_trained']} -> {r['gates']} ({', '.join(map(str, r['arities']))}) "
                     f"| {r['depth']} | **{r['luts']}** ({sizes}) | {r['logic_levels']} | "
                     f"{_bare(r)} | {r['seconds']} | {ver} |")
    lines += [""] + reading(results)
    lines += ["", "Published FPGA LUT networks on MNIST (figures **as recalled, unverified**: "
              "the search tool here returned only the papers' abstracts; their devices, "
              "pipelining and accuracy protocols differ from this table's):", "",
              "| network | LUTs | latency | accuracy % |", "|---|---|---|---|"]
    lines += [f"| {n} | {l} | {t} | {a} |" for n, l, t, a in PUBLISHED]
    return lines + ["", END]


def reading(results):
    """Sentences computed from the rows: the popcount/argmax share, arity 6 vs arity 2."""
    out = []
    for key, r in results.items():
        g = r.get("gates_only")
        if g:
            out.append(f"- {key}: the gates alone map to {g['luts']} LUTs in {g['logic_levels']} "
                       f"levels; the GroupSum popcount of {r.get('outputs', 'the')} outputs and "
                       f"the argmax add {r['luts'] - g['luts']} LUTs "
                       f"({100 * (r['luts'] - g['luts']) / r['luts']:.0f} % of the design) and "
                       f"{r['logic_levels'] - g['logic_levels']} levels.")
    dense = [r for k, r in results.items() if k.startswith("dense48k")]
    lut6 = [r for k, r in results.items() if k.startswith("lut6-8k")]
    if dense and lut6:
        d, l6 = dense[0], lut6[0]
        out.append(f"- Arity 6 vs arity 2: lut6-8k needs {l6['luts']} LUTs at "
                   f"{100 * l6['accuracy']:.2f} %, dense48k {d['luts']} at "
                   f"{100 * d['accuracy']:.2f} %: {d['luts'] / l6['luts']:.1f}x "
                   f"{'fewer' if l6['luts'] < d['luts'] else 'more'} LUTs for the arity-6 net.")
    else:
        missing = "lut6-8k" if not lut6 else "dense48k-s0"
        out.append(f"- Arity 6 vs arity 2: not measured yet: runs/mnist-bench/{missing} had no "
                   f"checkpoint when this ran (`python bench/fpga.py --runs {missing}` adds it).")
    return out


def _bare(r):
    g = r.get("gates_only")
    return f"{g['luts']} / {g['logic_levels']}" if g else "not run"


def write_table(results):
    text = "\n".join(table_lines(results)) + "\n"
    with open(RESULTS) as f:                     # re-read right before editing: others edit it too
        doc = f.read()
    if BEGIN in doc and END in doc:
        doc = doc[:doc.index(BEGIN)] + text.rstrip("\n") + doc[doc.index(END) + len(END):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    with open(RESULTS, "w") as f:
        f.write(doc)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", nargs="+", default=["dense48k-s0", "lut6-8k", "cdlgn-mnist"])
    p.add_argument("--lut", type=int, choices=(4, 6), default=6)
    p.add_argument("--target", choices=("generic", "xilinx"), default="generic")
    p.add_argument("--verify", type=int, default=64, help="MNIST test images to simulate")
    p.add_argument("--timeout", type=int, default=3600, help="seconds per Yosys run")
    p.add_argument("--no-primitives", action="store_true",
                   help="emit 3..6-input gates as truth-table expressions for Yosys to re-map "
                        "(the default instantiates them as LUT primitives, kept one to one)")
    p.add_argument("--table", action="store_true", help="only rewrite the RESULTS.md section")
    args = p.parse_args(argv)
    if args.table:
        write_table(_load())
    else:
        run(args)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
