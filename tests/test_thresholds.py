"""LearnableThermometer: the encoding of pylgn.data at init, straight-through gradients against
float64 finite differences of the sigmoid surrogate, the circuit of the learned constants."""
import numpy as np
import pytest

import pylgn
from pylgn.data import thermometer
from reference import finite_diff


def _model(C=2, n=3, P=5, seed=0, dtype=np.float64):
    enc = pylgn.LearnableThermometer(C, n, positions=P, temperature=0.1)
    layers = [enc, pylgn.LogicLayer(C * n * P, 40), pylgn.LogicLayer(40, 40), pylgn.GroupSum(4, 2.0)]
    return pylgn.Sequential(layers, seed=seed, dtype=dtype)


def test_init_equals_the_fixed_thermometer():
    C, n, P = 2, 3, 5
    model = _model(C, n, P)
    x = np.random.default_rng(0).integers(0, 256, (7, C, P)) / 255.0
    bits = model.layers[0].forward(np.ascontiguousarray(x.reshape(7, -1).T), train=False)
    want = thermometer(x, n).reshape(7, -1)
    np.testing.assert_array_equal(bits.T, want)
    np.testing.assert_array_equal(model.layers[0].encode(x.reshape(7, -1)), want)


def test_straight_through_gradients_finite_difference():
    model = _model()
    enc = model.layers[0]
    enc.weights[...] += np.random.default_rng(1).normal(0, 0.05, enc.weights.shape)
    rng = np.random.default_rng(2)
    x = rng.random((enc.in_dim, 6))
    dy = rng.normal(size=(enc.out_dim, 6))
    model.zero_grad()
    enc.forward(x)
    dx = enc.backward(dy)

    def surrogate(t, xx):       # sum dy * sigmoid((x - t) / T), the forward's soft twin
        z = (xx.reshape(2, 1, 5, 6) - t.reshape(2, 3)[:, :, None, None]) / enc.temperature
        return (dy.reshape(z.shape) / (1 + np.exp(-z))).sum()
    t = enc.weights.copy()
    want = [finite_diff(lambda: surrogate(t, x), t, i) for i in range(t.size)]
    np.testing.assert_allclose(enc.grad, want, rtol=1e-6, atol=1e-9)
    want_dx = np.array([finite_diff(lambda: surrogate(t, x), x, idx)
                        for idx in np.ndindex(*x.shape)]).reshape(x.shape)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-6, atol=1e-9)


def test_learned_thresholds_train_and_fold_into_the_circuit(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.random((200, 10))
    y = (x[:, 0] > 0.37).astype(int) + 2 * (x[:, 3] > 0.61).astype(int)
    model = _model(C=10, n=3, P=1, dtype=np.float32)
    tr = pylgn.Trainer(model, pylgn.Adam(model, lr=0.02), batch_size=50)
    before = model.layers[0].weights.copy()
    tr.fit(x.astype(np.float32), y, 60, progress=False)
    assert not np.array_equal(before, model.layers[0].weights)
    floats = pylgn.train.evaluate(model, x, y, packed=False)
    assert pylgn.train.evaluate(model, x, y) == floats and floats["discrete"] > 0.4          # chance: 0.25
    circuit = model.to_circuit()
    assert circuit.in_dim == 30
    model.eval()
    np.testing.assert_array_equal(circuit.predict(model.layers[0].encode(x)),
                                  model.forward(x).argmax(1))
    pylgn.save(tmp_path / "t.h5", model)
    back = pylgn.load(tmp_path / "t.h5").model
    np.testing.assert_array_equal(back.layers[0].weights, model.layers[0].weights)


def test_checks():
    with pytest.raises(ValueError, match="thresholds"):
        pylgn.LearnableThermometer(2, 0)
    with pytest.raises(TypeError, match="temperature"):
        pylgn.LearnableThermometer(2, 3, temperature="x")
    enc = _model().layers[0]
    with pytest.raises(ValueError, match="x: expected shape"):
        enc.forward(np.zeros((3, 2)))


def test_cli_learn_thresholds_train_eval(tmp_path, capsys):
    import json
    from pylgn.cli import main
    argv = ["train", "--layers", "2", "--width", "300", "--steps", "200", "--eval-every", "200",
            "--learn-thresholds", "--out", str(tmp_path), "--no-progress", "--json"]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    ck = pylgn.load(tmp_path / "checkpoint.h5")
    assert isinstance(ck.model.layers[0], pylgn.LearnableThermometer)
    assert ck.model.in_dim == 64 and ck.model.layers[1].in_dim == 64 * 3
    assert main(["eval", str(tmp_path / "checkpoint.h5"), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["test_accuracy_discrete"] == res["test_accuracy_discrete"] > 0.5
    assert main(["info", str(tmp_path / "checkpoint.h5"), "--json"]) == 0     # its layer has
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])       # levels, no gates
    assert info["in_dim"] == 64 and info["gates"] == 600
    assert main(["export", str(tmp_path / "checkpoint.h5"), "--format", "c", "-o",
                 str(tmp_path / "net.c")]) == 0
    assert "learned thermometer" in capsys.readouterr().out                  # says where the
    _c_export_computes_the_model(tmp_path / "net.c", ck.model, tmp_path)     # bits come from


def _c_export_computes_the_model(path, model, tmp_path):
    """The exported C, compiled and fed the learned encoder's bits of digits, gives the
    discretized model's group counts (its forward on the scaled values, times tau)."""
    from pylgn.data import load_digits
    from test_export import compile_file
    dll = compile_file(path, tmp_path)
    ds = load_digits()
    x = ds.scale(ds.x_test[:150])
    bits = model.encoder.encode(x).astype(bool)
    words = np.ascontiguousarray(model.to_circuit().pack(bits).words.T)
    scores = np.zeros((len(x), model.out_dim), dtype=np.int32)
    dll.pylgn_scores(words.ctypes.data, scores.ctypes.data, len(x))
    want = np.rint(model.eval().forward(x) * model.layers[-1].tau).astype(np.int32)
    model.train()
    assert len(np.unique(want)) > 3
    np.testing.assert_array_equal(scores, want)
