"""Learned connections (LogicLayer(connections="learned"), pylgn.choice): the choice kernels
against numpy formulas, every gradient against float64 finite differences, eval and circuits on
the argmax wiring, checkpoints, the CLI, bad arguments."""
import os

import numpy as np
import pytest

import pylgn
import reference as ref
from pylgn import choice
from pylgn.kernels import cpu
from pylgn.wiring import reverse_index


def learned_net(arity=2, param="iwp", kind="ste", cands=(4, 5), dims=(10, 24, 18), k=3, **kw):
    layers = [pylgn.LogicLayer(a, b, arity=arity, param=param, connections="learned",
                               candidates=c, choice=kind, **kw)
              for a, b, c in zip(dims[:-1], dims[1:], cands)]
    return pylgn.Sequential(layers + [pylgn.GroupSum(k, tau=1.5)], seed=3, dtype=np.float64)


def loss_of(model, x, y):
    model.zero_grad()
    return model.loss_and_grad(x, y)[0]


# kernels -------------------------------------------------------------------------------------

def test_choice_kernels_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.random((13, 37))
    cand = rng.integers(0, 13, (21, 5)).astype(np.int32)
    route = rng.random((21, 5))
    route[route < 0.3] = 0.0                                    # skipped terms
    gs = rng.standard_normal((21, 37))
    xs, corr, dx = np.empty((21, 37)), np.empty((21, 5)), np.empty((13, 37))
    cpu.choice_forward(x, cand, route, xs)
    np.testing.assert_allclose(xs, np.einsum("jc,jcs->js", route, x[cand]), rtol=1e-13)
    cpu.choice_backward(x, cand, gs, corr)
    np.testing.assert_allclose(corr, np.einsum("jcs,js->jc", x[cand], gs), rtol=1e-12)
    rev = reverse_index(cand.reshape(1, -1), 13)
    cpu.choice_backward_inputs(gs, *rev, route, 0.5, dx)
    want = np.zeros_like(dx)
    for j in range(21):
        for c in range(5):
            want[cand[j, c]] += 0.5 * route[j, c] * gs[j]
    np.testing.assert_allclose(dx, want, rtol=1e-12, atol=1e-14)


def test_candidates_keep_the_random_wiring_first_and_spread_the_rest():
    rng = np.random.default_rng(1)
    first = rng.integers(0, 50, 600)
    cand = choice.draw_candidates(first, 50, 9, rng)
    assert cand.shape == (600, 9) and cand.dtype == np.int32
    np.testing.assert_array_equal(cand[:, 0], first)
    counts = np.bincount(cand[:, 1:].ravel(), minlength=50)
    assert counts.max() - counts.min() <= 1                    # stacked permutations
    every = choice.draw_candidates(first[:7], 50, 50, rng)
    assert all(sorted(row) == list(range(50)) for row in every) and (every[:, 0] == first[:7]).all()


# gradients -----------------------------------------------------------------------------------

@pytest.mark.parametrize("arity,param", [(1, "iwp"), (2, "iwp"), (2, "op"), (3, "iwp"),
                                         (4, "iwp"), (5, "iwp"), (6, "iwp")])
def test_softmax_choice_gradients_match_finite_differences(arity, param):
    """The mixture is differentiable everywhere: every parameter (gate weights and choice logits
    of both layers, so the input gradient through the first layer's route too) and the input."""
    model = learned_net(arity, param, "softmax", choice_tau=0.7)
    rng = np.random.default_rng(arity)
    x, y = rng.random((6, 10)), rng.integers(0, 3, 6)
    loss_of(model, x, y)
    grads = model.grads.copy()
    for i in rng.choice(model.params.size, 60, replace=False):
        fd = ref.finite_diff(lambda: loss_of(model, x, y), model.params, i)
        assert abs(fd - grads[i]) < 1e-7 * max(1.0, abs(fd)), (i, fd, grads[i])


def slot_gradients_fd(layer, x, dy):
    """gs[j, s] = d(sum dy * y)/d xs[j, s] by central differences on the numpy forward of the
    gates over the slot rows xs (identity wiring: gate g reads slots g*n .. g*n + n - 1)."""
    n, G = layer.arity, layer.out_dim
    xs = x[choice.argmax_rows(layer.candidates, layer.theta, np)]
    ident = np.arange(G * n).reshape(G, n).T
    table = ref.relaxed_table(layer)
    f = lambda: float((ref.gate_forward(xs, ident, table) * dy).sum())  # noqa: E731
    gs = np.empty_like(xs)
    for j, s in np.ndindex(*xs.shape):
        gs[j, s] = ref.finite_diff(f, xs, (j, s))
    return xs, gs


