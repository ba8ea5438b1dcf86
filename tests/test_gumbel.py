"""Gumbel noise with the straight-through estimator (pylgn.gumbel): sampling frequencies, the
surrogate gradients against float64 finite differences, keyed determinism and exact resume."""
import numpy as np
import pytest

import pylgn
from pylgn import gumbel
from pylgn.estimators import rho
from reference import finite_diff


def _layer(param, T=0.7, estimator="sin", gates=6):
    layer = pylgn.LogicLayer(8, gates, param=param, estimator=estimator, gumbel=T)
    pylgn.Sequential([layer], seed=1, dtype=np.float64)
    layer.weights[...] = np.random.default_rng(2).normal(0, 1.0, layer.weights.shape)
    return layer


@pytest.mark.parametrize("estimator", ["sin", "sigmoid"])
def test_iwp_sample_frequency_is_omega(estimator):
    layer = _layer("iwp", estimator=estimator)
    omega = rho(estimator, layer.weights, np)
    draws = []
    for step in range(4000):
        layer.noise_key = (1, 0, step, 0)
        draws.append(layer.table())
    freq = np.mean(draws, axis=0)
    assert set(np.unique(draws)) <= {0.0, 1.0}
    np.testing.assert_allclose(freq, omega, atol=0.03)


def test_op_sample_frequency_is_softmax():
    layer = _layer("op")
    w = layer.weights
    p = np.exp(w - w.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    counts = np.zeros_like(p)
    for step in range(4000):
        key = (1, 0, step, 0)
        counts[np.arange(len(w)), np.argmax(gumbel.op_noisy_logits(w, key, 0.7, np), 1)] += 1
        layer.noise_key = key
        np.testing.assert_array_equal(layer.table(), pylgn.gates.OP_TABLES[
            np.argmax(gumbel.op_noisy_logits(w, key, 0.7, np), 1)])
    np.testing.assert_allclose(counts / 4000, p, atol=0.03)


def _soft_iwp(layer, w, key):
    """s(W) = sigmoid((logit(rho(W)) + L) / T): the soft sample the straight-through uses."""
    omega = np.clip(rho(layer.estimator, w, np), 1e-6, 1 - 1e-6)
    u = gumbel.uniforms(key, w.shape)
    a = np.log(omega) - np.log1p(-omega) + np.log(u) - np.log1p(-u)
    return 1 / (1 + np.exp(-a / layer.gumbel))


@pytest.mark.parametrize("estimator", ["sin", "sigmoid"])
def test_iwp_straight_through_gradient_finite_difference(estimator):
    layer = _layer("iwp", estimator=estimator)
    key = (1, 0, 5, 0)
    layer.noise_key = key
    layer.table()
    dtable = np.random.default_rng(3).normal(size=layer.weights.shape)
    got = layer.table_backward(dtable)
    w = layer.weights.copy()
    want = np.array([finite_diff(lambda: (dtable * _soft_iwp(layer, w, key)).sum(), w, idx)
                     for idx in np.ndindex(*w.shape)]).reshape(w.shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)


def test_op_straight_through_gradient_finite_difference():
    layer = _layer("op")
    key = (1, 0, 9, 0)
    layer.noise_key = key
    layer.table()
    dtable = np.random.default_rng(4).normal(size=(layer.out_dim, 4))
    got = layer.table_backward(dtable)

    def soft_loss(w):        # <dtable, softmax((W + G) / T) @ OP_TABLES>
        z = gumbel.op_noisy_logits(w, key, layer.gumbel, np)
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return (dtable * (p @ pylgn.gates.OP_TABLES)).sum()
    w = layer.weights.copy()
    want = np.array([finite_diff(lambda: soft_loss(w), w, idx)
                     for idx in np.ndindex(*w.shape)]).reshape(w.shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)


def test_noise_off_outside_training_steps_and_eval_unchanged():
    layer = _layer("iwp")
    plain = pylgn.LogicLayer(8, 6)
    pylgn.Sequential([plain], seed=1, dtype=np.float64)
    plain.weights[...] = layer.weights
    np.testing.assert_array_equal(layer.table(), plain.table())         # no key: relaxed omega
    layer.noise_key = (1, 0, 0, 0)
    np.testing.assert_array_equal(layer.discrete_table(), plain.discrete_table())


@pytest.mark.parametrize("param", ["iwp", "op"])
def test_trainer_gumbel_is_keyed_and_resumes_exactly(param, bits_data):
    x, y = bits_data

    def make():
        layers = [pylgn.LogicLayer(24, 40, param=param, gumbel=1.0),
                  pylgn.LogicLayer(40, 40, param=param, gumbel=1.0), pylgn.GroupSum(4, 2.0)]
        model = pylgn.Sequential(layers, seed=0)
        return pylgn.Trainer(model, pylgn.Adam(model, lr=0.05), batch_size=20, accumulate=2)
    a, b = make(), make()
    a.fit(x, y, 8, progress=False)
    b.fit(x, y, 3, progress=False)
    c = make()
    c.model.params[...] = b.model.params
    c.optimizer.load_state(b.optimizer.m, b.optimizer.v, b.optimizer.t)
    c.load_state(b.state())
    c.fit(x, y, 5, progress=False)
    np.testing.assert_array_equal(c.model.params, a.model.params)
    assert all(l.noise_key is None for l in a.model.logic_layers)        # off after the step
    layer = make().model.layers[0]
    layer.noise_key = (0, 0, 1, 0)
    t1 = layer.table()
    layer.noise_key = (0, 0, 2, 0)
    assert not np.array_equal(t1, layer.table())


def test_gumbel_checked_and_saved(tmp_path):
    with pytest.raises(TypeError, match="gumbel"):
        pylgn.LogicLayer(4, 4, gumbel="hot")
    with pytest.raises(ValueError, match="gumbel"):
        pylgn.LogicLayer(4, 4, gumbel=-1.0)
    model = pylgn.Sequential([pylgn.LogicLayer(4, 4, gumbel=0.5), pylgn.GroupSum(2)], seed=0)
    pylgn.save(tmp_path / "g.h5", model)
    assert pylgn.load(tmp_path / "g.h5").model.layers[0].gumbel == 0.5


def test_conv_tree_levels_are_keyed():
    from pylgn.conv import LogicConv2d, OrPool2d
    conv = LogicConv2d(2, 4, 6, gumbel=1.0)
    model = pylgn.Sequential([conv, OrPool2d(4, 6), pylgn.LogicLayer(36, 20, gumbel=1.0),
                              pylgn.GroupSum(2)], seed=3)
    model.set_noise(7, 1)
    keys = [lv.noise_key for lv in conv.levels] + [model.layers[2].noise_key]
    assert keys == [(3, 0, 7, 1), (3, 1, 7, 1), (3, 2, 7, 1), (3, 128, 7, 1)]
    x = (np.random.default_rng(0).random((5, 72)) < 0.5).astype(np.float32)
    loss, _ = model.loss_and_grad(x, np.array([0, 1, 0, 1, 1]))
    assert np.isfinite(loss) and np.abs(model.grads).sum() > 0
    model.set_noise(None)
    assert all(lv.noise_key is None for lv in conv.levels)
