"""Trainer: batching, accumulation, evaluation modes, history, diagnostics hook, input checks."""
import json
import sys
import types

import numpy as np
import pytest

import pylgn
from pylgn.train import Trainer, accuracy, evaluate


def _trainer(make_model, **kw):
    model = make_model()
    return Trainer(model, pylgn.Adam(model, lr=0.05), **kw)


def test_epoch_permutations_cover_every_sample(make_model):
    tr = _trainer(make_model, batch_size=10, seed=3)
    seen = np.concatenate([tr._next_indices(30) for _ in range(3)])
    np.testing.assert_array_equal(np.sort(seen), np.arange(30))
    np.testing.assert_array_equal(seen, np.random.default_rng(3).permutation(30))
    tr._next_indices(30)
    assert tr.epoch == 2 and tr.position == 10


def test_leftover_shorter_than_a_batch_starts_a_new_epoch(make_model):
    tr = _trainer(make_model, batch_size=20)
    for _ in range(6):
        tr._next_indices(130)                        # 120 of 130 used
    assert tr.epoch == 1
    tr._next_indices(130)
    assert tr.epoch == 2 and tr.position == 20


def test_accumulation_equals_one_large_batch(make_model, bits_data):
    """accumulate=2 x 50 samples = one batch of 100 (same samples, loss gradient / 2)."""
    x, y = bits_data
    tr = _trainer(make_model, batch_size=50, accumulate=2, seed=7)
    tr.fit(x, y, 1, progress=False)
    ref = make_model()
    idx = np.random.default_rng(7).permutation(len(x))[:100]
    _, dlogits = pylgn.softmax_cross_entropy(ref.forward(x[idx]), y[idx])
    ref.backward(dlogits)
    np.testing.assert_allclose(tr.model.grads, ref.grads, rtol=1e-4, atol=1e-6)
    opt = pylgn.Adam(ref, lr=0.05)
    opt.step()
    np.testing.assert_allclose(tr.model.params, ref.params, rtol=1e-5, atol=1e-6)
    assert tr.step == 1 and tr.optimizer.t == 1


def test_fit_learns_and_logs(make_model, bits_data, tmp_path):
    x, y = bits_data
    tr = _trainer(make_model, batch_size=26)
    before = evaluate(tr.model, x, y)
    hist = tr.fit(x, y, 60, eval_data=(x, y), eval_every=25, progress=False,
                  history_path=str(tmp_path / "h.json"))
    assert hist["step"] == [25, 50, 60]
    assert set(hist) >= {"train_loss", "train_accuracy", "test_accuracy_relaxed",
                         "test_accuracy_discrete", "discretization_gap", "seconds"}
    assert all(len(hist[k]) == 3 for k in hist)
    assert hist["test_accuracy_discrete"][-1] > max(0.6, before["discrete"] + 0.2)
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    np.testing.assert_allclose(hist["discretization_gap"],
                               np.subtract(hist["test_accuracy_relaxed"],
                                           hist["test_accuracy_discrete"]))
    assert json.loads((tmp_path / "h.json").read_text()) == hist
    assert tr.model.training                          # back in train mode after evaluation


def test_evaluate_modes_and_restore(make_model, bits_data):
    x, y = bits_data
    model = make_model()
    model.eval()
    s = evaluate(model, x, y, batch_size=7)           # batches not dividing N
    assert not model.training
    model.train()
    relaxed = np.mean(model.forward(x).argmax(1) == y)
    discrete = np.mean(model.eval().forward(x).argmax(1) == y)
    assert s == pytest.approx(dict(relaxed=relaxed, discrete=discrete, gap=relaxed - discrete))
    assert accuracy(model, x, y, 1000) == pytest.approx(discrete)


def test_best_and_latest_checkpoints(make_model, bits_data, tmp_path):
    x, y = bits_data
    tr = _trainer(make_model, batch_size=26)
    tr.fit(x, y, 30, eval_data=(x, y), eval_every=10, checkpoint_path=str(tmp_path / "c.h5"),
           checkpoint_every=10, best_path=str(tmp_path / "best.h5"), progress=False,
           meta=dict(note="t"))
    latest, best = pylgn.load(tmp_path / "c.h5"), pylgn.load(tmp_path / "best.h5")
    assert latest.step == 30 and latest.meta == dict(note="t")
    assert best.trainer_state["best"] == max(tr.history["test_accuracy_discrete"])
    assert evaluate(best.model, x, y)["discrete"] == tr.best


