"""pylgn against an independent PyTorch autograd implementation of the same DLGN, on the CPU.

The torch side is written here from the formulas (what a user would otherwise run: difflogic's /
torchlogix's CPU path), the careful way: activations feature-major (features, batch), inputs
gathered with index_select, the relaxed gate as the elementwise multilinear formula

    y = w00 + q (w01 - w00) + p (w10 - w00 + q (w11 - w10 - w01 + w00)),   p, q = the two inputs
    IWP: w = 0.5 + 0.5 sin(W)            OP: w = softmax(W) @ OP_TABLES (16 gates -> 4 rows)

GroupSum (sum of k contiguous groups / tau), mean softmax cross-entropy and Adam
(m <- b1 m + (1-b1) g, v <- b2 v + (1-b2) g^2, p <- p - lr mhat / (sqrt(vhat) + eps)) as
in-place tensor ops, with autograd doing the backward pass.

1. ``check``: on identical weights and connections (float64, small model), loss, every layer's
   parameter gradient and the parameters after one Adam step must agree with pylgn.
2. ``time``: full training steps (forward + loss + backward + Adam) of both, alternating, on the
   same model (784 -> 4 x 16,000, GroupSum(10), batch 256, float32, 2 threads each); medians.

    python bench/compare_torch.py [check|time|all] [--threads 2] [--repeats 15]
(needs torch: ``make bench-torch`` builds .venv-torch with torch==2.13.0 and runs this.)
"""
import argparse
import time

import numba
import numpy as np
import torch

import pylgn
from pylgn.gates import OP_TABLES


