"""Recipes: the CLI's default settings, read from the training data where a rule exists, else
chosen from the data's shape and size.

``recipe(shape, n_train)`` returns the settings of the first entry of ``RECIPES`` whose test
matches, laid over ``BASE``; a value ``READ`` in them is decided by ``read_data`` from the
training set (cheaply, once, before training), and ``read_data`` also fits the width and tau to
the classes. Every value is also a ``pylgn train`` flag, and a flag always wins. The rules:

- **crop** (images): the smallest centred square that holds at least ``CROP_KEEP`` (97 %) of the
  label-explained pixel variance, sum_p sum_c pi_c (mu_c[p] - mu[p])^2 (mu_c: the class-c mean
  image, pi_c its share); none when that square is the whole frame. Pixels whose values do not
  move with the class (a blank border, a noisy background) carry none of it; MNIST's 20 x 20
  centre holds 97.5 %.
- **thresholds** (images): the fewest of 1, 2, 4, 8 whose uniform thermometer (levels
  (i + 1) / (n + 1)) keeps at least ``LEVELS_KEEP`` (85 %) of the label-explained variance of the
  pixels inside the crop, B(q_n(x)) / B(x) with B as above and q_n(x) the mean of the values in
  x's bin: how much of what separates the classes n thresholds can still tell apart. MNIST's
  near-binary strokes: 2 keep 89.8 %; a textured background adds variance but no label signal,
  so it asks for no more levels; classes told apart by shades of grey ask for more. Learned
  thresholds (the 28x28 recipe's default) then move the levels to where they serve the loss.
  (A first rule counted the total pixel variance, 95 %: it gave the enlarged and the textured
  MNIST 4 levels, and both trained better with 2, bench/RESULTS.md.)
- **tables** (one row of numbers per sample): thresholds = clip(rows per class / 25, 2, 8)
  (quantile bins need samples), width = the next multiple of the classes of
  max(200 x classes, 2 x input bits), 3 layers, batch min(100, rows / 4), steps for 300 epochs
  (2,000 to 20,000), lr 0.02 cosine.
- **width**: rounded up to a multiple of the classes (GroupSum needs equal groups).
- **tau**: a recipe's tau holds at its ``tau_at`` gates per class; other widths and classes scale
  it by sqrt(gates per class / tau_at): a class group's count of ones spreads as the square root
  of its size, so the logit scale stays put (MNIST: tau 10 at 800 gates per class; tau 6 at 200
  for arity >= 4, bench/RESULTS.md). Tables: tau = sqrt(gates per class), as LogicGateClassifier.
"""
import math
from dataclasses import dataclass, field

import numpy as np

#: A recipe setting decided from the training data by ``read_data``.
READ = "read"
CROP_KEEP = 0.97
LEVELS_KEEP = 0.85
LEVEL_CHOICES = (1, 2, 4, 8)
SAMPLE = 10000          # the rules read at most this many training samples (evenly spaced)
SAMPLE_VALUES = 2 * 10 ** 7     # and at most this many values of them (80 MB as float32)

#: Settings every recipe starts from (and the values for data no entry matches).
BASE = dict(arch="dense", crop=None, thresholds=3, layers=4, width=2000, arity=2, param="iwp",
            init="residual", estimator="sin", tau=10.0, lr=0.01, lr_schedule="constant",
            weight_decay=0.0,
            warmup=0, batch_size=100, accumulate=1, seed=0, augment=False, steps=3000,
            gumbel=0.0, learn_thresholds=False, connections="random", candidates=16,
            choice="ste", learned_layers="all", last_width=None)


@dataclass(frozen=True)
class Recipe:
    name: str
    when: str                       # the test, in words (shown by ``pylgn train --help``)
    test: object                    # (shape, n_train) -> bool
    settings: dict = field(default_factory=dict)
    tau_at: float = None            # gates per class at which ``tau`` holds (None: fixed tau)


