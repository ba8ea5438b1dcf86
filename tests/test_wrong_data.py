"""Data a model was not built for, and settings that would give NaN, are clear errors naming
the option, file or attribute (nothing trained, nothing written)."""
import json
import os

import h5py
import numpy as np
import pytest

import pylgn
from pylgn._checks import MIN_TEMPERATURE
from pylgn.cli import main
from pylgn.data import read_dataset, write_dataset

TINY = ["--layers", "1", "--width", "200", "--steps", "2", "--eval-every", "2", "--no-progress"]


def _one_error_line(capsys, pattern):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pylgn: error: "), err
    assert pattern in err[0], err[0]


# temperatures ----------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda t: pylgn.LearnableThermometer(2, 3, temperature=t),
    lambda t: pylgn.LogicLayer(4, 4, gumbel=t),
    lambda t: pylgn.GroupSum(2, tau=t),
], ids=["thermometer", "gumbel", "groupsum"])
@pytest.mark.parametrize("t", [1e-300, 1e-50, MIN_TEMPERATURE / 2, -1.0])
def test_temperatures_below_float32_tiny_are_refused(make, t):
    with pytest.raises(ValueError, match="expected a temperature >= 1.175e-38"):
        make(t)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_the_smallest_temperature_gives_finite_gradients():
    """At the bound, float32 training stays finite: forward bits, threshold and input grads."""
    model = pylgn.Sequential([pylgn.LearnableThermometer(2, 3, temperature=MIN_TEMPERATURE),
                              pylgn.LogicLayer(6, 4, gumbel=MIN_TEMPERATURE),
                              pylgn.GroupSum(2, tau=1.0)], seed=0)
    x = np.array([[0.25, 0.75], [0.5, 0.1]], dtype=np.float32)   # 0.25, 0.5, 0.75 = t exactly
    model.set_noise(0, 0)
    loss, _ = model.loss_and_grad(x, np.array([0, 1]))
    model.set_noise(None)
    assert np.isfinite(loss) and np.isfinite(model.grads).all()


def test_cli_gumbel_below_the_smallest_temperature_names_the_option(tmp_path, capsys):
    assert main(["train", *TINY, "--gumbel", "1e-50", "--out", str(tmp_path / "r")]) == 2
    _one_error_line(capsys, "--gumbel: expected a temperature >= 1.175e-38")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flag", ["--width", "--layers"])
def test_cli_width_and_layers_are_refused_with_a_conv_arch(tmp_path, capsys, flag):
    assert main(["train", "--arch", "cdlgn-digits", flag, "100", "--steps", "1",
                 "--out", str(tmp_path / "r")]) == 2
    _one_error_line(capsys, f"{flag}: a conv --arch (cdlgn-digits) has its own layers")
    assert not (tmp_path / "r").exists()


# labels and splits -----------------------------------------------------------------------------

def _csv(path, labels):
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        f.write("a,b,label\n")
        for i, lab in enumerate(labels):
            f.write(f"{rng.random():.3f},{i},{lab}\n")
    return str(path)


def test_a_numeric_label_written_two_ways_is_refused(tmp_path, capsys):
    path = _csv(tmp_path / "t.csv", ["1", "2", "1.0", "2"] * 10)
    with pytest.raises(ValueError, match=r"t.csv: column 'label' writes the label 1 two ways "
                                         r"\('1' and '1.0'\)"):
        pylgn.data.load_csv(path, "label")
    assert main(["train", "--dataset", path, "--target", "label", *TINY,
                 "--out", str(tmp_path / "r")]) == 2
    _one_error_line(capsys, "writes the label 1 two ways")
    ok = pylgn.data.load_csv(_csv(tmp_path / "u.csv", ["1", "2", "10"] * 10), "label")
    assert ok.class_names == ["1", "2", "10"]                          # distinct numbers: fine


def _h5(path, y_train, y_test, names=("a", "b", "c")):
    rng = np.random.default_rng(0)
    write_dataset(str(path), "t", rng.integers(0, 256, (len(y_train), 4)), np.array(y_train),
                  rng.integers(0, 256, (len(y_test), 4)), np.array(y_test), list(names))
    return str(path)


@pytest.mark.parametrize("y_train, y_test, message", [
    ([0, 1] * 10, [0, 1, 2], "class(es) ['c'] appear only in the test split"),
    ([0] * 20, [0, 1], "the training split holds 1 class(es) (['a'])"),
])
def test_train_refuses_classes_it_cannot_learn(tmp_path, capsys, y_train, y_test, message):
    path = _h5(tmp_path / "d.h5", y_train, y_test)
    assert main(["train", "--dataset", path, "--layers", "1", "--width", "30", "--steps", "2",
                 "--batch-size", "5", "--no-progress", "--out", str(tmp_path / "r")]) == 2
    _one_error_line(capsys, f"--dataset {path}: {message}")
    assert not (tmp_path / "r").exists()


