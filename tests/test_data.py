"""Data: thermometer encoding, digits, the HDF5 dataset format, augmentation, prepare scripts."""
import gzip
import importlib.util
import io
import os
import pickle
import tarfile

import h5py
import numpy as np
import pytest

from pylgn.data import (Dataset, augment, load_dataset, load_digits, read_dataset, thermometer,
                        write_dataset)

ROOT = os.path.join(os.path.dirname(__file__), "..")


def _script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "data_scripts",
                                                                     f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# thermometer -----------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 3, 7, 15, 31])
def test_thermometer_images_channel_major(n):
    rng = np.random.default_rng(n)
    x = rng.random((5, 3, 4, 6))
    x[0, 0, 0, :3] = [0.0, 1.0, 1.0 / (n + 1)]          # edges and an exact level
    out = thermometer(x, n)
    assert out.shape == (5, 3 * n, 4, 6) and out.dtype == np.uint8
    for c in range(3):
        for i in range(n):
            np.testing.assert_array_equal(out[:, c * n + i], x[:, c] > (i + 1) / (n + 1))


def test_thermometer_flat_and_levels():
    x = np.array([[0.0, 0.3, 0.6, 1.0]])
    out = thermometer(x, 3)                             # levels 0.25, 0.5, 0.75
    assert out.shape == (1, 12)
    np.testing.assert_array_equal(out.reshape(4, 3), [[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1]])


@pytest.mark.parametrize("x, n, err, match", [
    (np.zeros((2, 3), dtype=np.uint8), 3, TypeError, "floats"),
    (np.full((2, 3), 1.5), 3, ValueError, r"\[0, 1\]"),
    (np.array([[np.nan, 0.5]]), 3, ValueError, "finite"),
    (np.zeros(3), 3, ValueError, "shape"),
    (np.zeros((2, 3)), 0, ValueError, "thresholds"),
])
def test_thermometer_bad_input(x, n, err, match):
    with pytest.raises(err, match=match):
        thermometer(x, n)


# datasets --------------------------------------------------------------------------------------

def test_digits_fixed_split():
    a, b = load_digits(), load_digits()
    assert a.x_train.shape == (1438, 1, 8, 8) and a.x_test.shape == (359, 1, 8, 8)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert a.max_value == 16 and a.num_classes == 10 and a.x_train.max() == 16
    bits = a.encode(a.x_test[:4], 3)
    assert bits.shape == (4, 192)
    np.testing.assert_array_equal(bits, thermometer(a.x_test[:4] / 16.0, 3).reshape(4, -1))
    assert load_dataset("digits").x_train.shape == a.x_train.shape


def _tiny(name="tiny"):
    rng = np.random.default_rng(1)
    return (name, rng.integers(0, 256, (6, 2, 3, 3)), rng.integers(0, 3, 6),
            rng.integers(0, 256, (4, 2, 3, 3)), rng.integers(0, 3, 4), ["a", "b", "c"])


def test_dataset_file_round_trip(tmp_path):
    args = _tiny()
    path = str(tmp_path / "tiny.h5")
    write_dataset(path, *args, max_value=255)
    ds = load_dataset(path)
    assert isinstance(ds, Dataset) and ds.name == "tiny" and ds.shape == (2, 3, 3)
    for got, want in zip((ds.x_train, ds.y_train, ds.x_test, ds.y_test), args[1:5]):
        np.testing.assert_array_equal(got, want)
    assert ds.class_names == ["a", "b", "c"] and ds.encoded_dim(7) == 2 * 9 * 7


