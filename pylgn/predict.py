"""``pylgn predict``: raw samples in, one class per line out.

The checkpoint's encoder (``pylgn.encoders.from_checkpoint``) and its circuit run together
(``Circuit.predict_raw``: the packed kernel with the encoding fused in for uint8 data). Inputs:

- ``.npy``: raw samples (n, features), (n, C, H, W) or (n, H, W) (single-channel images);
- ``.csv``: a table with the training columns in order (the target column, if present, is
  dropped);
- ``.h5``: a pylgn dataset file; its test split.

Everything is checked against the encoder first (feature count, shape, dtype, NaN, range, column
names); nothing is re-fitted.
"""
import os

import numpy as np


def read_input(path, encoder):
    """Raw samples of ``path`` as the encoder reads them; ValueError naming INPUT otherwise."""
    if not isinstance(path, str) or not os.path.isfile(path):
        raise ValueError(f"INPUT: {path!r} is not a file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        x = _read_npy(path)
    elif ext == ".csv":
        x = _read_csv(path, encoder)
    elif ext in (".h5", ".hdf5"):
        from .data import read_dataset
        ds = read_dataset(path)
        if encoder.kind == "quantile":
            raise ValueError(f"INPUT {path}: an image dataset; the model reads table columns "
                             f"{encoder.columns}")
        if float(ds.max_value) != float(encoder.max_value):
            raise ValueError(f"INPUT {path}: max_value {ds.max_value}, the model was trained "
                             f"on max_value {encoder.max_value:g}")
        x = ds.x_test
    else:
        raise ValueError(f"INPUT {path}: expected a .npy, .csv or .h5 file")
    return _check_samples(path, x, encoder)


def _read_npy(path):
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise ValueError(f"INPUT {path}: not a readable .npy array ({e})") from None
    if not isinstance(x, np.ndarray):
        raise ValueError(f"INPUT {path}: expected one array")
    return x


def _read_csv(path, encoder):
    import csv
    if encoder.kind != "quantile":
        raise ValueError(f"INPUT {path}: a .csv table; the model reads images of shape "
                         f"{tuple(encoder.shape)} (give a .npy or .h5)")
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f) if r]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"INPUT {path}: not a readable CSV file ({e})") from None
    if len(rows) < 2:
        raise ValueError(f"INPUT {path}: expected a header row and at least 1 row of data")
    header = [h.strip() for h in rows[0]]
    keep = [j for j, h in enumerate(header) if h != encoder.target]
    encoder.check_columns([header[j] for j in keep])
    x = np.empty((len(rows) - 1, len(keep)), dtype=np.float64)
    for i, r in enumerate(rows[1:]):
        if len(r) != len(header):
            raise ValueError(f"INPUT {path}: line {i + 2} has {len(r)} fields, the header "
                             f"{len(header)}")
        for jj, j in enumerate(keep):
            try:
                x[i, jj] = float(r[j])
            except ValueError:
                raise ValueError(f"INPUT {path}: line {i + 2}, column {header[j]!r}: expected a "
                                 f"number, got {r[j]!r}") from None
    return x


def _check_samples(path, x, encoder):
    """Shape (images without a channel axis get one), dtype, NaN and range, named by INPUT."""
    if x.dtype.kind not in "biuf":
        raise ValueError(f"INPUT {path}: expected numeric samples, got dtype {x.dtype}")
    shape = tuple(encoder.shape)
    if len(shape) == 3 and shape[0] == 1 and x.ndim == 3 and x.shape[1:] == shape[1:]:
        x = x[:, None]
    if x.ndim < 2 or x.shape[0] < 1 or x.shape[1:] not in (shape, (encoder.raw_dim,)):
        raise ValueError(f"INPUT {path}: expected samples of shape {shape} (or {encoder.raw_dim} "
                         f"values each), got an array of shape {x.shape}")
    if x.dtype.kind == "f" and np.isnan(x).any() and getattr(encoder, "missing", "") != "low":
        raise ValueError(f"INPUT {path}: holds NaN")
    if encoder.kind != "quantile" and x.size:
        lo, hi = float(x.min()), float(x.max())
        if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0 and hi <= encoder.max_value):
            raise ValueError(f"INPUT {path}: values must lie in [0, {encoder.max_value:g}] "
                             f"(raw data as the dataset stores them), got [{lo:g}, {hi:g}]")
    return x


def predict(circuit, encoder, x, scores=False):
    """(classes (n,), group counts (n, k) or None)."""
    if scores:
        s = circuit.scores_raw(x, encoder)
        return np.argmax(s, axis=1), s
    return circuit.predict_raw(x, encoder), None


def format_lines(classes, names, scores=None):
    """One line per sample: the class name, then (with scores) the group counts."""
    labels = np.asarray(names if names is not None else [str(i) for i in
                                                          range(int(classes.max()) + 1)])[classes]
    if scores is None:
        return "\n".join(labels.tolist()) + "\n"
    return "".join(f"{lab} {' '.join(map(str, row))}\n" for lab, row in zip(labels, scores.tolist()))
