"""The CUDA kernels and the device="cuda" path, checked without a GPU under numba's CUDA simulator.

NUMBA_ENABLE_CUDASIM=1 must be set before numba.cuda is first imported, and the other test modules
run the CPU kernels in this pytest process, so the simulated checks run in a child process: this
file executed as a script with the variable set. The child prints one JSON object of measured
errors (NaN when a kernel left an output unwritten: the outputs start as NaN) and each test here
asserts on its part. The simulator runs each CUDA thread as a Python thread, so the sizes stay
small; ragged sizes (batch and width not multiples of a block) are the point. The kernels keep
their real block shape (128 threads, a warp per row, shuffle reductions) under the simulator, with
the grid capped at 2 blocks so that the grid-stride loops run too.
"""
import atexit
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL = 1e-5
#: float64 kernels must agree to float64 rounding: a kernel computing in float32 misses it by 1e-8
TOL64 = 1e-12
# (arity, in_dim, gates, batch): every arity 1..6; batch 1, 33, 40, 65, 2100 (a gate's column
# split in two parts: gate_backward_table's two-stage reduction); width 1, 2, 10, 13, 31, 67 (the
# simulated grid has 8 warps: wider layers run the grid-stride loops)
KERNEL_CASES = [(1, 7, 31, 65), (2, 40, 67, 33), (2, 3, 1, 1), (3, 50, 31, 65), (5, 9, 10, 40),
                (6, 20, 13, 33), (6, 8, 1, 1), (2, 300, 67, 1), (4, 6, 2, 2100)]
FLOAT64_CASES = [(3, 30, 31, 33)]


# child: runs under the simulator -----------------------------------------------------------