def test_dataset_file_errors(tmp_path):
    foreign = str(tmp_path / "foreign.h5")
    with h5py.File(foreign, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(ValueError, match="not a pylgn dataset"):
        read_dataset(foreign)
    partial = str(tmp_path / "partial.h5")
    write_dataset(partial, *_tiny())
    with h5py.File(partial, "a") as f:
        del f["y_test"]
    with pytest.raises(ValueError, match="y_test"):
        read_dataset(partial)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all" * 10)
    with pytest.raises(ValueError, match="junk.h5"):
        read_dataset(str(junk))
    with pytest.raises(ValueError, match="labels"):
        write_dataset(str(tmp_path / "big.h5"), "x", np.zeros((1, 2)), [300], np.zeros((1, 2)),
                      [0], ["a"])


def test_load_dataset_names(tmp_path, monkeypatch):
    monkeypatch.delenv("PYLGN_DATA", raising=False)
    with pytest.raises(ValueError, match="prepare_mnist.py --out"):
        load_dataset("mnist", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"prepare_cifar.py --which cifar100"):
        load_dataset("cifar100", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="expected digits, mnist"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="not found"):
        load_dataset(str(tmp_path / "nothing.h5"))
    write_dataset(str(tmp_path / "cifar10.h5"), *_tiny("cifar10"))
    monkeypatch.setenv("PYLGN_DATA", str(tmp_path))
    assert load_dataset("cifar10").name == "cifar10"


# augmentation ------------------------------------------------------------------------------------

def test_augment_identity_crop_and_flip():
    x = np.random.default_rng(0).integers(0, 256, (8, 3, 6, 6)).astype(np.uint8)
    same = augment(x, np.random.default_rng(1), flip=False, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    np.testing.assert_array_equal(same, x)
    flipped = augment(x, np.random.default_rng(2), crop=False)
    mirror = np.random.default_rng(2).random(8) < 0.5
    np.testing.assert_array_equal(flipped[mirror], x[mirror][..., ::-1])
    np.testing.assert_array_equal(flipped[~mirror], x[~mirror])


def test_augment_crop_is_bilinear_resample():
    """On a horizontal ramp x[., j] = j the bilinear crop is affine in j: equal steps cw / W
    (away from clipping) and equal rows; values stay inside the source range."""
    w = 16
    x = np.broadcast_to(np.arange(w, dtype=np.float64), (20, 1, 12, w)).copy()
    out = augment(x, np.random.default_rng(3), flip=False)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= w - 1
    np.testing.assert_allclose(out, out[:, :, :1, :].repeat(12, axis=2))
    steps = np.diff(out[:, 0, 0, 1:-1], axis=1)          # inner columns: never clipped
    np.testing.assert_allclose(steps, steps[:, :1].repeat(steps.shape[1], axis=1), atol=1e-9)
    assert np.all((steps > 0.4) & (steps <= 1.0 + 1e-9))  # cw / W in [sqrt(0.5 * 0.8), 1]


def test_augment_seeded_and_checked():
    x = np.random.default_rng(0).integers(0, 256, (4, 3, 8, 8)).astype(np.uint8)
    a = augment(x, np.random.default_rng(5))
    np.testing.assert_array_equal(a, augment(x, np.random.default_rng(5)))
    assert not np.array_equal(a, augment(x, np.random.default_rng(6)))
    with pytest.raises(ValueError, match="batch, C, H, W"):
        augment(np.zeros((4, 64)), np.random.default_rng(0))


# prepare scripts on tiny archives in the original formats -----------------------------------------

def _idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, dtype=">i4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_prepare_mnist_offline(tmp_path):
    mod = _script("prepare_mnist")
    rng = np.random.default_rng(0)
    src = tmp_path / "src"
    src.mkdir()
    arrays = dict(x_train=rng.integers(0, 256, (7, 28, 28)), y_train=rng.integers(0, 10, 7),
                  x_test=rng.integers(0, 256, (3, 28, 28)), y_test=rng.integers(0, 10, 3))
    for key, (name, *_) in mod.FILES.items():
        _idx(src / name, arrays[key])
    with pytest.raises(ValueError, match="MD5"):
        mod.main(["--source", str(src), "--out", str(tmp_path / "out")])
    assert mod.main(["--source", str(src), "--out", str(tmp_path / "out"), "--no-verify"]) == 0
    ds = load_dataset("mnist", data_dir=str(tmp_path / "out"))
    assert ds.shape == (1, 28, 28) and ds.num_classes == 10
    np.testing.assert_array_equal(ds.x_train[:, 0], arrays["x_train"])
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    bad = src / "bad.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="IDX"):
        mod.read_idx(str(bad))


def _add(tar, name, obj):
    data = pickle.dumps(obj, protocol=2)
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("which", ["cifar10", "cifar100"])
def test_prepare_cifar_offline(tmp_path, which):
    mod = _script("prepare_cifar")
    spec = mod.ARCHIVES[which]
    rng = np.random.default_rng(0)
    classes = 10 if which == "cifar10" else 100
    batches = {m: (rng.integers(0, 256, (3, 3072)).astype(np.uint8),
                   list(rng.integers(0, classes, 3))) for m in spec["train"] + [spec["test"]]}
    src = tmp_path / "src"
    src.mkdir()
    with tarfile.open(src / spec["file"], "w:gz") as tar:
        for member, (data, labels) in batches.items():
            _add(tar, f"{spec['folder']}/{member}", {b"data": data, spec["labels"]: labels})
        names = [f"class{i}".encode() for i in range(classes)]
        _add(tar, f"{spec['folder']}/{spec['meta']}", {spec["names"]: names})
    with pytest.raises(ValueError, match="MD5"):
        mod.main(["--which", which, "--source", str(src), "--out", str(tmp_path)])
    mod.main(["--which", which, "--source", str(src), "--out", str(tmp_path), "--no-verify"])
    ds = load_dataset(which, data_dir=str(tmp_path))
    train = np.concatenate([batches[m][0] for m in spec["train"]])
    assert ds.x_train.shape == (len(train), 3, 32, 32) and ds.num_classes == classes
    np.testing.assert_array_equal(ds.x_train[:, 1, 2, 5], train[:, 1024 + 2 * 32 + 5])  # G plane
    np.testing.assert_array_equal(ds.y_test, batches[spec["test"]][1])
    assert ds.class_names[3] == "class3"


def test_random_shift_translates_with_zero_fill():
    from pylgn.data import random_shift
    x = np.random.default_rng(0).integers(1, 256, (6, 2, 7, 9)).astype(np.uint8)
    out = random_shift(x, np.random.default_rng(4), max_shift=2)
    rng = np.random.default_rng(4)
    dy, dx = rng.integers(-2, 3, size=6), rng.integers(-2, 3, size=6)
    for b in range(6):
        want = np.zeros_like(x[b])
        for i in range(7):
            for j in range(9):
                if 0 <= i - dy[b] < 7 and 0 <= j - dx[b] < 9:
                    want[:, i, j] = x[b, :, i - dy[b], j - dx[b]]
        np.testing.assert_array_equal(out[b], want)
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(random_shift(x, np.random.default_rng(1), 0), x)
    with pytest.raises(ValueError, match="batch, C, H, W"):
        random_shift(x[0], np.random.default_rng(0))