# dataset attributes ----------------------------------------------------------------------------

@pytest.mark.parametrize("name, value, message", [
    ("max_value", "abc", "attribute 'max_value': expected an int in [1, 255], got 'abc'"),
    ("max_value", 0, "attribute 'max_value': expected an int in [1, 255], got 0"),
    ("max_value", 3.5, "attribute 'max_value': expected an int in [1, 255]"),
    ("class_names", "not json", "attribute 'class_names': Expecting value"),
    ("class_names", json.dumps({"a": 1}), "attribute 'class_names': expected a JSON list"),
    ("class_names", json.dumps(["a"]), "attribute 'class_names': expected a JSON list of >= 2"),
    ("class_names", json.dumps([1, 2]), "attribute 'class_names': expected a JSON list"),
    ("name", None, "missing attribute 'name'"),
])
def test_edited_dataset_attributes_name_the_file_and_attribute(tmp_path, name, value, message):
    path = _h5(tmp_path / "d.h5", [0, 1, 2] * 3, [0, 1, 2])
    with h5py.File(path, "a") as f:
        if value is None:
            del f.attrs[name]
        else:
            f.attrs[name] = value
    before = open(path, "rb").read()
    with pytest.raises(ValueError) as e:
        read_dataset(path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value), str(e.value)
    assert open(path, "rb").read() == before


@pytest.mark.parametrize("split", ["train", "test"])
def test_an_empty_split_names_the_file(tmp_path, split):
    y = {"train": [0, 1, 2] * 3, "test": [0, 1, 2]}
    y[split] = []
    path = tmp_path / "d.h5"
    rng = np.random.default_rng(0)
    write_dataset(str(path), "t", rng.integers(0, 256, (len(y["train"]), 4)),
                  np.array(y["train"], dtype=np.int64), rng.integers(0, 256, (len(y["test"]), 4)),
                  np.array(y["test"], dtype=np.int64), ["a", "b", "c"])
    with pytest.raises(ValueError, match=f"{path}: x_{split} and y_{split} are empty"):
        read_dataset(str(path))
    assert os.listdir(tmp_path) == ["d.h5"]


# an edited trainer state on --resume -------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out / "checkpoint.h5"


def _edit_state(path, **changes):
    with h5py.File(path, "a") as f:
        state = json.loads(f["trainer"].attrs["state"])
        for key, value in changes.items():
            if key == "permutation":
                del f["trainer/permutation"]
                f["trainer"].create_dataset("permutation", data=value)
            elif value is KeyError:
                del state[key]
            else:
                state[key] = value
        f["trainer"].attrs["state"] = json.dumps(state)


@pytest.mark.parametrize("changes, message", [
    (dict(position=10 ** 9), "'position' 1000000000 is past the permutation's"),
    (dict(step=-1), "'step' must be an int >= 0, got -1"),
    (dict(step=2.5), "'step' must be an int >= 0, got 2.5"),
    (dict(epoch="x"), "'epoch' must be an int >= 0"),
    (dict(seconds=-1), "'seconds' must be a finite number >= 0"),
    (dict(best=7), "'best' must be None or an accuracy in [0, 1]"),
    (dict(history=[1, 2]), "'history' must map"),
    (dict(history=KeyError), "'history' must map"),
    (dict(rng={"bit_generator": "PCG64"}), "'rng' is missing or invalid"),
    (dict(rng=KeyError), "'rng' is missing or invalid"),
    (dict(permutation=np.full(1438, 10 ** 6)), "'permutation' must be a permutation of 0..n-1"),
    (dict(permutation=np.arange(1438.0)), "'permutation' must be a permutation of 0..n-1"),
])
def test_an_edited_trainer_state_is_a_clear_error_on_resume(tiny_run, tmp_path, capsys, changes,
                                                            message):
    import shutil
    path = tmp_path / "checkpoint.h5"
    shutil.copy(tiny_run, path)
    _edit_state(path, **changes)
    before = path.read_bytes()
    assert main(["train", "--resume", str(path), "--steps", "4", "--no-progress"]) == 2
    _one_error_line(capsys, f"--resume {path}: trainer_state: {message}")
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["checkpoint.h5"]


def test_load_state_leaves_the_trainer_unchanged_on_an_error(make_model):
    model = make_model()
    trainer = pylgn.Trainer(model, pylgn.Adam(model))
    good = trainer.state()
    rng_before = trainer.rng.bit_generator.state
    with pytest.raises(ValueError, match="'rng' is missing"):
        trainer.load_state({**good, "step": 5, "rng": "x"})
    with pytest.raises(TypeError, match="trainer_state: expected a dict"):
        trainer.load_state([1])
    assert trainer.step == 0 and trainer.rng.bit_generator.state == rng_before
