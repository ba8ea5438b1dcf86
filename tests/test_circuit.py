"""Circuit IR: exactness against model.eval(), validation, save/load, simplify."""
import os

import h5py
import numpy as np
import pytest

import pylgn
from pylgn import gates
from pylgn.circuit import Circuit, PackedBits, Thermometer
from pylgn.data import Dataset, centre_crop, thermometer
from test_packed import all_inputs, numpy_eval, random_graph, random_layers


def random_model(rng, in_dim, widths, arities, param="iwp", k=4, tau=3.0, scale=3.0):
    layers, w = [], in_dim
    for G, n in zip(widths, arities):
        layers.append(pylgn.LogicLayer(w, G, arity=n, param=param))
        w = G
    model = pylgn.Sequential(layers + [pylgn.GroupSum(k, tau=tau)], seed=int(rng.integers(1000)))
    model.params[:] = rng.normal(size=model.params.shape) * scale    # diverse discrete tables
    return model.eval()


def check_exact(model, x):
    """scores / tau equals the discretized forward bit for bit; predict is its argmax."""
    c = model.to_circuit()
    bits = x >= 0.5
    ref = model.forward(x)
    scores = c.scores(bits)
    assert scores.dtype == np.int32
    assert np.array_equal(ref, scores.astype(np.float32) / np.float32(c.tau))
    assert np.array_equal(c.predict(bits), np.argmax(ref, axis=1))
    assert np.array_equal(c.scores(c.pack(bits)), scores)
    return c


@pytest.mark.parametrize("arity", [1, 2, 3, 4, 5, 6])
def test_model_to_circuit_exact_every_arity(arity):
    rng = np.random.default_rng(arity)
    model = random_model(rng, 30, [48, 40, 40], [arity, 2, arity])
    c = check_exact(model, rng.random((333, 30)).astype(np.float32))
    assert c.num_gates == model.num_gates and (c.k, c.tau) == (4, 3.0)


def test_op_model_to_circuit_exact():
    rng = np.random.default_rng(7)
    model = random_model(rng, 20, [64, 64, 40], [2, 2, 2], param="op", k=5, tau=2.5)
    check_exact(model, rng.random((200, 20)).astype(np.float32))


def test_model_to_circuit_exhaustive_small():
    rng = np.random.default_rng(3)
    model = random_model(rng, 10, [24, 16, 12], [3, 2, 4], k=3, tau=1.0)
    check_exact(model, all_inputs(10).astype(np.float32))


def test_predict_ties_lowest_class_wins():
    """Two classes with equal counts: class 0 wins."""
    c = Circuit(2, [(np.array([[0, 0, 1, 1]]), np.array([[0, 1]] * 4))], k=2)
    x = np.array([[1, 1], [0, 1], [1, 0], [0, 0]], dtype=bool)
    assert c.scores(x).tolist() == [[2, 2], [0, 2], [2, 0], [0, 0]]
    assert c.predict(x).tolist() == [0, 1, 0, 0]


def test_circuit_without_k():
    c = Circuit(3, random_layers(np.random.default_rng(0), 3, [5], [2]))
    assert c.evaluate(all_inputs(3)).shape == (8, 5)
    with pytest.raises(ValueError, match="k"):
        c.scores(all_inputs(3))


@pytest.mark.parametrize("layers, match", [
    ([], "layers"),
    ([(np.zeros((2, 3), int), np.zeros((3, 4), np.uint8), 1)], "pair"),
    ([(np.zeros((7, 3), int), np.zeros((3, 128), np.uint8))], "arity 1..6"),
    ([(np.zeros((2, 3)), np.zeros((3, 4), np.uint8))], "int array"),
    ([(np.full((2, 3), 4), np.zeros((3, 4), np.uint8))], r"\[0, 4\)"),
    ([(np.full((2, 3), -1), np.zeros((3, 4), np.uint8))], r"\[0, 4\)"),
    ([(np.zeros((2, 3), int), np.zeros((3, 8), np.uint8))], "shape"),
    ([(np.zeros((2, 3), int), np.full((3, 4), 2, np.uint8))], "0/1"),
    ([(np.zeros((2, 3), int), np.full((3, 4), 0.5))], "0/1"),
    ([(np.zeros((2, 3), int), np.zeros((3, 4), np.uint8)),
      (np.full((2, 2), 3), np.zeros((2, 4), np.uint8))], r"layers\[1\].*\[0, 3\)"),
])
def test_constructor_validates(layers, match):
    with pytest.raises(ValueError, match=match):
        Circuit(4, layers)


