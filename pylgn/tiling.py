"""Cache-resident, batch-tiled training step (CPU): forward, loss and backward tile by tile.

A step's loss and parameter gradients are sums over samples, so the batch is cut into tiles of
``t`` samples whose activations (every layer's input, kept for backward) fit in cache, and each
tile runs forward through all layers, the loss, and backward through all layers before the next
tile starts. Threads split the tiles, not the gates: thread w runs the contiguous tiles
[w n / W, (w+1) n / W) with its own workspace (activation rows (features, t) reused tile after
tile, so they stay in cache) and its own dL/domega accumulators. After the tiles, the W
accumulators are summed in thread order and each layer turns the sum into dL/dW once
(``step_grad``; IWP dW = domega * rho'(W) and OP's softmax Jacobian are linear in domega). The
result is deterministic for a given thread count and equals the untiled step up to the order of
float summation.

    loss  = (1 / B) sum_tiles sum_{s in tile} ce(z_s, y_s)
    dz_s  = scale * (softmax(z_s) - onehot(y_s)) / B          (B: the whole batch, not the tile)
    grads += sum_tiles dL/dW(tile)

Layers take part through ``step_state(dtype)`` (shared read-only state, e.g. the table omega,
computed once per step), ``step_acc_shape()``, ``forward_tile``, ``backward_tile`` and
``step_grad``; they keep nothing on ``self`` per tile. The kernels are the per-layer kernels'
serial ``*_range`` parts (numba ``nogil``), run by a ``ThreadPoolExecutor`` with
``numba.get_num_threads()`` workers.

The tile size comes from the cache sizes read at run time (``cache_sizes``) and the layer widths
(``auto_tile``); ``plan`` returns None (use the untiled step) when a layer has no tiled form or
when even the smallest tile does not fit.
"""
import glob
import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np

#: cache sizes (bytes) used when /sys does not say: L1d, L2 per core, L3 shared
FALLBACK_CACHES = {1: 32 << 10, 2: 512 << 10, 3: 8 << 20}
#: share of (L2 + this thread's share of L3) that a thread's tile working set may fill
CACHE_SHARE = 0.75
MAX_TILE = 256
#: fewest samples per auto tile: below ~64 the per-gate cost of a tile (loading its wiring and
#: table, folding the sums) outweighs what cache residency saves (bench/RESULTS.md, tiled step)
MIN_TILE = 64
ALIGN = 64                                   # bytes: a cache line


@lru_cache(maxsize=1)
def cache_sizes():
    """{level: bytes} of the data/unified caches of cpu0 from /sys (FALLBACK_CACHES if absent)."""
    sizes = dict(FALLBACK_CACHES)
    for d in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*"):
        try:
            with open(os.path.join(d, "type")) as f:
                kind = f.read().strip()
            with open(os.path.join(d, "level")) as f:
                level = int(f.read())
            with open(os.path.join(d, "size")) as f:
                text = f.read().strip().upper()
        except (OSError, ValueError):
            continue
        if kind == "Instruction" or not text:
            continue
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1)
        try:
            sizes[level] = int(text.rstrip("KMG")) * mult
        except ValueError:
            continue
    return sizes


def tile_bytes(widths, itemsize):
    """Bytes of one sample in a thread's workspace: every layer's input and the logits (kept for
    backward), plus two gradient rows of the widest hidden width (dy, dx)."""
    hidden = max(widths[1:-1], default=widths[0])
    return (sum(widths) + 2 * max(hidden, widths[0])) * itemsize


