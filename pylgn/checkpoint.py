"""HDF5 checkpoints: the model (config, wiring, parameters), Adam state and trainer state.

Layout (format ``pylgn-checkpoint``, version 1; every dataset gzip-compressed)::

    /                 attrs: format, version, pylgn_version, step, device, model_config (JSON),
                      meta (JSON)
    /layers/000, ...  one group per layer, attrs: config (JSON);
                      layers with parameters: dataset weights (LogicLayer: (out_dim, params per
                      gate)) and their wiring: connections (arity, out_dim) or, for LogicConv2d,
                      leaves (out_channels, leaves, 3); a LogicLayer with learned wiring also
                      holds candidates (arity * out_dim, C) and choice (its logits, same shape),
                      and its connections are the argmax wiring at save time
    /optimizer        attrs: type ("Adam"), config (JSON), t; datasets m, v (flat, the layout of
                      model.params: the layers' weights concatenated in order)
    /trainer          attrs: state (JSON: RNG state, data position, step, history, ...);
                      one dataset per array-valued entry (e.g. the epoch permutation)

Saving is atomic: the file is written beside the target under a temporary name, fsynced and
renamed over it with ``os.replace``, so a crash mid-save leaves the previous checkpoint intact.
h5py is imported on first use, so ``import pylgn`` stays light.
"""
import json
import os
from dataclasses import dataclass, field

import numpy as np

from ._io import (STALE_SECONDS, atomic_hdf5, atomic_path, check_storage,  # noqa: F401 (re-exported)
                  write_atomic)

CHECKPOINT_FORMAT = "pylgn-checkpoint"
CHECKPOINT_VERSION = 1
WIRING = ("connections", "leaves")     # the wiring a layer's bind() takes: LogicLayer, LogicConv2d
_COMPRESS = dict(compression="gzip", compression_opts=4, shuffle=True)


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
    from . import __version__
    from .model import Sequential
    if not isinstance(model, Sequential):
        raise TypeError(f"model: expected a pylgn.Sequential, got {type(model).__name__}")
    if optimizer is not None and optimizer.model is not model:
        raise ValueError("optimizer: belongs to a different model")
    step = (optimizer.t if optimizer is not None else 0) if step is None else step
    step = _check_step("step", step)
    try:
        meta_json = to_json(meta)
    except TypeError as e:
        raise TypeError(f"meta: {e}") from None
    _check_savable(model, optimizer)
    with atomic_hdf5(path) as f:
        f.attrs.update(format=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION,
                       pylgn_version=__version__, step=int(step), device=model.device,
                       model_config=to_json(model.config()), meta=meta_json)
        _write_layers(f.create_group("layers"), model)
        if optimizer is not None:
            _write_optimizer(f.create_group("optimizer"), optimizer)
        if trainer_state is not None:
            _write_trainer(f.create_group("trainer"), trainer_state)


def _check_step(name, step):
    import numbers
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise (ValueError if isinstance(step, numbers.Integral) else TypeError)(
            f"{name}: expected an int >= 0, got {step!r}")
    return int(step)


def _check_savable(model, optimizer):
    """What ``load`` would refuse is not written: parameters must be finite, Adam's moments
    finite (and v >= 0)."""
    host = model.backend.to_host
    if not np.isfinite(host(model.params)).all():
        raise ValueError("model: parameters contain NaN or inf; not saved (the last good "
                         "checkpoint is kept)")
    if optimizer is not None:
        _check_moments("optimizer", host(optimizer.m), host(optimizer.v))


def _check_moments(where, m, v):
    if not (np.isfinite(m).all() and np.isfinite(v).all() and (v >= 0).all()):
        raise ValueError(f"{where}: Adam moments m, v must be finite with v >= 0")


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
        if getattr(layer, "learned", False):
            g.create_dataset("candidates", data=host(layer.candidates), **_COMPRESS)
            g.create_dataset("choice", data=host(layer.theta), **_COMPRESS)


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
        except (TypeError, ValueError) as e:      # every error names the file (edited fields)
            if str(e).startswith(f"{path}: "):
                raise
            raise ValueError(f"{path}: corrupt pylgn checkpoint: {e}") from None


LAYER_TYPES = ("LogicLayer", "GroupSum", "LogicConv2d", "OrPool2d", "LearnableThermometer")


def _read(f, path, device):
    fmt = f.attrs.get("format")
    if fmt != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a pylgn checkpoint (attribute 'format' is {fmt!r}, "
                         f"expected {CHECKPOINT_FORMAT!r})")
    version = _int_attr(f, "version", path)
    if not 1 <= version <= CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint format version {version} is not supported "
                         f"(this pylgn reads versions 1..{CHECKPOINT_VERSION})")
    check_storage(f, path)
    step = _int_attr(f, "step", path)
    meta = json.loads(f.attrs["meta"])
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: attribute 'meta' must be a JSON object")
    model = _read_model(f, path, device)
    optimizer = _read_optimizer(f["optimizer"], path, model) if "optimizer" in f else None
    trainer = _read_trainer(f["trainer"], path) if "trainer" in f else None
    return Checkpoint(path, model, optimizer, step, meta, trainer)


