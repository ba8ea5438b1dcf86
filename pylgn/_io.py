"""File plumbing below checkpoint, data and circuit: atomic writes, HDF5 storage checks, shapes.

Nothing here imports another pylgn module except ``_checks``, so ``checkpoint``, ``data`` and
``circuit`` (and the exports) all import from here and not from each other.
"""
import contextlib
import errno
import glob
import os
import shutil
import tempfile
import time

from ._checks import check_int


@contextlib.contextmanager
def atomic_path(path, need_bytes=0):
    """Yields a temporary path beside ``path``; on normal exit fsyncs it and renames it onto
    ``path`` (then fsyncs the folder). On an exception the temporary file is removed. Temporary
    files of earlier writes to ``path`` that were killed (untouched for STALE_SECONDS) are
    removed first; ``need_bytes`` > the free space of the folder is refused before writing."""
    path = _check_target(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        _remove_stale(folder, os.path.basename(path))
        free = shutil.disk_usage(folder).free
    except OSError as e:
        raise OSError(e.errno, f"{path}: cannot write here ({e.strerror or e})") from None
    if need_bytes > free:
        raise OSError(errno.ENOSPC, f"{path}: needs about {need_bytes} bytes, the disk has "
                                    f"{free} free; nothing was written")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                   dir=folder)
    except OSError as e:
        raise OSError(e.errno, f"{path}: cannot write here ({e.strerror or e})") from None
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        _fsync_dir(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _check_target(path):
    """``path`` as a str, refused when empty or a folder (a rename onto it would fail later,
    naming a temporary file)."""
    path = os.fspath(path)
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"path: expected a file path, got {path!r}")
    if os.path.isdir(path):
        raise ValueError(f"path: {path} is a folder; expected a file path (nothing was written)")
    return path


@contextlib.contextmanager
def atomic_hdf5(path):
    """Yields a new HDF5 file built in memory; on normal exit its bytes are written to ``path``
    with ``write_atomic``. HDF5 never writes to disk itself, so a disk that fills up gives an
    OSError naming ``path`` (the previous file kept), not a crash inside the HDF5 library."""
    import h5py
    path = _check_target(path)
    with h5py.File(f"{path}.in-memory", "w", driver="core",
                   backing_store=False) as f:
        yield f
        f.flush()
        image = f.id.get_file_image()
    write_atomic(path, image)


def write_atomic(path, data):
    """Write ``data`` (bytes or str) to ``path`` through ``atomic_path``: the free space is
    checked against its size first, and a failed write (a full disk) raises an OSError naming
    ``path`` and leaves the previous file in place."""
    if isinstance(data, str):
        data = data.encode()
    view = memoryview(data)
    with atomic_path(path, need_bytes=len(view)) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC)
        try:
            while view:
                view = view[os.write(fd, view):]
        except OSError as e:
            raise OSError(e.errno, f"{path}: could not be written ({e.strerror or e}); the "
                                   f"previous file, if any, is kept") from None
        finally:
            os.close(fd)


#: A temporary file of an atomic write untouched this long is a killed write's leftover.
STALE_SECONDS = 600


def _remove_stale(folder, name):
    now = time.time()
    for tmp in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*.tmp")):
        with contextlib.suppress(OSError):
            if now - os.path.getmtime(tmp) > STALE_SECONDS:
                os.unlink(tmp)


def _fsync_dir(folder):
    with contextlib.suppress(OSError):          # not supported on every platform / filesystem
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_storage(f, path):
    """Refuse anything not stored inside the file: external or soft links, datasets with
    external storage, virtual datasets (they would make ``load`` read other files)."""
    import h5py

    def walk(group):
        for name in group:
            link = group.get(name, getlink=True)
            where = f"{group.name.rstrip('/')}/{name}"
            if not isinstance(link, h5py.HardLink):
                raise ValueError(f"{path}: '{where}' is a {type(link).__name__}; a checkpoint "
                                 f"holds only data stored inside the file")
            obj = group[name]
            if isinstance(obj, h5py.Group):
                walk(obj)
            elif obj.external or obj.is_virtual:
                raise ValueError(f"{path}: dataset '{where}' is stored outside the file "
                                 f"(external or virtual storage); refused")
    walk(f)


def cropped_shape(shape, crop):
    """Per-sample shape after ``centre_crop``: (C, crop, crop) for images, ``shape`` for None."""
    if crop is None:
        return tuple(shape)
    crop = check_int("crop", crop, 1)
    if len(shape) != 3 or crop > min(shape[1:]):
        raise ValueError(f"crop: expected at most the image size {tuple(shape[1:])} of images "
                         f"(C, H, W), got crop={crop} for samples of shape {tuple(shape)}")
    return (shape[0], crop, crop)
