"""The tiled training step (pylgn.tiling via Sequential.loss_and_grad) against the untiled one."""
import numba
import numpy as np
import pytest

import pylgn
import reference as ref
from pylgn import tiling

CASES = [("iwp", 2, "sin"), ("iwp", 4, "sigmoid"), ("iwp", 6, "sin"), ("op", 2, "sin")]


@pytest.fixture
def threads():
    """Restores numba's thread count after a test that changes it; tests that need 2 threads
    skip where numba has only one (NUMBA_NUM_THREADS=1)."""
    old = numba.get_num_threads()
    yield
    numba.set_num_threads(old)


def _need_threads(n):
    if numba.config.NUMBA_NUM_THREADS < n:
        pytest.skip(f"needs {n} numba threads, NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}")


def dense(param="iwp", arity=2, estimator="sin", widths=(40, 30, 20), in_dim=24, classes=4,
          dtype=np.float64, seed=0, grad_factor=1.5):
    """Gaussian-initialised dense net (non-trivial gradients), ``grad_factor`` on the 2nd layer."""
    dims = (in_dim,) + tuple(widths)
    layers = [pylgn.LogicLayer(a, b, arity=arity, param=param, estimator=estimator,
                               init="gaussian", sigma=1.0,
                               grad_factor=grad_factor if i == 1 else 1.0)
              for i, (a, b) in enumerate(zip(dims, dims[1:]))]
    return pylgn.Sequential(layers + [pylgn.GroupSum(classes, 2.0)], seed=seed, dtype=dtype)


def data(batch=37, in_dim=24, classes=4, seed=1):
    rng = np.random.default_rng(seed)
    return rng.random((batch, in_dim)), rng.integers(0, classes, batch)


def step(model, x, y, **kw):
    """(loss, logits, grads) of one loss_and_grad from zeroed grads."""
    model.zero_grad()
    loss, logits = model.loss_and_grad(x, y, **kw)
    return loss, logits, model.grads.copy()


def assert_close(got, want, rtol=1e-10):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())


@pytest.mark.parametrize("param,arity,estimator", CASES)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_tiled_equals_untiled(param, arity, estimator, n_threads, threads):
    """Batch 37 in tiles of <= 8 samples (ragged): same loss, logits and gradients as the
    untiled step, and bit-identical gradients on a second call with the same thread count."""
    _need_threads(n_threads)
    numba.set_num_threads(n_threads)
    model = dense(param, arity, estimator)
    x, y = data()
    assert tiling.plan(model, 8) is not None                      # the tiled path really runs
    assert len(tiling.split(37, 8, n_threads)) - 1 >= 5
    loss0, logits0, g0 = step(model, x, y, tiled=False)
    loss1, logits1, g1 = step(model, x, y, tile=8)
    assert loss1 == pytest.approx(loss0, rel=1e-12)
    assert_close(logits1, logits0)
    assert_close(g1, g0)
    assert np.abs(g0).max() > 1e-3
    _, _, g2 = step(model, x, y, tile=8)
    assert np.array_equal(g1, g2)


def test_scale_accumulates_and_float32(threads):
    """grads += scale * dL/dparams without zeroing; float32 models agree to float32 precision."""
    _need_threads(2)
    numba.set_num_threads(2)
    model = dense("iwp", 2, dtype=np.float32)
    x, y = data()
    _, _, g = step(model, x, y, tiled=False)
    model.zero_grad()
    model.loss_and_grad(x, y, scale=0.25, tiled=True)
    model.loss_and_grad(x, y, scale=0.75, tiled=True)
    np.testing.assert_allclose(model.grads, g, rtol=2e-4, atol=2e-5 * np.abs(g).max())
    _, _, g3 = step(model, x, y, scale=3.0, tiled=False)
    np.testing.assert_allclose(g3, 3 * g, rtol=1e-5, atol=1e-6 * np.abs(g).max())


def test_gradients_finite_differences():
    """Every parameter of a tiny net: the tiled step's gradient vs a central difference of its
    loss (float64, tiles of 2 samples; grad_factor 1: the true gradient)."""
    model = dense("iwp", 3, "sigmoid", widths=(12, 8), in_dim=6, classes=2, grad_factor=1.0)
    x, y = data(batch=5, in_dim=6, classes=2, seed=3)
    _, _, g = step(model, x, y, tile=2)
    f = lambda: model.loss_and_grad(x, y, tile=2)[0]
    num = np.array([ref.finite_diff(f, model.params, i) for i in range(model.params.size)])
    assert np.abs(g - num).max() / np.abs(num).max() < 1e-6


