"""LogicConv2d / OrPool2d: forwards against direct numpy loops over positions, gradients against
float64 finite differences, circuits against the discretized forward, a shifted-pattern task,
the LogicTreeNet configurations and bad input."""
import json
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

import pylgn
import reference as ref
from pylgn.init import INITS
from pylgn.circuit import from_model
from pylgn.conv import (ARCHS, LogicConv2d, OrPool2d, build_arch, cdlgn, gate_count,
                        memory_estimate, or_tree)



@pytest.fixture(autouse=True)
def one_thread():
    """These kernels are tiny: on a shared machine one thread avoids parallel spin-waiting
    (speed only; results do not depend on the thread count)."""
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(old)


# (conv kwargs, in_channels, out_channels, in_size)
CONVS = [
    (dict(), 3, 4, (5, 6)),                                                   # CDLGN default
    (dict(arity=3, tree_depth=2, stride=2, padding=0, estimator="sigmoid",
          tree_channels=None), 2, 3, (7, 5)),
    (dict(receptive_field=2, tree_depth=2, param="op"), 4, 4, 4),
    (dict(receptive_field=1, tree_depth=1, arity=1, padding=0, estimator="linear-st",
          sigma=0.3), 2, 3, 3),
    (dict(tree_channels=3, channel_groups=2, estimator="sin-st"), 4, 6, (4, 5)),
    (dict(arity=4, tree_depth=2, receptive_field=5, padding=2, stride=3), 1, 2, 6),
]


def conv_model(kw, cin, cout, size, seed=0, dtype=np.float64, init="gaussian"):
    kw = dict(kw)
    kw.setdefault("sigma", 1.0 if init == "gaussian" else None)
    layer = LogicConv2d(cin, cout, size, init=init, **kw)
    return layer, pylgn.Sequential([layer], seed=seed, dtype=dtype)


def multilinear(table, vals):
    """sum_r table[r] prod_k (v_k if b_k(r) else 1 - v_k), vals a list of (batch,) arrays."""
    b = ref.bits(len(vals))
    return sum(table[r] * np.prod([v if b[r, k] else 1 - v for k, v in enumerate(vals)], axis=0)
               for r in range(len(table)))


def lookup(table, vals):
    """table[sum_k v_k 2**(n-1-k)] on 0/1 values."""
    r = sum(np.asarray(v, dtype=np.int64) << (len(vals) - 1 - k) for k, v in enumerate(vals))
    return table[r]


def conv_loop(layer, x, tables, gate):
    """Direct loop: for each tree o and position (i, j), read the leaves from the zero-padded
    image and reduce level by level (level l gate (o, t) = table row o * n_l + t)."""
    C, (H, W), B = layer.in_channels, layer.in_size, x.shape[1]
    p, s, a = layer.padding, layer.stride, layer.arity
    img = np.pad(x.reshape(C, H, W, B), ((0, 0), (p, p), (p, p), (0, 0)))
    Ho, Wo = layer.out_size
    out = np.empty((layer.out_channels, Ho, Wo, B))
    for o in range(layer.out_channels):
        for i in range(Ho):
            for j in range(Wo):
                vals = [img[c, i * s + dh, j * s + dw] for c, dh, dw in layer.leaves[o]]
                for t_l in tables:
                    n = len(vals) // a
                    vals = [gate(t_l[o * n + t], vals[a * t:a * t + a]) for t in range(n)]
                out[o, i, j] = vals[0]
    return out.reshape(-1, B)


