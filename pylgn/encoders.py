"""Encoders: raw samples -> the input bits of a circuit, with one description every export uses.

Three encoders share one small interface (``Encoder``): ``encode(raw) -> bits`` (uint8, one
column per circuit input), ``config()`` (JSON, what a checkpoint stores; ``from_config`` reads it
back) and ``comparisons()``, the description the exports turn into code:

    input bit k = [ float32(x[src[k]]) > cut[k] ]          x: one raw sample, flattened row-major

with ``cut`` float32. Every encoder is a monotone function of one raw value per bit, so there is
such a cut; it is found per bit by bisection over the float32 values (``float32_cuts``), which
makes the comparison exact for every float32 input:

- ``Thermometer(shape, thresholds, crop, max_value)``: the fixed thermometer of
  ``pylgn.data.Dataset.encode``: centre crop, then bit i of value v is v / max_value > (i+1)/(n+1)
  (float64), channel-major: feature (c * n + i) * H'W' + p.
- ``LearnedThermometer(shape, levels, crop, max_value)``: the learned thresholds of a model's
  ``LearnableThermometer``: float32(v / max_value) > t[c, i] (the values ``Dataset.scale`` gives
  it), same layout.
- ``QuantileEncoder(features, thresholds, columns)``: per-column cut points of a table
  (``pylgn.data.quantile_thresholds``): bit k = x[:, features[k]] > thresholds[k]. Values are
  read as float32 (the C export's input type) and the cut is the threshold rounded to float32,
  so ``pylgn predict`` and the C agree on every sample; against the float64 comparison of
  training a value can differ only within float32 rounding of a cut point.

An encoder also carries what new data are checked against: the raw shape, the column names and
the class names (``check_columns``, ``check_labels``); nothing is ever re-fitted on new data.
"""
import numpy as np

from ._checks import check_float, check_int

ENCODERS = ("thermometer", "learned", "quantile")
_FMAX = float(np.finfo(np.float32).max)


def float32_cuts(pred, n):
    """(n,) float32 cuts: cut[j] = the largest float32 x with pred(x)[j] false, so that for every
    finite float32 x, pred(x)[j] == (x > cut[j]); +inf when pred is false everywhere, -inf when
    true everywhere. ``pred`` maps a (n,) float32 array to (n,) bools, non-decreasing in x."""
    lo = np.full(n, _key(-_FMAX), dtype=np.int64)
    hi = np.full(n, _key(_FMAX), dtype=np.int64)
    top, bottom = pred(_float(hi)), pred(_float(lo))
    for _ in range(34):
        mid = (lo + hi) // 2
        up = pred(_float(mid))
        hi, lo = np.where(up, mid, hi), np.where(up, lo, mid)
    cut = _float(lo)
    cut[~top] = np.inf
    cut[bottom] = -np.inf
    return cut


def _key(v):
    """Order-preserving int of a float32 (0.0 -> 0, negatives below)."""
    b = int(np.float32(v).view(np.int32))
    return b if b >= 0 else -(b & 0x7FFFFFFF)


def _float(keys):
    keys = np.asarray(keys, dtype=np.int64)
    bits = np.where(keys >= 0, keys, (-keys) | 0x80000000).astype(np.uint32)
    return bits.view(np.float32)


def pixel_map(shape, crop, n):
    """(pix, level) per output bit of a channel-major thermometer of ``n`` levels on samples of
    ``shape`` after a centre ``crop``: bit (c * n + i) * P' + p reads raw value pix (flat index)
    against level i."""
    from ._io import cropped_shape
    cs = cropped_shape(shape, crop)
    pix = np.arange(int(np.prod(shape))).reshape(shape)
    if crop is not None:
        top, left = (shape[1] - crop) // 2, (shape[2] - crop) // 2
        pix = pix[:, top:top + crop, left:left + crop]
    pix = pix.reshape(cs[0], 1, -1)
    full = (cs[0], n, pix.shape[2])
    return (np.broadcast_to(pix, full).reshape(-1).astype(np.int64),
            np.broadcast_to(np.arange(n)[None, :, None], full).reshape(-1).astype(np.int64))


