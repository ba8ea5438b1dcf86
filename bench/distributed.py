"""Data parallelism on this machine and on paper.

Measured: the training step (Trainer.train_step, random bits, IWP) of 1 process x THREADS numba
threads vs RANKS MPI ranks x 1 thread (``mpiexec`` from the venv, the ``mpi`` extra), with the
time each rank spends in the gradient all-reduce (including waiting for the slower rank) and a
bare all-reduce of the same buffer after a barrier (the transfer alone).

On paper: the all-reduce size (parameter count x 4 bytes, counted on models built here) of the
CIFAR-10 dense DLGN M (9,216 -> 4 x 128,000) for IWP and OP and of LogicTreeNet-G, and the time a
ring all-reduce takes, 2 (N - 1) / N x bytes / bandwidth, on 8 GPUs over NVLink 4 (~450 GB/s per
direction) and over 100 Gb/s between nodes.

    python bench/distributed.py                # both shapes, prints a table and JSON
    python bench/distributed.py --steps 5 --shapes small
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

SHAPES = {"small": dict(in_dim=400, layers=6, width=8000, batch=100),     # MNIST DLGN-small
          "large": dict(in_dim=784, layers=4, width=16000, batch=256)}
NVLINK_BPS, NETWORK_BPS = 450e9, 100e9 / 8


def build(shape, param="iwp"):
    import pylgn
    dims = [shape["in_dim"]] + [shape["width"]] * shape["layers"]
    layers = [pylgn.LogicLayer(a, b, param=param) for a, b in zip(dims, dims[1:])]
    return pylgn.Sequential(layers + [pylgn.GroupSum(10, 10.0)], seed=0)


def measure(shape, comm, steps, warmup=2):
    """Median step seconds, median all-reduce seconds inside a step, bare all-reduce seconds."""
    import pylgn
    model = build(shape)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=(4 * shape["batch"], shape["in_dim"])).astype(np.float32)
    y = rng.integers(0, 10, size=len(x))
    trainer = pylgn.Trainer(model, pylgn.Adam(model), batch_size=shape["batch"], comm=comm)
    inside, original = [], comm.allreduce_sum

    def timed(buf):
        t0 = time.perf_counter()
        out = original(buf)
        if buf.size > 2:
            inside.append(time.perf_counter() - t0)
        return out
    comm.allreduce_sum = timed
    step_s = []
    for i in range(warmup + steps):
        comm.barrier()
        t0 = time.perf_counter()
        trainer.train_step(x, y)
        step_s.append(time.perf_counter() - t0)
    comm.allreduce_sum = original
    bare = []
    for _ in range(5):
        comm.barrier()
        t0 = time.perf_counter()
        comm.allreduce_sum(model.grads)
        bare.append(time.perf_counter() - t0)
    return dict(step_s=float(np.median(step_s[warmup:])),
                allreduce_in_step_s=float(np.median(inside[warmup:])) if inside else 0.0,
                bare_allreduce_s=float(np.median(bare)) if comm.size > 1 else 0.0,
                params=int(model.params.size), ranks=comm.size)


def worker(args):
    """Under mpiexec: measure every shape, rank 0 prints one JSON line."""
    from pylgn.distributed import get_communicator
    comm = get_communicator("mpi")
    rows = {name: measure(SHAPES[name], comm, args.steps) for name in args.shapes}
    if comm.rank == 0:
        print("RESULT " + json.dumps(rows), flush=True)


def run_ranks(args):
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
               OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1")
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    cmd = [mpiexec, "-n", str(args.ranks), sys.executable, __file__, "--worker",
           "--steps", str(args.steps), "--shapes", *args.shapes]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(next(l for l in out.splitlines() if l.startswith("RESULT "))[7:])


def run_threads(args, threads):
    """1 process x ``threads`` numba threads, in a child so NUMBA_NUM_THREADS takes effect."""
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    code = (f"import sys, json; sys.argv = ['x']; sys.path.insert(0, {os.path.dirname(__file__)!r});"
            f"import distributed as d; from pylgn.distributed import Communicator;"
            f"print('RESULT ' + json.dumps({{n: d.measure(d.SHAPES[n], Communicator(), "
            f"{args.steps}) for n in {args.shapes!r}}}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(next(l for l in out.splitlines() if l.startswith("RESULT "))[7:])


def ring_seconds(nbytes, n, bandwidth):
    return 2 * (n - 1) / n * nbytes / bandwidth


def paper():
    """All-reduce bytes (float32 gradients) of the big models and the ring time on 8 GPUs."""
    import pylgn
    from pylgn.conv import build_arch
    rows = []
    for param in ("iwp", "op"):
        m = build(dict(in_dim=9216, layers=4, width=128000), param)
        rows.append(dict(model=f"CIFAR-10 DLGN M 9,216 -> 4 x 128,000 ({param.upper()})",
                         gates=m.num_gates, params=int(m.params.size)))
    # LogicTreeNet-G (61M gates): no configuration here; its conv kernels share parameters over
    # positions. Upper bound: every gate its own parameters. Estimate: cdlgn-m's measured
    # parameters per gate (same topology, smaller k) times 61M.
    cm = pylgn.Sequential(build_arch("cdlgn-m", in_channels=9, classes=10, in_size=(32, 32)))
    ratio = cm.params.size / cm.num_gates
    for param, per_gate in (("iwp", 4), ("op", 16)):
        rows.append(dict(model=f"LogicTreeNet-G 61M gates, every gate own params ({param.upper()})",
                         gates=61_000_000, params=61_000_000 * per_gate))
        rows.append(dict(model=f"LogicTreeNet-G 61M gates x cdlgn-m's {ratio:.3f} IWP params/gate"
                               f" ({param.upper()})",
                         gates=61_000_000, params=int(61_000_000 * ratio * per_gate / 4)))
    for r in rows:
        r["bytes"] = 4 * r["params"]
        r["nvlink_8gpu_s"] = ring_seconds(r["bytes"], 8, NVLINK_BPS)
        r["net_100gbit_8_s"] = ring_seconds(r["bytes"], 8, NETWORK_BPS)
    return dict(rows=rows, cdlgn_m=dict(gates=cm.num_gates, params=int(cm.params.size)))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8, help="timed steps after 2 warm-up steps")
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    one = run_threads(args, 1)
    threads = run_threads(args, args.threads)
    ranks = run_ranks(args)
    print(f"uptime before: {uptime}")
    print(f"uptime after:  {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print("| shape | params (all-reduce MB) | 1 proc x 1 thread: step ms | 1 proc x %d threads: "
          "step ms | %d ranks x 1 thread: step ms | all-reduce in step ms (share) | bare "
          "all-reduce ms |" % (args.threads, args.ranks))
    print("|---|---|---|---|---|---|---|")
    for name in args.shapes:
        t, r, s = threads[name], ranks[name], SHAPES[name]
        print(f"| {s['in_dim']} -> {s['layers']} x {s['width']:,}, batch {s['batch']} | "
              f"{r['params']:,} ({4 * r['params'] / 1e6:.2f}) | {1e3 * one[name]['step_s']:.1f} | "
              f"{1e3 * t['step_s']:.1f} | "
              f"{1e3 * r['step_s']:.1f} | {1e3 * r['allreduce_in_step_s']:.2f} "
              f"({100 * r['allreduce_in_step_s'] / r['step_s']:.1f} %) | "
              f"{1e3 * r['bare_allreduce_s']:.2f} |")
    est = paper()
    print("\n| model | gates | params | all-reduce MB | 8 GPUs NVLink 4 ms | 8 nodes 100 Gb/s ms |")
    print("|---|---|---|---|---|---|")
    for r in est["rows"]:
        print(f"| {r['model']} | {r['gates']:,} | {r['params']:,} | {r['bytes'] / 1e6:,.1f} | "
              f"{1e3 * r['nvlink_8gpu_s']:.3f} | {1e3 * r['net_100gbit_8_s']:.1f} |")
    print(f"(cdlgn-m here: {est['cdlgn_m']['gates']:,} gates, {est['cdlgn_m']['params']:,} params)")
    print("JSON " + json.dumps(dict(one_thread=one, threads=threads, ranks=ranks, paper=est,
                                    uptime=uptime)))


if __name__ == "__main__":
    main()