def test_transform_gets_raw_batches_and_trainer_rng(make_model, bits_data):
    x, y = bits_data
    calls = []

    def transform(xb, rng):
        calls.append(xb.shape)
        assert isinstance(rng, np.random.Generator)
        return 1 - xb

    tr = _trainer(make_model, batch_size=13)
    tr.fit(x, y, 3, transform=transform, progress=False)
    assert calls[0] == (2, 24) and calls[1:] == [(13, 24)] * 3      # first: the shape check


def test_diagnostics_hook(make_model, bits_data, monkeypatch):
    x, y = bits_data
    fake = types.ModuleType("pylgn.diagnostics")
    fake.collect = lambda model, xb, yb: dict(batch=len(xb), mode=model.training)
    monkeypatch.setitem(sys.modules, "pylgn.diagnostics", fake)
    tr = _trainer(make_model, batch_size=10)
    hist = tr.fit(x, y, 7, diagnostics_every=3, progress=False)
    assert hist["diagnostics"] == [dict(step=3, batch=10, mode=True),
                                   dict(step=6, batch=10, mode=True)]


@pytest.mark.parametrize("change, err, match", [
    (dict(x=np.zeros((130, 23))), ValueError, "x: expected shape"),
    (dict(x=np.full((130, 24), 2.0)), ValueError, r"x: values must lie in \[0, 1\]"),
    (dict(y=np.full(130, 4)), ValueError, r"y: values must lie in \[0, 4\)"),
    (dict(y=np.zeros(130)), TypeError, "y: expected an integer array"),
    (dict(y=np.zeros(129, dtype=int)), ValueError, "y: expected shape"),
    (dict(steps=0), ValueError, "steps"),
    (dict(steps=2.5), TypeError, "steps"),
    (dict(eval_every=0), ValueError, "eval_every"),
    (dict(eval_data=(np.zeros((5, 24)),)), TypeError, "eval_data"),
    (dict(eval_data=(np.zeros((5, 24)), np.full(5, 9))), ValueError, r"eval_data\[1\]"),
    (dict(diagnostics_every=-1), ValueError, "diagnostics_every"),
])
def test_fit_checks_input(make_model, bits_data, change, err, match):
    x, y = bits_data
    kw = dict(x=x, y=y, steps=1, progress=False)
    kw.update(change)
    with pytest.raises(err, match=match):
        _trainer(make_model).fit(**kw)


def test_trainer_checks_arguments(make_model, bits_data):
    model, other = make_model(), make_model()
    with pytest.raises(ValueError, match="optimizer"):
        Trainer(model, pylgn.Adam(other))
    with pytest.raises(ValueError, match="batch_size"):
        Trainer(model, pylgn.Adam(model), batch_size=0)
    with pytest.raises(ValueError, match="accumulate"):
        Trainer(model, pylgn.Adam(model), accumulate=0)
    with pytest.raises(ValueError, match="batch_size: 200 exceeds"):
        Trainer(model, pylgn.Adam(model), batch_size=200).fit(*bits_data, 1, progress=False)
    with pytest.raises(ValueError, match="trainer_state"):
        Trainer(model, pylgn.Adam(model)).load_state(dict(step=1))


def test_lr_schedule_sets_rate_per_step_and_resumes_exactly(make_model, bits_data):
    from functools import partial
    from pylgn.optim import scheduled_lr
    x, y = bits_data
    sched = partial(scheduled_lr, 0.05, total=10, kind="cosine")
    a = _trainer(make_model, batch_size=20, lr_schedule=sched)
    a.fit(x, y, 10, progress=False)
    assert a.optimizer.lr == pytest.approx(sched(9)) and a.optimizer.lr < 0.01
    b = _trainer(make_model, batch_size=20, lr_schedule=sched)
    b.fit(x, y, 4, progress=False)
    c = Trainer(b.model, b.optimizer, batch_size=20, lr_schedule=sched).load_state(b.state())
    c.fit(x, y, 6, progress=False)
    np.testing.assert_array_equal(c.model.params, a.model.params)
    with pytest.raises(TypeError, match="lr_schedule"):
        _trainer(make_model, lr_schedule=0.1)


def test_packed_discrete_accuracy_equals_eval_forward(make_model, bits_data):
    x, y = bits_data
    tr = _trainer(make_model, batch_size=20)
    tr.fit(x, y, 30, progress=False)
    xf = np.random.default_rng(0).random(x.shape)             # floats: thresholded at 0.5 alike
    for data in (x, xf):
        assert evaluate(tr.model, data, y) == evaluate(tr.model, data, y, packed=False)
