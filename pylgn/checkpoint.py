"""HDF5 checkpoints: the model (config, wiring, parameters), Adam state and trainer state.

Layout (format ``pylgn-checkpoint``, version 1; every dataset gzip-compressed)::

    /                 attrs: format, version, pylgn_version, step, device, model_config (JSON),
                      meta (JSON)
    /layers/000, ...  one group per layer, attrs: config (JSON);
                      layers with parameters: dataset weights (LogicLayer: (out_dim, params per
                      gate)) and their wiring: connections (arity, out_dim) or, for LogicConv2d,
                      leaves (out_channels, leaves, 3)
    /optimizer        attrs: type ("Adam"), config (JSON), t; datasets m, v (flat, the layout of
                      model.params: the layers' weights concatenated in order)
    /trainer          attrs: state (JSON: RNG state, data position, step, history, ...);
                      one dataset per array-valued entry (e.g. the epoch permutation)

Saving is atomic: the file is written beside the target under a temporary name, fsynced and
renamed over it with ``os.replace``, so a crash mid-save leaves the previous checkpoint intact.
h5py is imported on first use, so ``import pylgn`` stays light.
"""
import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

CHECKPOINT_FORMAT = "pylgn-checkpoint"
CHECKPOINT_VERSION = 1
WIRING = ("connections", "leaves")     # the wiring a layer's bind() takes: LogicLayer, LogicConv2d
_COMPRESS = dict(compression="gzip", compression_opts=4, shuffle=True)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside ``path``; on normal exit fsyncs it and renames it onto
    ``path`` (then fsyncs the folder). On an exception the temporary file is removed."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
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


def _fsync_dir(folder):
    with contextlib.suppress(OSError):          # not supported on every platform / filesystem
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def to_json(obj):
    """json.dumps that also accepts numpy scalars and arrays."""
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(f"not JSON-serializable: {type(o).__name__}")
    return json.dumps(obj, default=default)


@dataclass
class Checkpoint:
    """What ``load`` returns."""
    path: str
    model: object
    optimizer: object = None
    step: int = 0
    meta: dict = field(default_factory=dict)
    trainer_state: dict = None


# save ------------------------------------------------------------------------------------------

def save(path, model, optimizer=None, step=None, trainer_state=None, **meta):
    """Write a checkpoint atomically. ``step`` defaults to the optimizer's step count (else 0);
    ``meta``: JSON-serializable extra information (dataset, encoding, ...)."""
    import h5py
    from . import __version__
    from .model import Sequential
    if not isinstance(model, Sequential):
        raise TypeError(f"model: expected a pylgn.Sequential, got {type(model).__name__}")
    if optimizer is not None and optimizer.model is not model:
        raise ValueError("optimizer: belongs to a different model")
    step = (optimizer.t if optimizer is not None else 0) if step is None else step
    try:
        meta_json = to_json(meta)
    except TypeError as e:
        raise TypeError(f"meta: {e}") from None
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(format=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION,
                       pylgn_version=__version__, step=int(step), device=model.device,
                       model_config=to_json(model.config()), meta=meta_json)
        _write_layers(f.create_group("layers"), model)
        if optimizer is not None:
            _write_optimizer(f.create_group("optimizer"), optimizer)
        if trainer_state is not None:
            _write_trainer(f.create_group("trainer"), trainer_state)


def _write_layers(group, model):
    host = model.backend.to_host
    for i, layer in enumerate(model.layers):
        g = group.create_group(f"{i:03d}")
        g.attrs["config"] = to_json(layer.config())
        if getattr(layer, "weights", None) is not None:
            g.create_dataset("weights", data=host(layer.weights), **_COMPRESS)
        for name in WIRING:
            if getattr(layer, name, None) is not None:
                g.create_dataset(name, data=host(getattr(layer, name)), **_COMPRESS)


def _write_optimizer(group, opt):
    state = opt.state()
    group.attrs.update(type=type(opt).__name__, config=to_json(opt.config()), t=int(state["t"]))
    for key in ("m", "v"):
        group.create_dataset(key, data=opt.model.backend.to_host(state[key]), **_COMPRESS)


