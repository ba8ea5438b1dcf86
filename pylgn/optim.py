"""Adam over the model's flat parameter buffer: a pure update over flat arrays plus its state."""
import numpy as np

from ._checks import check_float


class Adam:
    """Adam with bias correction and optional decoupled weight decay (off by default: it pushes
    IWP gates towards the undecided omega = 0.5). State: ``m``, ``v`` (flat, like the params), ``t``."""

    def __init__(self, model, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        if not all(hasattr(model, a) for a in ("params", "grads", "backend")):
            raise TypeError(f"model: expected a pylgn.Sequential, got {type(model).__name__}")
        self.model = model
        self.lr = check_float("lr", lr, 0.0, low_open=True)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2 \
                or not all(0.0 <= check_float("betas", b) < 1.0 for b in betas):
            raise ValueError(f"betas: expected two numbers in [0, 1), got {betas!r}")
        self.betas = tuple(float(b) for b in betas)
        self.eps = check_float("eps", eps, 0.0, low_open=True)
        self.weight_decay = check_float("weight_decay", weight_decay, 0.0)
        xp = model.backend.xp
        self.m = xp.zeros_like(model.params)
        self.v = xp.zeros_like(model.params)
        self.t = 0
        self.device = model.device

    def to(self, device):
        """Move the moments ``m``, ``v`` to ``device``, where the model must be already
        (``model.to(device, optimizer=opt)`` moves both). Returns self."""
        if device != self.model.device:
            raise ValueError(f"device: the model is on {self.model.device!r}, not {device!r}; "
                             f"move both with model.to({device!r}, optimizer=opt)")
        backend = self.model.backend
        self.m = backend.asarray(backend.to_host(self.m))
        self.v = backend.asarray(backend.to_host(self.v))
        self.device = device
        return self

    def step(self):
        """p <- p - lr * mhat / (sqrt(vhat) + eps) - lr * weight_decay * p, over all parameters."""
        if self.device != self.model.device:
            raise RuntimeError(f"Adam.step: the optimizer state is on {self.device!r}, the model on "
                               f"{self.model.device!r}; move both with model.to(device, optimizer=opt)")
        self._check_grads()
        self.t += 1
        b1, b2 = self.betas
        self.model.backend.kernels.adam_step(self.model.params, self.model.grads, self.m, self.v,
                                             self.lr, b1, b2, self.eps, self.weight_decay, self.t)

    def _check_grads(self):
        """Refuse gradients that would poison the parameters, before anything changes: NaN,
        inf, or values whose squares overflow the second moment (|g| >= sqrt(max) / 16). One
        dot product over the flat buffer (NaN and inf propagate; on a device, one
        synchronisation); only when it is not below max / 256 a per-layer look that names the
        first offending layer (a large sum of small squares passes)."""
        grads = self.model.grads
        big = float(np.finfo(grads.dtype).max)
        with np.errstate(over="ignore", invalid="ignore"):
            if grads.size == 0 or float(self.model.backend.xp.dot(grads, grads)) < big / 256:
                return
        limit, host, off = np.sqrt(big) / 16, self.model.backend.to_host, 0
        for i, layer in enumerate(self.model.layers):
            g = host(grads[off:off + layer.n_params])
            off += layer.n_params
            if g.size and not np.isfinite(g).all():
                problem = "contains NaN or inf"
            elif g.size and np.abs(g).max() >= limit:
                problem = (f"has values of magnitude >= {limit:.3g} (their squares overflow "
                           f"{grads.dtype} in Adam's second moment)")
            else:
                continue
            raise ValueError(f"Adam.step: the gradient of layers[{i}] ({type(layer).__name__}) "
                             f"{problem}; the parameters and moments were left unchanged")
    def zero_grad(self):
        self.model.zero_grad()

    def config(self):
        return dict(lr=self.lr, betas=list(self.betas), eps=self.eps,
                    weight_decay=self.weight_decay)

    def state(self):
        """Arrays and counters that a checkpoint stores to resume exactly."""
        return dict(m=self.m, v=self.v, t=self.t)

    def load_state(self, m, v, t):
        xp = self.model.backend.xp
        if tuple(m.shape) != tuple(self.m.shape) or tuple(v.shape) != tuple(self.v.shape):
            raise ValueError(f"optimizer state: expected {tuple(self.m.shape)} moments, got "
                             f"{tuple(m.shape)} / {tuple(v.shape)}")
        self.m[...] = xp.asarray(m, dtype=self.m.dtype)
        self.v[...] = xp.asarray(v, dtype=self.v.dtype)
        self.t = int(t)


SCHEDULES = ("constant", "cosine")


def scheduled_lr(base, step, total, kind="constant", warmup=0, final=0.0):
    """Learning rate of optimizer step ``step`` (0-based) of ``total``:

        warmup:    base * (step + 1) / warmup                       for step < warmup
        constant:  base
        cosine:    final + (base - final) * (1 + cos(pi * u)) / 2,   u = (step - warmup) / (total - warmup)

    ``final`` is the rate the cosine reaches at ``total`` (and keeps after it)."""
    import math
    if kind not in SCHEDULES:
        raise ValueError(f"lr_schedule: expected one of {SCHEDULES}, got {kind!r}")
    if step < warmup:
        return base * (step + 1) / warmup
    if kind == "constant":
        return base
    u = min(1.0, (step - warmup) / max(1, total - warmup))
    return final + (base - final) * 0.5 * (1.0 + math.cos(math.pi * u))
