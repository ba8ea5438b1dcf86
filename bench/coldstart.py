"""Cold start: what numba compiles, and how long, on the first `pylgn train` of a fresh install.

Each case runs ``pylgn train`` twice in fresh processes sharing one new, empty NUMBA_CACHE_DIR:
the first run compiles (cold), the second loads numba's on-disk cache (warm). The first-run
overhead is cold minus warm (wall and CPU time of the whole process, import included). The
cold run also records numba's compile events (``numba.core.event``, "numba:compile"): one row
per compiled function and signature, with its own time (nested compilations subtracted) and
its total. A third run on the same cache is checked to compile nothing.

    python bench/coldstart.py                      # digits defaults, MNIST recipe, arity 6, conv
    python bench/coldstart.py --cases digits arity6 --steps 20 --kernels 12

The MNIST case reads data/mnist.h5, preparing it first from ../shared/data/mnist (or
$PYLGN_MNIST_SOURCE) when missing; it is skipped, with a note, when neither exists.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "data")
MNIST_SOURCE = os.environ.get("PYLGN_MNIST_SOURCE") or os.path.join(ROOT, "..", "shared", "data",
                                                                     "mnist")
#: ``pylgn train`` arguments per case (--steps, --out and --no-progress are added)
CASES = {
    "digits": [],
    "mnist": ["--dataset", "mnist", "--data-dir", DATA],
    "arity6": ["--arity", "6"],
    "conv": ["--arch", "cdlgn-digits"],
}


class _Compiles:
    """numba:compile listener: per (function, signature) its own and total seconds."""

    def __init__(self):
        self.rows, self._local = [], threading.local()

    def on_start(self, event):
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        stack.append([time.perf_counter(), 0.0])

    def on_end(self, event):
        t0, nested = self._local.stack.pop()
        total = time.perf_counter() - t0
        if self._local.stack:
            self._local.stack[-1][1] += total
        d = event.data["dispatcher"].py_func
        self.rows.append(dict(name=f"{d.__module__}.{d.__qualname__}",
                              args=str(event.data["args"]), own=total - nested, total=total))


def child(case, steps, out):
    """One `pylgn train` run in this process; prints a JSON line (times, compile rows)."""
    from numba.core import event
    from numba.core.event import Listener

    rec = _Compiles()
    listener = type("L", (Listener,), dict(on_start=lambda s, e: rec.on_start(e),
                                           on_end=lambda s, e: rec.on_end(e)))()
    event.register("numba:compile", listener)
    from pylgn.cli import main
    argv = ["train", *CASES[case], "--steps", str(steps), "--out", out, "--no-progress"]
    with open(os.devnull, "w") as null:
        stdout, sys.stdout = sys.stdout, null
        try:
            status = main(argv)
        finally:
            sys.stdout = stdout
    if status:
        raise SystemExit(f"pylgn {' '.join(argv)} exited with {status}")
    print(json.dumps(dict(compiles=rec.rows)))


def run_once(case, steps, cache, work):
    """(wall s, CPU s of the child, its compile rows) of one fresh-process run on ``cache``."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    out = tempfile.mkdtemp(dir=work)
    t0 = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([sys.executable, __file__, "--child", case, "--steps", str(steps),
                        "--out", os.path.join(out, "run")], env=env, cwd=ROOT,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode:
        raise SystemExit(f"{case}: child failed\n{p.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rows = json.loads(p.stdout.strip().splitlines()[-1])["compiles"]
    return wall, cpu, rows


def ensure_mnist():
    """True when data/mnist.h5 exists (prepared from MNIST_SOURCE if needed)."""
    if os.path.exists(os.path.join(DATA, "mnist.h5")):
        return True
    if not os.path.exists(os.path.join(MNIST_SOURCE, "t10k-labels-idx1-ubyte.gz")):
        return False
    subprocess.run([sys.executable, os.path.join(ROOT, "data_scripts", "prepare_mnist.py"),
                    "--source", MNIST_SOURCE, "--out", DATA], check=True)
    return True


def report(case, cold, warm, again, kernels):
    """Printed lines (markdown) for one case."""
    rows = sorted(cold[2], key=lambda r: -r["own"])
    own = sum(r["own"] for r in rows)
    lines = [f"### {case}: `pylgn train {' '.join(CASES[case])}`",
             f"cold {cold[0]:.1f} s wall / {cold[1]:.1f} s CPU, warm {warm[0]:.1f} s / "
             f"{warm[1]:.1f} s: first-run overhead {cold[0] - warm[0]:.1f} s wall, "
             f"{cold[1] - warm[1]:.1f} s CPU; {len(rows)} compilations, {own:.1f} s in numba; "
             f"warm runs compiled {len(warm[2])} and {len(again[2])} functions",
             "", "| function | signature | own s | total s |", "|---|---|---|---|"]
    for r in rows[:kernels]:
        args = r["args"] if len(r["args"]) < 90 else r["args"][:87] + "..."
        lines.append(f"| `{r['name']}` | `{args}` | {r['own']:.2f} | {r['total']:.2f} |")
    if warm[2] or again[2]:
        lines.append("warm runs compiled: " + ", ".join(sorted({r["name"] for r in warm[2] + again[2]})))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--kernels", type=int, default=15, help="compile rows shown per case")
    ap.add_argument("--child", choices=sorted(CASES), help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child, args.steps, args.out)
    print(f"# coldstart {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs, steps {args.steps}")
    with tempfile.TemporaryDirectory() as work:
        for case in args.cases:
            if case == "mnist" and not ensure_mnist():
                print(f"### mnist: skipped (no data/mnist.h5 and no MNIST at {MNIST_SOURCE})")
                continue
            cache = tempfile.mkdtemp(dir=work)
            runs = [run_once(case, args.steps, cache, work) for _ in range(3)]
            print(report(case, *runs, args.kernels), flush=True)
            print(f"load {os.getloadavg()[0]:.2f}\n", flush=True)


if __name__ == "__main__":
    main()
