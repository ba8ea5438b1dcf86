"""Initializations (paper-notes section 2) and wiring."""
import numpy as np
import pytest

import pylgn
from pylgn import gates
from pylgn.wiring import reverse_index


def built(n_out=4000, **kw):
    layer = pylgn.LogicLayer(64, n_out, **kw)
    pylgn.Sequential([layer], seed=1, dtype=np.float64)
    return layer


@pytest.mark.parametrize("estimator,mu", [("sin", 1.2), ("sigmoid", 3.0)])
def test_iwp_residual_is_shifted_pass_through(estimator, mu):
    layer = built(estimator=estimator)                   # default target "a": table 0011
    w = layer.weights
    signs = 2.0 * gates.pass_through_table(2, 0) - 1.0
    np.testing.assert_allclose(w.mean(axis=0), mu * signs, atol=0.02)
    np.testing.assert_allclose(w.std(axis=0), 0.25, atol=0.02)
    assert np.array_equal(layer.discrete_table()[0], [0, 0, 1, 1])


def test_iwp_residual_sin_means():
    """sin01 with mu = 1.2, sigma = 0.25 puts omega near 0.05 / 0.95 (paper Fig. 13b)."""
    omega = built().table()
    assert abs(omega[:, 0].mean() - 0.05) < 0.02 and abs(omega[:, 3].mean() - 0.95) < 0.02


def test_init_target_string_and_overrides():
    layer = built(init_target="0110", sigma=0.0, shift=2.0)
    np.testing.assert_array_equal(layer.weights, np.tile([-2.0, 2.0, 2.0, -2.0], (4000, 1)))
    layer = built(arity=3, init_target="c", sigma=0.0)
    np.testing.assert_allclose(layer.weights[0], 1.2 * (2.0 * gates.pass_through_table(3, 2) - 1))


def test_iwp_gaussian():
    w = built(init="gaussian").weights
    assert abs(w.mean()) < 0.01 and abs(w.std() - 0.25) < 0.01


@pytest.mark.parametrize("init,allowed", [
    ("and-or", {1, 7}), ("and-or-residual", {1, 7, 3, 5})])
def test_gate_mixtures(init, allowed):
    layer = built(init=init)
    ids = set(gates.table_class(layer.discrete_table()).tolist())
    assert ids == allowed


def test_uniform_covers_all_gates():
    ids = gates.table_class(built(init="uniform").discrete_table())
    assert set(ids.tolist()) == set(range(16))


def test_op_inits():
    w = built(param="op").weights                          # residual: logit of A = 5, others 0
    expected = np.zeros(16)
    expected[3] = 5.0
    np.testing.assert_array_equal(w, np.tile(expected, (4000, 1)))
    w = built(param="op", init="gaussian").weights
    assert abs(w.std() - 1.0) < 0.01
    ids = built(param="op", init="and-or").weights.argmax(1)
    assert set(ids.tolist()) == {1, 7}


@pytest.mark.parametrize("arity", [1, 2, 3, 6])
def test_random_connections_cover_inputs(arity):
    layer = pylgn.LogicLayer(100, 100, arity=arity)
    pylgn.Sequential([layer], seed=2)
    conn = layer.connections
    assert conn.shape == (arity, 100) and conn.dtype == np.int32
    counts = np.bincount(conn.ravel(), minlength=100)
    assert counts.min() == counts.max() == arity                  # every input read, evenly
    narrow = pylgn.LogicLayer(100, 30, arity=2)               # a narrowing layer: 60 distinct
    pylgn.Sequential([narrow], seed=2)
    assert len(set(narrow.connections.ravel().tolist())) == 60


def test_unique_connections():
    layer = pylgn.LogicLayer(10, 45, connections="unique")     # all C(10, 2) pairs
    pylgn.Sequential([layer], seed=3)
    pairs = {tuple(sorted(p)) for p in layer.connections.T.tolist()}
    assert len(pairs) == 45 and all(a != b for a, b in pairs)
    with pytest.raises(ValueError, match="unique"):
        pylgn.Sequential([pylgn.LogicLayer(10, 46, connections="unique")])


def test_reverse_index():
    conn = np.array([[0, 2, 2], [1, 0, 3]])
    ptr, idx = reverse_index(conn, 5)
    readers = [sorted(idx[ptr[i]:ptr[i + 1]].tolist()) for i in range(5)]
    assert readers == [[0, 4], [3], [1, 2], [5], []]           # slot = k * G + g


def test_same_seed_same_model():
    a = pylgn.Sequential([pylgn.LogicLayer(20, 30), pylgn.GroupSum(3)], seed=5)
    b = pylgn.Sequential([pylgn.LogicLayer(20, 30), pylgn.GroupSum(3)], seed=5)
    c = pylgn.Sequential([pylgn.LogicLayer(20, 30), pylgn.GroupSum(3)], seed=6)
    assert np.array_equal(a.params, b.params) and not np.array_equal(a.params, c.params)
    assert np.array_equal(a.layers[0].connections, b.layers[0].connections)
