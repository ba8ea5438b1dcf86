"""Argument checks shared by the public API: each raises ValueError/TypeError naming the argument."""
import numbers

import numpy as np


def check_int(name, value, low=None, high=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name}: expected an int {rng}, got {value}")
    return int(value)


def check_float(name, value, low=None, low_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise TypeError(f"{name}: expected a finite number, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name}: expected a number {'>' if low_open else '>='} {low}, got {value}")
    return float(value)


#: The smallest temperature accepted: float32's smallest normal number. Below it a
#: temperature is 0 (or subnormal) in float32 and x / T gives inf or NaN.
MIN_TEMPERATURE = float(np.finfo(np.float32).tiny)


def check_temperature(name, value):
    """A finite temperature >= MIN_TEMPERATURE (representable in float32, so x / T is finite
    for finite x of moderate size)."""
    value = check_float(name, value)
    if not value >= MIN_TEMPERATURE:
        raise ValueError(f"{name}: expected a temperature >= {MIN_TEMPERATURE:.4g} (float32's "
                         f"smallest normal number), got {value!r}")
    return value


def check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name}: expected one of {tuple(choices)}, got {value!r}")
    return value


def _min_max(a, xp):
    """(min, max) of a non-empty array as numpy scalars: for a device array both come back in one
    device-to-host copy (each read is a synchronisation)."""
    if xp is np:
        return a.min(), a.max()
    lo, hi = xp.stack([a.min(), a.max()]).get()
    return lo, hi


def check_batch(name, x, width, xp=np):
    """A (batch, width) real array with finite values in [0, 1] (masked arrays refused: their
    hidden values would reach the kernels)."""
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name}: masked arrays are not supported; pass {name}.filled(value)")
    if not hasattr(x, "shape"):
        x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real or bool array, got dtype {x.dtype}")
    if x.ndim != 2 or x.shape[1] != width or x.shape[0] < 1:
        raise ValueError(f"{name}: expected shape (batch >= 1, {width}), got {tuple(x.shape)}")
    if x.dtype.kind == "f":
        lo, hi = (float(v) for v in _min_max(x, xp))
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError(f"{name}: contains NaN or inf")
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"{name}: values must lie in [0, 1], got range [{lo}, {hi}]")
    elif x.dtype.kind in "iu" and x.size:
        lo, hi = _min_max(x, xp)
        if lo < 0 or hi > 1:
            raise ValueError(f"{name}: integer inputs must be 0/1 bits")
    return x


def check_labels(name, labels, batch, num_classes, xp=np):
    """A (batch,) integer array with values in [0, num_classes)."""
    if not hasattr(labels, "shape"):
        labels = np.asarray(labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array, got dtype {labels.dtype}")
    if labels.shape != (batch,):
        raise ValueError(f"{name}: expected shape ({batch},), got {tuple(labels.shape)}")
    if batch:
        lo, hi = (int(v) for v in _min_max(labels, xp))
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{name}: values must lie in [0, {num_classes}), got range "
                             f"[{lo}, {hi}]")
    return labels


def check_rows(name, a, rows, cols=None, dtype=None):
    """An activation block handed to a layer's kernels: a C-contiguous 2-D float32/float64
    array (of ``dtype`` when given) with ``rows`` rows (and ``cols`` columns when given)."""
    if getattr(a, "dtype", None) is None or getattr(a, "shape", None) is None:
        raise TypeError(f"{name}: expected a float32/float64 array, got {type(a).__name__}")
    if a.dtype.kind != "f" or a.dtype.itemsize not in (4, 8) or (dtype is not None
                                                                 and a.dtype != dtype):
        raise TypeError(f"{name}: expected dtype {dtype or 'float32/float64'}, got {a.dtype}")
    if a.ndim != 2 or a.shape[0] != rows or a.shape[1] < 1 or (cols is not None
                                                               and a.shape[1] != cols):
        raise ValueError(f"{name}: expected shape ({rows}, {cols or 'batch >= 1'}), got "
                         f"{tuple(a.shape)}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array")
    return a
