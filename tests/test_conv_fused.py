"""Fused LogicConv2d + OR pooling (pylgn.kernels.conv_cpu): the kernels against a numpy
reference forward and float64 finite differences, and the fused layer against the unfused path
(im2col + tree levels + OrPool2d) with the same parameters, forward and gradients."""
import numpy as np
import pytest

import pylgn
from pylgn.conv import LogicConv2d, OrPool2d, build_arch, gate_count, memory_estimate
from pylgn.kernels import cpu

# (in_channels, out_channels, in_size, receptive_field, depth, stride, padding, arity, pool)
CASES = [(2, 3, 6, 3, 3, 1, 1, 2, 2),
         (3, 2, (7, 5), 3, 2, 1, 0, 3, 2),
         (2, 2, 7, 2, 2, 2, 1, 2, 3)]


def numpy_tree_pool(x, leaves, tables, geom):
    """Direct loops: every tree at every conv position, the multilinear form, then the max."""
    H, W, stride, pad, Ho, Wo, pk, ps, Hp, Wp = (int(g) for g in geom)
    O, L, _ = leaves.shape
    n = int(np.log2(tables.shape[2]))
    B = x.shape[1]
    bits = (np.arange(2 ** n)[:, None] >> (n - 1 - np.arange(n))[None, :]) & 1    # (2**n, n)
    roots = np.zeros((O, Ho, Wo, B))
    for o in range(O):
        for i in range(Ho):
            for j in range(Wo):
                nodes = []
                for c, dh, dw in leaves[o]:
                    h, w = i * stride + dh - pad, j * stride + dw - pad
                    inside = 0 <= h < H and 0 <= w < W
                    nodes.append(x[(c * H + h) * W + w] if inside else np.zeros(B))
                for g in range(tables.shape[1]):
                    ins = np.stack(nodes[n * g:n * g + n])                       # (n, B)
                    basis = np.prod(np.where(bits[:, :, None] == 1, ins[None], 1 - ins[None]),
                                    axis=1)                                       # (2**n, B)
                    nodes.append(tables[o, g] @ basis)
                roots[o, i, j] = nodes[-1]
    y = np.full((O, Hp, Wp, B), -np.inf)
    for u in range(pk):
        for v in range(pk):
            part = roots[:, u::ps, v::ps][:, :Hp, :Wp]
            y[:, :part.shape[1], :part.shape[2]] = np.maximum(
                y[:, :part.shape[1], :part.shape[2]], part)
    return y.reshape(O * Hp * Wp, B)


def fused_layer(case, dtype=np.float64, seed=0, **kw):
    C, O, size, K, d, stride, pad, a, pool = case
    layer = LogicConv2d(C, O, size, receptive_field=K, tree_depth=d, stride=stride, padding=pad,
                        arity=a, pool=pool, **kw)
    model = pylgn.Sequential([layer], seed=seed, dtype=dtype)
    return model, layer


def kernel_args(layer, x):
    tables = layer._tree_tables(x.dtype)
    return x, layer._leaves_dev, tables, layer._geom


@pytest.mark.parametrize("case", CASES)
def test_forward_matches_numpy(case):
    model, layer = fused_layer(case)
    rng = np.random.default_rng(1)
    x = rng.random((layer.in_dim, 5))
    y = np.empty((layer.out_dim, 5))
    arg = np.empty((layer.out_dim, 5), dtype=np.uint8)
    args = kernel_args(layer, x)
    cpu.tree_pool_forward(*args, y, arg)
    np.testing.assert_allclose(y, numpy_tree_pool(*args), rtol=1e-12, atol=1e-12)
    assert arg.max() < layer.pool ** 2


