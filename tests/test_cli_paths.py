"""Public paths of `pylgn train` that the other tests leave out: exact resume of a conv and of a
learned-threshold model, and the flags --augment, --gumbel, --accumulate, --arity, --estimator
and --init each reaching the model or the trainer."""
import shutil

import numpy as np
import pytest

import pylgn
from pylgn.cli import main

SMALL = ["--layers", "1", "--width", "100", "--batch-size", "20", "--eval-every", "2",
         "--no-progress"]


def _train(out, *flags, steps=2):
    assert main(["train", *flags, "--steps", str(steps), "--out", str(out)]) == 0
    return pylgn.load(out / "checkpoint.h5")


@pytest.mark.parametrize("flags", [
    ["--arch", "cdlgn-digits", "--batch-size", "20", "--eval-every", "2", "--no-progress"],
    SMALL + ["--learn-thresholds"],
    SMALL + ["--augment", "shift", "--gumbel", "1.0"],
], ids=["conv", "learned-thresholds", "augment-gumbel"])
def test_resume_is_exact(tmp_path, capsys, flags):
    """2 steps, then --resume to 4, equals 4 straight steps: parameters, Adam moments, trainer
    state (RNG, permutation, position) and history."""
    half = _train(tmp_path / "half", *flags, steps=2)
    assert half.step == 2
    assert main(["train", "--resume", str(tmp_path / "half" / "checkpoint.h5"), "--steps", "4",
                 "--no-progress"]) == 0
    a = pylgn.load(tmp_path / "half" / "checkpoint.h5")
    b = _train(tmp_path / "straight", *flags, steps=4)
    assert a.step == b.step == 4
    np.testing.assert_array_equal(a.model.params, b.model.params)
    np.testing.assert_array_equal(a.optimizer.m, b.optimizer.m)
    np.testing.assert_array_equal(a.optimizer.v, b.optimizer.v)
    np.testing.assert_array_equal(a.trainer_state["permutation"], b.trainer_state["permutation"])
    for key in ("rng", "position", "epoch"):
        assert a.trainer_state[key] == b.trainer_state[key], key
    assert a.trainer_state["history"]["train_loss"] == b.trainer_state["history"]["train_loss"]
    assert not np.array_equal(a.model.params, half.model.params)      # the resume trained
    capsys.readouterr()


def test_arity_estimator_init_reach_the_layers(tmp_path, capsys):
    ck = _train(tmp_path / "r", *SMALL, "--arity", "3", "--estimator", "sigmoid", "--init",
                "gaussian", "--width", "90")
    layer = ck.model.layers[0]
    assert (layer.arity, layer.estimator, layer.init) == (3, "sigmoid", "gaussian")
    assert layer.weights.shape == (90, 8) and layer.connections.shape == (3, 90)
    assert ck.meta["settings"]["arity"] == 3
    default = _train(tmp_path / "d", *SMALL, "--width", "90").model.layers[0]
    assert (default.arity, default.estimator, default.init) == (2, "sin", "residual")
    capsys.readouterr()


def test_gumbel_reaches_the_layers_and_changes_training(tmp_path, capsys):
    plain = _train(tmp_path / "p", *SMALL)
    noisy = _train(tmp_path / "g", *SMALL, "--gumbel", "0.5")
    assert noisy.model.layers[0].gumbel == 0.5 and plain.model.layers[0].gumbel is None
    assert noisy.meta["settings"]["gumbel"] == 0.5
    assert not np.array_equal(noisy.model.params, plain.model.params)
    off = _train(tmp_path / "o", *SMALL, "--gumbel", "0")
    np.testing.assert_array_equal(off.model.params, plain.model.params)
    capsys.readouterr()


def test_accumulate_draws_that_many_micro_batches_per_step(tmp_path, capsys):
    one = _train(tmp_path / "a1", *SMALL)
    two = _train(tmp_path / "a2", *SMALL, "--accumulate", "2")
    assert (one.trainer_state["accumulate"], two.trainer_state["accumulate"]) == (1, 2)
    assert (one.trainer_state["position"], two.trainer_state["position"]) == (40, 80)
    assert one.step == two.step == 2
    np.testing.assert_array_equal(two.trainer_state["permutation"],
                                  one.trainer_state["permutation"])
    # 2 micro-batches of 20 = one batch of 40: the same first update (up to summation order)
    big = _train(tmp_path / "b", *SMALL[:4], "--batch-size", "40", "--eval-every", "1",
                 "--no-progress", steps=1)
    acc = _train(tmp_path / "c", *SMALL[:4], "--batch-size", "20", "--accumulate", "2",
                 "--eval-every", "1", "--no-progress", steps=1)
    np.testing.assert_allclose(acc.optimizer.m, big.optimizer.m, rtol=1e-4, atol=1e-7)
    capsys.readouterr()


@pytest.mark.parametrize("kind", ["crop", "shift"])
def test_augment_changes_the_training_images(tmp_path, capsys, kind):
    plain = _train(tmp_path / "p", *SMALL)
    aug = _train(tmp_path / "a", *SMALL, "--augment", kind)
    assert aug.meta["settings"]["augment"] == kind
    assert not np.array_equal(aug.model.params, plain.model.params)
    none = _train(tmp_path / "n", *SMALL, "--augment", "none")
    np.testing.assert_array_equal(none.model.params, plain.model.params)
    capsys.readouterr()