def test_forward_backward_after_tiled_step():
    """The layers' forward/backward contract still works after (and between) tiled steps."""
    model = dense("op", 2)
    x, y = data()
    _, logits, g = step(model, x, y, tiled=False)
    step(model, x, y, tile=8)
    model.zero_grad()
    out = model.forward(x)
    _, d = pylgn.softmax_cross_entropy(out, y)
    model.backward(d)
    assert_close(out, logits)
    assert_close(model.grads, g)


def test_falls_back_when_no_tile_fits(monkeypatch):
    """With caches too small for one tile, auto tiling gives up and the untiled step runs."""
    model = dense()
    x, y = data()
    _, _, g = step(model, x, y, tiled=False)
    monkeypatch.setattr(tiling, "cache_sizes", lambda: {1: 32 << 10, 2: 1 << 20, 3: 32 << 20})
    assert tiling.plan(model) is not None                  # with usual caches it would tile
    model._tiled = None
    monkeypatch.setattr(tiling, "cache_sizes", lambda: {1: 1024, 2: 1024, 3: 1024})
    assert tiling.plan(model) is None
    monkeypatch.setattr(tiling.TiledStep, "run", lambda *a, **k: pytest.fail("tiled step ran"))
    loss, _, g2 = step(model, x, y, tiled=True)            # asks for tiling, falls back
    assert np.array_equal(g, g2)


def test_auto_tile_and_split():
    caches = tiling.cache_sizes()
    assert caches[2] > 0 and caches[3] > 0
    widths = [784] + [16000] * 4 + [10]
    t = tiling.auto_tile(widths, 4, 2, caches={2: 1 << 20, 3: 32 << 20})
    assert tiling.MIN_TILE <= t <= tiling.MAX_TILE and t % 16 == 0
    assert tiling.auto_tile([784, 100, 10], 4, 2, {2: 1 << 20, 3: 32 << 20}) == tiling.MAX_TILE
    assert tiling.auto_tile([9216] + [128000] * 4 + [10], 4, 2, {2: 1 << 20, 3: 32 << 20}) == 0
    for batch, tile, w in [(256, 32, 2), (100, 32, 2), (37, 8, 2), (1, 8, 2), (5, 2, 1)]:
        b = tiling.split(batch, tile, w)
        sizes = np.diff(b)
        assert b[0] == 0 and b[-1] == batch and sizes.min() >= 1 and sizes.max() <= tile
        assert (len(sizes) % w == 0) or len(sizes) == batch


@pytest.mark.parametrize("x,y,exc,name", [
    (np.zeros((5, 23)), np.zeros(5, dtype=int), ValueError, "x"),
    (np.full((5, 24), np.nan), np.zeros(5, dtype=int), ValueError, "x"),
    (np.full((5, 24), 2.0), np.zeros(5, dtype=int), ValueError, "x"),
    (np.zeros((5, 24)), np.full(5, 4), ValueError, "y"),
    (np.zeros((5, 24)), np.full(5, -1), ValueError, "y"),
    (np.zeros((5, 24)), np.zeros(4, dtype=int), ValueError, "y"),
    (np.zeros((5, 24)), np.zeros(5), TypeError, "y"),
])
def test_bad_input(x, y, exc, name):
    model = dense()
    before = model.grads.copy()
    with pytest.raises(exc, match=f"^{name}:"):
        model.loss_and_grad(x, y, tile=2)
    assert np.array_equal(model.grads, before)


def test_bad_options_and_eval_mode():
    model = dense()
    x, y = data()
    with pytest.raises(ValueError, match="^tile:"):
        model.loss_and_grad(x, y, tile=0)
    with pytest.raises(TypeError, match="^scale:"):
        model.loss_and_grad(x, y, scale=float("nan"))
    model.eval()
    with pytest.raises(RuntimeError, match="eval"):
        model.loss_and_grad(x, y)


def test_conv_models_use_the_untiled_step():
    """LogicConv2d / OrPool2d have no tiled form yet: loss_and_grad runs forward + backward."""
    from pylgn.conv import LogicConv2d, OrPool2d
    layers = [LogicConv2d(2, 4, 6, tree_depth=2), OrPool2d(4, 6),
              pylgn.LogicLayer(36, 40), pylgn.GroupSum(4, 2.0)]
    model = pylgn.Sequential(layers, seed=0, dtype=np.float64)
    x, y = data(batch=7, in_dim=72)
    assert tiling.plan(model, 4) is None
    loss0, logits0, g0 = step(model, x, y, tiled=False)
    loss1, logits1, g1 = step(model, x, y, tile=4)
    assert loss1 == loss0 and np.array_equal(g1, g0) and np.abs(g0).max() > 0
