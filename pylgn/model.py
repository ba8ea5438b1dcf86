"""Sequential: chains layers, owns the seed, the device and the flat parameter buffers."""
import weakref

import numpy as np

from . import tiling
from ._checks import check_batch, check_float, check_int, check_labels
from .backend import get_backend
from .layers import GroupSum, LogicLayer
from .loss import softmax_cross_entropy

DTYPES = (np.float32, np.float64)


class Sequential:
    """Layers applied in order. Users pass (batch, features); inside, activations are (features, batch).

    All parameters live in one flat buffer ``params`` (and gradients in ``grads``); each layer's
    ``weights``/``grad`` are views into them, so the optimizer and checkpoints see flat arrays.
    """

    def __init__(self, layers, seed=0, device="cpu", dtype=np.float32):
        layers = list(layers)
        if not layers or not all(hasattr(l, "forward") and hasattr(l, "backward") for l in layers):
            raise TypeError("layers: expected a non-empty list of layers (LogicLayer, LogicConv2d, "
                            "OrPool2d, GroupSum)")
        self.seed = check_int("seed", seed, 0)
        self.dtype = np.dtype(dtype)
        if self.dtype.type not in DTYPES:
            raise TypeError(f"dtype: expected float32 or float64, got {self.dtype}")
        self.layers = layers
        _check_chain(layers)
        _claim(layers, self)
        self.backend = get_backend(device)
        self.training = True
        self._build(np.random.default_rng(self.seed))

    def _build(self, rng):
        xp = self.backend.xp
        total = sum(l.n_params for l in self.layers)
        self.params = xp.zeros(total, dtype=self.dtype)
        self.grads = xp.zeros(total, dtype=self.dtype)
        off = 0
        for layer in self.layers:
            layer.backend = self.backend
            if layer.n_params:          # LogicLayer: (gates, params per gate); others: flat
                shape = layer.param_shape if isinstance(layer, LogicLayer) else (layer.n_params,)
                w = self.params[off:off + layer.n_params].reshape(shape)
                g = self.grads[off:off + layer.n_params].reshape(shape)
                layer.build(rng, self.backend, w, g)
                off += layer.n_params

    @property
    def device(self):
        return self.backend.device

    def to(self, device, optimizer=None):
        """Move the model to ``device`` ("cpu" | "cuda"), and ``optimizer``'s state with it when given.

        ``params``/``grads`` are copied to the new device and every layer is rebound to views of
        them together with its wiring (rebuilding its index arrays there); activations saved for
        backward are dropped. Returns self.
        """
        backend = get_backend(device)
        if backend is not self.backend:
            old = self.backend
            self.params = backend.asarray(old.to_host(self.params))
            self.grads = backend.asarray(old.to_host(self.grads))
            off = 0
            for layer in self.layers:
                layer.backend, layer._saved = backend, None
                if layer.n_params:
                    n = layer.n_params
                    shape = getattr(layer, "param_shape", layer.weights.shape)
                    wiring = getattr(layer, "wiring", layer.connections)
                    layer.bind(backend, self.params[off:off + n].reshape(shape),
                               self.grads[off:off + n].reshape(shape),
                               None if wiring is None else old.to_host(wiring))
                    off += n
            self.backend, self._batch, self._tiled = backend, None, None
        if optimizer is not None:
            optimizer.to(device)
        return self

    @property
    def in_dim(self):
        return self.layers[0].in_dim

    @property
    def out_dim(self):
        last = self.layers[-1]
        return last.k if isinstance(last, GroupSum) else last.out_dim

    @property
    def encoder(self):
        """The first layer when it encodes raw values into bits (LearnableThermometer), else
        None: the circuit (``to_circuit``) reads ``encoder.encode(x)``."""
        first = self.layers[0]
        return first if hasattr(first, "encode") else None

    @property
    def logic_layers(self):
        return [l for l in self.layers if isinstance(l, LogicLayer)]

    @property
    def num_gates(self):
        return sum(l.out_dim if isinstance(l, LogicLayer) else getattr(l, "num_gates", 0)
                   for l in self.layers)

    def config(self):
        return dict(layers=[l.config() for l in self.layers], seed=self.seed,
                    dtype=self.dtype.name)

    def parameters(self):
        """Per-layer parameter arrays (views into ``params``)."""
        return [l.weights for l in self.layers if l.n_params]

    def train(self):
        self.training = True
        return self

    def eval(self):
        self.training = False
        return self

    def set_noise(self, step, micro=0):
        """Key the Gumbel noise of the gates built with ``gumbel`` to a training step:
        (seed, 64 * layer index + tree level, step, micro-batch); ``step`` None turns the noise
        off (evaluation)."""
        for i, layer in enumerate(self.layers):
            for j, gates in enumerate(getattr(layer, "levels", [layer])):
                if getattr(gates, "gumbel", None):
                    gates.noise_key = (None if step is None else
                                       (self.seed, 64 * i + j, int(step), int(micro)))
        return self

    def zero_grad(self):
        self.grads[...] = 0

    def to_circuit(self):
        """pylgn.Circuit of the discretized model (exact: scores / tau == eval() forward)."""
        from .circuit import from_model
        return from_model(self)

    def forward(self, x):
        """x (batch, in_dim) in [0, 1] -> (batch, out_dim): relaxed in train(), exact 0/1 gates in eval()."""
        xp = self.backend.xp
        x = check_batch("x", x, self.in_dim, xp=np if isinstance(x, np.ndarray) else xp)
        h = xp.ascontiguousarray(xp.asarray(x, dtype=self.dtype).T)
        for layer in self.layers:
            h = layer.forward(h, train=self.training)
        self._batch = x.shape[0]
        return xp.ascontiguousarray(h.T)

    __call__ = forward

    def backward(self, dout):
        """dout (batch, out_dim) = dL/d(output); accumulates parameter gradients into ``grads``."""
        if not self.training:
            raise RuntimeError("backward: the model is in eval() mode (discrete gates have no gradient)")
        xp = self.backend.xp
        batch = getattr(self, "_batch", None)
        if batch is None:
            raise RuntimeError("backward: call forward first")
        if tuple(dout.shape) != (batch, self.out_dim):
            raise ValueError(f"dout: expected shape ({batch}, {self.out_dim}), got {tuple(dout.shape)}")
        d = xp.ascontiguousarray(xp.asarray(dout, dtype=self.dtype).T)
        for i in range(len(self.layers) - 1, -1, -1):
            d = self.layers[i].backward(d, need_dx=i > 0)

    def loss_and_grad(self, x, y, scale=1.0, tiled=False, tile=None):
        """One training step's loss and gradients: grads += scale * dL/dparams (not zeroed first).

        x (batch, in_dim) in [0, 1], y (batch,) int labels; L = mean softmax cross-entropy of the
        logits. Returns (L as a float, logits as a host numpy array (batch, classes)). By default
        forward + softmax_cross_entropy + backward, layer by layer. With ``tiled=True`` (or a
        ``tile``) on the CPU the batch runs tile by tile (``pylgn.tiling``; ``tile``: the most
        samples per tile, None = from the cache sizes), threads over tiles, one join per step:
        slower on an idle machine (0.45-0.80x, bench/RESULTS.md), faster where the machine is
        oversubscribed. The layers' forward/backward state is left untouched by the tiled path.
        """
        if not self.training:
            raise RuntimeError("loss_and_grad: the model is in eval() mode (discrete gates have no "
                               "gradient)")
        scale = check_float("scale", scale)
        if tile is not None:
            tile = check_int("tile", tile, 1)
        x = check_batch("x", x, self.in_dim, xp=_array_module(x, self.backend))
        y = check_labels("y", y, x.shape[0], self.out_dim, xp=_array_module(y, self.backend))
        step = tiling.plan(self, tile) if tiled or tile is not None else None
        if step is None:
            logits = self.forward(x)
            loss, d = softmax_cross_entropy(logits, y)
            self.backward(d if scale == 1.0 else d * scale)
            return loss, self.backend.to_host(logits)
        return step.run(x, y, scale)

    def __repr__(self):
        inner = ",\n  ".join(repr(l) for l in self.layers)
        return f"Sequential([\n  {inner}\n], device={self.device!r}, dtype={self.dtype.name})"