@pytest.mark.parametrize("case", CASES)
def test_gradients_match_finite_differences(case):
    """dtables and dx of tree_pool_backward against central differences of the float64 forward
    of the loss sum(r * y), with r fixed (inputs away from pooling ties)."""
    model, layer = fused_layer(case)
    rng = np.random.default_rng(2)
    B = 3
    x = rng.random((layer.in_dim, B))
    x, leaves, tables, geom = kernel_args(layer, x)
    tables = tables + rng.normal(0, 0.2, tables.shape)          # a generic table, not 0/1-ish
    r = rng.standard_normal((layer.out_dim, B))

    def loss(x_, t_):
        y = np.empty((layer.out_dim, B))
        cpu.tree_pool_forward(x_, leaves, np.ascontiguousarray(t_), geom, y,
                              np.empty(y.shape, dtype=np.uint8))
        return float((r * y).sum())

    y = np.empty((layer.out_dim, B))
    arg = np.empty(y.shape, dtype=np.uint8)
    cpu.tree_pool_forward(x, leaves, tables, geom, y, arg)
    dtables, dx = np.empty_like(tables), np.empty_like(x)
    cpu.tree_pool_backward(x, leaves, tables, geom, r, arg, dtables, dx)
    eps = 1e-6
    for arr, grad in ((tables, dtables), (x, dx)):
        flat, g = arr.reshape(-1), grad.reshape(-1)
        for idx in rng.choice(flat.size, size=min(flat.size, 40), replace=False):
            old = flat[idx]
            flat[idx] = old + eps
            up = loss(x, tables)
            flat[idx] = old - eps
            down = loss(x, tables)
            flat[idx] = old
            assert abs((up - down) / (2 * eps) - g[idx]) < 1e-6 * max(1.0, abs(g[idx])), idx


def unfused_twin(model, layer):
    """The same layer and parameters on the unfused path (levels + OrPool2d)."""
    twin = pylgn.Sequential([LogicConv2d(**{k: v for k, v in layer.config().items()
                                            if k != "type"})], dtype=model.dtype)
    twin.params[...] = model.params
    twin.layers[0].bind(twin.backend, twin.layers[0].weights, twin.layers[0].grad, layer.leaves)
    twin.layers[0].fused = False
    return twin


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("param", ["iwp", "op"])
def test_fused_equals_unfused(case, param):
    if param == "op" and case[7] != 2:
        pytest.skip("OP is two-input only")
    model, layer = fused_layer(case, param=param, grad_factor=1.5)
    twin = unfused_twin(model, layer)
    rng = np.random.default_rng(3)
    x = rng.random((4, model.in_dim))
    dout = rng.standard_normal((4, layer.out_dim))
    outs = []
    for m in (model, twin):
        m.zero_grad()
        y = m.forward(x)
        dx = m.layers[0].backward(np.ascontiguousarray(dout.T))
        outs.append((y, dx, m.grads.copy()))
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    model.eval()
    twin.eval()
    np.testing.assert_array_equal(model.forward(x), twin.forward(x))


def test_fused_backward_is_deterministic_across_threads():
    import numba
    model, layer = fused_layer(CASES[0], dtype=np.float32)
    x = np.random.default_rng(4).random((layer.in_dim, 16)).astype(np.float32)
    dy = np.random.default_rng(5).standard_normal((layer.out_dim, 16)).astype(np.float32)
    results = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(threads)
        layer.forward(x)
        layer.grad[...] = 0
        results.append((layer.backward(dy), layer.grad.copy()))
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_fused_arch_gates_memory_and_circuit():
    fused = build_arch("cdlgn-mnist-s", in_channels=2)
    plain = build_arch("cdlgn-mnist-s", in_channels=2, fuse=False)
    assert not any(isinstance(l, OrPool2d) for l in fused)
    assert gate_count(fused) == gate_count(plain) and gate_count(fused)["total"] <= 150_000
    assert gate_count(build_arch("cdlgn-mnist-m", in_channels=2))["total"] <= 600_000
    assert memory_estimate(plain, 100)["total"] > 3 * memory_estimate(fused, 100)["total"]
    # the circuit of a small fused net is the discretized model
    layers = [LogicConv2d(2, 4, 6, tree_depth=2, pool=2), pylgn.LogicLayer(36, 20),
              pylgn.GroupSum(4, 2.0)]
    model = pylgn.Sequential(layers, seed=3)
    model.eval()
    x = (np.random.default_rng(6).random((50, model.in_dim)) > 0.5).astype(np.float32)
    circuit = model.to_circuit()
    np.testing.assert_array_equal(circuit.scores(x.astype(bool)) / 2.0, model.forward(x))