def rel_err(got, want):
    """max |got - want| / max |want| (NaN anywhere in ``got`` gives NaN)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if np.isnan(got).any():
        return float("nan")
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def worst(*errs):
    """The largest error; NaN if any is NaN."""
    return float(np.max(errs))


def numpy_forward(x, conn, table):
    """y[g, s] = sum_r table[g, r] prod_k (x_k if b_k(r) else 1 - x_k), b_k(r) = bit n-1-k of r."""
    n = conn.shape[0]
    y = np.zeros((conn.shape[1], x.shape[1]))
    for r in range(2 ** n):
        term = np.ones_like(y)
        for k in range(n):
            xk = x[conn[k]].astype(np.float64)
            term *= xk if (r >> (n - 1 - k)) & 1 else 1.0 - xk
        y += table[:, r][:, None] * term
    return y


def kernel_errors(arity, in_dim, gates, batch, dtype, rng):
    """Each gate kernel on the simulator vs its CPU twin (and the forward vs numpy) on one case."""
    from pylgn.kernels import cpu, cuda
    from pylgn.wiring import reverse_index
    x = rng.random((in_dim, batch)).astype(dtype)
    x[0, 0] = 0.5                                           # the discrete threshold itself
    conn = rng.integers(0, in_dim, (arity, gates)).astype(np.int32)
    table = rng.random((gates, 2 ** arity)).astype(dtype)
    dy = rng.standard_normal((gates, batch)).astype(dtype)
    rev = reverse_index(conn, in_dim)
    calls = {
        "gate_forward": ([(gates, batch)], lambda k, out: k.gate_forward(x, conn, table, *out)),
        "gate_forward_discrete": ([(gates, batch)], lambda k, out: k.gate_forward_discrete(
            x, conn, (table >= 0.5).astype(dtype), *out)),
        "gate_backward_table": ([(gates, 2 ** arity)],
                                lambda k, out: k.gate_backward_table(x, conn, dy, *out)),
        "gate_backward_inputs": ([(in_dim, batch)], lambda k, out: k.gate_backward_inputs(
            x, conn, *rev, table, dy, 0.75, *out)),
    }
    errs = {}
    for name, (shapes, call) in calls.items():
        want = [np.full(shape, np.nan, dtype) for shape in shapes]
        got = [np.full(shape, np.nan, dtype) for shape in shapes]
        call(cpu, want)
        call(cuda, got)
        errs[name] = worst(*(rel_err(a, b) for a, b in zip(got, want)))
        if name == "gate_forward":
            errs["gate_forward_vs_numpy"] = rel_err(got[0], numpy_forward(x, conn, table))
    return errs


def missing_twins():
    """(public kernels of pylgn.kernels.cpu, those that pylgn.kernels.cuda lacks)."""
    import inspect
    from pylgn.kernels import cpu, cuda
    names = [n for n, f in vars(cpu).items() if not n.startswith("_") and callable(f)
             and getattr(f, "__module__", None) == cpu.__name__ and not inspect.isclass(f)]
    return sorted(names), sorted(n for n in names if not hasattr(cuda, n)
                                 and n not in cpu.CPU_ONLY)


def adam_and_op_errors(rng):
    """adam_step (3 steps, weight decay) vs the CPU; OP projection and GroupSum kernels vs numpy."""
    from pylgn.gates import OP_TABLES
    from pylgn.kernels import cpu, cuda
    errs = {}
    for size in (1, 257 * 4):
        grads = rng.standard_normal((3, size)).astype(np.float32)
        states = []
        for k in (cpu, cuda):
            p = np.linspace(-1, 1, size, dtype=np.float32)
            m, v = np.zeros_like(p), np.zeros_like(p)
            for t in range(3):
                k.adam_step(p, grads[t], m, v, 0.01, 0.9, 0.999, 1e-8, 0.01, t + 1)
            states.append(np.concatenate([p, m, v]))
        errs[f"adam_step[{size}]"] = rel_err(states[1], states[0])
    w = rng.standard_normal((257, 16)).astype(np.float32)
    tables = OP_TABLES.astype(np.float32)
    p = np.exp(w - w.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    omega, soft = np.full((257, 4), np.nan, np.float32), np.full_like(w, np.nan)
    cuda.op_table(w, tables, soft, omega)
    errs["op_table_vs_numpy"] = worst(rel_err(omega, p @ tables), rel_err(soft, p))
    domega = rng.standard_normal((257, 4)).astype(np.float32)
    dp = domega @ tables.T
    dw = np.full_like(w, np.nan)
    cuda.op_table_backward(p.astype(np.float32), tables, domega, dw)
    errs["op_table_backward_vs_numpy"] = rel_err(dw, p * (dp - (p * dp).sum(1, keepdims=True)))
    gs = []
    for k, m, b in ((3, 7, 33), (2, 2 * cuda.SUM_ROWS + 88, 5)):  # one pass; two (3 chunks)
        x = rng.random((k * m, b)).astype(np.float32)
        logits, dx = np.full((k, b), np.nan, np.float32), np.full_like(x, np.nan)
        cuda.group_sum(x, 2.5, logits)
        cuda.group_sum_backward(logits, 2.5, dx)
        gs += [rel_err(logits, x.reshape(k, m, b).sum(1) / 2.5),
               rel_err(dx, np.repeat(logits, m, axis=0) / 2.5)]
    errs["group_sum_vs_numpy"] = worst(*gs)
    return errs


def guard_checks():
    """Arity 7 from a direct kernel call, and a reverse index past int32, raise ValueError."""
    from pylgn.kernels import cuda
    from pylgn.wiring import reverse_index
    res = {}
    x, conn = np.zeros((7, 2), np.float32), np.zeros((7, 3), np.int32)
    try:
        cuda.gate_forward(x, conn, np.zeros((3, 128), np.float32), np.zeros((3, 2), np.float32))
        res["arity_7_raises"] = False
    except ValueError as e:
        res["arity_7_raises"] = "arity" in str(e)
    try:
        reverse_index(np.broadcast_to(np.zeros(1, np.int32), (2, 2 ** 30)), 1)
        res["rev_overflow_raises"] = False
    except ValueError as e:
        res["rev_overflow_raises"] = "2**31" in str(e)
    res["launch_shape"] = [cuda.BLOCK, cuda.WARP]
    res["table_splits"] = [cuda.table_splits(2, 2100), cuda.table_splits(128_000, 100_000)]
    return res


def tiny_model(device, dtype=np.float64):
    """Arity 3, OP and a sigmoid layer; 17 / 15 gates: more than the simulated grid's 8 warps (the
    grid-stride loops run) and few enough that the simulated steps stay quick."""
    import pylgn
    return pylgn.Sequential([pylgn.LogicLayer(12, 17, arity=3), pylgn.LogicLayer(17, 15, param="op"),
                             pylgn.LogicLayer(15, 15, arity=2, estimator="sigmoid"),
                             pylgn.GroupSum(3, tau=3.0)], seed=7, device=device, dtype=dtype)


def train_steps(model, opt, data, steps, grads=None):
    """``steps`` Adam steps on (x, y); returns the losses (and appends each step's gradients to
    ``grads`` when given)."""
    import pylgn
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss, d = pylgn.softmax_cross_entropy(model.forward(data[0]), data[1])
        model.backward(d)
        if grads is not None:
            grads.append(model.grads.copy())
        opt.step()
        losses.append(loss)
    return losses


def training_errors(rng):
    """3 steps on device='cuda' (simulated) vs on the CPU; the to() round trip; checkpoints.

    The weights are compared in float64: Adam divides each gradient by its own scale, so a
    float32 gradient that cancels to ~1e-9 (rounding noise, summed in another order on each
    device) moves its weight by up to lr either way. In float32 the first step's gradients (same
    weights on both devices) and the losses are compared instead."""
    import pylgn
    data = (rng.random((33, 12)).astype(np.float32), rng.integers(0, 3, 33))
    res = {}
    models32 = {dev: tiny_model(dev, np.float32) for dev in ("cpu", "cuda")}
    losses32, grads32 = {}, {}
    for dev, m in models32.items():
        grads32[dev] = []
        losses32[dev] = train_steps(m, pylgn.Adam(m, lr=0.05), data, 3, grads32[dev])
    res["step_float32_grads"] = rel_err(grads32["cuda"][0], grads32["cpu"][0])
    res["step_float32_losses"] = rel_err(losses32["cuda"], losses32["cpu"])
    models = {dev: tiny_model(dev) for dev in ("cpu", "cuda")}
    opts = {dev: pylgn.Adam(m, lr=0.05) for dev, m in models.items()}
    losses = {dev: train_steps(models[dev], opts[dev], data, 3) for dev in models}
    res["step_params"] = rel_err(models["cuda"].params, models["cpu"].params)
    res["step_params_abs"] = float(np.abs(models["cuda"].params - models["cpu"].params).max())
    res["step_losses"] = rel_err(losses["cuda"], losses["cpu"])
    res["step_changed"] = float(np.abs(models["cpu"].params - tiny_model("cpu").params).max())
    eval_out = {d: models[d].eval().forward(data[0]) for d in models}
    res["eval_forward"] = rel_err(eval_out["cuda"], eval_out["cpu"])
    for m in models.values():
        m.train()

    # round trip: cpu -> cuda -> cpu, training on each, against the CPU model trained alongside
    ref, ref_opt = models["cpu"], opts["cpu"]
    moved, moved_opt = tiny_model("cpu"), None
    moved.params[...] = ref.params
    moved_opt = pylgn.Adam(moved, lr=0.05)
    moved_opt.load_state(ref_opt.m, ref_opt.v, ref_opt.t)
    moved.to("cuda", optimizer=moved_opt)
    res["to_cuda_device"] = [moved.device, moved_opt.device, moved.backend.kernels.__name__]
    res["to_cuda_state"] = worst(rel_err(moved.params, ref.params), rel_err(moved_opt.m, ref_opt.m),
                               rel_err(moved_opt.v, ref_opt.v))
    res["to_views"] = all(np.shares_memory(l.weights, moved.params) and
                          np.shares_memory(l.grad, moved.grads) for l in moved.logic_layers)
    train_steps(moved, moved_opt, data, 1)
    moved.to("cpu")
    try:
        moved_opt.step()
        res["stale_optimizer_raises"] = False
    except RuntimeError:
        res["stale_optimizer_raises"] = True
    moved_opt.to("cpu")
    train_steps(moved, moved_opt, data, 1)
    train_steps(ref, ref_opt, data, 2)
    res["round_trip"] = worst(rel_err(moved.params, ref.params), rel_err(moved_opt.m, ref_opt.m),
                            rel_err(moved_opt.v, ref_opt.v))
    res["round_trip_t"] = [moved_opt.t, ref_opt.t]
    res.update(checkpoint_errors(models, opts))
    res["to_conv_net"] = conv_round_trip(rng)
    return res


def conv_round_trip(rng):
    """A conv net (LogicConv2d, OrPool2d) moved cpu -> cuda -> cpu gives the same forward and
    gradients on each device."""
    import pylgn
    from pylgn.conv import LogicConv2d, OrPool2d
    model = pylgn.Sequential([LogicConv2d(2, 3, 5, tree_depth=2), OrPool2d(3, 5),
                              LogicConv2d(3, 2, 2, arity=3, tree_depth=1), pylgn.LogicLayer(8, 6),
                              pylgn.GroupSum(2, 1.0)], seed=3, dtype=np.float64)
    x, y = rng.random((3, 50)), np.array([0, 1, 1])
    outs = []
    for device in ("cpu", "cuda", "cpu"):
        model.to(device).zero_grad()
        f = model.forward(x)
        model.backward(pylgn.softmax_cross_entropy(f, y)[1])
        outs.append((f, model.grads.copy(), model.device))
    return [worst(*(rel_err(a, b) for a, b in zip(o[:2], outs[0][:2]))) for o in outs[1:]] + \
        [o[2] for o in outs]


def checkpoint_errors(models, opts):
    """Save on one device, load on the other: same parameters, Adam state and forward."""
    import pylgn
    res = {}
    x = np.linspace(0, 1, 5 * 12).reshape(5, 12)
    with tempfile.TemporaryDirectory() as tmp:
        for src, dst in (("cuda", "cpu"), ("cpu", "cuda")):
            path = os.path.join(tmp, f"{src}.h5")
            pylgn.save(path, models[src], optimizer=opts[src], step=3)
            ck = pylgn.load(path, device=dst)
            res[f"checkpoint_{src}_to_{dst}"] = worst(
                rel_err(ck.model.params, models[src].params),
                rel_err(ck.optimizer.m, opts[src].m), rel_err(ck.optimizer.v, opts[src].v),
                rel_err(ck.model.forward(x), models[src].forward(x)))
            res[f"checkpoint_{src}_to_{dst}_device"] = [ck.model.device, ck.optimizer.device,
                                                        ck.optimizer.t - opts[src].t, ck.step]
    return res


def child_main():
    """Run every simulated check; print one JSON object."""
    from numba import config
    assert config.ENABLE_CUDASIM, "run with NUMBA_ENABLE_CUDASIM=1"
    rng = np.random.default_rng(0)
    res = {"kernels": {}}
    for case in KERNEL_CASES:
        res["kernels"][repr(case + ("float32",))] = kernel_errors(*case, np.float32, rng)
    for case in FLOAT64_CASES:
        res["kernels"][repr(case + ("float64",))] = kernel_errors(*case, np.float64, rng)
    res["cpu_kernels"], res["missing_twins"] = missing_twins()
    res.update(adam_and_op_errors(rng))
    res.update(guard_checks())
    res.update(training_errors(rng))
    print("RESULT " + json.dumps(res))


def ptx_main():
    """Without the simulator: compile every kernel to PTX for sm_90 (typing and code generation
    that the simulator never does) and print, per kernel, whether its PTX uses local memory
    (``.local``: scratch arrays not promoted to registers). Needs numba's CUDA target with NVVM
    (numba-cuda[cu12]), no GPU; exits 3 when they are missing."""
    import types as pytypes
    from numba import cuda, types
    try:
        import numba.cuda.dispatcher as dispatcher
        dispatcher.get_current_device    # device functions ask the GPU for its compute capability
        cuda.compile_ptx(lambda a: None, (types.float32[::1],), device=True, cc=(9, 0))
    except Exception as e:                                      # noqa: BLE001
        print(f"SKIP: no NVVM / numba-cuda here ({type(e).__name__}: {str(e)[:200]})")
        sys.exit(3)
    dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=(9, 0))
    from pylgn.kernels import cuda as K
    i64, f64 = types.int64, types.float64
    for dt in (types.float32, types.float64):
        f1, a1, a2, ci, ri = (types.Array(t, nd, "C") for t, nd in
                              ((dt, 1), (dt, 1), (dt, 2), (types.int32, 2), (types.int32, 1)))
        d = np.dtype(str(dt))
        kernels = [("_adam_kernel", K._adam_kernel, (a1,) * 4 + (f64,) * 7),
                   ("_op_table_kernel", K._op_table_kernel, (a2,) * 4),
                   ("_op_table_backward_kernel", K._op_table_backward_kernel, (a2,) * 4),
                   ("_group_sum_kernel", K._group_sum_kernel, (f1, i64, i64, i64, f64, f1)),
                   ("_group_sum_backward_kernel", K._group_sum_backward_kernel,
                    (f1, i64, i64, dt, f1)),
                   ("_sum_parts_kernel", K._sum_parts_kernel, (f1, f1))]
        for n in range(1, K.MAX_ARITY + 1):
            kernels += [(f"_forward_kernel[{n}]", K._forward_kernel(n, d), (f1, i64, ci, a2, f1)),
                        (f"_forward_discrete_kernel[{n}]", K._forward_discrete_kernel(n, d),
                         (f1, i64, ci, a2, f1)),
                        (f"_backward_table_kernel[{n}]", K._backward_table_kernel(n, d),
                         (f1, i64, ci, f1, i64, f1)),
                        (f"_backward_inputs_kernel[{n}]", K._backward_inputs_kernel(n, d),
                         (f1, i64, ci, ri, ri, a2, f1, f64, f1))]
        for name, fn, sig in kernels:
            ptx, _ = cuda.compile_ptx(fn.py_func, sig, cc=(9, 0))
            print("PTX ok", name, dt, "local" if ".local" in ptx else "registers")


# parent: the tests ---------------------------------------------------------------------------

_CHILDREN = {}


def start_child(args, simulate=True):
    """Starts ``python args`` (under the simulator unless ``simulate`` is False) once; its output
    goes to temporary files. Called when this module is collected, so that the slow simulated
    runs go on beside the other test modules (a second core works on them) and the tests below
    only collect the results (``finish_child``)."""
    key = (tuple(args), simulate)
    if key not in _CHILDREN:
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
        if simulate:
            env["NUMBA_ENABLE_CUDASIM"] = "1"
        env.setdefault("NUMBA_CACHE_DIR", os.path.join(ROOT, ".numba_cache"))
        out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        proc = subprocess.Popen([sys.executable] + list(args), cwd=ROOT, env=env, stdout=out,
                                stderr=err, text=True)
        _CHILDREN[key] = (proc, out, err)
    return key


@atexit.register
def _stop_children():
    """Children whose tests were deselected (or failed early) do not outlive the test run."""
    for proc, _, _ in _CHILDREN.values():
        if proc.poll() is None:
            proc.kill()


def finish_child(key, timeout=600):
    """(return code, stdout, stderr) of a child started by ``start_child`` (killed on timeout)."""
    proc, out, err = _CHILDREN[key]
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    out.seek(0), err.seek(0)
    return proc.returncode, out.read(), err.read()


def run_simulated(args, timeout=600):
    code, out, err = finish_child(start_child(args), timeout)
    assert code == 0, f"simulated run failed:\n{out[-3000:]}\n{err[-6000:]}"
    return out


GPU_BENCH_TINY = [os.path.join(ROOT, "bench", "gpu_step.py"), "--tiny", "--steps", "1",
                  "--warmup", "0"]
if __name__ != "__main__":                        # collected by pytest: start the slow children
    start_child([os.path.abspath(__file__)])
    start_child(GPU_BENCH_TINY)
    start_child([os.path.abspath(__file__), "--ptx"], simulate=False)


@pytest.fixture(scope="module")
def sim():
    out = run_simulated([os.path.abspath(__file__)])
    line = [l for l in out.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


@pytest.mark.parametrize("case", [repr(c + ("float32",)) for c in KERNEL_CASES]
                         + [repr(c + ("float64",)) for c in FLOAT64_CASES])
def test_gate_kernels_match_cpu(sim, case):
    errs = sim["kernels"][case]
    assert {"gate_forward", "gate_forward_vs_numpy", "gate_forward_discrete",
            "gate_backward_table"} < set(errs)
    assert {"gate_backward_inputs", "gate_backward"} & set(errs)
    assert errs["gate_forward_discrete"] == 0.0, errs
    tol = TOL64 if case.endswith("'float64')") else TOL
    assert all(e < tol for e in errs.values()), errs


def test_every_cpu_kernel_has_a_cuda_twin(sim):
    assert {"gate_forward", "gate_backward_table", "adam_step", "group_sum"} <= set(
        sim["cpu_kernels"])                             # the discovery finds the kernels
    assert sim["missing_twins"] == []


def test_adam_op_and_group_sum_kernels(sim):
    for key in ("adam_step[1]", "adam_step[1028]", "op_table_vs_numpy", "op_table_backward_vs_numpy",
                "group_sum_vs_numpy"):
        assert sim[key] < TOL, (key, sim[key])


def test_guards_and_launch_shapes(sim):
    assert sim["arity_7_raises"] and sim["rev_overflow_raises"]
    assert sim["launch_shape"] == [128, 32]                     # the real shape, not a shrunk one
    assert sim["table_splits"] == [2, 1]                        # the 2100-sample case splits


def test_training_step_on_cuda_equals_cpu(sim):
    assert sim["step_changed"] > 1e-3                       # the steps did move the weights
    assert sim["step_params_abs"] < TOL and sim["step_params"] < TOL
    assert sim["step_losses"] < TOL
    assert sim["eval_forward"] == 0.0
    assert sim["step_float32_grads"] < TOL and sim["step_float32_losses"] < TOL


def test_to_round_trip_keeps_weights_and_adam_state(sim):
    assert sim["to_cuda_device"] == ["cuda", "cuda", "pylgn.kernels.cuda"]
    assert sim["to_cuda_state"] == 0.0
    assert sim["to_views"]
    assert sim["stale_optimizer_raises"]
    assert sim["round_trip_t"] == [5, 5]
    assert sim["round_trip"] < TOL
    assert max(sim["to_conv_net"][:2]) < 1e-12                  # float64 conv net
    assert sim["to_conv_net"][2:] == ["cpu", "cuda", "cpu"]


def test_checkpoint_loads_on_the_other_device(sim):
    for src, dst in (("cuda", "cpu"), ("cpu", "cuda")):
        assert sim[f"checkpoint_{src}_to_{dst}"] < TOL
        assert sim[f"checkpoint_{src}_to_{dst}_device"] == [dst, dst, 0, 3]


def test_gpu_bench_tiny_runs_under_the_simulator():
    out = run_simulated(GPU_BENCH_TINY)
    assert "first step vs CPU: max rel err" in out and "forward" in out, out


def test_kernels_compile_to_ptx_without_local_memory():
    code, out, err = finish_child(start_child([os.path.abspath(__file__), "--ptx"], simulate=False))
    if code == 3:
        pytest.skip(out.strip())
    assert code == 0, out[-2000:] + err[-4000:]
    lines = [l.split() for l in out.splitlines() if l.startswith("PTX ok")]
    assert len(lines) == 2 * (6 + 4 * 6), out                 # (6 + 4 gate kernels x 6 arities) x 2
    # every kernel keeps its scratch in registers, every arity, float32 and float64
    local = [l[2] + " " + l[3] for l in lines if l[4] == "local"]
    assert local == [], local


def test_import_does_not_load_cupy_or_numba_cuda():
    code = ("import sys, pylgn; bad = [m for m in ('cupy', 'numba.cuda', 'pylgn.kernels.cuda') "
            "if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cuda_without_cupy_names_what_is_missing():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("the simulator pairing needs no cupy")
    try:
        import cupy  # noqa: F401
        pytest.skip("cupy is installed here")
    except ImportError:
        pass
    import pylgn
    with pytest.raises(ValueError, match="cupy"):
        pylgn.Sequential([pylgn.LogicLayer(4, 4)], device="cuda")


if __name__ == "__main__":
    ptx_main() if "--ptx" in sys.argv else child_main()