def _array_module(a, backend):
    """numpy for host arrays (and anything without a shape), else the backend's module."""
    return np if isinstance(a, np.ndarray) or not hasattr(a, "shape") else backend.xp


def _claim(layers, model):
    """Each layer object belongs to one model, once: a repeated layer would share one saved
    state between two places, and rebinding a layer would silently detach the first model."""
    seen = set()
    for i, layer in enumerate(layers):
        owner = getattr(layer, "_owner", None)
        owner = owner() if owner is not None else None
        if id(layer) in seen or (owner is not None and any(l is layer for l in owner.layers)):
            raise ValueError(f"layers[{i}]: this {type(layer).__name__} object is already used "
                             f"{'in this model' if id(layer) in seen else 'by another model'}; "
                             f"create a new layer")
        seen.add(id(layer))
    for layer in layers:
        layer._owner = weakref.ref(model)


def _check_chain(layers):
    """Widths must chain; GroupSum only last and dividing the width before it."""
    width = None
    for i, layer in enumerate(layers):
        if isinstance(layer, GroupSum):
            if i != len(layers) - 1 or width is None:
                raise ValueError("layers: GroupSum must be the last layer, after a LogicLayer")
            if width % layer.k:
                raise ValueError(f"layers: GroupSum k={layer.k} must divide the width {width}")
            layer.in_dim = width
        else:
            if width is not None and layer.in_dim != width:
                raise ValueError(f"layers[{i}]: in_dim {layer.in_dim} does not match the previous "
                                 f"width {width}")
            shape, prev = getattr(layer, "in_shape", None), getattr(layers[i - 1], "out_shape", None)
            if i and shape is not None and prev is not None and tuple(shape) != tuple(prev):
                raise ValueError(f"layers[{i}]: input shape (channels, height, width) {tuple(shape)}"
                                 f" does not match the previous output shape {tuple(prev)}")
            width = layer.out_dim