def _images(shape, channels, size):
    return len(shape) == 3 and shape[0] == channels and tuple(shape[1:]) == (size, size)


RECIPES = (
    # DLGN "small" on MNIST-size images: 6 x 8,000 IWP gates (48K), tau 10, a cosine-decayed
    # learning rate, learned thresholds; the crop and threshold count read from the data (on
    # MNIST: the 20 x 20 centre and 2 thresholds).
    Recipe("28x28-grayscale", "1 x 28 x 28 images",
           lambda shape, n: _images(shape, 1, 28),
           dict(crop=READ, thresholds=READ, layers=6, width=8000, tau=10.0, lr=0.02,
                learn_thresholds=True, lr_schedule="cosine", steps=60000), tau_at=800),
    # DLGN "S" on CIFAR-size colour images: 4 x 12,000 gates, 3 thresholds, tau 100.
    Recipe("32x32-colour", "3 x 32 x 32 images",
           lambda shape, n: _images(shape, 3, 32),
           dict(crop=READ, thresholds=3, layers=4, width=12000, tau=100.0, lr=0.01,
                lr_schedule="cosine", steps=200000), tau_at=1200),
    # Other images of at least 16 x 16: the base net, crop and thresholds read from the data.
    Recipe("images", "other C x H x W images of at least 16 x 16",
           lambda shape, n: len(shape) == 3 and min(shape[1:]) >= 16,
           dict(crop=READ, thresholds=READ), tau_at=200),
    # Tables (a CSV): every size setting derived from the rows, columns and classes.
    Recipe("table", "one row of numbers per sample (a CSV)",
           lambda shape, n: len(shape) == 1,
           dict(thresholds=READ, layers=3, width=READ, tau=READ, lr=0.02, lr_schedule="cosine",
                batch_size=READ, steps=READ)),
    Recipe("default", "anything else (e.g. the 8 x 8 digits)", lambda shape, n: True, {},
           tau_at=200),
)


#: Settings of a recipe for wider gates, by (recipe, the least arity): a six-input gate's table
#: saturates sooner, so its GroupSum wants a lower tau (MNIST, 4 x 2000 arity-6 gates, 10k steps:
#: tau 6 97.18 %, bench/RESULTS.md; it holds at 200 gates per class) and a lower learning rate.
BY_ARITY = {"28x28-grayscale": ((4, dict(tau=6.0, lr=0.01), 200),)}


def recipe(shape, n_train, arity=None):
    """(name, settings) of the first recipe matching samples of ``shape`` (without the batch
    axis) and ``n_train`` training samples; with ``arity`` (a --arity flag), that recipe's
    BY_ARITY settings for it laid over. Values ``READ`` are for ``read_data`` to decide."""
    r = _match(shape, n_train)
    settings = {**BASE, **r.settings}
    for least, extra, _ in BY_ARITY.get(r.name, ()):
        if arity is not None and arity >= least:
            settings.update(extra)
    return r.name, settings


def _match(shape, n_train):
    for r in RECIPES:
        if r.test(tuple(shape), n_train):
            return r
    raise AssertionError("the last recipe matches everything")


def tau_reference(name, arity=None):
    """Gates per class at which recipe ``name``'s tau holds (None: the tau is not scaled)."""
    r = next(r for r in RECIPES if r.name == name)
    at = r.tau_at
    for least, _, extra_at in BY_ARITY.get(name, ()):
        if arity is not None and arity >= least:
            at = extra_at
    return at


# reading the data ------------------------------------------------------------------------------

def _sample(n, limit=SAMPLE):
    return np.unique(np.linspace(0, n - 1, min(n, limit)).astype(np.int64))


