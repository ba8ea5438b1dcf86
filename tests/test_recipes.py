"""Recipes that read the data (pylgn.recipes): the rules against plain numpy formulas, on
synthetic images and on 28 x 28 sets made from MNIST's training images that break its shape
(bench/variants.py: enlarged, inverted, textured background, shifted), and the CLI showing and
keeping the decisions."""
import importlib.util
import json
import os

import numpy as np
import pytest

import pylgn
from pylgn.cli import main
from pylgn.data import Dataset, write_dataset
from pylgn.recipes import (READ, class_variance, level_keep, read_data, recipe, signal_crop,
                           threshold_count)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = (os.environ.get("PYLGN_MNIST_SOURCE")
          or os.path.join(ROOT, "..", "shared", "data", "mnist"))
needs_mnist = pytest.mark.skipif(
    not os.path.exists(os.path.join(SOURCE, "train-images-idx3-ubyte.gz")),
    reason=f"MNIST's IDX files not found in {SOURCE} (set PYLGN_MNIST_SOURCE)")


def _variants():
    spec = importlib.util.spec_from_file_location("variants", os.path.join(ROOT, "bench",
                                                                           "variants.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# the rules against plain formulas --------------------------------------------------------------

def test_class_variance_is_the_label_explained_variance():
    rng = np.random.default_rng(0)
    x = rng.random((60, 2, 5, 4)).astype(np.float32)
    y = rng.integers(0, 3, 60)
    want = np.zeros((5, 4))
    for i in range(5):
        for j in range(4):
            for ch in range(2):
                v = x[:, ch, i, j].astype(np.float64)
                # total = within + between: the between part is var(v) - sum_c pi_c var(v | c)
                within = sum((y == c).mean() * v[y == c].var() for c in range(3))
                want[i, j] += v.var() - within
    np.testing.assert_allclose(class_variance(x, y, 3), want, rtol=1e-4, atol=1e-7)


def _between(v, y):
    """Label-explained variance summed over columns: var(v) - sum_c pi_c var(v | c)."""
    return sum(v[:, j].var() - sum((y == c).mean() * v[y == c, j].var() for c in np.unique(y))
               for j in range(v.shape[1]))


def test_level_keep_against_a_direct_quantizer():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    v = np.clip(rng.beta(0.5, 0.5, (300, 7)) * 0.6 + 0.2 * y[:, None], 0, 1)
    for n in (1, 2, 3, 4, 8):
        t = np.arange(1, n + 1) / (n + 1)
        bins = (v[..., None] > t).sum(-1)               # the thermometer's count of ones
        q = np.zeros_like(v)
        for k in range(n + 1):
            if (bins == k).any():
                q[bins == k] = v[bins == k].mean()
        assert level_keep(v, y, 3, n) == pytest.approx(_between(q, y) / _between(v, y),
                                                       rel=1e-4)


def test_threshold_count_reads_the_label_signal_in_the_values():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 2000)
    binary = (rng.random((2000, 30)) < 0.2 + 0.2 * y[:, None]).astype(float)
    assert threshold_count(binary, y, 4) == (1, pytest.approx(1.0))
    graded = (y[:, None] + rng.random((2000, 30))) / 4   # class = which quarter of [0, 1]
    n, kept = threshold_count(graded, y, 4)
    assert n >= 4 and kept >= 0.85 and level_keep(graded, y, 4, n // 2) < 0.85
    assert threshold_count(graded, y, 4, keep=0.999)[0] == 8     # the most it offers
    assert threshold_count(np.full((10, 4), 0.3), np.arange(10) % 2, 2)[0] == 1   # constant


def _blob_images(n, size, signal, rng):
    """Images whose class shows in the centred signal x signal square (a bright bar at a
    class-dependent row); everywhere else uniform noise that does not depend on the class."""
    y = rng.integers(0, 4, n)
    x = rng.random((n, 1, size, size)) * 0.2
    top = (size - signal) // 2
    for i, c in enumerate(y):
        r = top + (c * (signal - 1)) // 3
        x[i, 0, r, top:top + signal] = 1.0
    return x.astype(np.float32), y


def test_signal_crop_keeps_the_square_where_the_class_shows():
    rng = np.random.default_rng(3)
    x, y = _blob_images(400, 28, 12, rng)
    crop, kept = signal_crop(x, y, 4)
    assert crop == 12 and kept >= 0.97
    # the signal spans the whole frame: no crop
    x, y = _blob_images(400, 28, 28, rng)
    assert signal_crop(x, y, 4)[0] is None
    # no pixel moves with the class: no crop
    assert signal_crop(rng.random((50, 1, 10, 10)), np.zeros(50, int), 1) == (None, 1.0)


def _ds(x, y, classes=10):
    x = np.asarray(x, np.uint8)
    return Dataset("t", x, np.asarray(y), x[:10], np.asarray(y)[:10],
                   [str(c) for c in range(classes)])


def test_read_data_fills_only_the_settings_it_reads():
    rng = np.random.default_rng(4)
    x, y = _blob_images(300, 28, 16, rng)
    ds = _ds(np.rint(255 * x), y, classes=4)
    name, cfg = recipe(ds.shape, len(y))
    why = read_data(cfg, ds, set(), name)
    assert cfg["crop"] == 16 and isinstance(cfg["thresholds"], int)
    assert set(why) >= {"crop", "thresholds"} and "16 x 16" in why["crop"]
    assert cfg["width"] == 8000 and cfg["tau"] == pytest.approx(10 * np.sqrt(2000 / 800), abs=0.01)
    # flags win: a given crop is not read, a given tau not scaled
    name, cfg = recipe(ds.shape, len(y))
    cfg.update(crop=None, tau=3.0)
    why = read_data(cfg, ds, {"crop", "tau"}, name)
    assert cfg["crop"] is None and cfg["tau"] == 3.0 and "crop" not in why and "tau" not in why


def test_width_and_tau_follow_the_classes():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (260, 1, 28, 28))
    ds = _ds(x, np.arange(260) % 26, classes=26)
    name, cfg = recipe(ds.shape, 260)
    why = read_data(cfg, ds, set(), name)
    assert cfg["width"] == 8008 and "26 classes" in why["width"]
    assert cfg["tau"] == pytest.approx(10 * np.sqrt((8008 / 26) / 800), abs=0.01)
    # the arity-6 tau holds at 200 gates per class: 4 x 2,000 MNIST gates keep tau 6
    name, cfg = recipe(ds.shape, 260, arity=6)
    cfg.update(width=2000)
    ds10 = _ds(x, np.arange(260) % 10)
    why = read_data(cfg, ds10, {"width"}, name, arity=6)
    assert cfg["tau"] == 6.0 and "tau" not in why


def test_table_recipe_derives_sizes_from_rows_columns_classes():
    from pylgn.data import TableDataset
    rng = np.random.default_rng(6)
    x = rng.random((150, 4))
    y = np.arange(150) % 3
    ds = TableDataset("t", x, y, x[:30], y[:30], ["a", "b", "c"], 1, feature_names=list("abcd"))
    name, cfg = recipe(ds.shape, 150)
    assert name == "table"
    why = read_data(cfg, ds, set(), name)
    assert cfg["thresholds"] == 2 and cfg["width"] == 600 and cfg["batch_size"] == 37
    assert cfg["tau"] == pytest.approx(np.sqrt(200), abs=0.01) and cfg["steps"] == 2000
    assert set(why) == {"thresholds", "width", "batch_size", "steps", "tau"}
    big = TableDataset("t", rng.random((20000, 30)), np.arange(20000) % 2, x[:2, :1],
                       y[:2], ["0", "1"], 1)
    name, cfg = recipe(big.shape, 20000)
    read_data(cfg, big, set(), name)
    assert cfg["thresholds"] == 8 and cfg["width"] == 480 and cfg["steps"] == 20000


# MNIST that breaks the shape rule ----------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist_train():
    from test_data import _script
    import tempfile
    out = tempfile.mkdtemp()
    assert _script("prepare_mnist").main(["--source", SOURCE, "--out", out]) == 0
    ds = pylgn.data.load_dataset("mnist", data_dir=out)
    return ds.x_train[:6000], ds.y_train[:6000]


@needs_mnist
@pytest.mark.parametrize("kind, crop, levels", [
    ("mnist", 20, (2,)),             # centred digits, blank border, near-binary strokes
    ("inverted", 20, (2,)),          # the same information, dark on white
    ("large", None, (2, 4)),         # strokes reach the border; the zoom adds grey edges
    ("noisy", 20, (2,)),             # texture, not class, at the border and in the grey levels
    ("shifted", (24, 26, None), (2,)),   # digits anywhere: more than the 20 x 20 centre
])
def test_the_28x28_recipe_reads_each_variant(mnist_train, kind, crop, levels):
    x, y = mnist_train
    if kind != "mnist":
        x = _variants().make(kind, x, seed=0)
    ds = _ds(x, y)
    name, cfg = recipe(ds.shape, len(y))
    why = read_data(cfg, ds, set(), name)
    assert cfg["crop"] in (crop if isinstance(crop, tuple) else (crop,)), why
    assert cfg["thresholds"] in levels, why


# the CLI ------------------------------------------------------------------------------------

def _dataset_file(path, seed=7):
    rng = np.random.default_rng(seed)
    x, y = _blob_images(240, 28, 12, rng)
    x = np.rint(255 * x).astype(np.uint8)
    write_dataset(str(path), "blobs", x[:200], y[:200], x[200:], y[200:], list("abcd"))
    return str(path)


def test_train_prints_and_keeps_the_decisions_info_shows_them(tmp_path, capsys):
    data = _dataset_file(tmp_path / "blobs.h5")
    run = tmp_path / "run"
    argv = ["train", "--dataset", data, "--width", "400", "--layers", "2", "--steps", "4",
            "--eval-every", "4", "--batch-size", "20", "--out", str(run), "--no-progress",
            "--json"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "  recipe 28x28-grayscale: read from the training data:"
    assert any(line.startswith("    crop 12: the centred 12 x 12 square") for line in out)
    assert any(line.startswith("    tau ") for line in out)          # 100 gates per class
    ck = pylgn.load(run / "checkpoint.h5")
    assert ck.meta["recipe"]["name"] == "28x28-grayscale"
    assert ck.meta["settings"]["crop"] == 12 and ck.model.in_dim == 144
    assert ck.meta["settings"]["tau"] == pytest.approx(10 * np.sqrt(100 / 800), abs=0.01)
    assert main(["info", str(run / "checkpoint.h5")]) == 0
    info = capsys.readouterr().out
    assert "recipe 28x28-grayscale" in info and "crop 12: the centred" in info
    # resume: the stored settings, nothing read again (no recipe lines), the same decisions kept
    assert main(["train", "--steps", "8", "--resume", str(run / "checkpoint.h5"),
                 "--no-progress", "--json"]) == 0
    out = capsys.readouterr().out
    assert "recipe" not in out and json.loads(out.splitlines()[-1])["steps"] == 8
    assert pylgn.load(run / "checkpoint.h5").meta["recipe"] == ck.meta["recipe"]
    # a flag wins and is not reported as read
    assert main(argv[:-4] + ["--crop", "0", "--tau", "2", "--out", str(tmp_path / "r2"),
                             "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "crop" not in out.split("pylgn train:")[0] and "tau" not in out.split("pylgn train:")[0]
    assert pylgn.load(tmp_path / "r2" / "checkpoint.h5").model.in_dim == 784


def test_help_explains_the_rules(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "label-explained" in text and "crop=read" in text and "sqrt(gates per class" in text


def test_csv_gets_the_table_recipe(tmp_path, capsys):
    rng = np.random.default_rng(8)
    x = rng.random((200, 3))
    y = (x[:, 0] > 0.5).astype(int)
    path = tmp_path / "t.csv"
    with open(path, "w") as f:
        f.write("a,b,c,label\n")
        for row, lab in zip(x, y):
            f.write(",".join(f"{v:.4f}" for v in row) + f",{lab}\n")
    assert main(["train", "--dataset", str(path), "--target", "label", "--steps", "5",
                 "--eval-every", "5", "--out", str(tmp_path / "run"), "--no-progress",
                 "--json"]) == 0
    out = capsys.readouterr().out
    assert "recipe table" in out and "    width 400:" in out
    s = pylgn.load(tmp_path / "run" / "checkpoint.h5").meta["settings"]
    assert (s["thresholds"], s["width"], s["layers"], s["batch_size"]) == (3, 400, 3, 40)
    assert s["tau"] == pytest.approx(np.sqrt(200), abs=0.01)
