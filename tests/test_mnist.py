"""Real MNIST end to end: preparation from re-compressed files (content MD5), the 20 x 20 centre
crop, the shape-based recipe, packed discretized evaluation and a seconds-long smoke training.

The four IDX files are looked for in $PYLGN_MNIST_SOURCE, else ../shared/data/mnist beside the
checkout (where CI has them); without them the real-data tests skip and say where they looked.
"""
import gzip
import hashlib
import json
import os

import numpy as np
import pytest

import pylgn
from pylgn.cli import main
from pylgn.data import Dataset, centre_crop, cropped_shape, load_dataset, verify_md5
from pylgn.recipes import BASE, READ, recipe
from test_data import _idx, _script

ROOT = os.path.join(os.path.dirname(__file__), "..")
SOURCE = os.environ.get("PYLGN_MNIST_SOURCE") or os.path.join(ROOT, "..", "shared", "data", "mnist")
needs_mnist = pytest.mark.skipif(not os.path.exists(os.path.join(SOURCE, "t10k-labels-idx1-ubyte.gz")),
                                 reason=f"the MNIST IDX files are not in {SOURCE}")


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("mnist")
    assert _script("prepare_mnist").main(["--source", SOURCE, "--out", str(out)]) == 0
    return out


@needs_mnist
def test_prepare_real_mnist_checks_content(mnist_dir):
    ds = load_dataset("mnist", data_dir=str(mnist_dir))
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert np.bincount(ds.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265,
                                                5851, 5949]
    assert ds.y_train[:5].tolist() == [5, 0, 4, 1, 9] and ds.y_test[:5].tolist() == [7, 2, 1, 0, 4]


@needs_mnist
def test_mnist_smoke_training_with_recipe(mnist_dir, tmp_path, capsys):
    """No model flag: the 28x28 recipe (20x20 crop, 6 layers of IWP gates); a few hundred small
    steps already learn the digits, and the packed discretized accuracy is the float eval's."""
    argv = ["train", "--dataset", "mnist", "--data-dir", str(mnist_dir), "--width", "1000",
            "--steps", "300", "--eval-every", "300", "--out", str(tmp_path), "--no-progress",
            "--json"]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["steps"] == 300 and res["test_accuracy_discrete"] > 0.6
    ck = pylgn.load(tmp_path / "checkpoint.h5")
    settings = recipe((1, 28, 28), 60000)[1]
    assert ck.meta["crop"] == 20 and ck.model.in_dim == 20 * 20 and settings["learn_thresholds"]
    assert ck.model.encoder.out_dim == 20 * 20 * 2       # read from MNIST: the centre, 2 levels
    assert set(ck.meta["recipe"]["decisions"]) == {"crop", "thresholds", "tau"}  # tau: width 1000
    assert len(ck.model.logic_layers) == settings["layers"]
    ds = load_dataset("mnist", data_dir=str(mnist_dir))
    x = ds.scale(ds.x_test[:2000], 20)                # the model learns its thresholds
    floats = pylgn.train.evaluate(ck.model, x, ds.y_test[:2000], packed=False)
    assert pylgn.train.evaluate(ck.model, x, ds.y_test[:2000]) == floats
    assert main(["eval", str(tmp_path / "checkpoint.h5"), "--data-dir", str(mnist_dir),
                 "--json"]) == 0
    res_eval = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res_eval["test_accuracy_discrete"] == res["test_accuracy_discrete"]


# content MD5 on synthetic files ----------------------------------------------------------------

def test_verify_md5_accepts_recompressed_content(tmp_path):
    payload = bytes(range(256)) * 40
    a, b = tmp_path / "a.gz", tmp_path / "b.gz"
    with gzip.GzipFile(a, "wb", compresslevel=9, mtime=0) as f:
        f.write(payload)
    with gzip.GzipFile(b, "wb", compresslevel=1, mtime=123) as f:
        f.write(payload)
    assert a.read_bytes() != b.read_bytes()
    archive_md5 = hashlib.md5(a.read_bytes()).hexdigest()
    content_md5 = hashlib.md5(payload).hexdigest()
    verify_md5(str(a), archive_md5)                           # the published archive itself
    verify_md5(str(b), archive_md5, content_md5)              # same content, other compression
    with pytest.raises(ValueError, match="does not match the official"):
        verify_md5(str(b), archive_md5)
    with gzip.GzipFile(b, "wb", mtime=0) as f:
        f.write(payload[:-1] + b"\x00")                       # one byte changed
    with pytest.raises(ValueError, match="decompressed content's MD5"):
        verify_md5(str(b), archive_md5, content_md5)
    b.write_bytes(b"not a gzip file at all")
    with pytest.raises(ValueError, match="not a readable gzip archive"):
        verify_md5(str(b), archive_md5, content_md5)