def raw_plan(pix, features):
    """(groups, vrow, ptr, entry, slot) of the given input features grouped by raw value: the
    8-value groups (uint64 words of a sample) holding them, each value's row in the transposed
    block, and per value its entries (``entry`` = the features themselves, ``slot``); with a cut
    per entry this is ``pylgn.kernels.packed.load_raw``'s ``enc``."""
    features = np.asarray(features, dtype=np.int64)
    f = features[np.argsort(pix[features], kind="stable")]
    p = pix[f]
    starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]]) if f.size else np.zeros(0, int)
    ptr = np.r_[starts, f.size].astype(np.int64)
    up = p[starts].astype(np.int64)
    groups = np.unique(up // 8)
    vrow = 8 * np.searchsorted(groups, up // 8) + up % 8
    return groups, vrow.astype(np.int64), ptr, f, f


def words64(raw):
    """(batch, D) uint8 -> (batch, ceil(D / 8)) uint64 view (rows zero-padded to 8 bytes)."""
    if raw.shape[1] % 8 or raw.ctypes.data % 8:
        pad = np.zeros((raw.shape[0], -(-raw.shape[1] // 8) * 8), dtype=np.uint8)
        pad[:, :raw.shape[1]] = raw
        raw = pad
    return raw.view(np.uint64)


class Encoder:
    """The shared interface (see the module doc). Subclasses set ``shape`` (one raw sample),
    ``in_dim`` (bits out = the circuit's inputs), ``class_names`` and implement ``_cuts()``,
    ``config()`` and ``_values(x)`` (validated (batch, raw_dim) values)."""
    kind = None
    class_names = None
    columns = None

    @property
    def out_dim(self):
        return self.in_dim

    @property
    def raw_dim(self):
        return int(np.prod(self.shape))

    def comparisons(self):
        """(src, cut): input bit k = [float32(x[src[k]]) > cut[k]] (cached)."""
        if getattr(self, "_cmp", None) is None:
            self._cmp = self._cuts()
        return self._cmp

    def encode(self, x):
        """Bits (batch, in_dim) uint8 of raw samples x."""
        src, cut = self.comparisons()
        v = self._values(x)
        with np.errstate(invalid="ignore"):
            return (v[:, src] > cut).astype(np.uint8)

    def raw_uint8(self, x):
        """(batch, raw_dim) uint8 of x for the fused kernel, or None (then ``encode`` serves)."""
        if not (isinstance(x, np.ndarray) and x.dtype == np.uint8):
            return None
        if (self.byte_cuts() < 1).any():
            return None
        return np.ascontiguousarray(self._values(x))

    def byte_cuts(self):
        """Per bit: the smallest byte value v with v > cut (0..256)."""
        cut = self.comparisons()[1].astype(np.float64)
        return np.clip(np.floor(np.nan_to_num(cut, posinf=256, neginf=-1)) + 1, 0, 256
                       ).astype(np.int64)

    def plan(self, features):
        """``raw_plan`` of these features; ``cut_table(x)[entry]`` gives their byte cuts."""
        return raw_plan(self.comparisons()[0], features)

    def cut_table(self, x):
        return self.byte_cuts()

    def _shape_of(self, x):
        """(batch, raw_dim) view of x after the shape check."""
        x = x if isinstance(x, np.ndarray) else np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"x: expected numeric raw samples, got dtype {x.dtype}")
        D = self.raw_dim
        if x.ndim < 2 or x.shape[0] < 1 or x.shape[1:] not in (tuple(self.shape), (D,)):
            raise ValueError(f"x: expected shape (batch >= 1, *{tuple(self.shape)}) or (batch, {D})"
                             f", got {tuple(x.shape)}")
        return x.reshape(x.shape[0], D)

    def check_labels(self, names):
        """Indices of ``names`` among the model's class names; ValueError for any other."""
        if self.class_names is None:
            return None
        known = {n: i for i, n in enumerate(self.class_names)}
        bad = [n for n in names if n not in known]
        if bad:
            raise ValueError(f"labels: {bad[:5]} are not among the model's classes "
                             f"{list(self.class_names)}")
        return np.array([known[n] for n in names], dtype=np.int64)

    def describe(self):
        """One line for export headers."""
        return repr(self)

class Thermometer(Encoder):
    """The thermometer encoding of ``pylgn.data.Dataset.encode``, fused into packing.

    ``Thermometer(shape, thresholds, crop=None, max_value=255)``: samples of ``shape`` (C, H, W)
    (or (F,)); ``encode(x)`` equals ``Dataset.encode(x, thresholds, crop)`` with that max_value:
    centre crop, then bit i of value v is v / max_value > (i+1)/(n+1), channel-major. For uint8
    data each bit is ``v >= cut_i`` with integer cut-offs found by evaluating that float64
    expression for all 256 values (so it is bit-identical by construction). Other integer and
    float data (floats on the raw scale: ``thermometer(x / max_value, n)``; Dataset.encode itself
    takes integers only) are first reduced to their level count (uint8) with the same float64
    expression.
    ``pack(x)`` gives ``PackedBits`` equal to ``pack_bits(encode(x))`` without building the bits;
    ``Circuit.predict_raw(x, encoder)`` runs the encoding inside the packed kernel.
    """

    kind = "thermometer"

    def __init__(self, shape, thresholds, crop=None, max_value=255, class_names=None):
        from ._io import cropped_shape
        self.shape = tuple(int(v) for v in np.atleast_1d(shape))
        self.thresholds = check_int("thresholds", thresholds, 1, 255)
        self.max_value = check_float("max_value", max_value, 0.0, low_open=True)
        self.crop = crop
        self.class_names = _names("class_names", class_names)
        cs = cropped_shape(self.shape, crop)
        self.in_dim = int(np.prod(cs)) * self.thresholds
        n = self.thresholds
        levels = np.arange(1, n + 1, dtype=np.float64) / (n + 1)
        self._levels = levels
        bits = (np.arange(256, dtype=np.float64)[:, None] / self.max_value) > levels   # (256, n)
        self._cut8 = np.where(bits.any(0), bits.argmax(0), 256).astype(np.int64)
        self._pix, self._thr = pixel_map(self.shape, crop, n)

    def config(self):
        return dict(type=self.kind, shape=list(self.shape), thresholds=self.thresholds,
                    crop=self.crop, max_value=self.max_value, class_names=self.class_names)

    def _cuts(self):
        lev, m = self._levels, self.max_value
        cuts = float32_cuts(lambda v: v.astype(np.float64) / m > lev, lev.size)
        return self._pix, cuts[self._thr]

    def raw_uint8(self, x):
        return self.raw(x)

    def __repr__(self):
        return (f"Thermometer(shape={self.shape}, thresholds={self.thresholds}, crop={self.crop}, "
                f"max_value={self.max_value:g})")

    def raw(self, x):
        """Validated (batch, D) uint8 view of raw samples: the uint8 data themselves, or for
        floats (and other ints) the number of thresholds each value exceeds."""
        x = x if isinstance(x, np.ndarray) else np.asarray(x)
        if x.dtype.kind not in "uif":
            raise TypeError(f"x: expected uint8/int/float samples, got dtype {x.dtype}")
        D = int(np.prod(self.shape))
        if x.ndim < 2 or x.shape[0] < 1 or x.shape[1:] not in (self.shape, (D,)):
            raise ValueError(f"x: expected shape (batch >= 1, *{self.shape}) or (batch, {D}), "
                             f"got {tuple(x.shape)}")
        x = x.reshape(x.shape[0], D)
        if x.dtype == np.uint8:
            if self.max_value < 255 and x.max() > self.max_value:
                raise ValueError(f"x: values must lie in [0, {self.max_value:g}], "
                                 f"got max {x.max()}")
            return np.ascontiguousarray(x)
        v = np.asarray(x, dtype=np.float64) / self.max_value
        if not (np.isfinite(v).all() and v.min() >= 0.0 and v.max() <= 1.0):
            raise ValueError(f"x: values must be finite and lie in [0, {self.max_value:g}]")
        q = np.zeros(v.shape, dtype=np.uint8)
        for lev in self._levels:
            q += v > lev
        return q

    def plan(self, features):
        """``raw_plan`` of the given input features with the threshold index as each entry:
        with ``cut_table(x)[entry]`` as cut-offs this is ``load_raw``'s ``enc``."""
        groups, vrow, ptr, f, slot = raw_plan(self._pix, features)
        return groups, vrow, ptr, self._thr[f], slot

    def encode(self, x):
        """Thermometer bits (batch, in_dim) uint8, the reference path (numpy)."""
        raw = self.raw(x)
        cut = self.cut_table(x)
        return (raw[:, self._pix] >= cut[self._thr]).astype(np.uint8)

    def cut_table(self, x):
        """Cut-off per threshold for ``raw(x)``: uint8 data against the 256-value table, other
        data (reduced to level counts) against i + 1."""
        dt = x.dtype if isinstance(x, np.ndarray) else np.asarray(x).dtype
        return self._cut8 if dt == np.uint8 else np.arange(1, self.thresholds + 1, dtype=np.int64)

    def pack(self, x):
        """PackedBits of ``encode(x)``, built block by block by the kernel's ``load_raw``."""
        from .kernels.packed import pack_raw
        from .circuit import PackedBits
        raw = self.raw(x)
        groups, vrow, ptr, thr, f = self.plan(np.arange(self.in_dim))
        enc = (groups, vrow, ptr, self.cut_table(x)[thr].astype(np.int64), f)
        return PackedBits(pack_raw(words64(raw), raw.shape[0], enc, self.in_dim), raw.shape[0])


class LearnedThermometer(Encoder):
    """Learned thresholds as raw comparisons: bit (c * n + i) * P' + p = float32(v / max_value) >
    levels[c, i] for raw value v of channel c at cropped position p (``Dataset.scale`` followed by
    ``LearnableThermometer.forward``). ``from_layer`` takes the levels of a model's layer."""
    kind = "learned"

    def __init__(self, shape, levels, crop=None, max_value=255, class_names=None):
        self.shape = tuple(int(v) for v in np.atleast_1d(shape))
        levels = np.asarray(levels, dtype=np.float32)
        if levels.ndim != 2 or levels.shape[0] != self.shape[0] or not np.isfinite(levels).all():
            raise ValueError(f"levels: expected finite thresholds (channels={self.shape[0]}, n), "
                             f"got shape {levels.shape}")
        self.levels, self.thresholds, self.crop = levels, levels.shape[1], crop
        self.max_value = check_float("max_value", max_value, 0.0, low_open=True)
        self.class_names = _names("class_names", class_names)
        self._pix, self._thr = pixel_map(self.shape, crop, self.thresholds)
        self.in_dim = int(self._pix.size)
        self._per = self.in_dim // (self.shape[0] * self.thresholds)    # positions per level

    @classmethod
    def from_layer(cls, layer, shape, crop=None, max_value=255, class_names=None):
        """The encoder of a ``LearnableThermometer`` (its current thresholds)."""
        levels = layer.backend.to_host(layer.levels)
        return cls(shape, levels, crop=crop, max_value=max_value, class_names=class_names)

    def config(self):
        """The levels live in the model (its first layer); the config says how to read raw data."""
        return dict(type=self.kind, shape=list(self.shape), thresholds=self.thresholds,
                    crop=self.crop, max_value=self.max_value, class_names=self.class_names)

    def _cuts(self):
        t, m = self.levels.reshape(-1), np.float32(self.max_value)
        cuts = float32_cuts(lambda v: (v / m).astype(np.float32) > t, t.size)
        return self._pix, cuts[np.arange(self.in_dim) // self._per]

    def _values(self, x):
        x = self._shape_of(x)
        if x.dtype == np.uint8:
            if self.max_value < 255 and x.max() > self.max_value:
                raise ValueError(f"x: values must lie in [0, {self.max_value:g}], got max "
                                 f"{x.max()}")
            return x
        v = x.astype(np.float32)
        if not (np.isfinite(v).all() and v.min() >= 0 and v.max() <= self.max_value):
            raise ValueError(f"x: values must be finite and lie in [0, {self.max_value:g}]")
        return v

    def __repr__(self):
        return (f"LearnedThermometer(shape={self.shape}, thresholds={self.thresholds}, "
                f"crop={self.crop}, max_value={self.max_value:g})")


class QuantileEncoder(Encoder):
    """Per-column cut points of a table: bit k = float32(x[:, features[k]]) > float32(thresholds[k])
    (see the module doc). ``columns``: the feature column names in order; ``target``: the label
    column of the CSV (ignored in new data); ``missing``: "error" (NaN is a ValueError) or "low"
    (NaN compares false: all its bits 0)."""
    kind = "quantile"

    def __init__(self, features, thresholds, columns, target=None, class_names=None,
                 missing="error"):
        self.columns = [str(c) for c in columns]
        self.features = np.asarray(features, dtype=np.int64)
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        if self.features.ndim != 1 or self.features.shape != self.thresholds.shape or \
                not self.features.size or self.features.min() < 0 or \
                self.features.max() >= len(self.columns) or np.isnan(self.thresholds).any():
            raise ValueError(f"thresholds: expected one column index in [0, {len(self.columns)}) "
                             f"and one threshold (not NaN) per bit")
        if missing not in ("error", "low"):
            raise ValueError(f"missing: expected 'error' or 'low', got {missing!r}")
        self.shape, self.in_dim = (len(self.columns),), int(self.features.size)
        self.target, self.missing = target, missing
        self.class_names = _names("class_names", class_names)

    def config(self):
        return dict(type=self.kind, features=self.features.tolist(),
                    thresholds=self.thresholds.tolist(), columns=self.columns, target=self.target,
                    class_names=self.class_names, missing=self.missing)

    def _cuts(self):
        with np.errstate(over="ignore"):
            return self.features, self.thresholds.astype(np.float32)

    def raw_uint8(self, x):
        return None

    def _values(self, x):
        v = self._shape_of(x).astype(np.float32)
        if self.missing == "error" and np.isnan(v).any():
            raise ValueError("x: holds NaN (missing values); this model was fitted with "
                             "missing='error'")
        return v

    def check_columns(self, names):
        """Refuse other, missing, extra or reordered columns (no re-fit, no silent reorder)."""
        names = [str(n) for n in names]
        if names == self.columns:
            return
        missing = [c for c in self.columns if c not in names]
        extra = [c for c in names if c not in self.columns]
        why = (f"missing {missing}" if missing else "") + \
            (f"{', ' if missing else ''}unknown {extra}" if extra else "")
        raise ValueError(f"columns: expected the training columns {self.columns} in that order, "
                         f"got {names}" + (f" ({why})" if why else " (reordered)"))

    def __repr__(self):
        return f"QuantileEncoder({len(self.columns)} columns -> {self.in_dim} bits)"


def _names(name, names):
    if names is None:
        return None
    if isinstance(names, str) or not all(isinstance(n, (str, int, np.integer)) for n in names):
        raise TypeError(f"{name}: expected a list of names, got {names!r}")
    return [str(n) for n in names]


def from_config(cfg, model=None):
    """The encoder a ``config()`` describes; "learned" reads its levels from ``model``'s
    ``LearnableThermometer`` (``model.encoder``)."""
    if not isinstance(cfg, dict) or cfg.get("type") not in ENCODERS:
        raise ValueError(f"encoder: expected a config with type in {ENCODERS}, got {cfg!r}")
    cfg = dict(cfg)
    kind = cfg.pop("type")
    try:
        if kind == "thermometer":
            return Thermometer(**cfg)
        if kind == "quantile":
            return QuantileEncoder(**cfg)
        layer = getattr(model, "encoder", None)
        if layer is None:
            raise ValueError("encoder: learned thresholds need the model's LearnableThermometer")
        return LearnedThermometer.from_layer(layer, **{k: v for k, v in cfg.items()
                                                      if k != "thresholds"})
    except TypeError as e:
        raise ValueError(f"encoder: corrupt {kind} config ({e})") from None


def from_checkpoint(ckpt, data_dir=None):
    """The encoder a checkpoint stores (``meta["encoder"]``). A checkpoint of `pylgn train` on
    images from before encoders were stored gets its fixed or learned thermometer back from the
    recorded dataset's shape and max_value, its thresholds and crop (the dataset is read, never
    fitted); a table's cut points cannot be recovered: ValueError."""
    cfg = ckpt.meta.get("encoder")
    if cfg is None:
        cfg = _legacy_config(ckpt, data_dir)
    return from_config(cfg, ckpt.model)


def _legacy_config(ckpt, data_dir):
    meta = ckpt.meta
    name, thresholds = meta.get("dataset"), meta.get("thresholds")
    if not name or not thresholds or str(name).lower().endswith(".csv"):
        raise ValueError(f"{ckpt.path}: holds no input encoder (written before pylgn stored "
                         f"encoders, or not by `pylgn train`); retrain it to predict from raw data")
    from .data import load_dataset
    ds = load_dataset(name, data_dir)
    cfg = dataset_config(ds, thresholds, meta.get("crop") or None, ckpt.model.encoder is not None)
    if meta.get("class_names"):                       # the names the model was trained with
        cfg["class_names"] = [str(c) for c in meta["class_names"]]
    return cfg


def dataset_config(ds, thresholds, crop=None, learned=False, target=None):
    """The encoder ``config()`` of a model trained on dataset ``ds`` (``pylgn.data``) with these
    settings: the table's quantile cut points (those ``TableDataset.encode`` uses), the learned
    thresholds' reading of raw values, or the fixed thermometer."""
    names = [str(c) for c in ds.class_names]
    from .data import TableDataset, quantile_thresholds
    if isinstance(ds, TableDataset):
        feats, cuts = quantile_thresholds(ds.x_train, thresholds, distinct=False)
        return QuantileEncoder(feats, cuts, ds.feature_names, target=target,
                               class_names=names).config()
    cfg = dict(shape=list(ds.shape), thresholds=int(thresholds), crop=crop,
               max_value=ds.max_value, class_names=names)
    return dict(type="learned" if learned else "thermometer", **cfg)


def check_dataset(encoder, ds, name="dataset"):
    """Labels of ``ds.y_test`` as the model's class indices, after checking that ``ds`` is data
    the encoder reads: the training columns in order (tables) or the raw shape and max_value
    (images), and only known class names. Nothing is re-fitted."""
    if encoder.kind == "quantile":
        if getattr(ds, "feature_names", None) is None:
            raise ValueError(f"{name}: the model reads table columns {encoder.columns}; "
                             f"expected a .csv table")
        encoder.check_columns(ds.feature_names)
    elif tuple(ds.shape) != tuple(encoder.shape) or \
            float(ds.max_value) != float(encoder.max_value):
        raise ValueError(f"{name}: samples of shape {tuple(ds.shape)} with max_value "
                         f"{ds.max_value}; the model was trained on {tuple(encoder.shape)} with "
                         f"max_value {encoder.max_value:g}")
    if encoder.class_names is None:
        return ds.y_test
    return encoder.check_labels([str(ds.class_names[i]) for i in ds.y_test])
