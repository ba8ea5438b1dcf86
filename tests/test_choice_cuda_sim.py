"""The learned-wiring CUDA kernels (choice_forward, choice_backward, choice_backward_inputs) and a
learned-wiring training step on device="cuda", checked against the CPU under numba's CUDA
simulator in a child process (see tests/test_cuda_sim.py for why a child). Real launch shape
(128 threads, a warp per slot or input row), grid capped at 2 blocks so the grid-stride loops
run; ragged sizes (batch 1, 33, 70; slots not a multiple of the 8 warps)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (inputs, slots, candidates, batch, dtype)
CASES = [(13, 21, 5, 33, "float32"), (7, 3, 7, 1, "float64"), (40, 37, 16, 70, "float64")]


def rel_err(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if np.isnan(got).any():
        return float("nan")
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def kernel_errors(I, S, C, B, dtype, rng):
    from pylgn.kernels import cpu, cuda
    from pylgn.wiring import reverse_index
    x = rng.random((I, B)).astype(dtype)
    cand = rng.integers(0, I, (S, C)).astype(np.int32)
    route = rng.random((S, C)).astype(dtype)
    route[route < 0.4] = 0
    gs = rng.standard_normal((S, B)).astype(dtype)
    rev = reverse_index(cand.reshape(1, -1), I)
    calls = {"choice_forward": ((S, B), lambda k, o: k.choice_forward(x, cand, route, o)),
             "choice_backward": ((S, C), lambda k, o: k.choice_backward(x, cand, gs, o)),
             "choice_backward_inputs": ((I, B), lambda k, o: k.choice_backward_inputs(
                 gs, *rev, route, 0.75, o))}
    errs = {}
    for name, (shape, call) in calls.items():
        want, got = np.full(shape, np.nan, dtype), np.full(shape, np.nan, dtype)
        call(cpu, want)
        call(cuda, got)
        errs[name] = rel_err(got, want)
    return errs


def training_errors(rng):
    """Two Adam steps of a learned-wiring net (ste first layer, softmax second) on the simulated
    GPU vs the CPU, float64; then the eval forward, and a cpu -> cuda -> cpu move."""
    import pylgn

    def net(device):
        return pylgn.Sequential([
            pylgn.LogicLayer(12, 30, arity=3, connections="learned", candidates=4),
            pylgn.LogicLayer(30, 30, connections="learned", candidates=6, choice="softmax"),
            pylgn.GroupSum(3, 2.0)], seed=2, device=device, dtype=np.float64)
    x, y = rng.random((33, 12)), rng.integers(0, 3, 33)
    models = {d: net(d) for d in ("cpu", "cuda")}
    for m in models.values():
        opt = pylgn.Adam(m, lr=0.05)
        for _ in range(2):
            m.zero_grad()
            m.loss_and_grad(x, y)
            opt.step()
    res = {"step_params": rel_err(models["cuda"].params, models["cpu"].params),
           "eval": rel_err(models["cuda"].eval().forward(x), models["cpu"].eval().forward(x))}
    moved = models["cuda"].to("cpu").to("cuda").to("cpu")
    res["moved"] = rel_err(moved.forward(x), models["cpu"].forward(x))
    return res


def child_main():
    from numba import config
    assert config.ENABLE_CUDASIM, "run with NUMBA_ENABLE_CUDASIM=1"
    rng = np.random.default_rng(0)
    res = {repr(c): kernel_errors(*c, rng) for c in CASES}
    res["training"] = training_errors(rng)
    print("RESULT " + json.dumps(res))


@pytest.fixture(scope="module")
def sim():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    env.setdefault("NUMBA_CACHE_DIR", os.path.join(ROOT, ".numba_cache"))
    proc = subprocess.run([sys.executable, os.path.abspath(__file__)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


@pytest.mark.parametrize("case", [repr(c) for c in CASES])
def test_choice_kernels_match_cpu(sim, case):
    errs = sim[case]
    assert set(errs) == {"choice_forward", "choice_backward", "choice_backward_inputs"}
    tol = 1e-12 if "float64" in case else 1e-5
    assert all(e < tol for e in errs.values()), errs          # NaN (unwritten output) fails too


def test_learned_wiring_training_step_on_cuda_equals_cpu(sim):
    t = sim["training"]
    assert t["step_params"] < 1e-12 and t["eval"] == 0.0 and t["moved"] == 0.0, t


if __name__ == "__main__":
    child_main()