@pytest.mark.parametrize("arity,param", [(2, "iwp"), (2, "op"), (4, "iwp"), (6, "iwp")])
def test_straight_through_gradients(arity, param):
    """Straight-through: the gate weights and the input get the exact gradient of the argmax
    wiring (finite differences: the argmax does not move under a small step), the logits the
    surrogate sum_s (2 x[cand] - 1) dL/dxs, with dL/dxs from finite differences."""
    layer = pylgn.LogicLayer(9, 12, arity=arity, param=param, connections="learned", candidates=4)
    model = pylgn.Sequential([layer], seed=5, dtype=np.float64)
    rng = np.random.default_rng(arity)
    layer.theta[...] = rng.standard_normal(layer.theta.shape)       # a wiring away from cand 0
    x, dy = rng.random((5, 9)), rng.standard_normal((5, 12))
    model.zero_grad()
    layer.forward(x.T.copy())
    dx = layer.backward(dy.T.copy())
    loss = lambda: float((model.forward(x) * dy).sum())               # noqa: E731
    for i in rng.choice(layer.weights.size, 20, replace=False):
        idx = np.unravel_index(i, layer.weights.shape)
        before = layer.grad[idx]
        fd = ref.finite_diff(loss, layer.weights, idx)
        assert abs(fd - before) < 1e-7, (idx, fd, before)
    dx_fd = np.array([[ref.finite_diff(loss, x, (s, i)) for s in range(5)] for i in range(9)])
    np.testing.assert_allclose(dx, dx_fd, atol=1e-7)
    xs, gs = slot_gradients_fd(layer, x.T.copy(), dy.T.copy())
    xc = x.T[layer.candidates]                                        # (S, C, batch)
    want = 2 * np.einsum("jcs,js->jc", xc, gs) - gs.sum(1, keepdims=True)
    np.testing.assert_allclose(layer.theta_grad, want, atol=1e-7)


# eval, circuit, checkpoint ------------------------------------------------------------------

@pytest.mark.parametrize("kind", choice.CHOICES)
def test_training_moves_the_wiring_and_eval_uses_the_argmax(kind, tmp_path):
    model = learned_net(3, kind=kind, cands=(6, "all"))
    model.params[...] = model.params.astype(np.float32).astype(np.float64)
    opt = pylgn.Adam(model, lr=0.1)
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 10)), rng.integers(0, 3, 64)
    first = model.logic_layers[0]
    start = first.connections.copy()
    for _ in range(30):
        loss_of(model, x, y)
        opt.step()
    assert (first.connections != start).any()
    assert first.connections.shape == (3, 24)
    chosen = first.candidates[np.arange(72), first.theta.argmax(1)].reshape(24, 3).T
    np.testing.assert_array_equal(first.connections, chosen)
    model.eval()
    xb = rng.integers(0, 2, (40, 10)).astype(np.float64)
    h = xb.T.astype(np.int64)
    for layer in model.logic_layers:
        h = ref.gate_forward_discrete(h, layer.connections, layer.discrete_table())
    np.testing.assert_array_equal(model.forward(xb), h.reshape(3, -1, 40).sum(1).T / 1.5)
    np.testing.assert_array_equal(model.to_circuit().scores(xb.astype(bool)) / 1.5,
                                  model.forward(xb))
    path = tmp_path / "m.h5"
    pylgn.save(path, model, optimizer=opt)
    ck = pylgn.load(path)
    np.testing.assert_array_equal(ck.model.params, model.params)
    np.testing.assert_array_equal(ck.model.logic_layers[1].candidates, model.logic_layers[1].candidates)
    model.train()
    for m, o in ((model, opt), (ck.model, ck.optimizer)):           # resume is exact
        for _ in range(3):
            loss_of(m, x, y)
            o.step()
    np.testing.assert_array_equal(ck.model.params, model.params)