class TorchDLGN:
    """The same network in torch: ``weights`` (G, 4 or 16) and ``conns`` (2, G) per layer."""

    def __init__(self, weights, conns, params, k, tau, dtype):
        self.w = [torch.tensor(np.asarray(w), dtype=dtype, requires_grad=True) for w in weights]
        self.conn = [[torch.tensor(np.asarray(c[i]), dtype=torch.int64) for i in range(2)]
                     for c in conns]
        self.params, self.k, self.tau = params, k, tau
        self.op_tables = torch.tensor(OP_TABLES, dtype=dtype)
        self.m = [torch.zeros_like(w) for w in self.w]
        self.v = [torch.zeros_like(w) for w in self.w]
        self.t = 0

    def table(self, w, param):
        return 0.5 + 0.5 * torch.sin(w) if param == "iwp" else torch.softmax(w, 1) @ self.op_tables

    def forward(self, x):
        """x (batch, in_dim) -> logits (batch, k)."""
        h = x.t().contiguous()
        for w, (ca, cb), param in zip(self.w, self.conn, self.params):
            t = self.table(w, param)
            w00, w01, w10, w11 = (t[:, r:r + 1] for r in range(4))
            p, q = h.index_select(0, ca), h.index_select(0, cb)
            h = w00 + q * (w01 - w00) + p * (w10 - w00 + q * (w11 - w10 - w01 + w00))
        return (h.view(self.k, -1, h.shape[1]).sum(1) / self.tau).t()

    def loss(self, x, y):
        return torch.nn.functional.cross_entropy(self.forward(x), y)

    @torch.no_grad()
    def adam(self, lr=0.01, b1=0.9, b2=0.999, eps=1e-8):
        self.t += 1
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for w, m, v in zip(self.w, self.m, self.v):
            m.mul_(b1).add_(w.grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(w.grad, w.grad, value=1 - b2)
            w.sub_(lr * (m / c1) / ((v / c2).sqrt_() + eps))

    def step(self, x, y):
        for w in self.w:
            w.grad = None
        loss = self.loss(x, y)
        loss.backward()
        self.adam()
        return loss


def build(param, in_dim, width, depth, k, tau, seed=0, dtype=np.float32, init="residual"):
    """A pylgn model and the torch copy of its weights and connections."""
    dims = [in_dim] + [width] * depth
    model = pylgn.Sequential([pylgn.LogicLayer(a, b, param=param, init=init)
                              for a, b in zip(dims[:-1], dims[1:])] + [pylgn.GroupSum(k, tau)],
                             seed=seed, dtype=dtype)
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    twin = TorchDLGN([l.weights.copy() for l in model.logic_layers],
                     [l.connections for l in model.logic_layers], [param] * depth, k, tau, tdtype)
    return model, twin


def pylgn_step(model, opt, x, y, tiled=True):
    """One training step as the Trainer runs it: loss_and_grad (tiled on the CPU) + Adam;
    ``tiled=False``: the layer-by-layer forward + backward."""
    opt.zero_grad()
    loss, _ = model.loss_and_grad(x, y, tiled=tiled)
    opt.step()
    return loss


def check(param, seed=0):
    """Max abs differences (loss, gradients, params after one Adam step) in float64."""
    model, twin = build(param, 20, 60, 3, 4, 3.0, seed, np.float64, init="gaussian")
    rng = np.random.default_rng(seed)
    x = rng.random((17, 20))
    y = rng.integers(0, 4, 17)
    opt = pylgn.Adam(model, lr=0.01)
    loss = pylgn_step(model, opt, x, y)
    for w in twin.w:
        w.grad = None
    tloss = twin.loss(torch.tensor(x), torch.tensor(y))
    tloss.backward()
    grads = [l.grad.copy() for l in model.logic_layers]       # pylgn grads (kept until zero_grad)
    dgrad = max(np.abs(g - w.grad.numpy()).max() for g, w in zip(grads, twin.w))
    scale = max(np.abs(g).max() for g in grads)
    twin.adam()
    dparam = max(np.abs(l.weights - w.detach().numpy()).max()
                 for l, w in zip(model.logic_layers, twin.w))
    return dict(loss=abs(loss - tloss.item()), grad=dgrad, grad_scale=scale, param=dparam)


def timing(param, threads, repeats, batch=256, width=16000, depth=4):
    """Median seconds per training step, pylgn and torch, alternating on the same model."""
    numba.set_num_threads(threads)
    torch.set_num_threads(threads)
    model, twin = build(param, 784, width, depth, 10, 30.0)
    opt = pylgn.Adam(model, lr=0.01)
    rng = np.random.default_rng(0)
    x = (rng.random((batch, 784)) < 0.3).astype(np.float32)
    y = rng.integers(0, 10, batch)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    times = {"pylgn": [], "pylgn untiled": [], "torch": []}
    for r in range(repeats + 2):                    # the first two rounds warm up (compile, caches)
        for name, fn in (("pylgn", lambda: pylgn_step(model, opt, x, y)),
                         ("pylgn untiled", lambda: pylgn_step(model, opt, x, y, tiled=False)),
                         ("torch", lambda: twin.step(tx, ty))):
            t0 = time.perf_counter()
            fn()
            if r >= 2:
                times[name].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="?", default="all", choices=["check", "time", "all"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    print(f"torch {torch.__version__}, numba {numba.__version__}, numpy {np.__version__}")
    if args.what in ("check", "all"):
        for param in ("iwp", "op"):
            d = check(param)
            ok = d["loss"] < 1e-12 and d["grad"] < 1e-12 * max(1.0, d["grad_scale"]) \
                and d["param"] < 1e-12
            print(f"check {param}: |dloss| {d['loss']:.1e}, max |dgrad| {d['grad']:.1e} "
                  f"(grads up to {d['grad_scale']:.1e}), max |dparam| after Adam {d['param']:.1e}"
                  f" -> {'OK' if ok else 'MISMATCH'}")
    if args.what in ("time", "all"):
        print(f"training step 784 -> 4 x 16,000 -> GroupSum(10), batch 256, float32, "
              f"{args.threads} threads, median of {args.repeats} alternating steps")
        print(f"{'param':<6} {'pylgn ms':>9} {'untiled ms':>11} {'torch ms':>9} "
              f"{'torch/pylgn':>12} {'torch/untiled':>14}")
        for param in ("iwp", "op"):
            t = timing(param, args.threads, args.repeats)
            print(f"{param:<6} {t['pylgn'] * 1e3:9.1f} {t['pylgn untiled'] * 1e3:11.1f} "
                  f"{t['torch'] * 1e3:9.1f} {t['torch'] / t['pylgn']:11.2f}x "
                  f"{t['torch'] / t['pylgn untiled']:13.2f}x")


if __name__ == "__main__":
    main()
