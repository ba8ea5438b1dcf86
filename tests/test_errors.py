"""Bad input raises ValueError/TypeError naming the argument; never a numba crash."""
import numpy as np
import pytest

import pylgn


@pytest.fixture
def model():
    return pylgn.Sequential([pylgn.LogicLayer(8, 16), pylgn.GroupSum(4)], seed=0)


@pytest.mark.parametrize("kwargs,err,name", [
    (dict(in_dim=0), ValueError, "in_dim"),
    (dict(in_dim=2.5), TypeError, "in_dim"),
    (dict(out_dim=-1), ValueError, "out_dim"),
    (dict(arity=7), ValueError, "arity"),
    (dict(arity=3, param="op"), ValueError, "arity"),
    (dict(param="xyz"), ValueError, "param"),
    (dict(estimator="tanh"), ValueError, "estimator"),
    (dict(init="zeros"), ValueError, "init"),
    (dict(connections="full"), ValueError, "connections"),
    (dict(grad_factor="2"), TypeError, "grad_factor"),
    (dict(sigma=-1.0), ValueError, "sigma"),
    (dict(init_target="z"), ValueError, "init_target"),
    (dict(init_target="01"), ValueError, "init_target"),
])
def test_layer_options(kwargs, err, name):
    args = dict(in_dim=8, out_dim=16) | kwargs
    with pytest.raises(err, match=name):
        pylgn.LogicLayer(**args)


def test_model_construction():
    with pytest.raises(ValueError, match="in_dim"):
        pylgn.Sequential([pylgn.LogicLayer(8, 16), pylgn.LogicLayer(15, 16)])
    with pytest.raises(ValueError, match="GroupSum"):
        pylgn.Sequential([pylgn.LogicLayer(8, 16), pylgn.GroupSum(3)])
    with pytest.raises(ValueError, match="GroupSum"):
        pylgn.Sequential([pylgn.GroupSum(2), pylgn.LogicLayer(8, 16)])
    with pytest.raises(TypeError, match="layers"):
        pylgn.Sequential([])
    with pytest.raises(ValueError, match="device"):
        pylgn.Sequential([pylgn.LogicLayer(8, 16)], device="tpu")
    with pytest.raises(TypeError, match="dtype"):
        pylgn.Sequential([pylgn.LogicLayer(8, 16)], dtype=np.int32)
    with pytest.raises(ValueError, match="tau"):
        pylgn.GroupSum(2, tau=0.0)


@pytest.mark.parametrize("x,err,msg", [
    (np.zeros((4, 7)), ValueError, "x: expected shape"),
    (np.zeros(8), ValueError, "x: expected shape"),
    (np.zeros((0, 8)), ValueError, "x: expected shape"),
    (np.full((4, 8), np.nan), ValueError, "x: contains NaN"),
    (np.full((4, 8), 1.5), ValueError, r"x: values must lie in \[0, 1\]"),
    (np.full((4, 8), 2, dtype=np.int64), ValueError, "x: integer inputs"),
    (np.full((4, 8), "a"), TypeError, "x: expected a real"),
])
def test_forward_input(model, x, err, msg):
    with pytest.raises(err, match=msg):
        model.forward(x)


def test_loss_input():
    z = np.zeros((4, 3))
    with pytest.raises(ValueError, match="labels"):
        pylgn.softmax_cross_entropy(z, np.array([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="labels"):
        pylgn.softmax_cross_entropy(z, np.array([0, 1, -1, 2]))
    with pytest.raises(ValueError, match="labels"):
        pylgn.softmax_cross_entropy(z, np.array([0, 1, 2]))
    with pytest.raises(TypeError, match="labels"):
        pylgn.softmax_cross_entropy(z, np.array([0.0, 1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="logits"):
        pylgn.softmax_cross_entropy(np.full((2, 3), np.nan), np.array([0, 1]))
    with pytest.raises(ValueError, match="logits"):
        pylgn.softmax_cross_entropy(np.zeros(3), np.array([0]))


def test_backward_misuse(model):
    with pytest.raises(RuntimeError, match="forward"):
        model.backward(np.zeros((4, 4)))
    out = model.forward(np.zeros((4, 8)))
    with pytest.raises(ValueError, match="dout"):
        model.backward(np.zeros((3, 4)))
    model.eval().forward(np.zeros((4, 8)))
    with pytest.raises(RuntimeError, match="eval"):
        model.backward(out)


def test_adam_options(model):
    with pytest.raises(ValueError, match="lr"):
        pylgn.Adam(model, lr=0.0)
    with pytest.raises(ValueError, match="betas"):
        pylgn.Adam(model, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="weight_decay"):
        pylgn.Adam(model, weight_decay=-0.1)


class _DeviceLike(np.ndarray):
    """A numpy array that counts its copies to the host (``get``), as a CuPy array would."""
    copies = 0

    def get(self):
        type(self).copies += 1
        return np.asarray(self)


def test_device_array_checks_read_min_and_max_in_one_copy():
    """For a device array (any module other than numpy) the range checks stack min and max and
    copy them back once; the same errors come out."""
    import types
    from pylgn._checks import check_batch, check_labels
    fake = types.SimpleNamespace(stack=lambda vals: np.stack(vals).view(_DeviceLike))
    check_labels("y", np.array([2, 0, 1]), 3, 3, xp=fake)
    check_batch("x", np.array([[0.0, 1.0]]), 2, xp=fake)
    check_batch("x", np.array([[0, 1]], dtype=np.int8), 2, xp=fake)
    assert _DeviceLike.copies == 3
    with pytest.raises(ValueError, match=r"y: values must lie in \[0, 3\), got range \[0, 3\]"):
        check_labels("y", np.array([3, 0]), 2, 3, xp=fake)
    with pytest.raises(ValueError, match="x: contains NaN"):
        check_batch("x", np.array([[np.nan, 0.5]]), 2, xp=fake)
    with pytest.raises(ValueError, match="x: integer inputs must be 0/1"):
        check_batch("x", np.array([[0, 2]]), 2, xp=fake)
