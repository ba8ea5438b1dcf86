"""pylgn predict and the C export of the whole classifier (pylgn_predict and main()).

Every model kind (dense, conv, arity 6, learned thresholds, a table, scikit-learn) is checked
three ways on every test sample: `pylgn predict` against the discretized model's own forward on
the reference encoding (Dataset.encode, LearnableThermometer on Dataset.scale, quantile_encode),
and the compiled C (straight-line and table-driven forms) against `pylgn predict`."""
import os
import shutil
import subprocess

import numpy as np
import pytest

import pylgn
from pylgn.cli import main
from pylgn.conv import build_arch
from pylgn.data import Dataset, quantile_encode, quantile_thresholds, write_dataset
from pylgn.encoders import LearnedThermometer, QuantileEncoder, Thermometer
from pylgn.thresholds import LearnableThermometer

CC = shutil.which("cc")
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler (cc) on PATH")
NAMES = [f"c{i}" for i in range(4)]


def randomize(model, rng, scale=3.0):
    """Diverse discrete gates (the initial tables are pass-throughs)."""
    model.params[:] = rng.normal(size=model.params.shape).astype(model.params.dtype) * scale
    return model.eval()


def save(path, model, encoder):
    pylgn.save(path, model, encoder=encoder.config(), class_names=encoder.class_names)
    return str(path)


def image_kind(kind, rng):
    """(model, encoder, raw test images, reference classes) of a model kind on 8x8 images."""
    shape, n, M = (1, 8, 8), 3, 16
    x = rng.integers(0, M + 1, size=(300,) + shape).astype(np.uint8)
    x[:10] = 0                                                   # all-tie samples: class 0
    ds = Dataset("t", x, np.zeros(300, int), x, np.zeros(300, int), NAMES, M)
    if kind == "learned":
        layer = LearnableThermometer(1, n, positions=36)
        model = pylgn.Sequential([layer, pylgn.LogicLayer(108, 120), pylgn.LogicLayer(120, 80),
                                  pylgn.GroupSum(4, tau=2.0)], seed=1)
        randomize(model, rng)
        layer.weights[:] = rng.random(n).astype(np.float32)
        enc = LearnedThermometer.from_layer(layer, shape, crop=6, max_value=M, class_names=NAMES)
        bits = ds.scale(x, 6)
    else:
        enc = Thermometer(shape, n, max_value=M, class_names=NAMES)
        if kind == "conv":
            layers = build_arch("cdlgn-digits", in_channels=n, classes=4, k=4)
        else:
            arity = 6 if kind == "arity6" else 2
            layers = [pylgn.LogicLayer(192, 200, arity=arity), pylgn.LogicLayer(200, 120),
                      pylgn.GroupSum(4, tau=2.0)]
        model = randomize(pylgn.Sequential(layers, seed=2), rng)
        bits = ds.encode(x, n)
    ref = np.argmax(model.forward(bits.astype(np.float32)), axis=1)
    return model, enc, x, ref


def predict_cli(capsys, ckpt, path, *extra):
    capsys.readouterr()
    assert main(["predict", ckpt, path, *extra]) == 0
    return capsys.readouterr().out.splitlines()


def run_c(tmp_path, source, x, tag):
    c_file, exe, data = tmp_path / f"{tag}.c", tmp_path / tag, tmp_path / f"{tag}.f32"
    c_file.write_text(source)
    subprocess.run([CC, "-O1", "-std=c99", "-Wall", "-Werror", "-DPYLGN_MAIN", "-o", str(exe),
                    str(c_file)], check=True, capture_output=True, text=True)
    np.ascontiguousarray(x, dtype=np.float32).tofile(data)
    with open(data, "rb") as f:
        piped = subprocess.run([str(exe)], stdin=f, capture_output=True, text=True, check=True)
    by_file = subprocess.run([str(exe), str(data)], capture_output=True, text=True, check=True)
    assert piped.stdout == by_file.stdout
    return by_file.stdout.splitlines()