def _int_attr(obj, name, path):
    value = obj.attrs.get(name)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < 0:
        raise ValueError(f"{path}: attribute '{obj.name}' {name} must be an int >= 0, got "
                         f"{value!r}")
    return int(value)


def _dataset(group, name, path, shape=None):
    """The array ``group/name``, after checking its declared shape (before reading it)."""
    if name not in group:
        raise ValueError(f"{path}: missing dataset '{group.name}/{name}'")
    ds = group[name]
    if shape is not None and tuple(ds.shape) != tuple(shape):
        raise ValueError(f"{path}: '{ds.name}' has shape {ds.shape}, expected {tuple(shape)}")
    return ds[...]


def _read_model(f, path, device):
    import pylgn
    config = json.loads(f.attrs["model_config"])
    try:
        layers = [_make_layer(pylgn, cfg) for cfg in config["layers"]]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: invalid model_config: {e}") from None
    _check_sizes(f, layers, path)
    try:
        model = pylgn.Sequential(layers, seed=config["seed"], device=device,
                                 dtype=config["dtype"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: invalid model_config: {e}") from None
    group = f["layers"] if "layers" in f else None
    for i, layer in enumerate(model.layers):
        if getattr(layer, "weights", None) is None:
            continue
        g = group.get(f"{i:03d}") if group is not None else None
        if g is None:
            raise ValueError(f"{path}: missing group '/layers/{i:03d}'")
        _restore_layer(layer, g, path, model.backend)
    return model


def _make_layer(pylgn, cfg):
    if not isinstance(cfg, dict) or cfg.get("type") not in LAYER_TYPES:
        raise ValueError(f"unknown layer type in {cfg!r} (expected one of {LAYER_TYPES})")
    cfg = dict(cfg)
    return getattr(pylgn, cfg.pop("type"))(**cfg)


def _check_sizes(f, layers, path):
    """Every layer's declared parameter count must be what the file holds, checked before
    anything is allocated (a tiny file cannot ask for gigabytes)."""
    group = f["layers"] if "layers" in f else {}
    for i, layer in enumerate(layers):
        if layer.n_params:
            g = group.get(f"{i:03d}") if len(group) else None
            if g is None:
                raise ValueError(f"{path}: missing group '/layers/{i:03d}'")
            if "weights" not in g:
                raise ValueError(f"{path}: missing dataset '/layers/{i:03d}/weights'")
            held = g["weights"].size + (g["choice"].size if "choice" in g else 0)
            if held != layer.n_params:
                raise ValueError(f"{path}: layers[{i}] declares {layer.n_params} parameters, "
                                 f"the file holds {held}")


def _restore_layer(layer, g, path, backend):
    _restore_floats(layer.weights, g, "weights", path, backend)
    if getattr(layer, "learned", False):
        _restore_floats(layer.theta, g, "choice", path, backend)
        cand = _dataset(g, "candidates", path, layer.candidates.shape)
        if cand.dtype.kind not in "iu":
            raise ValueError(f"{path}: '{g.name}/candidates' must hold integers, got {cand.dtype}")
        try:
            layer.bind(backend, layer.block, layer.block_grad, cand)
        except ValueError as e:
            raise ValueError(f"{path}: '{g.name}/candidates' is invalid: {e}") from None
        return
    for name in WIRING:
        if getattr(layer, name, None) is not None:
            wiring = _dataset(g, name, path, backend.to_host(getattr(layer, name)).shape)
            if wiring.dtype.kind not in "iu":
                raise ValueError(f"{path}: '{g.name}/{name}' must hold integers, got "
                                 f"{wiring.dtype}")
            try:
                layer.bind(backend, layer.weights, layer.grad, wiring)
            except ValueError as e:
                raise ValueError(f"{path}: '{g.name}/{name}' is invalid: {e}") from None


def _restore_floats(view, g, name, path, backend):
    """view[...] = the finite float dataset g/name of the view's shape."""
    data = _dataset(g, name, path, view.shape)
    if data.dtype.kind != "f" or not np.isfinite(data).all():
        raise ValueError(f"{path}: '{g.name}/{name}' must be finite floats")
    view[...] = backend.asarray(data, dtype=view.dtype)


def _read_optimizer(g, path, model):
    from .optim import Adam
    if g.attrs.get("type") != "Adam":
        raise ValueError(f"{path}: unknown optimizer type {g.attrs.get('type')!r}")
    try:
        opt = Adam(model, **json.loads(g.attrs["config"]))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: invalid optimizer config: {e}") from None
    shape = tuple(model.params.shape)
    m, v = _dataset(g, "m", path, shape), _dataset(g, "v", path, shape)
    try:
        _check_moments("optimizer", m, v)
        opt.load_state(m, v, _int_attr(g, "t", path))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return opt


def _read_trainer(g, path):
    state = json.loads(g.attrs["state"])
    if not isinstance(state, dict):
        raise ValueError(f"{path}: '/trainer' state must be a JSON object")
    state.update({k: g[k][...] for k in g.keys()})
    return state
