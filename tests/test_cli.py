"""The pylgn command, called in-process with tiny settings (one subprocess test of the script)."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import pylgn
from pylgn.cli import gate_histogram, main

TINY = ["--layers", "1", "--width", "200", "--steps", "20", "--eval-every", "10", "--no-progress"]


def _json(capsys):
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


def test_train_writes_checkpoint_history_and_json(tmp_path, capsys):
    assert main(["train", *TINY, "--out", str(tmp_path), "--json", "--seed", "3"]) == 0
    res = _json(capsys)
    assert {"test_accuracy_discrete", "test_accuracy_relaxed", "steps", "seconds"} <= set(res)
    assert res["steps"] == 20 and 0.0 <= res["test_accuracy_discrete"] <= 1.0
    hist = json.loads((tmp_path / "history.json").read_text())
    assert hist["step"] == [10, 20]
    assert hist["test_accuracy_discrete"][-1] == res["test_accuracy_discrete"]
    ck = pylgn.load(tmp_path / "checkpoint.h5")
    assert ck.step == 20 and ck.meta["dataset"] == "digits" and ck.meta["thresholds"] == 3
    assert ck.model.in_dim == 64 * 3 and ck.model.num_gates == 200
    assert ck.meta["settings"]["seed"] == 3 and ck.model.seed == 3


def test_eval_reproduces_train_scores(run_dir, capsys):
    hist = json.loads((run_dir / "history.json").read_text())
    assert main(["eval", str(run_dir / "checkpoint.h5"), "--json", "--no-progress"]) == 0
    res = _json(capsys)
    assert res["steps"] == 20 and "seconds" in res
    assert res["test_accuracy_discrete"] == hist["test_accuracy_discrete"][-1]
    assert res["test_accuracy_relaxed"] == hist["test_accuracy_relaxed"][-1]


def test_resume_matches_straight_run(run_dir, tmp_path, capsys):
    """--resume with --steps as the total gives the same weights as one straight run."""
    resumed = tmp_path / "resumed"
    os.makedirs(resumed)
    shutil.copy(run_dir / "checkpoint.h5", resumed / "checkpoint.h5")
    assert main(["train", "--resume", str(resumed / "checkpoint.h5"), "--steps", "30",
                 "--no-progress", "--json"]) == 0
    assert _json(capsys)["steps"] == 30
    straight = tmp_path / "straight"
    assert main(["train", *TINY[:-5], "--steps", "30", "--eval-every", "10", "--no-progress",
                 "--out", str(straight)]) == 0
    a, b = pylgn.load(resumed / "checkpoint.h5"), pylgn.load(straight / "checkpoint.h5")
    np.testing.assert_array_equal(a.model.params, b.model.params)
    assert json.loads((resumed / "history.json").read_text())["step"] == [10, 20, 30]


def test_info_histogram(run_dir, capsys):
    assert main(["info", str(run_dir / "checkpoint.h5"), "--json"]) == 0
    text = capsys.readouterr().out
    res = json.loads(text.strip().splitlines()[-1])
    assert res["gates"] == 200 and res["parameters"] == 800 and res["step"] == 20
    layer = res["layers"][0]
    assert layer["config"]["type"] == "LogicLayer" and sum(layer["histogram"].values()) == 200
    ck = pylgn.load(run_dir / "checkpoint.h5")
    ids = pylgn.gates.table_class(ck.model.layers[0].discrete_table())
    want = {pylgn.gates.GATE_NAMES[i]: int(n) for i, n in zip(*np.unique(ids, return_counts=True))}
    assert layer["histogram"] == want
    assert "LogicLayer" in text and "GroupSum" in text


def test_info_arity3_uses_table_codes(tmp_path, capsys):
    model = pylgn.Sequential([pylgn.LogicLayer(12, 30, arity=3, init="uniform"),
                              pylgn.GroupSum(3, 1.0)])
    pylgn.save(tmp_path / "a3.h5", model)
    assert main(["info", str(tmp_path / "a3.h5"), "--json"]) == 0
    hist = _json(capsys)["layers"][0]["histogram"]
    assert sum(hist.values()) == 30 and all(k.startswith("0x") or k == "other" for k in hist)
    assert len(hist) <= 9


def _circuit_matches_model(path, ckpt):
    from pylgn.data import load_digits
    circuit = pylgn.Circuit.load(str(path))
    ds = load_digits()
    x = ds.encode(ds.x_test, 3)
    model = pylgn.load(ckpt).model.eval()
    counts = model.forward(x) * model.layers[-1].tau           # GroupSum: counts / tau
    np.testing.assert_allclose(counts, np.rint(counts), atol=1e-4)
    np.testing.assert_array_equal(circuit.scores(x.astype(bool)), np.rint(counts))


@pytest.fixture(scope="module")
def mixed_ckpt(tmp_path_factory):
    """A digits checkpoint whose gates are every kind (Gaussian init), not pass-throughs."""
    path = tmp_path_factory.mktemp("mixed") / "mixed.h5"
    layers = [pylgn.LogicLayer(192, 120, init="gaussian", sigma=2.0),
              pylgn.LogicLayer(120, 100, arity=3, init="gaussian", sigma=2.0),
              pylgn.GroupSum(10, 10.0)]
    model = pylgn.Sequential(layers, seed=4)
    assert len(gate_histogram(model.layers[0])) >= 8
    pylgn.save(path, model, dataset="digits", thresholds=3)
    return path


def _digits_bits(n=200):
    from pylgn.data import load_digits
    ds = load_digits()
    return ds.encode(ds.x_test[:n], 3)


def _model_scores(ckpt, x):
    """The discretized model's group counts (logits * tau) on bits x."""
    model = pylgn.load(ckpt).model.eval()
    return np.rint(model.forward(x.astype(np.float32)) * 10.0).astype(np.int32)


