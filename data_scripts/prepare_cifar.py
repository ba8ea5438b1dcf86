"""Download CIFAR-10 / CIFAR-100 (python pickle tarballs), check the official MD5s and write
pylgn's HDF5 dataset format.

    python data_scripts/prepare_cifar.py --which cifar10 --out data
    python data_scripts/prepare_cifar.py --which cifar100 --source DIR --out data   # no network

Writes OUT/cifar10.h5 or OUT/cifar100.h5 (fine labels): x_* (N, 3, 32, 32) uint8, y_* (N,) uint8.
"""
import argparse
import os
import pickle
import sys
import tarfile

import numpy as np

from pylgn.data import fetch, write_dataset

URL = "https://www.cs.toronto.edu/~kriz/"
ARCHIVES = {  # official archive, MD5, folder inside, train members, test member, meta member, keys
    "cifar10": dict(file="cifar-10-python.tar.gz", md5="c58f30108f718f92721af3b95e74349a",
                    folder="cifar-10-batches-py", train=[f"data_batch_{i}" for i in range(1, 6)],
                    test="test_batch", meta="batches.meta", labels=b"labels",
                    names=b"label_names"),
    "cifar100": dict(file="cifar-100-python.tar.gz", md5="eb9058c3a382ffc7106e4002c42a8d85",
                     folder="cifar-100-python", train=["train"], test="test", meta="meta",
                     labels=b"fine_labels", names=b"fine_label_names"),
}


#: The only globals a CIFAR pickle may name: numpy's array reconstruction and the str -> bytes
#: codec of protocol-2 pickles (the rest is dicts, lists, ints and bytes). Anything else (a
#: hostile file's os.system, say) is refused.
ALLOWED = {("_codecs", "encode"), ("numpy", "ndarray"), ("numpy", "dtype"),
           ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
           ("numpy._core.multiarray", "scalar"),
           ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.numeric", "_frombuffer"),
           ("numpy._core.numeric", "_frombuffer")}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in ALLOWED:
            raise ValueError(f"refusing to load {module}.{name} from a CIFAR pickle")
        return super().find_class(module, name)


def _unpickle(tar, member):
    """A pickled dict (bytes keys, as written by the original Python 2 scripts) from the tarball,
    read by an unpickler that admits numpy arrays and plain containers only."""
    try:
        f = tar.extractfile(member)
    except KeyError:
        raise ValueError(f"{tar.name}: member {member} missing") from None
    if f is None:
        raise ValueError(f"{tar.name}: member {member} is not a regular file")
    try:
        obj = _Unpickler(f, encoding="bytes").load()
    except ValueError as e:
        raise ValueError(f"{tar.name}: {member}: {e}") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError) as e:
        raise ValueError(f"{tar.name}: {member} is not a CIFAR pickle ({e})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{tar.name}: {member} does not hold a dict")
    return obj


def read_archive(path, spec):
    """(x_train, y_train, x_test, y_test, class names): x as (N, 3, 32, 32) uint8."""
    def split(members):
        parts = [_unpickle(tar, f"{spec['folder']}/{m}") for m in members]
        x = np.concatenate([np.asarray(d[b"data"], dtype=np.uint8) for d in parts])
        y = np.concatenate([np.asarray(d[spec["labels"]], dtype=np.int64) for d in parts])
        if x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y):
            raise ValueError(f"{path}: unexpected data {x.shape} / labels {y.shape}")
        return x.reshape(-1, 3, 32, 32), y           # rows are R(1024) G(1024) B(1024), row-major
    with tarfile.open(path, "r:gz") as tar:
        x_train, y_train = split(spec["train"])
        x_test, y_test = split([spec["test"]])
        meta = _unpickle(tar, f"{spec['folder']}/{spec['meta']}")
        names = [n.decode() for n in meta[spec["names"]]]
    return x_train, y_train, x_test, y_test, names


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--which", choices=sorted(ARCHIVES), default="cifar10")
    p.add_argument("--out", default=os.environ.get("PYLGN_DATA") or "data",
                   help="folder for the .h5 file and the raw archive "
                        "(default $PYLGN_DATA or ./data)")
    p.add_argument("--source", help="folder holding the official .tar.gz (skips the download)")
    p.add_argument("--no-verify", action="store_true", help="skip the MD5 check (test archives)")
    args = p.parse_args(argv)
    spec = ARCHIVES[args.which]
    path = fetch(spec["file"], [URL + spec["file"]], spec["md5"],
                 os.path.join(args.out, "raw", args.which), args.source, verify=not args.no_verify)
    x_train, y_train, x_test, y_test, names = read_archive(path, spec)
    out = os.path.join(args.out, f"{args.which}.h5")
    write_dataset(out, args.which, x_train, y_train, x_test, y_test, names, max_value=255)
    print(f"wrote {out}: {len(y_train)} train, {len(y_test)} test images, {len(names)} classes")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ValueError as e:
        sys.exit(f"prepare_cifar: error: {e}")