def auto_tile(widths, itemsize, threads, caches=None):
    """Largest tile t (a multiple of a cache line's samples) whose workspace fits CACHE_SHARE of
    (L2 + L3 / threads), clipped to [MIN_TILE, MAX_TILE]; 0 (use the untiled step) when not even
    one cache line's worth of samples fits (very wide layers)."""
    caches = cache_sizes() if caches is None else caches
    budget = CACHE_SHARE * (caches.get(2, 0) + caches.get(3, 0) / max(1, threads))
    unit = max(1, ALIGN // itemsize)
    t = int(budget // tile_bytes(widths, itemsize)) // unit * unit
    return 0 if t < 1 else min(max(t, MIN_TILE), MAX_TILE)


def split(batch, tile, threads):
    """Tile bounds [0 = b_0 < b_1 < ... < b_n = batch]: n = ceil(batch / tile) rounded up to a
    multiple of ``threads`` (at most batch), tiles as equal as possible."""
    n = -(-batch // tile)
    n = min(batch, -(-n // threads) * threads)
    return [i * batch // n for i in range(n + 1)]


def _aligned(n, dtype):
    """Empty 1-d array of n items starting on a cache line."""
    itemsize = np.dtype(dtype).itemsize
    buf = np.empty(n + ALIGN // itemsize, dtype=dtype)
    off = (-buf.ctypes.data % ALIGN) // itemsize
    return buf[off:off + n]


class _Workspace:
    """One thread's buffers for tiles of up to ``tile`` samples: activations per layer input
    (and the logits), two gradient buffers (dy/dx ping-pong), the dlogits, and the layers'
    dL/domega accumulators."""

    def __init__(self, widths, acc_shapes, tile, dtype):
        hidden = max(max(widths[1:-1], default=0), widths[0])
        self.acts = [_aligned(w * tile, dtype) for w in widths]
        self.grads = [_aligned(hidden * tile, dtype) for _ in range(2)]
        self.dlogits = _aligned(widths[-1] * tile, dtype)
        self.accs = [None if s is None else np.zeros(s, dtype=dtype) for s in acc_shapes]


_POOL = [None, 0]


def _pool(workers):
    """The shared ThreadPoolExecutor with ``workers`` threads (rebuilt when that changes)."""
    if _POOL[1] != workers:
        if _POOL[0] is not None:
            _POOL[0].shutdown(wait=True)
        _POOL[0], _POOL[1] = ThreadPoolExecutor(workers, thread_name_prefix="pylgn-tile"), workers
    return _POOL[0]


class TiledStep:
    """The tiled loss-and-gradient step of a model's ``layers`` with tiles of at most ``tile``
    samples on ``threads`` threads (workspaces built once, reused every step)."""

    def __init__(self, layers, dtype, tile, threads, kernels):
        self.layers, self.dtype, self.tile, self.threads = layers, np.dtype(dtype), tile, threads
        self.kernels = kernels
        self.widths = [layers[0].in_dim] + [_rows(l) for l in layers]
        self._acc_shapes = [l.step_acc_shape() for l in layers]
        self._spaces = []

    def _workspaces(self, n):
        while len(self._spaces) < n:
            self._spaces.append(_Workspace(self.widths, self._acc_shapes, self.tile, self.dtype))
        return self._spaces[:n]

    def run(self, x, y, scale):
        """(loss, logits (batch, classes)); grads of every layer += scale * dL/dparams."""
        B = x.shape[0]
        bounds = split(B, self.tile, self.threads)
        workers = min(self.threads, len(bounds) - 1)
        spaces = self._workspaces(workers)
        states = [l.step_state(self.dtype) for l in self.layers]
        logits = np.empty((self.widths[-1], B), dtype=self.dtype)
        y = np.ascontiguousarray(y, dtype=np.int64)
        seed = float(scale) / B
        jobs = []
        for w, ws in enumerate(spaces):
            for acc in ws.accs:
                if acc is not None:
                    acc[...] = 0
            n = len(bounds) - 1
            jobs.append((ws, bounds[w * n // workers:(w + 1) * n // workers + 1]))
        if workers == 1:
            losses = [self._tiles(*jobs[0], x, y, states, logits, seed)]
        else:
            futures = [_pool(workers).submit(self._tiles, ws, b, x, y, states, logits, seed)
                       for ws, b in jobs]
            losses = [f.result() for f in futures]
        loss = float(sum(losses)) / B
        if not np.isfinite(loss):
            raise ValueError("logits: contain NaN or inf")
        for i, layer in enumerate(self.layers):
            if self._acc_shapes[i] is not None:
                total = spaces[0].accs[i]
                for ws in spaces[1:]:
                    total = total + ws.accs[i]
                layer.step_grad(states[i], total)
        return loss, np.ascontiguousarray(logits.T)

    def _tiles(self, ws, bounds, x, y, states, logits, seed):
        """Runs the tiles [bounds[j], bounds[j+1]) in order on one workspace; the loss sum."""
        total = 0.0
        for s0, s1 in zip(bounds[:-1], bounds[1:]):
            total += self._tile(ws, s0, s1, x, y, states, logits, seed)
        return total

    def _tile(self, ws, s0, s1, x, y, states, logits, seed):
        """Forward, loss and backward of the samples s0 <= s < s1; returns their loss sum."""
        t, widths, layers = s1 - s0, self.widths, self.layers
        acts = [a[:w * t].reshape(w, t) for a, w in zip(ws.acts, widths)]
        acts[0][...] = x[s0:s1].T
        for i, layer in enumerate(layers):
            layer.forward_tile(states[i], acts[i], acts[i + 1])
        logits[:, s0:s1] = acts[-1]
        d = ws.dlogits[:widths[-1] * t].reshape(widths[-1], t)
        loss = self.kernels.softmax_cross_entropy_columns(acts[-1], y[s0:s1], seed, d)
        for i in range(len(layers) - 1, -1, -1):
            dx = None if i == 0 else ws.grads[i % 2][:widths[i] * t].reshape(widths[i], t)
            layers[i].backward_tile(states[i], acts[i], d, ws.accs[i], dx)
            d = dx
        return loss


def _rows(layer):
    """Rows (features per sample) of a layer's output."""
    return getattr(layer, "k", None) or layer.out_dim


def supports(layer):
    """Whether ``layer`` has the tiled-step methods (learned wiring has none)."""
    return not getattr(layer, "learned", False) and all(
        hasattr(layer, m) for m in ("step_state", "step_acc_shape", "forward_tile",
                                    "backward_tile", "step_grad"))


def plan(model, tile=None):
    """The model's TiledStep (cached on it), or None when the untiled step must run: not on the
    CPU, a layer without a tiled form, or no tile fits the cache (very wide layers).
    ``tile``: the most samples per tile (None: ``auto_tile`` from the cache sizes)."""
    import numba
    if model.device != "cpu" or not all(supports(l) for l in model.layers):
        return None
    threads = numba.get_num_threads()
    widths = [model.in_dim] + [_rows(l) for l in model.layers]
    if tile is None:
        tile = auto_tile(widths, model.dtype.itemsize, threads)
        if tile < 1:
            return None
    key = (tile, threads, model.dtype, model.backend)
    cached = getattr(model, "_tiled", None)
    if cached is None or cached[0] != key:
        step = TiledStep(model.layers, model.dtype, tile, threads, model.backend.kernels)
        model._tiled = cached = (key, step)
    return cached[1]