def test_constructor_validates_k_tau_in_dim_and_graph():
    ok = [(np.zeros((2, 4), int), np.zeros((4, 4), np.uint8))]
    with pytest.raises(ValueError, match="k"):
        Circuit(4, ok, k=3)
    with pytest.raises(ValueError, match="tau"):
        Circuit(4, ok, k=2, tau=0.0)
    with pytest.raises((ValueError, TypeError), match="in_dim"):
        Circuit(0, ok)
    with pytest.raises(ValueError, match="sources"):          # gate 0 reads gate 1 (a cycle)
        Circuit.from_graph(2, [2, 2], [0, 3, 0, 1], [6, 6], [2, 3])
    with pytest.raises(ValueError, match="sources"):
        Circuit.from_graph(2, [2], [0], [6], [2])
    with pytest.raises(ValueError, match="codes"):
        Circuit.from_graph(2, [1], [0], [4], [2])
    with pytest.raises(ValueError, match="outputs"):
        Circuit.from_graph(2, [1], [0], [1], [3])
    with pytest.raises(ValueError, match="arity"):
        Circuit.from_graph(2, [0], [], [0], [2])


def test_bad_inputs_name_the_argument():
    rng = np.random.default_rng(0)
    c = Circuit(6, random_layers(rng, 6, [8], [2]), k=2)
    for bad, err in ((np.zeros((3, 5), bool), ValueError), (np.full((3, 6), 0.3), ValueError),
                     (np.full((3, 6), 2), ValueError), (np.zeros(6, bool), ValueError),
                     (np.zeros((0, 6), bool), ValueError), (np.zeros((3, 6), object), TypeError)):
        for f in (c.scores, c.predict, c.evaluate):
            with pytest.raises(err, match="x"):
                f(bad)
    other = Circuit(5, random_layers(rng, 5, [8], [2]))
    with pytest.raises(ValueError, match="x"):
        c.scores(other.pack(np.zeros((2, 5), bool)))


def test_save_load_roundtrip(tmp_path):
    rng = np.random.default_rng(5)
    c = random_graph(rng, 12, 80, 20, k=4)
    c.tau = 2.5
    path = tmp_path / "c.h5"
    c.save(path)
    assert os.listdir(tmp_path) == ["c.h5"]                  # no temp file left behind
    d = Circuit.load(path)
    for key in ("arity", "ptr", "src", "codes", "outputs"):
        assert np.array_equal(getattr(c, key), getattr(d, key))
    assert (d.in_dim, d.k, d.tau) == (12, 4, 2.5)
    x = all_inputs(12)[::7]
    assert np.array_equal(d.scores(x), c.scores(x))
    with h5py.File(tmp_path / "ckpt.h5", "w") as f:           # inside a checkpoint group
        s = c.simplify()
        s.save(f.create_group("circuit"))
    with h5py.File(tmp_path / "ckpt.h5", "r") as f:
        e = Circuit.load(f["circuit"])
    assert e.report == s.report and np.array_equal(e.scores(x), c.scores(x))


def test_load_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="path"):
        Circuit.load(bad)
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["format"] = "something else"
    with pytest.raises(ValueError, match="format"):
        Circuit.load(tmp_path / "other.h5")
    c = Circuit(2, [(np.array([[0], [1]]), np.array([[0, 1, 1, 0]]))])
    c.save(tmp_path / "ok.h5")
    with h5py.File(tmp_path / "ok.h5", "a") as f:
        del f["codes"]
    with pytest.raises(ValueError, match="corrupt"):
        Circuit.load(tmp_path / "ok.h5")
    with h5py.File(tmp_path / "ok2.h5", "w") as f:
        c.save(f)
        f["src"][0] = 7                                      # reads a node that does not exist
    with pytest.raises(ValueError, match="sources"):
        Circuit.load(tmp_path / "ok2.h5")


# -- simplify -----------------------------------------------------------------------------

def test_simplify_keeps_outputs_exhaustive_small():
    for seed in range(8):
        rng = np.random.default_rng(seed)
        c = Circuit(9, random_layers(rng, 9, [30, 30, 20, 12], [2, 3, 1, 2], special=0.3), k=3)
        g = random_graph(rng, 9, 100, 24, k=4)
        for circ in (c, g):
            s = circ.simplify()
            x = all_inputs(9)
            assert np.array_equal(s.evaluate(x), circ.evaluate(x))
            assert s.num_gates <= circ.num_gates
            assert s.simplify().num_gates == s.num_gates        # a fixed point


def test_simplify_keeps_outputs_large_random_and_op_model():
    rng = np.random.default_rng(11)
    model = random_model(rng, 64, [600, 600, 400], [2, 2, 2], param="op", k=10, scale=2.0)
    c = model.to_circuit()
    s = c.simplify()
    x = rng.integers(0, 2, size=(10_000, 64)).astype(bool)
    assert np.array_equal(s.scores(x), c.scores(x))
    r = s.report
    assert r["gates_before"] == 1600 and r["gates_after"] == s.num_gates < 1600
    removed = r["constant"] + r["pass_through"] + r["negation"] + r["merged"] + r["dead"]
    assert r["gates_after"] == r["gates_before"] - removed + r["outputs_materialized"]
    assert sum(r["per_level_after"]) == s.num_gates and r["depth_after"] <= r["depth_before"]


