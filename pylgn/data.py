"""Data: thermometer encoding, datasets by name, the HDF5 dataset format and image augmentation.

A dataset holds raw uint8 samples ``x`` of shape (N, *shape) (images as (C, H, W)), labels
``y`` (N,) and ``max_value``, the value that maps to 1.0. The model sees thermometer bits:
``encode(x) = thermometer(x / max_value, n)`` flattened to (N, C*n*H*W).

HDF5 dataset format (``write_dataset``/``read_dataset``): datasets ``x_train``, ``y_train``,
``x_test``, ``y_test`` (uint8) and attributes ``format = "pylgn-dataset"``, ``version``, ``name``,
``shape`` (per-sample shape), ``class_names`` (JSON list) and ``max_value``.
"""
import hashlib
import json
import os
import shutil
import urllib.request
from dataclasses import dataclass, field

import numpy as np

from ._checks import check_int
from ._io import cropped_shape  # noqa: F401 (re-exported)

DATASET_FORMAT = "pylgn-dataset"
DATASET_VERSION = 1
PREPARED = {"mnist": "mnist", "cifar10": "cifar", "cifar100": "cifar"}   # name -> prepare script


# thermometer encoding ------------------------------------------------------------------------

def thermometer(x, thresholds):
    """Bits out[:, c*n + i, ...] = x[:, c, ...] > (i+1)/(n+1), i = 0..n-1, as uint8 0/1.

    ``x``: floats in [0, 1] of shape (batch, C, ...) or (batch, F); the n bits of channel c are
    contiguous, so (batch, C, H, W) -> (batch, C*n, H, W) and (batch, F) -> (batch, F*n).
    Common choices: n = 1, 3, 7, 15, 31 (then (n+1) is a power of two and the levels are exact).
    """
    n = check_int("thresholds", thresholds, 1, 255)
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise TypeError(f"x: expected floats scaled to [0, 1], got dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"x: expected shape (batch, channels, ...), got {x.shape}")
    if x.size and not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
        raise ValueError("x: values must be finite and lie in [0, 1]")
    levels = (np.arange(1, n + 1, dtype=np.float64) / (n + 1)).reshape((n,) + (1,) * (x.ndim - 2))
    bits = x[:, :, None] > levels
    return bits.reshape((x.shape[0], x.shape[1] * n) + x.shape[2:]).astype(np.uint8)


# datasets ------------------------------------------------------------------------------------

@dataclass
class Dataset:
    """Raw uint8 samples (N, *shape), int labels (N,), class names; ``max_value`` maps to 1.0."""
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list
    max_value: int = 255

    @property
    def shape(self):
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self):
        return len(self.class_names)

    def encoded_dim(self, thresholds, crop=None):
        """Width of the encoded input: prod(shape after the crop) * thresholds."""
        return int(np.prod(cropped_shape(self.shape, crop))) * thresholds

    def encode(self, x, thresholds, crop=None):
        """Raw samples (N, *shape) -> thermometer bits (N, prod(cropped shape) * thresholds)
        uint8; ``crop``: keep the centre crop x crop pixels of images first (``centre_crop``)."""
        x = centre_crop(_check_raw("x", x, self.max_value), crop)
        bits = thermometer(np.asarray(x, dtype=np.float64) / self.max_value, thresholds)
        return bits.reshape(bits.shape[0], -1)

    def scale(self, x, crop=None):
        """Raw samples -> values / max_value (N, prod(cropped shape)) float32 in [0, 1], channel-
        major: the input of a model that learns its thresholds (LearnableThermometer)."""
        x = centre_crop(_check_raw("x", x, self.max_value), crop)
        return (x.reshape(len(x), -1) / np.float32(self.max_value)).astype(np.float32)