@pytest.mark.parametrize("kind", ["dense", "conv", "arity6", "learned"])
def test_predict_and_c_agree_with_the_model(tmp_path, capsys, kind):
    rng = np.random.default_rng(len(kind))
    model, enc, x, ref = image_kind(kind, rng)
    ckpt = save(tmp_path / "m.h5", model, enc)
    np.save(tmp_path / "x.npy", x)
    lines = predict_cli(capsys, ckpt, str(tmp_path / "x.npy"))
    assert lines == [NAMES[i] for i in ref]
    assert predict_cli(capsys, ckpt, str(tmp_path / "x.npy")) == lines
    np.save(tmp_path / "hw.npy", x[:, 0].astype(np.float32))   # (n, H, W) floats: the same
    assert predict_cli(capsys, ckpt, str(tmp_path / "hw.npy")) == lines
    if CC is None:
        pytest.skip("no C compiler (cc) on PATH")
    circuit = model.to_circuit()
    for form in ("lines", "tables"):
        for c in (circuit, circuit.simplify()):
            assert run_c(tmp_path, c.to_c(enc, main=True, form=form), x, form) == lines


def test_predict_scores_h5_and_output_file(tmp_path, capsys):
    rng = np.random.default_rng(5)
    model, enc, x, ref = image_kind("dense", rng)
    ckpt = save(tmp_path / "m.h5", model, enc)
    h5 = str(tmp_path / "d.h5")
    write_dataset(h5, "t", x, ref, x, ref, NAMES, max_value=16)
    lines = predict_cli(capsys, ckpt, h5, "--scores")
    scores = model.to_circuit().scores(Dataset("t", x, ref, x, ref, NAMES, 16).encode(x, 3))
    assert lines == [f"{NAMES[i]} {' '.join(map(str, s))}" for i, s in zip(ref, scores)]
    out = tmp_path / "out.txt"
    assert main(["predict", ckpt, h5, "-o", str(out)]) == 0
    assert out.read_text().splitlines() == [NAMES[i] for i in ref]