@pytest.mark.parametrize("simplify", [[], ["--no-simplify"]])
def test_c_export_computes_the_model(mixed_ckpt, tmp_path, simplify):
    """The exported C file, compiled and run, gives the model's discretized scores."""
    from test_export import compile_file
    out = tmp_path / "m.c"
    assert main(["export", str(mixed_ckpt), "--format", "c", "-o", str(out), *simplify]) == 0
    dll = compile_file(out, tmp_path)
    x = _digits_bits()
    words = np.ascontiguousarray(
        pylgn.load(mixed_ckpt).model.to_circuit().pack(x.astype(bool)).words.T)
    scores = np.zeros((len(x), 10), dtype=np.int32)
    dll.pylgn_scores(words.ctypes.data, scores.ctypes.data, len(x))
    want = _model_scores(mixed_ckpt, x)
    assert len(np.unique(want)) > 3                         # not a constant network
    np.testing.assert_array_equal(scores, want)


def test_verilog_export_computes_the_model(mixed_ckpt, tmp_path):
    """The exported Verilog file, simulated with Icarus, gives the model's discretized scores."""
    from test_export import simulate_verilog
    out = tmp_path / "m.v"
    assert main(["export", str(mixed_ckpt), "--format", "verilog", "-o", str(out)]) == 0
    x = _digits_bits(60)
    circuit = pylgn.load(mixed_ckpt).model.to_circuit().simplify()
    _, scores = simulate_verilog(out.read_text(), circuit, x.astype(bool), tmp_path)
    np.testing.assert_array_equal(scores, _model_scores(mixed_ckpt, x))


def test_circuit_export_of_mixed_gates(mixed_ckpt, tmp_path):
    for flags in ([], ["--no-simplify"]):
        out = tmp_path / f"c{len(flags)}.h5"
        assert main(["export", str(mixed_ckpt), "--format", "circuit", "-o", str(out),
                     *flags]) == 0
        _circuit_matches_model(out, mixed_ckpt)


def test_export_formats(run_dir, tmp_path):
    ckpt = str(run_dir / "checkpoint.h5")
    out = tmp_path / "raw.h5"
    assert main(["export", ckpt, "--format", "circuit", "--no-simplify", "-o", str(out)]) == 0
    _circuit_matches_model(out, ckpt)


def test_export_simplified_circuit_is_exact(run_dir, tmp_path):
    """The default export simplifies; the tiny run's gates are all pass-throughs, so the
    simplified circuit has outputs wired straight to inputs."""
    ckpt = str(run_dir / "checkpoint.h5")
    assert main(["export", ckpt, "--format", "circuit", "-o", str(tmp_path / "s.h5")]) == 0
    _circuit_matches_model(tmp_path / "s.h5", ckpt)


@pytest.mark.parametrize("argv, match", [
    (["train", "--dataset", "imagenet"], "dataset: expected digits"),
    (["train", "--dataset", "mnist", "--data-dir", "/nonexistent"], "prepare_mnist.py"),
    (["train", "--width", "abc"], "--width: invalid int value"),
    (["train", "--thresholds", "0"], r"--thresholds: expected a value in \[1, 255\]"),
    (["train", "--param", "xyz"], "--param: invalid choice"),
    (["train", "--steps", "0"], "--steps"),
    (["train", "--width", "205"], "--width: must be a multiple of the 10 classes .*--width 210"),
    (["eval", "/nonexistent/c.h5"], "/nonexistent/c.h5: no such checkpoint file"),
    (["info"], "the following arguments are required: checkpoint"),
    (["train", "--arch", "resnet"], "--arch: expected dense or one of"),
    (["train", "--arch", "cdlgn-m"], "in_size: .* too small for OrPool2d"),
    (["frobnicate"], "invalid choice"),
])
def test_user_errors_are_one_line(argv, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)              # not the checkout: `make demo` leaves runs/digits
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pylgn: error: ")
    assert re.search(match, err[0]), err[0]


def test_resume_refuses_changed_architecture(run_dir, capsys):
    assert main(["train", "--resume", str(run_dir / "checkpoint.h5"), "--width", "400"]) == 2
    assert "--width: cannot change on --resume" in capsys.readouterr().err