def class_variance(x, y, classes):
    """Label-explained variance per position, sum_c pi_c (mu_c - mu)^2 summed over channels:
    (H, W) for images x (N, C, H, W) scaled to [0, 1]."""
    x = np.asarray(x, dtype=np.float32)
    mu = x.mean(axis=0)
    out = np.zeros(x.shape[2:], dtype=np.float64)
    for c in range(classes):
        m = y == c
        if m.any():
            out += m.mean() * ((x[m].mean(axis=0) - mu) ** 2).sum(axis=0)
    return out


def signal_crop(x, y, classes, keep=CROP_KEEP):
    """(crop or None, share of the label-explained variance kept) for images x (N, C, H, W) in
    [0, 1]: the smallest centred square (side H, H - 2, ...) holding >= ``keep`` of it; None when
    that is the whole frame (or no pixel moves with the class)."""
    b = class_variance(x, y, classes)
    H, W = b.shape
    total = b.sum()
    if not total > 0:
        return None, 1.0
    best, kept = None, 1.0
    for s in range(min(H, W), 0, -2):
        top, left = (H - s) // 2, (W - s) // 2
        share = b[top:top + s, left:left + s].sum() / total
        if share < keep:
            break
        best, kept = s, share
    return (None if best is None or best == H == W else best), float(kept)


def quantized(v, n):
    """Values v in [0, 1] replaced by the mean of their bin of the n-level uniform thermometer
    (levels (i + 1) / (n + 1)): what n thresholds can tell apart."""
    v = np.asarray(v, dtype=np.float64)
    levels = np.arange(1, n + 1) / (n + 1)
    b = np.searchsorted(levels, v.ravel(), side="left")
    counts = np.bincount(b, minlength=n + 1)
    means = np.bincount(b, weights=v.ravel(), minlength=n + 1) / np.maximum(counts, 1)
    return means[b].reshape(v.shape)


def level_keep(v, y, classes, n):
    """Share of the label-explained variance of values v (N, P) in [0, 1] that an n-level
    uniform thermometer keeps: B(q_n(v)) / B(v), B = ``class_variance`` summed over positions."""
    whole = class_variance(np.asarray(v)[:, None, None, :], y, classes).sum()
    if not whole > 1e-12 * max(1.0, float(np.square(v).sum())):   # no label signal at all
        return 1.0
    return float(class_variance(quantized(v, n)[:, None, None, :], y, classes).sum() / whole)


def threshold_count(v, y, classes, keep=LEVELS_KEEP, choices=LEVEL_CHOICES):
    """(n, kept share): the fewest of ``choices`` thresholds keeping >= ``keep`` of the
    label-explained variance (else the most)."""
    shares = {}
    for n in choices:
        shares[n] = level_keep(v, y, classes, n)
        if shares[n] >= keep:
            return n, shares[n]
    return choices[-1], shares[choices[-1]]