def _check_raw(name, x, max_value):
    """Raw samples: integers in [0, max_value] (floats would be silently mis-scaled)."""
    x = np.asarray(x)
    if x.dtype.kind not in "biu":
        raise TypeError(f"{name}: expected raw integer samples in [0, {max_value}], got dtype "
                        f"{x.dtype} (scale floats to [0, 1] and use pylgn.data.thermometer)")
    if x.size and (int(x.min()) < 0 or int(x.max()) > max_value):
        raise ValueError(f"{name}: values must lie in [0, {max_value}], got range "
                         f"[{int(x.min())}, {int(x.max())}]")
    return x


def centre_crop(x, crop):
    """The centre crop x crop pixels of images x (N, C, H, W): rows (H - crop) // 2 onward and
    columns (W - crop) // 2 onward (a 20x20 crop of a 28x28 MNIST digit drops 4 pixels a side).
    ``crop`` None returns x unchanged."""
    if crop is None:
        return x
    cropped_shape(x.shape[1:], crop)
    top, left = (x.shape[2] - crop) // 2, (x.shape[3] - crop) // 2
    return x[:, :, top:top + crop, left:left + crop]


def load_digits(seed=0, test_fraction=0.2):
    """scikit-learn's bundled 8x8 digits (1797 samples, values 0..16) as (1, 8, 8) images, split
    by a fixed seeded permutation: the first 80 % train, the rest test."""
    from sklearn.datasets import load_digits as sk_digits
    d = sk_digits()
    x = d.images.astype(np.uint8)[:, None]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_train = int(round(len(x) * (1.0 - test_fraction)))
    tr, te = order[:n_train], order[n_train:]
    return Dataset("digits", x[tr], y[tr], x[te], y[te], [str(c) for c in range(10)], 16)


# tables (CSV): per-column quantile thermometers ------------------------------------------------

def quantile_thresholds(x, n, distinct=True):
    """(features, thresholds) of the columns of x (samples, columns), NaN ignored; input bit k is
    [x[:, features[k]] > thresholds[k]]. Column j: t_i = nanquantile(x[:, j], (i+1)/(n+1)), i < n.
    ``distinct``: only the distinct t_i below the column's maximum (a threshold at the maximum
    gives a bit that is 0 on all of x); a constant column keeps one, at its value. Otherwise all n
    (repeats included: the width is columns * n). An all-NaN column gets +inf (bits always 0)."""
    levels = np.arange(1, n + 1) / (n + 1)
    feats, cuts = [], []
    for j in range(x.shape[1]):
        col = x[:, j][~np.isnan(x[:, j])]
        t = np.quantile(col, levels) if col.size else np.full(n, np.inf)
        if distinct:
            t = np.unique(t)
            t = t[t < col.max()] if (col.size and (t < col.max()).any()) else t[:1]
        feats.append(np.full(t.size, j, dtype=np.int64))
        cuts.append(t)
    return np.concatenate(feats), np.concatenate(cuts).astype(np.float64)


def quantile_encode(x, features, thresholds):
    """Bits (samples, len(thresholds)) uint8: bit k = [x[:, features[k]] > thresholds[k]] (NaN
    compares false, so a missing value has all its bits 0)."""
    with np.errstate(invalid="ignore"):
        return (np.asarray(x, dtype=np.float64)[:, features] > thresholds).astype(np.uint8)


@dataclass
class TableDataset(Dataset):
    """Rows of numbers (N, columns), float64, with int labels; ``encode`` is the per-column
    quantile thermometer fitted on ``x_train`` (every column gets ``thresholds`` bits, repeated
    quantiles included, so the width is columns * thresholds like any other dataset)."""
    feature_names: list = field(default_factory=list)
    _cuts: dict = field(default_factory=dict, repr=False, compare=False)

    def encode(self, x, thresholds, crop=None):
        if crop is not None:
            raise ValueError(f"crop: a table has no images to crop, got crop={crop}")
        n = check_int("thresholds", thresholds, 1, 255)
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.x_train.shape[1]:
            raise ValueError(f"x: expected rows of {self.x_train.shape[1]} columns, got shape "
                             f"{x.shape}")
        if n not in self._cuts:
            self._cuts[n] = quantile_thresholds(self.x_train, n, distinct=False)
        return quantile_encode(x, *self._cuts[n])