def _write_trainer(group, state):
    if not isinstance(state, dict):
        raise TypeError(f"trainer_state: expected a dict, got {type(state).__name__}")
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    for key, arr in arrays.items():
        group.create_dataset(key, data=arr, **_COMPRESS)
    try:
        group.attrs["state"] = to_json({k: v for k, v in state.items() if k not in arrays})
    except TypeError as e:
        raise TypeError(f"trainer_state: {e}") from None


# load ------------------------------------------------------------------------------------------

def load(path, device=None):
    """Read a checkpoint onto ``device`` ("cpu" when None, whatever device it was saved from).

    Returns a ``Checkpoint`` with ``.model``, ``.optimizer`` (None if not saved), ``.step``,
    ``.meta`` and ``.trainer_state`` (None if not saved). A truncated, corrupt or foreign file
    raises ValueError naming the file and the problem."""
    import h5py
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: not a readable HDF5 file (truncated or corrupt): {e}") from None
    with f:
        try:
            return _read(f, path, device or "cpu")
        except (OSError, KeyError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: corrupt pylgn checkpoint: {e}") from None


def _read(f, path, device):
    fmt = f.attrs.get("format")
    if fmt != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a pylgn checkpoint (attribute 'format' is {fmt!r}, "
                         f"expected {CHECKPOINT_FORMAT!r})")
    version = int(f.attrs.get("version", -1))
    if not 1 <= version <= CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint format version {version} is not supported "
                         f"(this pylgn reads versions 1..{CHECKPOINT_VERSION})")
    model = _read_model(f, path, device)
    optimizer = _read_optimizer(f["optimizer"], path, model) if "optimizer" in f else None
    trainer = _read_trainer(f["trainer"]) if "trainer" in f else None
    return Checkpoint(path, model, optimizer, int(f.attrs["step"]), json.loads(f.attrs["meta"]),
                      trainer)


def _dataset(group, name, path):
    if name not in group:
        raise ValueError(f"{path}: missing dataset '{group.name}/{name}'")
    return group[name][...]


def _read_model(f, path, device):
    import pylgn
    config = json.loads(f.attrs["model_config"])
    layers = []
    for cfg in config["layers"]:
        cfg = dict(cfg)
        cls = getattr(pylgn, cfg.pop("type", ""), None)
        if not isinstance(cls, type):
            raise ValueError(f"{path}: unknown layer type in model_config: {cfg}")
        layers.append(cls(**cfg))
    model = pylgn.Sequential(layers, seed=config["seed"], device=device, dtype=config["dtype"])
    group = f["layers"] if "layers" in f else None
    for i, layer in enumerate(model.layers):
        if getattr(layer, "weights", None) is None:
            continue
        g = group.get(f"{i:03d}") if group is not None else None
        if g is None:
            raise ValueError(f"{path}: missing group '/layers/{i:03d}'")
        _restore_layer(layer, g, path, model.backend)
    return model


def _restore_layer(layer, g, path, backend):
    weights = _dataset(g, "weights", path)
    if weights.shape != tuple(layer.weights.shape):
        raise ValueError(f"{path}: '{g.name}/weights' has shape {weights.shape}, the config says "
                         f"{tuple(layer.weights.shape)}")
    if not np.isfinite(weights).all():
        raise ValueError(f"{path}: '{g.name}/weights' contains NaN or inf")
    layer.weights[...] = backend.asarray(weights, dtype=layer.weights.dtype)
    for name in WIRING:
        if getattr(layer, name, None) is not None:
            try:
                layer.bind(backend, layer.weights, layer.grad, _dataset(g, name, path))
            except ValueError as e:
                raise ValueError(f"{path}: '{g.name}/{name}' is invalid: {e}") from None


def _read_optimizer(g, path, model):
    from .optim import Adam
    if g.attrs.get("type") != "Adam":
        raise ValueError(f"{path}: unknown optimizer type {g.attrs.get('type')!r}")
    opt = Adam(model, **json.loads(g.attrs["config"]))
    try:
        opt.load_state(_dataset(g, "m", path), _dataset(g, "v", path), int(g.attrs["t"]))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return opt


def _read_trainer(g):
    state = json.loads(g.attrs["state"])
    state.update({k: g[k][...] for k in g.keys()})
    return state