def test_prepare_mnist_refuses_other_content(tmp_path):
    mod = _script("prepare_mnist")
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for key, (name, *_) in mod.FILES.items():
        shape = (3, 28, 28) if key.startswith("x") else (3,)
        _idx(src / name, rng.integers(0, 10, shape))
    with pytest.raises(ValueError, match="neither the archive's MD5"):
        mod.main(["--source", str(src), "--out", str(tmp_path / "out")])


# crop and recipes --------------------------------------------------------------------------------

def test_centre_crop_and_encode():
    x = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 1, 28, 28)
    c = centre_crop(x, 20)
    np.testing.assert_array_equal(c, x[:, :, 4:24, 4:24])
    assert centre_crop(x, None) is x and cropped_shape((1, 28, 28), 20) == (1, 20, 20)
    ds = Dataset("t", x, np.zeros(2, int), x, np.zeros(2, int), ["a"], 255)
    bits = ds.encode(x, 3, crop=20)
    assert bits.shape == (2, 3 * 400) == (2, ds.encoded_dim(3, 20))
    np.testing.assert_array_equal(bits, ds.encode(x[:, :, 4:24, 4:24], 3))
    for bad in (0, 29, 2.5):
        with pytest.raises((ValueError, TypeError), match="crop"):
            ds.encode(x, 3, crop=bad)
    with pytest.raises(ValueError, match="crop"):
        cropped_shape((64,), 4)


def test_recipes_follow_shape_not_name():
    name, mnist_like = recipe((1, 28, 28), 1000)
    assert name == "28x28-grayscale" and mnist_like["crop"] == READ and mnist_like["layers"] == 6
    assert mnist_like["thresholds"] == READ
    assert recipe((3, 32, 32), 50000)[0] == "32x32-colour"
    assert recipe((1, 64, 48), 500)[0] == "images"
    assert recipe((1, 8, 8), 1437) == ("default", BASE)
    assert recipe((13,), 100)[0] == "table"


def _random_28x28(path, n_train, n_test, seed):
    """A pylgn dataset file of random 1 x 28 x 28 uint8 images and 10 classes, under another
    name than mnist; returns its path."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    x = rng.integers(0, 256, (n, 1, 28, 28)).astype(np.uint8)
    y = np.concatenate([np.arange(n_train) % 10, np.arange(n_test) % 10])  # each split: all 10
    pylgn.data.write_dataset(str(path), path.stem, x[:n_train], y[:n_train], x[n_train:],
                             y[n_train:], [str(i) for i in range(10)])
    return path


def test_cli_recipe_for_any_28x28_dataset(tmp_path, capsys):
    """A 28x28 grayscale dataset under another name gets the same recipe; flags still win."""
    path = _random_28x28(tmp_path / "fashion.h5", 40, 20, seed=1)
    argv = ["train", "--dataset", str(path), "--width", "500", "--steps", "4", "--eval-every", "4",
            "--batch-size", "20", "--out", str(tmp_path / "run"), "--no-progress", "--json"]
    assert main(argv) == 0
    ck = pylgn.load(tmp_path / "run" / "checkpoint.h5")
    # random pixels: every pixel moves with the label as much as any other, so no crop
    assert ck.model.in_dim == 784 and recipe((1, 28, 28), 40)[1]["learn_thresholds"]
    n = ck.meta["settings"]["thresholds"]
    assert n in (1, 2, 4, 8) and ck.model.encoder.out_dim == 784 * n
    assert ck.meta["settings"]["lr_schedule"] == "cosine"
    assert main(argv[:-4] + ["--crop", "20", "--thresholds", "1", "--out", str(tmp_path / "r2"),
                             "--no-progress"]) == 0
    assert pylgn.load(tmp_path / "r2" / "checkpoint.h5").model.in_dim == 400
    capsys.readouterr()
    assert main(argv[:-4] + ["--crop", "30", "--out", str(tmp_path / "r3"), "--no-progress"]) == 2
    assert "crop" in capsys.readouterr().err


def test_cdlgn_mnist_arch_under_logictreenet_s(tmp_path, capsys):
    """The 28x28 LogicTreeNet trains through the CLI (2 steps) and ``pylgn info`` prints a gate
    count under LogicTreeNet-S's 147K."""
    path = _random_28x28(tmp_path / "digits28.h5", 20, 10, seed=2)
    assert main(["train", "--dataset", str(path), "--arch", "cdlgn-mnist", "--steps", "2",
                 "--eval-every", "2", "--batch-size", "10", "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "run" / "checkpoint.h5"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 100_000 < info["gate_count"]["total"] <= 147_000
    assert info["in_dim"] == 20 * 20 and recipe((1, 28, 28), 20)[1]["learn_thresholds"]