def load_csv(path, target, seed=0, test_fraction=0.2):
    """A CSV table with a header row as a ``TableDataset``: column ``target`` holds the labels
    (any text; classes sorted, numerically when all are numbers), every other column numbers
    (a missing or non-numeric cell is a ValueError naming its line and column). Split by a fixed
    seeded permutation like ``load_digits``: the first 80 % train, the rest test."""
    import csv
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if len(rows) < 3:
        raise ValueError(f"{path}: expected a header row and at least 2 rows of data")
    header, rows = [h.strip() for h in rows[0]], rows[1:]
    if target not in header:
        raise ValueError(f"target: no column {target!r} in {path} (columns: {header})")
    t = header.index(target)
    cols = [j for j in range(len(header)) if j != t]
    bad = next((i for i, r in enumerate(rows) if len(r) != len(header)), None)
    if bad is not None or not cols:
        raise ValueError(f"{path}: line {bad + 2} has {len(rows[bad])} fields, the header "
                         f"{len(header)}" if bad is not None else
                         f"{path}: no feature columns besides the target {target!r}")
    x = np.array([[_cell(path, header, i, r, j) for j in cols] for i, r in enumerate(rows)])
    names = sorted({r[t].strip() for r in rows}, key=_label_key([r[t] for r in rows]))
    _check_label_spellings(path, target, names)
    if len(names) < 2:
        raise ValueError(f"target: column {target!r} of {path} has 1 class ({names[0]!r})")
    y = np.array([names.index(r[t].strip()) for r in rows], dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    tr, te = np.split(order, [int(round(len(x) * (1.0 - test_fraction)))])
    return TableDataset(os.path.splitext(os.path.basename(path))[0], x[tr], y[tr], x[te], y[te],
                        names, 1, [header[j] for j in cols])


def _check_label_spellings(path, target, names):
    """Numeric labels must each be written one way: "1" and "1.0" would be two classes."""
    seen = {}
    for name in names:
        try:
            value = float(name)
        except ValueError:
            continue
        if value in seen:
            raise ValueError(f"{path}: column {target!r} writes the label {value:g} two ways "
                             f"({seen[value]!r} and {name!r}), which would make two classes; "
                             f"write each class one way")
        seen[value] = name


def check_splits(path, y_train, y_test, class_names):
    """Before training: the training split must hold >= 2 classes and every class of the test
    split (a model cannot learn a class it never sees; it would train as a smaller problem
    without a word)."""
    train = set(np.unique(y_train).tolist())
    if len(train) < 2:
        raise ValueError(f"{path}: the training split holds {len(train)} class(es) "
                         f"({[class_names[i] for i in sorted(train)]}); expected >= 2")
    unseen = sorted(set(np.unique(y_test).tolist()) - train)
    if unseen:
        raise ValueError(f"{path}: class(es) {[class_names[i] for i in unseen]} appear only in "
                         f"the test split; the model cannot learn them (add training samples)")


def _cell(path, header, i, row, j):
    try:
        v = float(row[j])
    except ValueError:
        v = np.nan
    if not np.isfinite(v):
        raise ValueError(f"{path}: line {i + 2}, column {header[j]!r}: expected a finite number, "
                         f"got {row[j]!r}")
    return v


def _label_key(labels):
    """Sort key of class names: by value when every label is a number, else as text."""
    try:
        [float(v) for v in labels]
        return lambda s: (float(s), s)
    except ValueError:
        return str


def default_data_dir():
    """$PYLGN_DATA, else ./data."""
    return os.environ.get("PYLGN_DATA") or "data"


def load_dataset(name, data_dir=None, target=None):
    """``digits`` (bundled), ``mnist``/``cifar10``/``cifar100`` (prepared HDF5 files in
    ``data_dir``, default $PYLGN_DATA or ./data), a path to a dataset .h5 file, or a .csv table
    whose column ``target`` holds the labels (``load_csv``)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset: expected a name or a .h5 path, got {name!r}")
    if name.lower().endswith(".csv"):
        if not target:
            raise ValueError(f"target: a .csv dataset needs the label column (--target), "
                             f"got {target!r}")
        return load_csv(name, target)
    if target is not None:
        raise ValueError(f"target: only a .csv dataset has a label column to pick, got "
                         f"target={target!r} for {name!r}")
    if name == "digits":
        return load_digits()
    if name in PREPARED:
        path = os.path.join(data_dir or default_data_dir(), f"{name}.h5")
        if not os.path.exists(path):
            raise ValueError(f"dataset: {name} is not prepared ({path} not found); prepare it "
                             f"with: "
                             f"python data_scripts/prepare_{PREPARED[name]}.py"
                             f"{' --which ' + name if PREPARED[name] == 'cifar' else ''} "
                             f"--out {os.path.dirname(path) or '.'}")
        return read_dataset(path)
    if name.endswith((".h5", ".hdf5")) or os.path.exists(name):
        if not os.path.exists(name):
            raise ValueError(f"dataset: file {name} not found")
        return read_dataset(name)
    raise ValueError(f"dataset: expected digits, mnist, cifar10, cifar100 or a .h5 file, "
                     f"got {name!r}")


def write_dataset(path, name, x_train, y_train, x_test, y_test, class_names, max_value=255):
    """Write the HDF5 dataset format (uint8 arrays, gzip) atomically."""
    from ._io import atomic_hdf5
    max_value = check_int("max_value", max_value, 1, 255)
    for key, y in (("y_train", y_train), ("y_test", y_test)):
        y = np.asarray(y)
        if y.dtype.kind not in "iu":
            raise TypeError(f"{key}: expected integer labels, got dtype {y.dtype}")
        if len(y) and not 0 <= np.min(y) <= np.max(y) <= 255:
            raise ValueError(f"{key}: labels must lie in [0, 255] to be stored as uint8")
    for key, x in (("x_train", x_train), ("x_test", x_test)):
        _check_raw(key, x, max_value)
    with atomic_hdf5(path) as f:
        f.attrs.update(format=DATASET_FORMAT, version=DATASET_VERSION, name=name,
                       shape=list(np.asarray(x_train).shape[1:]), max_value=int(max_value),
                       class_names=json.dumps([str(c) for c in class_names]))
        for key, arr in (("x_train", x_train), ("y_train", y_train), ("x_test", x_test),
                         ("y_test", y_test)):
            f.create_dataset(key, data=np.asarray(arr, dtype=np.uint8), compression="gzip")


def read_dataset(path):
    """Read a file written by ``write_dataset``; ValueError naming the file when it is not one."""
    import h5py
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != DATASET_FORMAT:
                raise ValueError(f"{path}: not a pylgn dataset file (attribute format != "
                                 f"{DATASET_FORMAT!r})")
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f]
            if missing:
                raise ValueError(f"{path}: missing dataset(s) {missing}")
            from ._io import check_storage
            check_storage(f, path)
            arrays = {k: f[k][...] for k in ("x_train", "y_train", "x_test", "y_test")}
            for k in ("y_train", "y_test"):
                if arrays[k].dtype.kind not in "iu" or arrays[k].ndim != 1:
                    raise ValueError(f"{path}: {k} must be a 1-D array of integer labels, got "
                                     f"{arrays[k].dtype} of shape {arrays[k].shape}")
            for k in ("x_train", "x_test"):
                if arrays[k].ndim < 2:
                    raise ValueError(f"{path}: {k} must be (samples, ...), got shape "
                                     f"{arrays[k].shape}")
            ds = Dataset(_attr(f, path, "name", str), arrays["x_train"],
                         arrays["y_train"].astype(np.int64), arrays["x_test"],
                         arrays["y_test"].astype(np.int64), _attr(f, path, "class_names",
                                                                   _class_names),
                         _attr(f, path, "max_value", _max_value))
    except (OSError, KeyError) as e:
        raise ValueError(f"{path}: not a readable pylgn dataset file ({e})") from None
    except (TypeError, ValueError) as e:          # every error names the file
        if str(e).startswith(f"{path}: "):
            raise
        raise ValueError(f"{path}: not a valid pylgn dataset file ({e})") from None
    _check_dataset(path, ds)
    return ds


def _attr(f, path, name, parse):
    """Attribute ``name`` of the open dataset file through ``parse``; ValueError naming the
    file and the attribute when it is missing or invalid."""
    if name not in f.attrs:
        raise ValueError(f"{path}: missing attribute {name!r}")
    value = f.attrs[name]
    try:
        return parse(value.decode() if isinstance(value, bytes) else value)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: attribute {name!r}: {e}") from None


def _class_names(text):
    names = json.loads(text) if isinstance(text, str) else None
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) for n in names):
        raise ValueError(f"expected a JSON list of >= 2 class names, got {text!r}")
    return names


def _max_value(value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or not 1 <= value <= 255:
        raise ValueError(f"expected an int in [1, 255], got "
                         f"{value.item() if isinstance(value, np.generic) else value!r}")
    return int(value)


def _check_dataset(path, ds):
    for split in ("train", "test"):
        if getattr(ds, f"x_{split}").dtype != np.uint8:
            raise ValueError(f"{path}: x_{split} must be uint8 (raw values up to max_value), got "
                             f"{getattr(ds, f'x_{split}').dtype}")
        x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
        if len(x) != len(y) or x.shape[1:] != ds.shape:
            raise ValueError(f"{path}: x_{split} {x.shape} and y_{split} {y.shape} do not match")
        if not len(y):
            raise ValueError(f"{path}: x_{split} and y_{split} are empty; expected >= 1 sample")
        if x.size and x.max() > ds.max_value:
            raise ValueError(f"{path}: x_{split} holds values up to {x.max()}, above the "
                             f"attribute 'max_value' {ds.max_value}")
        if y.min() < 0 or y.max() >= ds.num_classes:
            raise ValueError(f"{path}: y_{split} has labels outside [0, {ds.num_classes})")


# downloads (used by data_scripts/) -------------------------------------------------------------

def md5sum(path, decompress=False):
    """MD5 hex digest of the file's bytes, or of its gzip-decompressed bytes when ``decompress``."""
    import gzip
    h = hashlib.md5()
    with (gzip.open if decompress else open)(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_md5(path, md5, content_md5=None):
    """ValueError naming ``path`` unless its MD5 is ``md5`` (the published archive) or, for a
    gzip file with ``content_md5`` given, the MD5 of its decompressed bytes is ``content_md5``
    (the same content re-compressed: other gzip settings change the archive's bytes only)."""
    got = md5sum(path)
    if got == md5:
        return
    if content_md5 is not None:
        try:
            content = md5sum(path, decompress=True)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: MD5 {got} is not the official {md5}, and the file is not "
                             f"a readable gzip archive ({e})") from None
        if content == content_md5:
            return
        raise ValueError(f"{path}: neither the archive's MD5 {got} (official {md5}) nor the "
                         f"decompressed content's MD5 {content} (official {content_md5}) match; "
                         f"the file is not the official one (--no-verify skips the check)")
    raise ValueError(f"{path}: MD5 {got} does not match the official {md5} "
                     f"(--no-verify skips the check)")


def fetch(filename, urls, md5, dest_dir, source_dir=None, verify=True, content_md5=None):
    """Path of ``filename``: the file in ``source_dir`` when given (no network), else the copy in
    ``dest_dir``, downloaded from the first working URL of ``urls``. Unless ``verify`` is False,
    its MD5 must equal ``md5`` or its gzip content's MD5 ``content_md5`` (``verify_md5``)."""
    if source_dir is not None:
        dest = os.path.join(source_dir, filename)
        if not os.path.exists(dest):
            raise ValueError(f"source: {dest} not found")
    else:
        os.makedirs(dest_dir, exist_ok=True)
        dest = os.path.join(dest_dir, filename)
        if os.path.exists(dest) and verify:
            try:
                verify_md5(dest, md5, content_md5)
            except ValueError:
                _download(urls, dest)
        elif not os.path.exists(dest):
            _download(urls, dest)
    if verify:
        verify_md5(dest, md5, content_md5)
    return dest


def _download(urls, dest):
    errors = []
    for url in urls:
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "pylgn"})
            with urllib.request.urlopen(req, timeout=60) as r, open(dest + ".part", "wb") as f:
                shutil.copyfileobj(r, f)
            os.replace(dest + ".part", dest)
            return
        except OSError as e:
            errors.append(f"{url}: {e}")
    raise ValueError("download failed: " + "; ".join(errors))