def read_data(cfg, ds, given=(), recipe_name=None, arity=None):
    """Decide the settings of ``cfg`` that read ``READ`` from the training set of ``ds`` (and fit
    width and tau to its classes unless ``given`` as flags); returns {setting: reason} of every
    decision made, and fills cfg in place."""
    why = {}
    n_classes = ds.num_classes
    if len(ds.y_train) == 0:
        raise ValueError("dataset: no training samples to read the recipe from")
    per = int(np.prod(ds.shape))
    idx = _sample(len(ds.y_train), max(100, min(SAMPLE, SAMPLE_VALUES // max(per, 1))))
    y = np.asarray(ds.y_train)[idx]
    if len(ds.shape) == 3:
        x = np.asarray(ds.x_train[idx], dtype=np.float32) / np.float32(ds.max_value)
        if cfg.get("crop") == READ:
            crop, kept = signal_crop(x, y, n_classes)
            cfg["crop"] = crop
            where = (f"the centred {crop} x {crop} square" if crop else "only the whole frame")
            why["crop"] = (f"{crop or 'none'}: {where} holds >= {CROP_KEEP:.0%} of the "
                           f"label-explained pixel variance ({100 * kept:.1f} %)")
        if cfg.get("thresholds") == READ:
            from .data import centre_crop
            v = centre_crop(x, cfg["crop"]).reshape(len(x), -1)
            n, kept = threshold_count(v, y, n_classes)
            cfg["thresholds"] = n
            why["thresholds"] = (f"{n}: the fewest of {', '.join(map(str, LEVEL_CHOICES))} "
                                 f"whose thermometer keeps >= {LEVELS_KEEP:.0%} of the "
                                 f"label-explained pixel variance ({100 * kept:.1f} %)")
    if len(ds.shape) == 1:
        why.update(_read_table(cfg, ds, n_classes, given))
    if cfg.get("arch", "dense") == "dense":
        why.update(_fit_width(cfg, n_classes, given))
        if cfg.get("tau") == READ or ("tau" not in given and recipe_name is not None):
            why.update(_fit_tau(cfg, n_classes, recipe_name, arity))
    for key in ("thresholds", "width", "tau", "batch_size", "steps"):
        if cfg.get(key) == READ:                 # a conv arch or a flag left a rule unused
            cfg[key] = BASE[key]
    return why


def _read_table(cfg, ds, n_classes, given):
    """The table recipe's sizes from rows, columns and classes (see the module doc)."""
    rows, cols = len(ds.y_train), ds.shape[0]
    why = {}
    if cfg.get("thresholds") == READ:
        cfg["thresholds"] = int(np.clip(rows // (25 * n_classes), 2, 8))
        why["thresholds"] = (f"{cfg['thresholds']}: {rows} rows / {n_classes} classes / 25 "
                             f"samples per quantile bin, in [2, 8]")
    if cfg.get("width") == READ:
        bits = cols * cfg["thresholds"]
        need = max(200 * n_classes, 2 * bits)
        cfg["width"] = -(-need // n_classes) * n_classes
        why["width"] = (f"{cfg['width']}: max(200 x {n_classes} classes, 2 x {bits} input "
                        f"bits), a multiple of the classes")
    if cfg.get("batch_size") == READ:
        cfg["batch_size"] = int(max(1, min(100, rows // 4)))
        why["batch_size"] = f"{cfg['batch_size']}: min(100, {rows} rows / 4)"
    if cfg.get("steps") == READ:
        epochs = 300 * rows / cfg["batch_size"]
        cfg["steps"] = int(np.clip(round(epochs, -2), 2000, 20000))
        why["steps"] = (f"{cfg['steps']}: 300 epochs of {rows} rows at batch "
                        f"{cfg['batch_size']}, in [2000, 20000]")
    return why


def _fit_width(cfg, n_classes, given):
    """Width (and last width) rounded up to a multiple of the classes unless given as flags."""
    why = {}
    for key in ("width", "last_width"):
        w = cfg.get(key)
        if key in given or not isinstance(w, int) or w % n_classes == 0:
            continue
        cfg[key] = -(-w // n_classes) * n_classes
        why[key] = f"{cfg[key]}: {w} rounded up to a multiple of the {n_classes} classes"
    return why


def _fit_tau(cfg, n_classes, recipe_name, arity):
    """tau scaled by sqrt(gates per class / the recipe's TAU_AT); tables: sqrt(gates per class)."""
    width = cfg.get("last_width") or cfg["width"]
    if not isinstance(width, int):
        return {}
    per_class = width / n_classes
    if cfg.get("tau") == READ:
        cfg["tau"] = round(math.sqrt(per_class), 2)
        return {"tau": f"{cfg['tau']}: sqrt({per_class:g} gates per class)"}
    at = tau_reference(recipe_name, arity) if recipe_name else None
    if at is None or per_class == at:
        return {}
    old = cfg["tau"]
    cfg["tau"] = round(old * math.sqrt(per_class / at), 2)
    return {"tau": f"{cfg['tau']}: the recipe's {old:g} at {at:g} gates per class x "
                   f"sqrt({per_class:g} / {at:g})"}
