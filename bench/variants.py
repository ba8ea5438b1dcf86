"""28 x 28 datasets that break MNIST's shape: MNIST digits enlarged, inverted, on a textured
background, and shifted off-centre (the data-reading recipes' test bed).

    python bench/variants.py [--out data] [--n 60000]

writes data/mnist-<variant>.h5 (pylgn's dataset format). Every variant is made from MNIST's
*training* images only: its training split is the first 50,000 of them, its test split the last
10,000, so no recipe rule or grid is tuned on MNIST's test images. tests/test_recipes.py builds
small ones with the same functions.
"""
import argparse
import os
import sys

import numpy as np
from scipy import ndimage

VARIANTS = ("large", "inverted", "noisy", "shifted")


def large(x, rng=None):
    """The 20 x 20 centre (where MNIST's digits lie) enlarged 1.4x to fill the 28 x 28 frame
    (bilinear): strokes reach the border, so a 20 x 20 crop cuts them."""
    centre = x[:, :, 4:24, 4:24].astype(np.float32)
    out = ndimage.zoom(centre, (1, 1, 28 / 20, 28 / 20), order=1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def inverted(x, rng=None):
    """Dark digits on a white background: 255 - x."""
    return (255 - x).astype(np.uint8)


def noisy(x, rng):
    """The digit over a textured background: per image, white noise smoothed by a Gaussian of
    sigma 1.5 px, stretched to [0, 150] and mixed with fine noise (+- 30); the stroke wins where
    it is brighter (max)."""
    n = len(x)
    bg = ndimage.gaussian_filter(rng.standard_normal((n, 1, 28, 28)).astype(np.float32),
                                 (0, 0, 1.5, 1.5))
    lo, hi = bg.min(axis=(1, 2, 3), keepdims=True), bg.max(axis=(1, 2, 3), keepdims=True)
    bg = 150 * (bg - lo) / (hi - lo) + rng.uniform(-30, 30, bg.shape).astype(np.float32)
    return np.clip(np.rint(np.maximum(x.astype(np.float32), bg)), 0, 255).astype(np.uint8)


def shifted(x, rng, max_shift=4):
    """Each digit moved by a random offset in [-max_shift, max_shift]^2 pixels (zero fill), so
    the digits reach every part of the frame (MNIST leaves 4 blank pixels a side, so no stroke
    is lost)."""
    n, pad = len(x), max_shift
    big = np.zeros((n, 1, 28 + 2 * pad, 28 + 2 * pad), np.uint8)
    big[:, :, pad:pad + 28, pad:pad + 28] = x
    dy, dx = rng.integers(0, 2 * pad + 1, (2, n))
    rows = dy[:, None] + np.arange(28)[None, :]                     # (n, 28)
    cols = dx[:, None] + np.arange(28)[None, :]
    return big[np.arange(n)[:, None, None], 0, rows[:, :, None], cols[:, None, :]][:, None]


def make(kind, x, seed=0):
    """The variant ``kind`` of uint8 images x (N, 1, 28, 28)."""
    return globals()[kind](np.asarray(x, np.uint8), np.random.default_rng(seed))


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.dirname(here))
    from pylgn.data import load_dataset, write_dataset
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default="data", help="where mnist.h5 is")
    p.add_argument("--out", default="data")
    p.add_argument("--only", nargs="*", choices=VARIANTS)
    a = p.parse_args(argv)
    ds = load_dataset("mnist", a.data_dir)
    x, y = ds.x_train, ds.y_train
    for i, kind in enumerate(a.only or VARIANTS):
        v = make(kind, x, seed=i)
        path = os.path.join(a.out, f"mnist-{kind}.h5")
        write_dataset(path, f"mnist-{kind}", v[:50000], y[:50000], v[50000:], y[50000:],
                      ds.class_names)
        print(f"{path}: {len(v)} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