def test_predict_refuses_bad_inputs(tmp_path, capsys):
    rng = np.random.default_rng(6)
    model, enc, x, _ = image_kind("dense", rng)
    ckpt = save(tmp_path / "m.h5", model, enc)
    cases = {"wrong.npy": np.zeros((3, 65), np.uint8), "shape.npy": np.zeros((3, 2, 8, 8)),
             "dtype.npy": np.zeros((3, 64), complex), "nan.npy": np.full((3, 64), np.nan),
             "range.npy": np.full((3, 64), 17.0), "obj.npy": np.zeros((3, 64), object)}
    for name, arr in cases.items():
        np.save(tmp_path / name, arr, allow_pickle=True)
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    (tmp_path / "x.txt").write_text("1 2 3")
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    for name, match in (("wrong.npy", "INPUT.*shape"), ("shape.npy", "INPUT.*shape"),
                        ("dtype.npy", "INPUT.*dtype"), ("nan.npy", "INPUT.*NaN"),
                        ("range.npy", "INPUT.*lie in"), ("obj.npy", "INPUT.*npy"),
                        ("junk.npy", "INPUT.*npy"), ("x.txt", "INPUT.*expected a .npy"),
                        ("t.csv", "INPUT.*images"), ("missing.npy", "INPUT.*not a file")):
        capsys.readouterr()
        assert main(["predict", ckpt, str(tmp_path / name)]) == 2, name
        assert __import__("re").search(match, capsys.readouterr().err), name
    np.save(tmp_path / "ok.npy", x)
    assert main(["predict", ckpt, str(tmp_path / "ok.npy"), "-o", str(tmp_path / "ok.npy")]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert np.array_equal(np.load(tmp_path / "ok.npy"), x)      # the input is intact
    assert main(["predict", ckpt, str(tmp_path / "ok.npy"), "-o", ckpt]) == 2
    bare = tmp_path / "bare.h5"
    pylgn.save(bare, model)
    assert main(["predict", str(bare), str(tmp_path / "ok.npy")]) == 2
    assert "no input encoder" in capsys.readouterr().err


def table(rng, n=240):
    x = rng.normal(size=(n, 3)).astype(np.float32).astype(np.float64)
    x[:, 1] = np.round(x[:, 1], 1)
    y = ((x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 0.5)).astype(int)
    return x, y


def test_table_model_predict_eval_and_c(tmp_path, capsys):
    """A CSV model: predict reads the training columns by name (the target column dropped),
    eval refuses reordered/renamed columns and renamed labels, values x10 are encoded with the
    stored cut points (never re-fitted); the C agrees with predict on every row."""
    rng = np.random.default_rng(7)
    x, y = table(rng)
    names = ["low", "mid", "high"]
    feats, cuts = quantile_thresholds(x, 4, distinct=False)
    enc = QuantileEncoder(feats, cuts, ["a", "b", "c"], target="label", class_names=names)
    model = randomize(pylgn.Sequential([pylgn.LogicLayer(12, 60), pylgn.LogicLayer(60, 60),
                                        pylgn.GroupSum(3)], seed=3), rng)
    ckpt = str(tmp_path / "t.h5")
    pylgn.save(ckpt, model, encoder=enc.config(), class_names=names, dataset="t.csv",
               settings=dict(target="label"))
    ref = np.argmax(model.forward(quantile_encode(x, feats, cuts).astype(np.float32)), axis=1)

    def write(path, header, rows, labels):
        lines = [",".join(header)] + [",".join([*(repr(float(v)) for v in r), lab])
                                      for r, lab in zip(rows, labels)]
        path.write_text("\n".join(lines) + "\n")
        return str(path)
    good = write(tmp_path / "good.csv", ["a", "b", "c", "label"], x, [names[i] for i in y])
    lines = predict_cli(capsys, ckpt, good)
    assert lines == [names[i] for i in ref]
    capsys.readouterr()
    assert main(["eval", ckpt, "--dataset", good]) == 0
    for bad, header, labels in (
            ("reordered", ["b", "a", "c", "label"], [names[i] for i in y]),
            ("renamed", ["a", "b", "z", "label"], [names[i] for i in y]),
            ("labels", ["a", "b", "c", "label"], [names[i].upper() for i in y])):
        path = write(tmp_path / f"{bad}.csv", header, x, labels)
        capsys.readouterr()
        assert main(["eval", ckpt, "--dataset", path]) == 2, bad
        assert ("labels" if bad == "labels" else "columns") in capsys.readouterr().err
        if bad != "labels":
            assert main(["predict", ckpt, path]) == 2
    big = write(tmp_path / "x10.csv", ["a", "b", "c", "label"], x * 10, [names[i] for i in y])
    ref10 = np.argmax(model.forward(quantile_encode(x * 10, feats, cuts).astype(np.float32)), 1)
    assert predict_cli(capsys, ckpt, big) == [names[i] for i in ref10]
    if CC is None:
        pytest.skip("no C compiler (cc) on PATH")
    assert run_c(tmp_path, model.to_circuit().to_c(enc, main=True), x, "table") == lines


@needs_cc
def test_sklearn_classifier_c_equals_predict(tmp_path):
    from pylgn.sklearn import LogicGateClassifier
    rng = np.random.default_rng(8)
    x, y = table(rng, 300)
    labels = np.array(["neg", "zero", "pos"])[y]
    clf = LogicGateClassifier(layers=2, width=60, steps=60, random_state=0).fit(x, labels)
    out = run_c(tmp_path, clf.to_c(main=True), x, "sk")
    assert out == clf.predict(x).tolist()
    assert run_c(tmp_path, clf.to_c(main=True, simplify=False), x, "sk2") == out


@needs_cc
def test_cli_export_main_compiles_and_matches_predict(tmp_path, capsys):
    rng = np.random.default_rng(9)
    model, enc, x, ref = image_kind("learned", rng)
    ckpt = save(tmp_path / "m.h5", model, enc)
    out = tmp_path / "m.c"
    assert main(["export", ckpt, "--format", "c", "--main", "-o", str(out)]) == 0
    assert "#define PYLGN_RAW_DIM 64" in out.read_text()
    np.save(tmp_path / "x.npy", x)
    want = predict_cli(capsys, ckpt, str(tmp_path / "x.npy"))
    assert run_c(tmp_path, out.read_text(), x, "cli") == want


@needs_cc
def test_c_tables_with_dead_gates_and_wide_tables(tmp_path):
    """Gates no output reads (left out of the C) beside live ones, one- to six-input gates in
    one circuit: both C forms against Circuit.predict_raw."""
    rng = np.random.default_rng(10)
    enc = Thermometer((1, 4, 4), 2, max_value=16)
    layers, width = [], 32
    for G, n, reach in ((64, 1, 32), (64, 6, 64), (40, 3, 20), (8, 2, 40)):
        conn = rng.integers(0, min(reach, width), size=(n, G))
        layers.append((conn, rng.integers(0, 2, size=(G, 2 ** n))))
        width = G
    circuit = pylgn.Circuit(32, layers, k=4)
    x = rng.integers(0, 17, size=(500, 1, 4, 4)).astype(np.uint8)
    want = [str(v) for v in circuit.predict_raw(x, enc)]
    for form in ("lines", "tables"):
        assert run_c(tmp_path, circuit.to_c(enc, main=True, form=form), x, form) == want
    from pylgn.export import to_c_classifier               # words not a multiple of 4: scalar
    for words in (1, 2, 8):
        src = to_c_classifier(circuit, enc, main=True, form="tables", words=words)
        assert f"#define PYLGN_W {words}" in src
        assert run_c(tmp_path, src, x, f"w{words}") == want


def test_eval_of_a_table_model_without_stored_encoder_refuses_other_files(tmp_path, capsys):
    """A checkpoint from before stored encoders: re-fitting its cut points on another file would
    score that file with thresholds the model never saw, so only its training file is allowed."""
    rng = np.random.default_rng(11)
    x, y = table(rng)
    model = randomize(pylgn.Sequential([pylgn.LogicLayer(12, 60), pylgn.GroupSum(3)]), rng)
    rows = "\n".join(",".join([*map(repr, r.tolist()), str(v)]) for r, v in zip(x, y))
    own, other = tmp_path / "own.csv", tmp_path / "other.csv"
    own.write_text("a,b,c,label\n" + rows + "\n")
    other.write_text("a,b,c,label\n" + rows + "\n")
    ckpt = str(tmp_path / "old.h5")
    pylgn.save(ckpt, model, dataset=str(own), thresholds=4, settings=dict(target="label"))
    assert main(["eval", ckpt]) == 0
    capsys.readouterr()
    assert main(["eval", ckpt, "--dataset", str(other)]) == 2
    assert "predates stored encoders" in capsys.readouterr().err


def test_predict_on_a_checkpoint_from_before_stored_encoders(tmp_path, capsys):
    """An image checkpoint of `pylgn train` without meta["encoder"]: its thermometer comes back
    from the recorded dataset (shape, max_value), thresholds and crop."""
    rng = np.random.default_rng(12)
    model, enc, x, ref = image_kind("dense", rng)
    ckpt = str(tmp_path / "old.h5")
    pylgn.save(ckpt, model, dataset="digits", thresholds=3, crop=0, class_names=NAMES)
    np.save(tmp_path / "x.npy", x)
    assert predict_cli(capsys, ckpt, str(tmp_path / "x.npy")) == [NAMES[i] for i in ref]
    bare = str(tmp_path / "bare.h5")
    pylgn.save(bare, model, dataset="t.csv", thresholds=3)
    assert main(["predict", bare, str(tmp_path / "x.npy")]) == 2
    assert "no input encoder" in capsys.readouterr().err