# augmentation ----------------------------------------------------------------------------------

def augment(x, rng, crop=True, flip=True, scale=(0.5, 1.0), ratio=(0.8, 1.2)):
    """Random resized crop (area fraction ~ U(scale), aspect ratio log-uniform in ``ratio``,
    bilinear resize back to H x W) and horizontal flip with probability 1/2, per image.

    ``x``: (batch, C, H, W) images (any real dtype, returned in the same dtype); ``rng``: a
    numpy Generator (seeded by the caller, so runs are reproducible)."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x: augmentation expects images (batch, C, H, W), got shape {x.shape}")
    out = _random_resized_crop(x, rng, scale, ratio) if crop else x.copy()
    if flip:
        mirror = rng.random(len(x)) < 0.5
        out[mirror] = out[mirror, :, :, ::-1]
    return out


def random_shift(x, rng, max_shift=2):
    """Each image translated by (dy, dx), both uniform integers in [-max_shift, max_shift],
    the uncovered border filled with 0: out[b, c, i, j] = x[b, c, i - dy_b, j - dx_b].

    ``x``: (batch, C, H, W) images (any dtype, returned alike); ``rng``: a numpy Generator."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x: augmentation expects images (batch, C, H, W), got shape {x.shape}")
    m = check_int("max_shift", max_shift, 0)
    b, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (m, m), (m, m)))
    dy, dx = rng.integers(-m, m + 1, size=b), rng.integers(-m, m + 1, size=b)
    rows = (m - dy)[:, None] + np.arange(h)[None]                      # (b, h)
    cols = (m - dx)[:, None] + np.arange(w)[None]                      # (b, w)
    return padded[np.arange(b)[:, None, None, None], np.arange(x.shape[1])[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


def _random_resized_crop(x, rng, scale, ratio):
    b, _, h, w = x.shape
    area = rng.uniform(*scale, size=b) * h * w
    aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]), size=b))
    cw = np.clip(np.sqrt(area * aspect), 1, w)
    ch = np.clip(np.sqrt(area / aspect), 1, h)
    top = rng.uniform(0, 1, size=b) * (h - ch)
    left = rng.uniform(0, 1, size=b) * (w - cw)
    # source coordinate of each output pixel centre: top + (i + 0.5) * ch / h - 0.5
    sy = top[:, None] + (np.arange(h) + 0.5)[None] * (ch / h)[:, None] - 0.5
    sx = left[:, None] + (np.arange(w) + 0.5)[None] * (cw / w)[:, None] - 0.5
    sy, sx = np.clip(sy, 0, h - 1), np.clip(sx, 0, w - 1)
    y0, x0 = np.floor(sy).astype(np.int64), np.floor(sx).astype(np.int64)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (sy - y0)[:, None, :, None], (sx - x0)[:, None, None, :]
    bi = np.arange(b)[:, None, None, None]
    ci = np.arange(x.shape[1])[None, :, None, None]

    def at(yy, xx):
        return x[bi, ci, yy[:, None, :, None], xx[:, None, None, :]].astype(np.float64)

    val = (at(y0, x0) * (1 - fy) * (1 - fx) + at(y0, x1) * (1 - fy) * fx
           + at(y1, x0) * fy * (1 - fx) + at(y1, x1) * fy * fx)
    if x.dtype.kind in "iu":
        val = np.rint(val)
    return val.astype(x.dtype)
