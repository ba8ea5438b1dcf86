"""Learnable thermometer thresholds: the input encoding trained with the network.

``LearnableThermometer(channels, thresholds, positions=1)`` is a model's first layer. It reads
values scaled to [0, 1], laid out channel-major (batch, channels * positions) (an image
(C, H, W) flattened, positions = H * W; a table, one channel per column, positions = 1), and
writes the thermometer bits in pylgn's layout, row (c * n + i) * positions + p:

    y[(c n + i) P + p, s] = [x[c P + p, s] > t[c, i]]                 (forward, train and eval)
    dL/dt[c, i] = -sum_{p, s} dL/dy[(c n + i) P + p, s] * sigmoid'(z) / T,   z = (x - t) / T
    dL/dx[c P + p, s] = sum_i dL/dy[(c n + i) P + p, s] * sigmoid'(z) / T

The forward is the exact comparison (the gates downstream see the bits the circuit will see);
the gradient is the straight-through surrogate of a sigmoid of temperature T. The thresholds
t (channels, thresholds) start at the uniform levels (i + 1) / (n + 1) and are parameters like
any other (saved in checkpoints, updated by Adam). The discretized model is the same comparison
with the learned constants: ``encode`` gives the bits the circuit of the following layers reads.
"""
import numpy as np

from ._checks import check_int, check_rows, check_temperature


class LearnableThermometer:
    """Thermometer encoding with one learned threshold vector per channel (see module doc)."""

    def __init__(self, channels, thresholds, positions=1, temperature=0.05):
        self.channels = check_int("channels", channels, 1)
        self.thresholds = check_int("thresholds", thresholds, 1, 255)
        self.positions = check_int("positions", positions, 1)
        self.temperature = check_temperature("temperature", temperature)
        self.in_dim = self.channels * self.positions
        self.out_dim = self.in_dim * self.thresholds
        self.n_params = self.channels * self.thresholds
        self.weights = self.grad = self.backend = self.connections = None
        self._saved = None

    def config(self):
        return dict(type="LearnableThermometer", channels=self.channels,
                    thresholds=self.thresholds, positions=self.positions,
                    temperature=self.temperature)

    def build(self, rng, backend, weights, grad):
        """Thresholds start at the uniform levels (i + 1) / (n + 1) of every channel."""
        n = self.thresholds
        levels = np.tile(np.arange(1, n + 1) / (n + 1), self.channels)
        weights[...] = backend.asarray(levels, dtype=weights.dtype)
        self.bind(backend, weights, grad)

    def bind(self, backend, weights, grad, wiring=None):
        self.backend, self.weights, self.grad = backend, weights, grad

    @property
    def levels(self):
        """The thresholds (channels, thresholds)."""
        return self.weights.reshape(self.channels, self.thresholds)

    def _z(self, x):
        """(x - t) / T as (channels, thresholds, positions, batch)."""
        C, n, P = self.channels, self.thresholds, self.positions
        t = self.levels.astype(x.dtype, copy=False)
        return (x.reshape(C, 1, P, -1) - t[:, :, None, None]) / x.dtype.type(self.temperature)

    def forward(self, x, train=True):
        """(channels * positions, batch) -> (channels * thresholds * positions, batch) bits."""
        check_rows("x", x, self.in_dim)
        z = self._z(x)
        self._saved = z if train else None
        return (z > 0).astype(x.dtype).reshape(self.out_dim, x.shape[1])

    def backward(self, dy, need_dx=True):
        """grad += dL/dt; returns dL/dx (straight-through sigmoid surrogate, see module doc)."""
        if self._saved is None:
            raise RuntimeError("backward: call forward in train mode first")
        xp, z = self.backend.xp, self._saved
        check_rows("dy", dy, self.out_dim, z.shape[-1], z.dtype)
        s = 1.0 / (1.0 + xp.exp(-z))
        g = dy.reshape(z.shape) * (s * (1.0 - s) / z.dtype.type(self.temperature))
        self.grad -= g.sum(axis=(2, 3)).reshape(-1).astype(self.grad.dtype, copy=False)
        if not need_dx:
            return None
        return xp.ascontiguousarray(g.sum(axis=1).reshape(self.in_dim, -1))

    def encode(self, x):
        """Bits (batch, out_dim) uint8 of values x (batch, in_dim) in [0, 1]: what the circuit of
        the following layers reads."""
        t = self.backend.to_host(self.levels)
        x = np.asarray(x, dtype=np.float64).reshape(len(x), self.channels, 1, self.positions)
        return (x > t[None, :, :, None]).reshape(len(x), -1).astype(np.uint8)

    def __repr__(self):
        return (f"LearnableThermometer({self.channels}, {self.thresholds}, "
                f"positions={self.positions})")
