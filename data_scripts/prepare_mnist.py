"""Download MNIST (IDX gzip files), check the official MD5s and write pylgn's HDF5 dataset format.

A local copy whose .gz bytes differ (re-compressed) is accepted when its decompressed content has
the official MD5; anything else is refused with the MD5s it has and expects.

    python data_scripts/prepare_mnist.py --out data            # download, verify, convert
    python data_scripts/prepare_mnist.py --source DIR --out data   # use local copies, no network

Writes OUT/mnist.h5: x_* (N, 1, 28, 28) uint8, y_* (N,) uint8, max_value 255.
"""
import argparse
import gzip
import os
import sys

import numpy as np

from pylgn.data import fetch, write_dataset

MIRRORS = ("http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/")
FILES = {  # official files: MD5 of the published .gz, MD5 of its decompressed IDX bytes
    "x_train": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "6bbc9ace898e44ae57da46a324031adb"),
    "y_train": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432",
                "a25bea736e30d166cdddb491f175f624"),
    "x_test": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3",
               "2646ac647ad5339dbf082846283269ea"),
    "y_test": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c",
               "27ae3e4e09519cfbb04c329615203637"),
}


def read_idx(path):
    """uint8 array from a gzipped IDX file: magic 0x0000 08 D (unsigned bytes, D dimensions),
    then D big-endian int32 sizes, then the data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but holds {data.size} bytes")
    return data.reshape(dims)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.environ.get("PYLGN_DATA") or "data",
                   help="folder for mnist.h5 and the raw files (default $PYLGN_DATA or ./data)")
    p.add_argument("--source",
                   help="folder holding the four official .gz files (skips the download)")
    p.add_argument("--no-verify", action="store_true", help="skip the MD5 check (test archives)")
    args = p.parse_args(argv)
    raw_dir = os.path.join(args.out, "raw", "mnist")
    arrays = {}
    for key, (name, md5, content_md5) in FILES.items():
        path = fetch(name, [m + name for m in MIRRORS], md5, raw_dir, args.source,
                     verify=not args.no_verify, content_md5=content_md5)
        arrays[key] = read_idx(path)
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"{split}: images {x.shape} and labels {y.shape} do not match")
        arrays[f"x_{split}"] = x[:, None]                   # (N, 1, H, W)
    out = os.path.join(args.out, "mnist.h5")
    write_dataset(out, "mnist", arrays["x_train"], arrays["y_train"], arrays["x_test"],
                  arrays["y_test"], [str(d) for d in range(10)], max_value=255)
    print(f"wrote {out}: {len(arrays['y_train'])} train, {len(arrays['y_test'])} test images")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ValueError as e:
        sys.exit(f"prepare_mnist: error: {e}")
