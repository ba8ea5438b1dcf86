"""Small nets learn boolean functions to 100 % discretized accuracy (the whole engine end to end)."""
import numpy as np
import pytest

import pylgn


def truth_inputs(n):
    return ((np.arange(2 ** n)[:, None] >> np.arange(n - 1, -1, -1)) & 1).astype(np.float32)


def fit(x, y, layers, width, arity=2, param="iwp", init="residual", steps=800, seed=0):
    """Full-batch training; returns (steps used, discretized accuracy) once it reaches 100 %."""
    dims = [x.shape[1]] + [width] * layers
    model = pylgn.Sequential([pylgn.LogicLayer(a, b, arity=arity, param=param, init=init)
                              for a, b in zip(dims[:-1], dims[1:])]
                             + [pylgn.GroupSum(2, tau=width / 16)], seed=seed)
    opt = pylgn.Adam(model, lr=0.05)
    for step in range(1, steps + 1):
        opt.zero_grad()
        _, d = pylgn.softmax_cross_entropy(model.forward(x), y)
        model.backward(d)
        opt.step()
        if step % 25 == 0:
            acc = (model.eval().forward(x).argmax(1) == y).mean()
            model.train()
            if acc == 1.0:
                break
    return step, acc


@pytest.mark.parametrize("layers", [3, 12])
def test_parity3(layers):
    x = truth_inputs(3)
    y = x.sum(1).astype(int) % 2
    _, acc = fit(x, y, layers, 32)
    assert acc == 1.0


@pytest.mark.parametrize("layers,arity", [(3, 2), (12, 2), (2, 6)])
def test_random_6_input_function(layers, arity):
    x = truth_inputs(6)
    y = np.random.default_rng(42).integers(0, 2, 64)
    _, acc = fit(x, y, layers, 256, arity=arity)
    assert acc == 1.0


def test_op_learns_parity():
    x = truth_inputs(3)
    y = x.sum(1).astype(int) % 2
    _, acc = fit(x, y, 3, 32, param="op", init="gaussian", steps=1500)
    assert acc == 1.0