def two_layer(tab1, conn1, tab2, conn2, in_dim=3, k=None):
    return Circuit(in_dim, [(np.array(conn1), np.array(tab1, dtype=np.uint8)),
                            (np.array(conn2), np.array(tab2, dtype=np.uint8))], k=k)


AND, XOR, OR, NOT_A, A = (gates.gate_table(i) for i in (1, 6, 7, 12, 3))


def test_simplify_removes_dead_gate():
    c = two_layer([AND, XOR], [[0, 1], [1, 2]], [OR], [[0], [0]])    # XOR feeds nothing
    s = c.simplify()
    assert s.num_gates == 1 and s.report["dead"] == 1                 # OR(a, a) folds to a
    assert np.array_equal(s.evaluate(all_inputs(3)), c.evaluate(all_inputs(3)))


def test_simplify_folds_constant_gate():
    false = gates.gate_table(0)
    c = two_layer([false, XOR], [[0, 1], [1, 2]], [OR, AND], [[0, 0], [1, 1]])
    s = c.simplify()                                  # OR(0, x) = x ; AND(0, x) = 0
    assert s.report["constant"] == 2 and s.num_gates == 2             # XOR + one constant output
    assert np.array_equal(s.evaluate(all_inputs(3)), c.evaluate(all_inputs(3)))
    assert s.evaluate(all_inputs(3))[:, 1].sum() == 0


def test_simplify_merges_duplicates():
    c = two_layer([AND, AND, gates.gate_table(14)], [[0, 1, 0], [1, 0, 1]],
                  [XOR, OR], [[0, 0], [1, 2]])
    s = c.simplify()     # AND(b, a) == AND(a, b); NAND = NOT AND; XOR(x, x) = 0; OR(x, ~x) = 1
    assert s.report["merged"] == 2
    assert np.array_equal(s.evaluate(all_inputs(3)), c.evaluate(all_inputs(3)))


def test_simplify_bypasses_double_negation_and_pass_through():
    c = Circuit(2, [(np.array([[0, 1]]), np.array([NOT_A[::3], NOT_A[::3]])),     # NOT a, NOT b
                    (np.array([[0, 1]]), np.array([NOT_A[::3], A[::3]])),          # NOT, pass
                    (np.array([[0], [1]]), np.array([XOR]))])
    s = c.simplify()                                                     # XOR(a, ~b)
    assert s.num_gates == 1 and s.depth == 1 and s.report["depth_before"] == 3
    assert s.report["negation"] == 3 and s.report["pass_through"] == 1
    assert s.table(0).tolist() == [1, 0, 0, 1] and s.sources(0).tolist() == [0, 1]
    assert np.array_equal(s.evaluate(all_inputs(2)), c.evaluate(all_inputs(2)))


def test_simplify_negated_and_input_outputs_materialize():
    c = Circuit(2, [(np.array([[0, 1]]), np.array([NOT_A[::3], A[::3]]))])
    s = c.simplify()                                # out0 = NOT a (one gate), out1 = input b
    assert s.num_gates == 1 and s.outputs.tolist() == [2, 1]
    assert np.array_equal(s.evaluate(all_inputs(2)), c.evaluate(all_inputs(2)))
    assert s.report["outputs_materialized"] == 1


def test_stats_and_repr():
    c = Circuit(4, random_layers(np.random.default_rng(0), 4, [6, 4], [2, 3]), k=2)
    st = c.stats()
    assert st["gates"] == 10 and st["gates_per_level"] == [6, 4] and st["depth"] == 2
    assert st["gates_per_arity"] == {2: 6, 3: 4}
    assert "gates=10" in repr(c) and isinstance(c.pack(np.zeros((1, 4), bool)), PackedBits)


# -- fused thermometer encoding --------------------------------------------------------------

def dataset(x, max_value):
    return Dataset("t", x, np.zeros(len(x), int), x, np.zeros(len(x), int), ["a"], max_value)


@pytest.mark.parametrize("shape, n, crop, max_value", [
    ((1, 8, 8), 3, None, 16), ((1, 28, 28), 2, 20, 255), ((3, 6, 5), 3, 4, 255),
    ((1, 6, 6), 3, None, 4), ((2, 5, 5), 7, 3, 7), ((10,), 1, None, 2)])