@pytest.mark.parametrize("kw,cin,cout,size", CONVS)
def test_conv_forward_matches_loop(kw, cin, cout, size):
    layer, model = conv_model(kw, cin, cout, size)
    x = np.random.default_rng(1).random((3, layer.in_dim))
    tables = [ref.relaxed_table(level) for level in layer.levels]
    expected = conv_loop(layer, x.T, tables, multilinear)
    np.testing.assert_allclose(model.forward(x), expected.T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kw,cin,cout,size", CONVS)
def test_conv_discrete_forward_matches_loop(kw, cin, cout, size):
    layer, model = conv_model(kw, cin, cout, size)
    x = np.random.default_rng(2).integers(0, 2, (5, layer.in_dim))
    tables = [np.asarray(level.discrete_table()) for level in layer.levels]
    expected = conv_loop(layer, x.T, tables, lookup)
    np.testing.assert_array_equal(model.eval().forward(x.astype(np.float64)), expected.T)


@pytest.mark.parametrize("init", INITS)
@pytest.mark.parametrize("param", ["iwp", "op"])
def test_every_initialization(init, param):
    layer, model = conv_model(dict(param=param, tree_depth=2), 2, 3, 4, init=init)
    x = np.random.default_rng(16).random((2, layer.in_dim))
    tables = [ref.relaxed_table(level) for level in layer.levels]
    np.testing.assert_allclose(model.forward(x), conv_loop(layer, x.T, tables, multilinear).T,
                               rtol=1e-12, atol=1e-12)


def test_leaves_follow_channel_rules():
    """tree_channels=2: at most 2 channels per tree, leaf m on channel m mod 2, distinct cells per
    channel; channel_groups: trees of group g read input channels of group g only."""
    layer = LogicConv2d(8, 12, 5, tree_depth=3, channel_groups=4)
    pylgn.Sequential([layer], seed=3)
    for o, leaves in enumerate(layer.leaves):
        chans = leaves[:, 0]
        assert len(set(chans)) == 2
        assert (chans[::2] == chans[0]).all() and (chans[1::2] == chans[1]).all()
        assert set(chans) <= {2 * (o // 3), 2 * (o // 3) + 1}
        for c in set(chans):
            cells = [tuple(l[1:]) for l in leaves if l[0] == c]
            assert len(set(cells)) == len(cells)
    wide = LogicConv2d(8, 12, 5, tree_channels=None)
    pylgn.Sequential([wide], seed=3)
    assert max(len(set(l[:, 0])) for l in wide.leaves) > 2


def pool_loop(x, C, H, W, k, s):
    img = x.reshape(C, H, W, -1)
    Ho, Wo = (H - k) // s + 1, (W - k) // s + 1
    out = [[[img[c, i * s:i * s + k, j * s:j * s + k].max(axis=(0, 1)) for j in range(Wo)]
            for i in range(Ho)] for c in range(C)]
    return np.array(out).reshape(C * Ho * Wo, -1)


@pytest.mark.parametrize("k,s,size", [(2, 2, (6, 7)), (3, 1, 5), (2, 1, 4), (3, 2, 7)])
def test_orpool_forward_matches_loop(k, s, size):
    pool = OrPool2d(3, size, kernel=k, stride=s)
    model = pylgn.Sequential([pool], dtype=np.float64)
    rng = np.random.default_rng(4)
    x = rng.random((4, pool.in_dim))
    np.testing.assert_array_equal(model.forward(x).T, pool_loop(x.T, 3, *pool.in_size, k, s))
    xb = rng.integers(0, 2, (4, pool.in_dim)).astype(np.float64)
    np.testing.assert_array_equal(model.eval().forward(xb).T,
                                  pool_loop(xb.T, 3, *pool.in_size, k, s))


@pytest.mark.parametrize("param,estimator", [("iwp", "sin"), ("iwp", "sigmoid"), ("op", "sin")])
def test_param_gradients_finite_differences(param, estimator):
    """conv -> pool -> conv (stride 2) -> dense -> GroupSum -> loss; every parameter, float64."""
    g = dict(param=param, estimator=estimator, init="gaussian", sigma=1.0)
    layers = [LogicConv2d(2, 3, 6, tree_depth=2, **g), OrPool2d(3, 6),
              LogicConv2d(3, 4, 3, stride=2, **g), pylgn.LogicLayer(16, 12, **g),
              pylgn.GroupSum(3, tau=0.7)]
    model = pylgn.Sequential(layers, seed=5, dtype=np.float64)
    rng = np.random.default_rng(6)
    x, y = rng.uniform(0.05, 0.95, (4, 72)), rng.integers(0, 3, 4)
    loss = lambda: pylgn.softmax_cross_entropy(model.forward(x), y)[0]
    model.zero_grad()
    model.backward(pylgn.softmax_cross_entropy(model.forward(x), y)[1])
    num = np.array([ref.finite_diff(loss, model.params, i) for i in range(model.params.size)])
    assert np.abs(model.grads - num).max() / np.abs(num).max() < 1e-6


def input_gradient_check(layer, dtype_seed):
    model = pylgn.Sequential([layer], seed=dtype_seed, dtype=np.float64)
    rng = np.random.default_rng(dtype_seed)
    x = rng.uniform(0.05, 0.95, (layer.in_dim, 3))
    dy = rng.normal(size=(layer.out_dim, 3))
    layer.forward(x, train=True)
    dx = layer.backward(dy, need_dx=True)
    f = lambda: float((layer.forward(x, train=True) * dy).sum())
    num = np.array([[ref.finite_diff(f, x, (i, s)) for s in range(3)] for i in range(layer.in_dim)])
    return model, dx, num


@pytest.mark.parametrize("kw,cin,cout,size", CONVS[:3] + CONVS[5:])
def test_conv_input_gradient_finite_differences(kw, cin, cout, size):
    layer = LogicConv2d(cin, cout, size, init="gaussian", sigma=1.0, grad_factor=1.3,
                        **{k: v for k, v in kw.items() if k != "sigma"})
    _, dx, num = input_gradient_check(layer, 7)
    assert np.abs(dx - 1.3 * num).max() / np.abs(num).max() < 1e-6


@pytest.mark.parametrize("k,s", [(2, 2), (2, 1), (3, 2)])
def test_orpool_input_gradient_goes_to_argmax(k, s):
    """Random inputs have no ties, so the max is differentiable and the FD gradient is exact."""
    pool = OrPool2d(2, 5, kernel=k, stride=s)
    _, dx, num = input_gradient_check(pool, 8)
    rng = np.random.default_rng(8)                   # the x and dy input_gradient_check drew
    x = rng.uniform(0.05, 0.95, (pool.in_dim, 3)).reshape(2, 5, 5, 3)
    dy = rng.normal(size=(pool.out_dim, 3)).reshape(2, *pool.out_size, 3)
    want = np.zeros_like(x)                          # each output's dy at its window's argmax
    for c, i, j, b in np.ndindex(dy.shape):
        win = x[c, i * s:i * s + k, j * s:j * s + k, b]
        di, dj = np.unravel_index(np.argmax(win), win.shape)
        want[c, i * s + di, j * s + dj, b] += dy[c, i, j, b]
    np.testing.assert_allclose(dx, want.reshape(pool.in_dim, 3), rtol=0, atol=1e-12)
    np.testing.assert_allclose(num, want.reshape(pool.in_dim, 3), rtol=0, atol=1e-8)


def run_ir(layers, bits):
    """Evaluate a circuit IR [(connections, tables)] on 0/1 rows (features, batch)."""
    h = bits
    for conn, tables in layers:
        h = ref.gate_forward_discrete(h, conn, tables)
    return h


def conv_net(seed=9, arity=3, **g):
    g = dict(dict(init="gaussian", sigma=1.0), **g)
    layers = [LogicConv2d(3, 4, 6, **g), OrPool2d(4, 6), LogicConv2d(4, 6, 3, arity=arity,
              tree_depth=2, **g), OrPool2d(6, 3, kernel=3, stride=1), pylgn.LogicLayer(6, 20, **g),
              pylgn.GroupSum(2, tau=3.0)]
    return pylgn.Sequential(layers, seed=seed, dtype=np.float64)


def test_circuit_layers_match_eval_forward():
    """Each layer's unrolled circuit (padding folded, 9-input OR as a tree) == its eval forward."""
    model = conv_net().eval()
    h = np.random.default_rng(10).integers(0, 2, (model.in_dim, 50)).astype(np.float64)
    for layer in model.layers[:4]:
        ir = layer.circuit_layers()
        assert all(c.shape[0] <= 6 and c.min() >= 0 and c.max() < w for (c, _), w in
                   zip(ir, [layer.in_dim] + [t.shape[0] for _, t in ir[:-1]]))
        y = layer.forward(np.ascontiguousarray(h), train=False)
        np.testing.assert_array_equal(run_ir(ir, h.astype(np.int64)), y)
        h = y


def test_or_tree_of_many_inputs():
    conn = np.random.default_rng(11).integers(0, 40, (20, 7))
    bits = np.random.default_rng(12).random((40, 30)) < 0.05
    np.testing.assert_array_equal(run_ir(or_tree(conn), bits.astype(np.int64))[:, :],
                                  bits[conn].any(axis=0))


def test_packed_circuit_scores_equal_eval_forward():
    model = conv_net()
    circuit = from_model(model)
    x = np.random.default_rng(13).integers(0, 2, (200, model.in_dim))
    logits = model.eval().forward(x.astype(np.float64))
    np.testing.assert_array_equal(circuit.scores(x) / 3.0, logits)
    assert circuit.num_gates == model.num_gates


def test_checkpoint_roundtrip(tmp_path):
    """Leaves are stored and bound back (here re-drawn after building, so the seed alone
    would not reproduce them)."""
    model = conv_net(arity=2, param="op")
    conv = model.layers[2]
    conv.bind(model.backend, conv.weights, conv.grad, conv.draw_leaves(np.random.default_rng(99)))
    pylgn.save(tmp_path / "m.h5", model)
    back = pylgn.load(tmp_path / "m.h5").model
    x = np.random.default_rng(14).random((5, model.in_dim))
    np.testing.assert_array_equal(back.forward(x), model.forward(x))
    np.testing.assert_array_equal(back.layers[2].leaves, conv.leaves)


SIM_CHILD = """
import json, numpy as np, pylgn
from pylgn.conv import LogicConv2d, OrPool2d
def net(device):
    layers = [LogicConv2d(2, 3, 5, tree_depth=2, init="gaussian", sigma=1.0), OrPool2d(3, 5),
              LogicConv2d(3, 2, 2, arity=3, tree_depth=1), pylgn.LogicLayer(8, 6),
              pylgn.GroupSum(2, 1.0)]
    return pylgn.Sequential(layers, seed=3, device=device, dtype=np.float64)
x = np.random.default_rng(0).random((3, 50))
res = []
for dev in ("cpu", "cuda"):
    m = net(dev)
    f = m.forward(x)
    m.backward(pylgn.softmax_cross_entropy(f, np.array([0, 1, 1]))[1])
    res.append([np.asarray(f), m.backend.to_host(m.grads).copy(), np.asarray(m.eval().forward(x))])
print(json.dumps([float(np.abs(a - b).max() / np.abs(a).max()) for a, b in zip(*res)]))
"""


def test_cuda_kernels_run_conv_under_simulator():
    """device="cuda" (the CUDA kernels, under NUMBA_ENABLE_CUDASIM=1 in a child process) gives
    the CPU forward, parameter gradients and discretized forward of a conv net."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    out = subprocess.run([sys.executable, "-c", SIM_CHILD], env=env, capture_output=True,
                         text=True, timeout=300, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr[-2000:]
    errors = json.loads(out.stdout.strip().splitlines()[-1])
    assert max(errors) < 1e-12, errors


PATTERNS = np.array([[[1, 1, 1], [0, 0, 0], [0, 0, 0]], [[1, 0, 0], [1, 0, 0], [1, 0, 0]],
                     [[1, 0, 0], [0, 1, 0], [0, 0, 1]], [[0, 0, 1], [0, 1, 0], [1, 0, 0]]])


def shifted_patterns(n, rng, size=8, noise=0.1):
    """size x size noisy binary images with one 3x3 pattern pasted at a random place; label =
    which pattern."""
    y = rng.integers(0, len(PATTERNS), n)
    x = (rng.random((n, size, size)) < noise).astype(np.float32)
    for s, (i, j) in enumerate(rng.integers(0, size - 2, (n, 2))):
        x[s, i:i + 3, j:j + 3] = PATTERNS[y[s]]
    return x.reshape(n, -1), y


def fit(layers, x, y, xt, yt, steps=250, batch=64):
    model = pylgn.Sequential(layers, seed=0)
    opt = pylgn.Adam(model, lr=0.05)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        i = rng.integers(0, len(x), batch)
        opt.zero_grad()
        model.backward(pylgn.softmax_cross_entropy(model.forward(x[i]), y[i])[1])
        opt.step()
    return float((model.eval().forward(xt).argmax(1) == yt).mean()), model.num_gates


def test_conv_learns_shifted_patterns_better_than_dense(capsys):
    rng = np.random.default_rng(0)
    x, y = shifted_patterns(2000, rng)
    xt, yt = shifted_patterns(1000, rng)
    conv = [LogicConv2d(1, 8, 8), OrPool2d(8, 8), LogicConv2d(8, 16, 4), OrPool2d(16, 4),
            pylgn.LogicLayer(64, 200), pylgn.GroupSum(4, tau=6.0)]
    dims = [64, 2800, 1400, 800, 400]
    dense = [pylgn.LogicLayer(a, b) for a, b in zip(dims[:-1], dims[1:])]
    dense.append(pylgn.GroupSum(4, 10.0))
    acc_conv, gates_conv = fit(conv, x, y, xt, yt)
    acc_dense, gates_dense = fit(dense, x, y, xt, yt)
    with capsys.disabled():
        print(f"\nshifted patterns, discretized test accuracy: conv {acc_conv:.3f} "
              f"({gates_conv} gates), dense {acc_dense:.3f} ({gates_dense} gates)")
    assert acc_conv >= 0.8 and acc_conv >= acc_dense + 0.2     # measured: 0.894 vs 0.548


def test_cdlgn_m_configuration():
    layers = cdlgn("cdlgn-m")
    convs = [l for l in layers if isinstance(l, LogicConv2d)]
    assert [l.out_channels for l in convs] == [256, 1024, 4096, 8192]
    assert [l.in_size for l in convs] == [(32, 32), (16, 16), (8, 8), (4, 4)]
    assert all(l.gates_per_tree == 7 and l.n_leaves == 8 for l in convs)
    assert [l.out_dim for l in layers if type(l) is pylgn.LogicLayer] == [327680, 163840, 81920]
    assert layers[-1].k == 10 and layers[-1].tau == 40.0
    per_block = 7 * 256 * 32 * 32                         # 256 trees x 1024 positions = same
    count = gate_count(layers)
    assert count["conv"] == 3 * per_block + 7 * 8192 * 16
    assert count["dense"] == 573440
    deep = build_arch("cdlgn-m", depth_scale=2)
    assert sum(isinstance(l, LogicConv2d) for l in deep) == 8
    assert gate_count(deep)["conv"] > count["conv"]
    m1, m2 = memory_estimate(layers, 64), memory_estimate(layers, 128)
    assert m1["params"] == m2["params"] == 16 * sum(getattr(l, "n_params", 0) for l in layers)
    assert m2["activations"] > 1.9 * m1["activations"] and m2["total"] > m1["total"]


def test_cdlgn_small_k_trains_one_step():
    layers = cdlgn("cdlgn-tiny", k=1, in_channels=3, in_size=16, classes=4, tau=5.0)
    model = pylgn.Sequential(layers, seed=1)
    assert model.num_gates == gate_count(layers)["total"]
    x = np.random.default_rng(15).random((2, model.in_dim)).astype(np.float32)
    opt = pylgn.Adam(model)
    model.backward(pylgn.softmax_cross_entropy(model.forward(x), np.array([0, 3]))[1])
    opt.step()
    assert np.isfinite(model.params).all() and np.abs(model.grads).sum() > 0
    assert set(ARCHS) >= {"cdlgn-m", "cdlgn-tiny"}


def test_config_rebuilds_layer():
    layer = LogicConv2d(3, 4, (5, 6), stride=2, param="op", channel_groups=None)
    cfg = layer.config()
    assert cfg.pop("type") == "LogicConv2d" and LogicConv2d(**cfg).config() == layer.config()
    pool = OrPool2d(3, (5, 6), kernel=3, stride=1)
    cfg = pool.config()
    assert cfg.pop("type") == "OrPool2d" and OrPool2d(**cfg).config() == pool.config()


@pytest.mark.parametrize("make,match", [
    (lambda: LogicConv2d(1, 2, 2, receptive_field=5, padding=1), "in_size"),
    (lambda: OrPool2d(2, (5, 1)), "in_size"),
    (lambda: LogicConv2d(3, 4, 5, channel_groups=2), "channel_groups"),
    (lambda: LogicConv2d(0, 4, 5), "in_channels"),
    (lambda: LogicConv2d(2, 4, (5, 5, 5)), "in_size"),
    (lambda: LogicConv2d(2, 4, 5, padding=3), "padding"),
    (lambda: LogicConv2d(2, 4, 5, param="op", arity=3), "arity"),
    (lambda: LogicConv2d(2, 4, 5, estimator="tanh"), "estimator"),
    (lambda: pylgn.Sequential([LogicConv2d(1, 4, 8), OrPool2d(16, 4)]), "shape"),
    (lambda: pylgn.Sequential([LogicConv2d(1, 4, 8), OrPool2d(4, 4)]), "in_dim"),
    (lambda: cdlgn("cdlgn-xl"), "name"),
    (lambda: cdlgn("cdlgn-m", classes=7), "classes"),
    (lambda: cdlgn("cdlgn-m", in_size=8), "in_size"),
])
def test_bad_input_raises_clear_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_leaves_and_types():
    layer = LogicConv2d(2, 3, 4)
    model = pylgn.Sequential([layer])
    with pytest.raises(ValueError, match="leaves"):
        layer.bind(model.backend, layer.weights, layer.grad, layer.leaves + 5)
    with pytest.raises(TypeError, match="out_channels"):
        LogicConv2d(2, 2.5, 4)
    with pytest.raises(ValueError, match="x"):
        model.forward(np.zeros((2, 31)))