def test_corrupt_checkpoint_is_a_user_error(tmp_path, capsys):
    (tmp_path / "bad.h5").write_bytes(b"\x89HDF\r\n" + b"0" * 100)
    assert main(["info", str(tmp_path / "bad.h5")]) == 2
    assert "bad.h5: not a readable HDF5 file" in capsys.readouterr().err


def test_console_script(run_dir, tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "pylgn")
    if not os.path.exists(script):
        pytest.skip("console script not installed in this environment")
    ok = subprocess.run([script, "info", str(run_dir / "checkpoint.h5"), "--json"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and json.loads(ok.stdout.splitlines()[-1])["gates"] == 200
    bad = subprocess.run([script, "eval", str(tmp_path / "missing.h5")], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == f"pylgn: error: {tmp_path / 'missing.h5'}: no such checkpoint file"


def test_eval_of_a_library_checkpoint(tmp_path, capsys, make_model):
    model = pylgn.Sequential([pylgn.LogicLayer(192, 100), pylgn.GroupSum(10, 1.0)])
    pylgn.save(tmp_path / "lib.h5", model)
    assert main(["eval", str(tmp_path / "lib.h5"), "--dataset", "digits", "--json"]) == 0
    assert _json(capsys)["steps"] == 0
    assert main(["eval", str(tmp_path / "lib.h5")]) == 2
    assert "no dataset recorded; pass --dataset" in capsys.readouterr().err
    pylgn.save(tmp_path / "small.h5", make_model())
    assert main(["eval", str(tmp_path / "small.h5"), "--dataset", "digits"]) == 2
    assert "the model takes 24" in capsys.readouterr().err


def test_train_conv_arch_and_info_memory(tmp_path, capsys):
    """--arch builds a LogicTreeNet from pylgn.conv.ARCHS; info reports its gates and the
    training memory estimate at --batch-size."""
    argv = ["train", "--arch", "cdlgn-digits", "--steps", "4", "--eval-every", "4",
            "--no-progress", "--out", str(tmp_path), "--json"]
    assert main(argv) == 0
    res = _json(capsys)
    ck = pylgn.load(tmp_path / "checkpoint.h5")
    assert isinstance(ck.model.layers[0], pylgn.LogicConv2d) and res["gates"] == ck.model.num_gates
    assert main(["info", str(tmp_path / "checkpoint.h5"), "--batch-size", "7", "--json"]) == 0
    info = _json(capsys)
    from pylgn.conv import gate_count, memory_estimate
    assert info["gate_count"] == gate_count(ck.model.layers)
    assert info["training_memory_bytes"] == memory_estimate(ck.model.layers, 7)
    assert info["gate_count"]["conv"] > 0 and info["batch_size"] == 7


def test_conv_arch_takes_its_own_tau_unless_given(tmp_path, capsys):
    """A conv --arch gets the architecture's GroupSum tau (not the dense recipe's); --tau wins;
    --resume keeps the tau it was trained with."""
    from pylgn.conv import ARCHS
    argv = ["train", "--arch", "cdlgn-digits", "--steps", "2", "--eval-every", "2", "--no-progress"]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 0
    ck = pylgn.load(tmp_path / "a" / "checkpoint.h5")
    assert ck.model.layers[-1].tau == ARCHS["cdlgn-digits"]["tau"] == ck.meta["settings"]["tau"]
    assert main(argv + ["--tau", "2.5", "--out", str(tmp_path / "b")]) == 0
    assert pylgn.load(tmp_path / "b" / "checkpoint.h5").model.layers[-1].tau == 2.5
    argv[4] = "4"
    assert main(argv + ["--resume", str(tmp_path / "b" / "checkpoint.h5")]) == 0
    assert pylgn.load(tmp_path / "b" / "checkpoint.h5").model.layers[-1].tau == 2.5
    capsys.readouterr()


def test_conv_arch_crops_larger_images_to_its_input_size(tmp_path, monkeypatch, capsys):
    """Images larger than a conv --arch's input size are centre-cropped to it (unless --crop)."""
    from pylgn import conv
    monkeypatch.setitem(conv.ARCHS, "cdlgn-digits6", dict(conv.ARCHS["cdlgn-digits"], in_size=6))
    argv = ["train", "--arch", "cdlgn-digits6", "--steps", "2", "--eval-every", "2", "--no-progress"]
    assert main(argv + ["--out", str(tmp_path / "a")]) == 0
    ck = pylgn.load(tmp_path / "a" / "checkpoint.h5")
    assert ck.meta["settings"]["crop"] == 6 and ck.model.layers[0].in_size == (6, 6)
    assert main(argv + ["--crop", "0", "--out", str(tmp_path / "b")]) == 0
    assert pylgn.load(tmp_path / "b" / "checkpoint.h5").model.layers[0].in_size == (8, 8)
    capsys.readouterr()


def test_keep_best_writes_best_checkpoint(tmp_path, capsys):
    assert main(["train", *TINY, "--out", str(tmp_path), "--keep-best"]) == 0
    hist = json.loads((tmp_path / "history.json").read_text())
    best = pylgn.load(tmp_path / "best.h5")
    i = int(np.argmax(hist["test_accuracy_discrete"]))
    assert best.step == hist["step"][i]