@pytest.mark.parametrize("batch", [1, 63, 64, 65, 1000])
def test_thermometer_pack_equals_encode_then_pack(shape, n, crop, max_value, batch):
    """uint8 data against Dataset.encode, floats against thermometer(x / max_value), values on the
    thresholds included (max_value 4, n 3: v = 1, 2, 3
    sit exactly on the levels 1/4, 2/4, 3/4 and must give 0 there)."""
    rng = np.random.default_rng(batch + n)
    x = rng.integers(0, max_value + 1, size=(batch,) + shape).astype(np.uint8)
    ds, enc = dataset(x, max_value), Thermometer(shape, n, crop=crop, max_value=max_value)
    ref = ds.encode(x, n, crop=crop)
    assert enc.in_dim == ref.shape[1] and np.array_equal(enc.encode(x), ref)
    want = pylgn.circuit.pack_bits("x", ref, enc.in_dim).words
    assert np.array_equal(enc.pack(x).words, want)
    xf = x.astype(np.float32)
    xf.flat[::3] = rng.random(xf.size)[::3].astype(np.float32) * max_value   # off-grid values
    ref_f = thermometer(centre_crop(xf, crop).astype(np.float64) / max_value, n).reshape(batch, -1)
    assert np.array_equal(enc.pack(xf).words, pylgn.circuit.pack_bits("x", ref_f, enc.in_dim).words)
    assert np.array_equal(enc.pack(x.astype(np.int64)).words, want)
    assert np.array_equal(enc.pack(x.reshape(batch, -1)).words, want)      # flat samples too


def test_thermometer_exact_threshold_values():
    enc = Thermometer((4,), 3, max_value=4)
    x = np.array([[0, 1, 2, 3], [4, 4, 1, 0]], dtype=np.uint8)
    bits = enc.encode(x).reshape(2, 4, 3)
    assert bits[0].tolist() == [[0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 1, 0]]   # 1/4 > 1/4 is false
    assert np.array_equal(enc.pack(x).words, enc.pack(x.astype(float)).words)


def test_predict_raw_equals_model_on_encoded_data():
    rng = np.random.default_rng(4)
    shape, n, crop = (1, 10, 10), 2, 6
    enc = Thermometer(shape, n, crop=crop)
    for arity in (1, 2, 3, 6):
        model = random_model(rng, enc.in_dim, [90, 60, 60], [arity, 2, arity], k=4, tau=2.0)
        c = model.to_circuit()
        for circ in (c, c.simplify()):
            for batch in (1, 63, 64, 65, 1000):
                x = rng.integers(0, 256, size=(batch,) + shape).astype(np.uint8)
                x[:, 0, 3:7, 3:7] = rng.choice([85, 86, 170, 171], size=(batch, 4, 4))
                bits = dataset(x, 255).encode(x, n, crop=crop).astype(np.float32)
                ref = model.forward(bits)
                scores = circ.scores_raw(x, enc)
                assert np.array_equal(ref, scores.astype(np.float32) / np.float32(circ.tau))
                assert np.array_equal(circ.predict_raw(x, enc), np.argmax(ref, axis=1))
                assert np.array_equal(circ.predict_raw(x.astype(np.float64), enc),
                                      np.argmax(ref, axis=1))


def test_raw_bad_inputs_name_the_argument():
    enc = Thermometer((1, 8, 8), 3, max_value=16)
    c = Circuit(enc.in_dim, random_layers(np.random.default_rng(0), enc.in_dim, [20], [2]), k=2)
    ok = np.zeros((3, 1, 8, 8), np.uint8)
    assert c.predict_raw(ok, enc).shape == (3,)
    for bad, err in ((np.zeros((3, 1, 8, 7), np.uint8), ValueError),
                     (np.zeros((0, 64), np.uint8), ValueError),
                     (np.zeros(64, np.uint8), ValueError),
                     (np.full((3, 64), 17, np.uint8), ValueError),
                     (np.full((3, 64), -1.0), ValueError), (np.full((3, 64), np.nan), ValueError),
                     (np.full((3, 64), 16.5), ValueError), (np.zeros((3, 64), object), TypeError),
                     (np.zeros((3, 64), str), TypeError)):
        with pytest.raises(err, match="x"):
            c.predict_raw(bad, enc)
        with pytest.raises(err, match="x"):
            enc.pack(bad)
    with pytest.raises(TypeError, match="encoder"):
        c.predict_raw(ok, "thermometer")
    with pytest.raises(ValueError, match="encoder"):
        c.predict_raw(ok, Thermometer((1, 8, 8), 2, max_value=16))
    with pytest.raises(ValueError, match="crop"):
        Thermometer((1, 8, 8), 2, crop=9)
    with pytest.raises((ValueError, TypeError), match="thresholds"):
        Thermometer((1, 8, 8), 0)
