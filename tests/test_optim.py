"""Adam against the textbook update; determinism across runs and thread counts."""
import numba
import numpy as np
import pytest

import pylgn


def small_model(seed=0, dtype=np.float64):
    return pylgn.Sequential([pylgn.LogicLayer(16, 64), pylgn.LogicLayer(64, 64),
                             pylgn.GroupSum(4, tau=4.0)], seed=seed, dtype=dtype)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_matches_textbook(weight_decay):
    model = small_model()
    opt = pylgn.Adam(model, lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=weight_decay)
    rng = np.random.default_rng(0)
    p = model.params.copy()
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t in range(1, 6):
        g = rng.normal(size=p.shape)
        model.grads[:] = g
        opt.step()
        m = 0.8 * m + 0.2 * g
        v = 0.99 * v + 0.01 * g * g
        mhat, vhat = m / (1 - 0.8 ** t), v / (1 - 0.99 ** t)
        p = p - 0.05 * (mhat / (np.sqrt(vhat) + 1e-6) + weight_decay * p)
        np.testing.assert_allclose(model.params, p, rtol=1e-12, atol=1e-14)
    assert opt.t == 5


def train(threads, steps=6, dtype=np.float32):
    numba.set_num_threads(threads)
    try:
        model = small_model(seed=3, dtype=dtype)
        opt = pylgn.Adam(model)
        rng = np.random.default_rng(1)
        for _ in range(steps):
            x = rng.random((300, 16))
            y = rng.integers(0, 4, 300)
            opt.zero_grad()
            _, d = pylgn.softmax_cross_entropy(model.forward(x), y)
            model.backward(d)
            opt.step()
        return model.params.copy(), opt.m.copy()
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def test_deterministic_across_runs_and_threads():
    p1, m1 = train(1)
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 numba threads")
    p2, m2 = train(2)
    p2b, _ = train(2)
    assert np.array_equal(p1, p2) and np.array_equal(m1, m2) and np.array_equal(p2, p2b)


def test_zero_grad_and_accumulation():
    model = small_model()
    x = np.random.default_rng(2).random((10, 16))
    y = np.arange(10) % 4
    model.zero_grad()
    _, d = pylgn.softmax_cross_entropy(model.forward(x), y)
    model.backward(d)
    once = model.grads.copy()
    model.forward(x)
    model.backward(d)
    np.testing.assert_allclose(model.grads, 2 * once)
    pylgn.Adam(model).zero_grad()
    assert not model.grads.any()


def test_scheduled_lr_formulas():
    import math
    from pylgn.optim import scheduled_lr
    assert scheduled_lr(0.1, 7, 100) == 0.1
    assert scheduled_lr(0.1, 0, 100, "cosine") == pytest.approx(0.1)
    assert scheduled_lr(0.1, 50, 100, "cosine") == pytest.approx(0.05)
    assert scheduled_lr(0.1, 25, 100, "cosine") == pytest.approx(0.05 * (1 + math.cos(math.pi / 4)))
    assert scheduled_lr(0.1, 100, 100, "cosine", final=0.01) == pytest.approx(0.01)
    assert scheduled_lr(0.1, 500, 100, "cosine") == pytest.approx(0.0)
    assert scheduled_lr(0.1, 1, 100, "cosine", warmup=4) == pytest.approx(0.05)
    assert scheduled_lr(0.1, 4, 100, "cosine", warmup=4) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="lr_schedule"):
        scheduled_lr(0.1, 0, 10, "step")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_step_refuses_non_finite_gradients_and_keeps_state(bad):
    model = small_model()
    opt = pylgn.Adam(model, lr=0.05)
    model.grads[:] = 0.1
    opt.step()                                     # moments now non-zero
    before = [a.copy() for a in (model.params, opt.m, opt.v)]
    model.grads[:] = 0.1
    model.grads[model.layers[0].n_params + 3] = bad          # inside layers[1]
    with pytest.raises(ValueError, match=r"layers\[1\] \(LogicLayer\).*NaN or inf"):
        opt.step()
    for a, b in zip((model.params, opt.m, opt.v), before):
        np.testing.assert_array_equal(a, b)
    assert opt.t == 1


def test_step_refuses_gradients_whose_squares_overflow():
    model = small_model(dtype=np.float32)
    opt = pylgn.Adam(model, lr=0.01)
    before = model.params.copy()
    model.grads[-1] = 2e19                         # finite, but 4e38 > float32's max
    with pytest.raises(ValueError, match=r"layers\[1\] \(LogicLayer\) has values of magnitude"):
        opt.step()
    np.testing.assert_array_equal(model.params, before)


def test_step_accepts_large_gradients_whose_squares_fit():
    model = small_model(dtype=np.float32)
    opt = pylgn.Adam(model, lr=0.01)
    model.grads[:] = 1e18                          # the sum of squares passes max / 256; each is fine
    opt.step()
    assert np.isfinite(model.params).all() and opt.t == 1