def test_corrupt_candidates_in_a_checkpoint_are_refused(tmp_path):
    import h5py
    model = learned_net()
    path = tmp_path / "m.h5"
    pylgn.save(path, model)
    with h5py.File(path, "r+") as f:
        f["layers/000/candidates"][0, 0] = 10                        # == in_dim: out of range
    with pytest.raises(ValueError, match="candidates"):
        pylgn.load(path)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="candidates"):
        pylgn.LogicLayer(10, 4, connections="learned", candidates=1)
    with pytest.raises(ValueError, match="candidates"):
        pylgn.LogicLayer(10, 4, connections="learned", candidates=11)
    with pytest.raises(ValueError, match="choice"):
        pylgn.LogicLayer(10, 4, connections="learned", candidates=4, choice="gumbel")
    for tau in (0.0, 1e-300, float("nan")):
        with pytest.raises((ValueError, TypeError), match="choice_tau"):
            pylgn.LogicLayer(10, 4, connections="learned", candidates=4, choice="softmax",
                             choice_tau=tau)
    sharp = choice.route("softmax", np.array([[1e30, 0.0, -1e30]], np.float32), 1.2e-38, np)
    np.testing.assert_array_equal(sharp, [[1, 0, 0]])                 # no overflow, no NaN
    with pytest.raises(ValueError, match="connections"):
        pylgn.LogicLayer(10, 4, connections="learnt")
    assert pylgn.LogicLayer(3, 4, candidates=99).n_params == 16      # ignored when fixed


def test_cli_trains_learned_wiring_and_exports_it(tmp_path):
    from pylgn.cli import main
    out = tmp_path / "run"
    assert main(["train", "--connections", "learned", "--candidates", "4", "--learned-layers",
                 "first", "--layers", "2", "--width", "200", "--steps", "30",
                 "--eval-every", "30", "--out", str(out), "--no-progress"]) == 0
    ck = pylgn.load(out / "checkpoint.h5")
    first, second = ck.model.logic_layers
    assert first.learned and first.candidates_count == 4 and not second.learned
    assert ck.meta["settings"]["connections"] == "learned"
    assert main(["export", str(out / "checkpoint.h5"), "--format", "c", "-o",
                 str(tmp_path / "m.c")]) == 0
    assert main(["train", "--candidates", "1", "--steps", "1"]) == 2


def test_learned_wiring_behind_learned_thresholds(tmp_path):
    """The input gradient of a learned-wiring layer feeds the thresholds: they move, the circuit
    (encoder + argmax wiring) equals the eval forward, and a resume is exact."""
    from pylgn.thresholds import LearnableThermometer
    enc = LearnableThermometer(1, 3, positions=8)
    model = pylgn.Sequential([enc, pylgn.LogicLayer(24, 30, arity=3, connections="learned",
                                                    candidates=5),
                              pylgn.GroupSum(3, 2.0)], seed=1)
    opt = pylgn.Adam(model, lr=0.05)
    rng = np.random.default_rng(2)
    x, y = rng.random((64, 8)).astype(np.float32), rng.integers(0, 3, 64)
    start = enc.levels.copy()
    for _ in range(10):
        loss_of(model, x, y)
        opt.step()
    assert np.abs(enc.levels - start).max() > 1e-3
    model.eval()
    np.testing.assert_array_equal(model.to_circuit().scores(enc.encode(x).astype(bool)) / 2.0,
                                  model.forward(x))
    pylgn.save(tmp_path / "m.h5", model, optimizer=opt)
    ck = pylgn.load(tmp_path / "m.h5")
    model.train()
    for m, o in ((model, opt), (ck.model, ck.optimizer)):
        loss_of(m.train(), x, y)
        o.step()
    np.testing.assert_array_equal(ck.model.params, model.params)


def test_the_28x28_recipe_gives_wide_gates_their_tau_and_lr():
    from pylgn.recipes import recipe
    name, six = recipe((1, 28, 28), 60000, arity=6)
    assert name == "28x28-grayscale" and (six["tau"], six["lr"]) == (6.0, 0.01)
    two = recipe((1, 28, 28), 60000, arity=2)[1]
    assert (two["tau"], two["lr"]) == (10.0, 0.02) == (recipe((1, 28, 28), 60000)[1]["tau"],
                                                       recipe((1, 28, 28), 60000)[1]["lr"])
    assert recipe((1, 8, 8), 1000, arity=6)[1]["tau"] == 10.0      # other recipes: unchanged