def test_fused_layer_config_round_trip_and_bad_pool():
    layer = LogicConv2d(2, 3, 6, pool=2)
    cfg = layer.config()
    assert cfg.pop("type") == "LogicConv2d" and LogicConv2d(**cfg).config() == layer.config()
    assert layer.out_size == (3, 3) and layer.conv_size == (6, 6)
    with pytest.raises(ValueError, match="pool"):
        LogicConv2d(2, 3, 6, pool=0)
    with pytest.raises(ValueError, match="in_size"):
        LogicConv2d(2, 3, 2, padding=0, receptive_field=2, pool=2)


SIM_SCRIPT = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from pylgn.kernels import cpu, cuda
from test_conv_fused import CASES, fused_layer, kernel_args
errs = {{}}
for c, case in enumerate(CASES):
    for dtype in (np.float64, np.float32):
        model, layer = fused_layer(case, dtype=dtype)
        x = np.random.default_rng(c).random((layer.in_dim, 5)).astype(dtype)
        args = kernel_args(layer, x)
        dy = np.random.default_rng(9).standard_normal((layer.out_dim, 5)).astype(dtype)
        outs = []
        for k in (cpu, cuda):
            y = np.empty((layer.out_dim, 5), dtype)
            arg = np.empty(y.shape, np.uint8)
            k.tree_pool_forward(*args, y, arg)
            dt, dx = np.empty_like(args[2]), np.empty_like(x)
            k.tree_pool_backward(*args, dy, arg, dt, dx)
            outs.append((y, arg, dt, dx))
        errs[f"{{c}}-{{np.dtype(dtype).name}}"] = [
            float(np.abs(a.astype(np.float64) - b).max() / max(1.0, np.abs(b).max()))
            for a, b in zip(*outs)]
print("RESULT " + json.dumps(errs))
"""


def test_cuda_twin_matches_cpu_under_the_simulator():
    """pylgn.kernels.cuda's tree_pool_forward/backward (NUMBA_ENABLE_CUDASIM=1, a child process)
    against the CPU kernels at every case, float64 and float32; the arg-max must be equal."""
    import json
    import os
    import subprocess
    import sys
    tests = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    out = subprocess.run([sys.executable, "-c", SIM_SCRIPT.format(tests=tests)], env=env,
                         capture_output=True, text=True, timeout=600)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    assert out.returncode == 0 and lines, out.stderr[-2000:]
    errs = json.loads(lines[-1][len("RESULT "):])
    assert len(errs) == 2 * len(CASES)
    for key, (y, arg, dtables, dx) in errs.items():
        tol = 1e-12 if key.endswith("float64") else 1e-5
        assert arg == 0.0 and max(y, dtables, dx) < tol, (key, errs[key])


def test_arch_recipe_fills_unset_flags():
    """`pylgn train --arch cdlgn-mnist-s` takes tau, lr, schedule, weight decay and steps from
    the architecture; a flag given wins."""
    from pylgn import cli
    from pylgn.conv import ARCHS
    from pylgn.recipes import recipe
    spec = ARCHS["cdlgn-mnist-s"]
    for argv, lr in ((["train", "--arch", "cdlgn-mnist-s"], spec["lr"]),
                     (["train", "--arch", "cdlgn-mnist-s", "--lr", "0.003"], 0.003)):
        args = cli._build_parser().parse_args(argv)
        cfg = dict(recipe((1, 28, 28), 60000)[1], arch="cdlgn-mnist-s", lr=args.lr or 0.02)
        cli._arch_defaults(cfg, args, (1, 28, 28))
        assert cfg["lr"] == lr and cfg["crop"] == 20
        assert (cfg["tau"], cfg["lr_schedule"], cfg["weight_decay"], cfg["steps"]) == (
            spec["tau"], spec["lr_schedule"], spec["weight_decay"], spec["steps"])
