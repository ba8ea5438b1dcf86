"""LogicLayer / GroupSum / Sequential: forward against numpy formulas, backward against finite differences."""
import numpy as np
import pytest

import pylgn
import reference as ref
from pylgn.estimators import ESTIMATORS
from pylgn.init import INITS

CASES = [(n, "iwp", e) for n in range(1, 7) for e in ESTIMATORS] + [(2, "op", "sin")]


def net(arity, param, estimator, init="gaussian", dims=(12, 24, 24, 24), k=3, **kw):
    sigma = 1.0 if init == "gaussian" else None
    if estimator == "linear-st" and init == "gaussian":
        kw.setdefault("sigma", 0.3)
    else:
        kw.setdefault("sigma", sigma)
    layers = [pylgn.LogicLayer(a, b, arity=arity, param=param, estimator=estimator, init=init, **kw)
              for a, b in zip(dims[:-1], dims[1:])]
    return pylgn.Sequential(layers + [pylgn.GroupSum(k, tau=0.8)], seed=7, dtype=np.float64)


@pytest.mark.parametrize("arity,param,estimator", CASES)
@pytest.mark.parametrize("init", INITS)
def test_forward_matches_numpy(arity, param, estimator, init):
    model = net(arity, param, estimator, init)
    x = np.random.default_rng(0).random((9, 12))
    h = x.T
    for layer in model.logic_layers:
        h = ref.gate_forward(h, layer.connections, ref.relaxed_table(layer))
    expected = h.reshape(3, -1, 9).sum(axis=1).T / 0.8
    np.testing.assert_allclose(model.forward(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("arity,param,estimator", CASES)
def test_discrete_forward_matches_truth_tables(arity, param, estimator):
    model = net(arity, param, estimator, "residual" if param == "iwp" else "gaussian")
    xb = np.random.default_rng(1).integers(0, 2, (70, 12))
    h = xb.T
    for layer in model.logic_layers:
        if param == "op":
            table = pylgn.gates.OP_TABLES[np.asarray(layer.weights).argmax(1)]
        else:
            table = ref.relaxed_table(layer) >= 0.5
        h = ref.gate_forward_discrete(h, layer.connections, table.astype(np.uint8))
    out = model.eval().forward(xb.astype(np.float64))
    np.testing.assert_array_equal(out * 0.8, h.reshape(3, -1, 70).sum(axis=1).T)


def loss_of(model, x, y):
    return pylgn.softmax_cross_entropy(model.forward(x), y)[0]


EXACT = [c for c in CASES if c[2] in ("sin", "sigmoid")] + [(2, "iwp", "linear-st")]


@pytest.mark.parametrize("arity,param,estimator", EXACT)
def test_gradients_finite_differences(arity, param, estimator):
    """3 logic layers + GroupSum + loss; parameters (all, or 400 spread over every layer), float64,
    rel err < 1e-6. Inputs are checked per layer in test_input_gradient_finite_differences."""
    model = net(arity, param, estimator, grad_factor=1.0)
    rng = np.random.default_rng(2)
    if estimator == "linear-st":        # clip is the identity inside (0, 1): exact gradient there
        model.params[:] = rng.uniform(0.05, 0.95, model.params.shape)
    x = rng.uniform(0.05, 0.95, (5, 12))
    y = rng.integers(0, 3, 5)
    model.zero_grad()
    _, d = pylgn.softmax_cross_entropy(model.forward(x), y)
    model.backward(d)
    idx = np.arange(model.params.size)                 # every parameter, or 400 spread over all
    if idx.size > 400:
        idx = np.sort(rng.choice(idx, 400, replace=False))
    num = np.array([ref.finite_diff(lambda: loss_of(model, x, y), model.params, i) for i in idx])
    err = np.abs(model.grads[idx] - num).max() / np.abs(num).max()
    assert err < 1e-6, err


@pytest.mark.parametrize("arity,param", [(1, "iwp"), (2, "iwp"), (3, "iwp"), (4, "iwp"),
                                         (5, "iwp"), (6, "iwp"), (2, "op")])
def test_input_gradient_finite_differences(arity, param):
    """dL/dx of a layer (through the reverse index) against finite differences, with grad_factor."""
    layer = pylgn.LogicLayer(10, 16, arity=arity, param=param, init="gaussian", sigma=1.0,
                             grad_factor=1.7)
    model = pylgn.Sequential([layer], seed=3, dtype=np.float64)
    rng = np.random.default_rng(4)
    x = rng.uniform(0.05, 0.95, (10, 7))
    dy = rng.normal(size=(16, 7))
    layer.forward(np.ascontiguousarray(x), train=True)
    dx = layer.backward(dy, need_dx=True)
    f = lambda: float((layer.forward(np.ascontiguousarray(x), train=True) * dy).sum())
    num = np.array([[ref.finite_diff(f, x, (i, s)) for s in range(7)] for i in range(10)])
    np.testing.assert_allclose(dx, 1.7 * num, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("arity", [1, 2, 4])
@pytest.mark.parametrize("st,base", [("sin-st", "sin"), ("sigmoid-st", "sigmoid")])
def test_straight_through_surrogates(arity, st, base):
    """Same forward as the base estimator; dL/dW = dL/domega * surrogate instead of * rho'(W)."""
    x = np.random.default_rng(5).random((6, 12))
    y = np.array([0, 1, 2, 0, 1, 2])
    grads = {}
    for name in (st, base):
        model = net(arity, "iwp", name)
        model.zero_grad()
        _, d = pylgn.softmax_cross_entropy(model.forward(x), y)
        model.backward(d)
        grads[name] = model.grads.copy()
    w = model.params
    if base == "sin":
        exact, surrogate = 0.5 * np.cos(w), np.sign(np.cos(w))
    else:
        s = 1.0 / (1.0 + np.exp(-w))
        exact, surrogate = s * (1.0 - s), np.ones_like(w)
    np.testing.assert_allclose(grads[st] * exact, grads[base] * surrogate, rtol=1e-9, atol=1e-15)


def test_linear_st_outside_clip_passes_gradient():
    """linear-st: outside [0, 1] the forward is flat but the gradient still flows (identity)."""
    model = net(2, "iwp", "linear-st", dims=(12, 24, 24))
    model.params[:] = np.where(np.arange(model.params.size) % 2, 1.7, -0.4)
    x = np.random.default_rng(6).random((4, 12))
    model.zero_grad()
    _, d = pylgn.softmax_cross_entropy(model.forward(x), np.array([0, 1, 2, 0]))
    model.backward(d)
    assert np.count_nonzero(model.grads) > 0.5 * model.grads.size


def test_groupsum_contiguous_groups():
    layer = pylgn.LogicLayer(4, 6, init="residual")
    model = pylgn.Sequential([layer, pylgn.GroupSum(2, tau=2.0)], dtype=np.float64)
    gs = model.layers[-1]
    h = np.arange(12.0).reshape(6, 2)
    np.testing.assert_allclose(gs.forward(h), np.array([[6, 9], [24, 27]]) / 2.0)
    d = gs.backward(np.array([[1.0, 2.0], [3.0, 4.0]]))
    np.testing.assert_allclose(d, np.repeat(np.array([[1.0, 2.0], [3.0, 4.0]]), 3, axis=0) / 2.0)


def test_softmax_cross_entropy_matches_formula():
    rng = np.random.default_rng(8)
    z = rng.normal(size=(5, 4)) * 30
    y = rng.integers(0, 4, 5)
    loss, d = pylgn.softmax_cross_entropy(z, y)
    p = ref.softmax(z)
    assert np.isclose(loss, -np.log(p[np.arange(5), y]).mean())
    np.testing.assert_allclose(d, (p - np.eye(4)[y]) / 5, atol=1e-15)
