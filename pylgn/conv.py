"""Convolutional logic layers (CDLGN / LogicTreeNet): logic-tree kernels and OR pooling.

Layout. Images (batch, channels, height, width) enter the model flattened channel-major,
``x.reshape(batch, -1)``, so inside a layer activations are (C*H*W, batch) like the dense layers.
A flatten between the last pooling and a dense ``LogicLayer`` is implicit: it is the identity on
this layout.

LogicConv2d. Each output channel o is a complete ``arity``-ary tree of learned gates of depth d,
whose arity**d leaves are fixed cells (c, dh, dw) of the receptive field; its weights are shared
over all output positions p = (i, j). With (positions x batch) as the batch axis, the layer is
an im2col gather followed by d ordinary gate layers (``LogicLayer`` with fixed wiring), so every
parametrization, estimator, initialization and backend of the dense layer applies unchanged:

    cols[(c, dh, dw), (p, s)] = x[c, i*stride + dh - pad, j*stride + dw - pad, s]   (0 outside)
    level 0:  gate (o, j) reads leaves (o, a*j + k), k < a       -> (O * a**(d-1), P * batch)
    level l:  gate (o, j) reads level l-1 nodes (o, a*j + k)       -> (O * a**(d-1-l), P * batch)
    y[(o, p), s] = root of tree o at (p, s)

The gather and its backward (a scatter-add written as a fixed-order gather through a reverse
table, so it is deterministic) use only array indexing of ``backend.xp``: the layer needs no
kernel of its own and runs on numpy and cupy alike.

OrPool2d. y[(c, i, j), s] = max over the kernel window of x (relaxed: the max t-conorm, whose
gradient goes to the first arg-max; discretized: the OR of the 0/1 inputs, which is the same max).
"""
import numpy as np

from . import gates
from .kernels.common import DX_PARTS
from ._checks import check_int, check_rows
from .layers import GroupSum, LogicLayer

ARITY_TREE_MAX = 6


def _size2(name, value):
    """(h, w) from an int or a pair of ints, each >= 1."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name}: expected an int or a pair (height, width), got {value!r}")
        return tuple(check_int(name, v, 1) for v in value)
    v = check_int(name, value, 1)
    return v, v


def _out_size(in_size, kernel, stride, padding, name):
    """Output height, width = (size + 2 padding - kernel) // stride + 1; ValueError when < 1."""
    out = tuple((s + 2 * padding - kernel) // stride + 1 for s in in_size)
    if min(out) < 1:
        raise ValueError(f"in_size: {in_size} is too small for {name} (kernel {kernel}, padding "
                         f"{padding}); each side must be >= {kernel - 2 * padding}")
    return out


def window_index(channels, in_size, kernel, stride, padding):
    """(channels*kernel*kernel, P) int64 flat input rows of the im2col gather, P = Ho*Wo.

    Row (c, dh, dw), column p = (i, j) holds c*H*W + h*W + w with h = i*stride + dh - padding,
    w = j*stride + dw - padding, or C*H*W (the zero row) where (h, w) lies in the padding.
    """
    H, W = in_size
    Ho, Wo = _out_size(in_size, kernel, stride, padding, "the window")
    c, dh, dw, i, j = np.ix_(np.arange(channels), np.arange(kernel), np.arange(kernel),
                             np.arange(Ho), np.arange(Wo))
    h, w = i * stride + dh - padding, j * stride + dw - padding
    inside = (h >= 0) & (h < H) & (w >= 0) & (w < W)
    rows = np.where(inside, c * H * W + np.clip(h, 0, H - 1) * W + np.clip(w, 0, W - 1),
                    channels * H * W)
    return rows.reshape(channels * kernel * kernel, Ho * Wo).astype(np.int64)


class RowGather:
    """out[r, p, s] = x[idx[r, p], s], where idx == n_in reads the constant 0 (padding).

    Backward: dx[i, s] = sum over (r, p) with idx[r, p] == i of dout[r, p, s], computed as a
    gather through the reverse table ``rev`` (n_in, m) of flat slots r*P + p (R*P = a zero slot),
    summed in a fixed order: deterministic, no atomics, only ``xp`` indexing.
    """

    def __init__(self, idx, n_in, backend):
        idx = np.asarray(idx, dtype=np.int64)
        self.shape, self.n_in, self.backend = idx.shape, n_in, backend
        flat = idx.ravel()
        counts = np.bincount(flat, minlength=n_in + 1)[:n_in]
        order = np.argsort(flat, kind="stable")
        vals = flat[order]
        keep = vals < n_in
        start = np.concatenate([[0], np.cumsum(counts)])
        rev = np.full((n_in, max(1, int(counts.max(initial=0)))), flat.size, dtype=np.int64)
        rev[vals[keep], np.arange(int(keep.sum())) - start[vals[keep]]] = order[keep]
        self.idx, self.rev = backend.asarray(idx), backend.asarray(rev)

    def forward(self, x):
        """(n_in, batch) -> (R, P, batch)."""
        xp = self.backend.xp
        xz = xp.concatenate([x, xp.zeros((1, x.shape[1]), dtype=x.dtype)])
        return xz[self.idx]

    def backward(self, dout):
        """(R, P, batch) -> (n_in, batch)."""
        xp = self.backend.xp
        B = dout.shape[-1]
        dz = xp.concatenate([dout.reshape(-1, B), xp.zeros((1, B), dtype=dout.dtype)])
        if self.rev.shape[1] == 1:                  # each input read at most once
            return dz[self.rev[:, 0]]
        return xp.ascontiguousarray(dz[self.rev].sum(axis=1))


class LogicConv2d:
    """Logic-tree convolution: each of ``out_channels`` kernels is a depth-``tree_depth`` tree of
    ``arity``-input learned gates over arity**tree_depth cells of the receptive field, shared
    over positions (see the module docstring for the formulas).

    Leaves: each tree reads ``tree_channels`` input channels (CDLGN: 2; None = any channel), drawn
    within the tree's channel group when ``channel_groups`` = g splits the input and output
    channels into g aligned contiguous groups. With ``tree_channels`` channels, leaf m uses
    channel m mod tree_channels (so every first-level gate mixes the channels when
    tree_channels = arity) and its cell is drawn without replacement within that channel while
    cells last. ``tree_channels`` is capped at the channels of a group.
    ``param``, ``estimator``, ``init``, ``sigma``, ``shift``, ``init_target``, ``gumbel``: as
    for LogicLayer, applied to every tree gate; ``grad_factor`` scales the gradient w.r.t. the layer input.
    """

    def __init__(self, in_channels, out_channels, in_size, receptive_field=3, tree_depth=3,
                 stride=1, padding=1, arity=2, param="iwp", estimator="sin", init="residual",
                 tree_channels=2, channel_groups=None, grad_factor=1.0, sigma=None, shift=None,
                 init_target="a", gumbel=None, pool=None):
        self.in_channels = check_int("in_channels", in_channels, 1)
        self.out_channels = check_int("out_channels", out_channels, 1)
        self.in_size = _size2("in_size", in_size)
        self.receptive_field = check_int("receptive_field", receptive_field, 1)
        self.tree_depth = check_int("tree_depth", tree_depth, 1)
        self.stride = check_int("stride", stride, 1)
        self.padding = check_int("padding", padding, 0, receptive_field - 1)
        self.arity = check_int("arity", arity, 1, ARITY_TREE_MAX)
        self.tree_channels = None if tree_channels is None else check_int("tree_channels",
                                                                           tree_channels, 1)
        self.channel_groups = None if channel_groups is None else check_int("channel_groups",
                                                                             channel_groups, 1)
        g = self.channel_groups or 1
        if in_channels % g or out_channels % g:
            raise ValueError(f"channel_groups: {g} must divide in_channels ({in_channels}) and "
                             f"out_channels ({out_channels})")
        self.conv_size = _out_size(self.in_size, receptive_field, stride, padding, "LogicConv2d")
        self.pool = None if pool is None else check_int("pool", pool, 1)
        self.pooling = None if pool is None else OrPool2d(out_channels, self.conv_size, pool, pool)
        self.out_size = self.conv_size if pool is None else self.pooling.out_size
        self.fused = pool is not None       # training runs the fused tree + pool kernels
        self.in_dim = in_channels * self.in_size[0] * self.in_size[1]
        self.out_dim = out_channels * self.out_size[0] * self.out_size[1]
        self.n_leaves = arity ** tree_depth
        cols = in_channels * receptive_field ** 2
        widths = [out_channels * arity ** (tree_depth - l) for l in range(tree_depth + 1)]
        kw = dict(arity=arity, param=param, estimator=estimator, init=init, sigma=sigma,
                  shift=shift, init_target=init_target, gumbel=gumbel)
        self.levels = [LogicLayer(cols if l == 0 else widths[l], widths[l + 1],
                                  grad_factor=grad_factor if l == 0 else 1.0, **kw)
                       for l in range(tree_depth)]
        self.grad_factor = self.levels[0].grad_factor
        self.leaves = self.weights = self.grad = self.backend = None

    # shape and size --------------------------------------------------------------------------

    @property
    def in_shape(self):
        return (self.in_channels, *self.in_size)

    @property
    def out_shape(self):
        return (self.out_channels, *self.out_size)

    @property
    def positions(self):
        """Conv output positions Ho * Wo (before the pooling)."""
        return self.conv_size[0] * self.conv_size[1]

    @property
    def n_params(self):
        return sum(level.n_params for level in self.levels)

    @property
    def gates_per_tree(self):
        return sum(self.arity ** l for l in range(self.tree_depth))

    @property
    def num_gates(self):
        """Gates of the unrolled circuit: out_channels * gates_per_tree * positions (+ the OR
        gates of the pooling)."""
        pool = 0 if self.pooling is None else self.pooling.num_gates
        return self.out_channels * self.gates_per_tree * self.positions + pool

    def config(self):
        lv = self.levels[0]
        return dict(type="LogicConv2d", in_channels=self.in_channels,
                    out_channels=self.out_channels, in_size=list(self.in_size),
                    receptive_field=self.receptive_field, tree_depth=self.tree_depth,
                    stride=self.stride, padding=self.padding, arity=self.arity, param=lv.param,
                    estimator=lv.estimator, init=lv.init, tree_channels=self.tree_channels,
                    channel_groups=self.channel_groups, grad_factor=self.grad_factor,
                    sigma=lv.sigma, shift=lv.shift, init_target=lv.init_target,
                    gumbel=lv.gumbel, pool=self.pool)

    # wiring ----------------------------------------------------------------------------------

    @property
    def connections(self):
        """The layer's wiring, what ``bind`` takes back (checkpoints store it): the leaves."""
        return self.leaves

    def draw_leaves(self, rng):
        """(out_channels, arity**depth, 3) int32 leaf cells (channel, dh, dw) drawn from rng."""
        C, O, K, L = self.in_channels, self.out_channels, self.receptive_field, self.n_leaves
        g = self.channel_groups or 1
        cin, cout = C // g, O // g
        leaves = np.empty((O, L, 3), dtype=np.int32)
        for o in range(O):
            base = (o // cout) * cin
            if self.tree_channels is None:          # any (channel, cell) of the group
                cells = rng.choice(cin * K * K, size=L, replace=L > cin * K * K)
                ch, pos = base + cells // (K * K), cells % (K * K)
            else:
                chans = base + rng.choice(cin, size=min(self.tree_channels, cin), replace=False)
                ch, pos = chans[np.arange(L) % len(chans)], np.empty(L, dtype=np.int64)
                for i in range(len(chans)):
                    m = np.arange(i, L, len(chans))
                    pos[m] = rng.choice(K * K, size=len(m), replace=len(m) > K * K)
            leaves[o] = np.stack([ch, pos // K, pos % K], axis=1)
        return leaves

    def level_connections(self, leaves):
        """Per level (arity, gates) int32: level 0 reads im2col rows, level l the nodes of l-1."""
        a, K, O = self.arity, self.receptive_field, self.out_channels
        rows = (leaves[..., 0] * K + leaves[..., 1]) * K + leaves[..., 2]       # (O, L)
        conns = [rows.reshape(O, -1, a).transpose(2, 0, 1).reshape(a, -1)]
        for level in self.levels[1:]:
            conns.append(np.arange(level.in_dim).reshape(-1, a).T)
        return [np.ascontiguousarray(c, dtype=np.int32) for c in conns]

    def build(self, rng, backend, weights, grad):
        """Draw the leaves, then each level's initial parameters, into the flat views."""
        leaves = self.draw_leaves(rng)
        views = self._split(weights)
        for level, w in zip(self.levels, views):
            w[...] = backend.asarray(level.initial_weights(rng), dtype=w.dtype)
        self.bind(backend, weights, grad, leaves)

    def bind(self, backend, weights, grad, leaves):
        """Attach flat parameter/gradient views (n_params,) and the leaves (O, L, 3)."""
        leaves = np.asarray(leaves)
        K = self.receptive_field
        if (leaves.shape != (self.out_channels, self.n_leaves, 3) or leaves.min() < 0
                or leaves[..., 0].max() >= self.in_channels or leaves[..., 1:].max() >= K):
            raise ValueError(f"leaves: expected (channel < {self.in_channels}, dh < {K}, dw < {K})"
                             f" of shape ({self.out_channels}, {self.n_leaves}, 3)")
        self.backend, self.weights, self.grad = backend, weights, grad
        self.leaves = leaves.astype(np.int32)
        for level, w, g, c in zip(self.levels, self._split(weights), self._split(grad),
                                  self.level_connections(self.leaves)):
            level.bind(backend, w, g, c)
        idx = window_index(self.in_channels, self.in_size, K, self.stride, self.padding)
        self.gather = RowGather(idx, self.in_dim, backend)
        if self.pooling is not None:
            self.pooling.backend = backend
            self._geom = np.array([*self.in_size, self.stride, self.padding, *self.conv_size,
                                   self.pool, self.pool, *self.out_size], dtype=np.int64)
            self._leaves_dev = backend.asarray(self.leaves)
        self._saved = None

    def _split(self, flat):
        views, off = [], 0
        for level in self.levels:
            views.append(flat[off:off + level.n_params].reshape(level.out_dim,
                                                                level.n_params_per_gate))
            off += level.n_params
        return views

    # forward and backward --------------------------------------------------------------------

    def forward(self, x, train=True):
        """(C*H*W, batch) -> (O*Ho*Wo, batch): im2col gather, then the tree levels (then the
        OR pooling). Fused (training with a pool): ``tree_pool_forward`` reads the receptive
        fields from x and keeps only x, the tables and the pooling's arg-max."""
        B = check_rows("x", x, self.in_dim).shape[1]
        self._saved = None
        if train and self.fused:
            return self._fused_forward(x)
        h = self.gather.forward(x).reshape(-1, self.positions * B)
        for level in self.levels:
            h = level.forward(h, train)
        h = h.reshape(self.out_channels * self.positions, B)
        return h if self.pooling is None else self.pooling.forward(h, train)

    def _tree_tables(self, dtype):
        """(O, gates_per_tree, 2**arity): every level's relaxed table, per tree in heap order."""
        xp, O = self.backend.xp, self.out_channels
        return xp.ascontiguousarray(xp.concatenate(
            [level.step_state(dtype).reshape(O, -1, 2 ** self.arity) for level in self.levels],
            axis=1))

    def _fused_forward(self, x):
        xp = self.backend.xp
        tables = self._tree_tables(x.dtype)
        y = xp.empty((self.out_dim, x.shape[1]), dtype=x.dtype)
        arg = xp.empty((self.out_dim, x.shape[1]), dtype=xp.uint8)
        self.backend.kernels.tree_pool_forward(x, self._leaves_dev, tables, self._geom, y, arg)
        self._saved = (x, tables, arg)
        return y

    def _fused_backward(self, dy, need_dx):
        xp = self.backend.xp
        x, tables, arg = self._saved
        check_rows("dy", dy, self.out_dim, x.shape[1], x.dtype)
        dtables, dx = xp.empty_like(tables), xp.empty_like(x)
        self.backend.kernels.tree_pool_backward(x, self._leaves_dev, tables, self._geom, dy, arg,
                                                dtables, dx)
        off = 0
        for level in self.levels:
            per = level.out_dim // self.out_channels
            d = xp.ascontiguousarray(dtables[:, off:off + per]).reshape(level.out_dim, -1)
            level.grad += level.table_backward(d)
            off += per
        if not need_dx:
            return None
        return dx if self.grad_factor == 1.0 else dx * self.grad_factor

    def backward(self, dy, need_dx=True):
        """Accumulates every level's parameter gradient; returns dL/dx (C*H*W, batch)."""
        if self._saved is not None:
            return self._fused_backward(dy, need_dx)
        B = check_rows("dy", dy, self.out_dim).shape[1]
        if self.pooling is not None:
            dy = self.pooling.backward(dy)
        d = dy.reshape(self.out_channels, self.positions * B)
        for i in range(self.tree_depth - 1, -1, -1):
            d = self.levels[i].backward(d, need_dx=need_dx or i > 0)
        if not need_dx:
            return None
        return self.gather.backward(d.reshape(-1, self.positions, B))

    # circuit ---------------------------------------------------------------------------------

    def circuit_layers(self):
        """The layer unrolled over positions: circuit layers [(conn (a, G), tables (G, 2**a))].

        Level l gate (g, p) has index g*P + p; level 0 reads the previous flat outputs, level l
        reads (conn_l[k, g], p) of level l-1. A padding leaf is the constant 0: it is folded into
        the gate's table (rows with that input set copy the rows with it clear) and the input
        points at row 0.
        """
        bk, P = self.backend, self.positions
        idx = bk.to_host(self.gather.idx)
        out = []
        for l, level in enumerate(self.levels):
            conn = bk.to_host(level.connections).astype(np.int64)
            tables = np.repeat(bk.to_host(level.discrete_table()).astype(np.uint8), P, axis=0)
            if l == 0:
                src = idx[conn].reshape(self.arity, -1)                       # (a, G*P)
                tables = fold_constant_zero(tables, src == self.in_dim)
                src[src == self.in_dim] = 0
            else:
                src = (conn[:, :, None] * P + np.arange(P)).reshape(self.arity, -1)
            out.append((src, tables))
        return out if self.pooling is None else out + self.pooling.circuit_layers()

    def __repr__(self):
        return (f"LogicConv2d({self.in_channels}, {self.out_channels}, in_size={self.in_size}, "
                f"receptive_field={self.receptive_field}, tree_depth={self.tree_depth}, "
                f"stride={self.stride}, padding={self.padding}, arity={self.arity}, "
                f"param={self.levels[0].param!r}" + ("" if self.pool is None else
                                                     f", pool={self.pool}") + ")")


def fold_constant_zero(tables, zero):
    """tables (G, 2**n) with inputs ``zero`` (n, G) bool fixed to 0: t'[g, r] = t[g, r & ~bit_k]."""
    n = zero.shape[0]
    tables = tables.copy()
    rows = np.arange(tables.shape[1])
    for k in range(n):
        cleared = rows & ~(1 << (n - 1 - k))
        tables[zero[k]] = tables[zero[k]][:, cleared]
    return tables


def or_tree(conn, max_arity=6):
    """Circuit layers computing y[g] = OR of the inputs conn[:, g] (conn (m, G)) with gates of at
    most ``max_arity`` inputs: while m > max_arity, n = ceil(m / max_arity) ORs of a = ceil(m / n)
    inputs each (gate j*G + g reads rows j*a .. j*a+a-1, the last group padded by repeating rows:
    OR is idempotent), then the OR of those n."""
    layers = []
    while conn.shape[0] > max_arity:
        m, G = conn.shape
        n = -(-m // max_arity)
        a = -(-m // n)
        groups = np.concatenate([conn, conn[:n * a - m]]).reshape(n, a, G)
        layers.append((groups.transpose(1, 0, 2).reshape(a, n * G),
                       np.repeat(gates.or_table(a)[None, :], n * G, axis=0)))
        conn = np.arange(n * G).reshape(n, G)
    layers.append((conn, np.repeat(gates.or_table(conn.shape[0])[None, :], conn.shape[1], axis=0)))
    return layers


class OrPool2d:
    """OR pooling over ``kernel`` x ``kernel`` windows (no padding):
    y[(c, i, j), s] = max_{dh, dw} x[c, i*stride + dh, j*stride + dw, s]. Relaxed: max t-conorm,
    gradient to the first arg-max; discretized: OR of the 0/1 inputs (the same max)."""

    n_params = 0

    def __init__(self, channels, in_size, kernel=2, stride=2):
        self.channels = check_int("channels", channels, 1)
        self.in_size = _size2("in_size", in_size)
        self.kernel = check_int("kernel", kernel, 1)
        self.stride = check_int("stride", stride, 1)
        self.out_size = _out_size(self.in_size, kernel, stride, 0, "OrPool2d")
        self.in_dim = channels * self.in_size[0] * self.in_size[1]
        self.out_dim = channels * self.out_size[0] * self.out_size[1]
        self.backend = self.gather = None
        self._saved = None

    @property
    def in_shape(self):
        return (self.channels, *self.in_size)

    @property
    def out_shape(self):
        return (self.channels, *self.out_size)

    @property
    def num_gates(self):
        """OR gates of the unrolled circuit: one per output (arity kernel**2 <= 6), or the
        gates of ``or_tree`` per output for larger windows."""
        m, per = self.kernel ** 2, 1
        while m > 6:
            m = -(-m // 6)
            per += m
        return per * self.out_dim

    def config(self):
        return dict(type="OrPool2d", channels=self.channels, in_size=list(self.in_size),
                    kernel=self.kernel, stride=self.stride)

    def _index(self):
        """(out_dim, kernel**2) input rows of each window: the im2col index regrouped per output."""
        k2 = self.kernel ** 2
        idx = window_index(self.channels, self.in_size, self.kernel, self.stride, 0)
        return idx.reshape(self.channels, k2, -1).transpose(0, 2, 1).reshape(-1, k2)

    def _ensure(self):
        """The window gather on the current backend (built on first use, and again after a move)."""
        if self.gather is None or self.gather.backend is not self.backend:
            self.gather = RowGather(self._index(), self.in_dim, self.backend)

    def forward(self, x, train=True):
        """(C*H*W, batch) -> (C*Ho*Wo, batch): window max; keeps the arg-max for backward."""
        xp = self.backend.xp
        check_rows("x", x, self.in_dim)
        self._ensure()
        windows = self.gather.forward(x)                          # (out, k*k, batch)
        y = xp.ascontiguousarray(windows[:, 0])
        arg = xp.zeros(y.shape, dtype=xp.uint8) if train else None
        for j in range(1, self.kernel ** 2):          # contiguous rows, no strided argmax
            w = windows[:, j]
            if train:
                arg[w > y] = j                                    # strict: the first arg-max wins
            y = xp.maximum(y, w)
        self._saved = arg
        return y

    def backward(self, dy, need_dx=True):
        """dx[i, s] = sum of dy over the windows whose first arg-max at s is input i."""
        if self._saved is None:
            raise RuntimeError("backward: call forward in train mode first")
        if not need_dx:
            return None
        xp = self.backend.xp
        check_rows("dy", dy, self.out_dim, self._saved.shape[1])
        hit = self._saved[:, None, :] == xp.arange(self.kernel ** 2, dtype=xp.uint8)[None, :, None]
        return self.gather.backward(hit * dy[:, None, :])

    def circuit_layers(self):
        """OR gates over each window: one layer of arity kernel**2, or a tree of ORs when the
        window exceeds the circuit's 6-input gates (see ``or_tree``)."""
        return or_tree(np.ascontiguousarray(self._index().T))

    def __repr__(self):
        return (f"OrPool2d({self.channels}, in_size={self.in_size}, kernel={self.kernel}, "
                f"stride={self.stride})")


# ready architectures ---------------------------------------------------------------------------

#: LogicTreeNet configurations (paper-notes section 3.2). "cdlgn-m" is the CIFAR-10 M model of
#: Petersen et al. 2024 (k = 256); "cdlgn-tiny" is the same topology at k = 8, for CPU demos, and
#: "cdlgn-digits" two blocks for 8x8 images (neither is a paper model). "cdlgn-mnist" is a
#: LogicTreeNet for MNIST-size digits at the 20 x 20 centre crop (three blocks, 20 -> 10 -> 5 -> 2),
#: 111K gates, under the 147K of the published LogicTreeNet-S (``pylgn info`` prints the count).
#: blocks: conv channels per block in units of k; dense: widths in units of k.
ARCHS = {
    "cdlgn-m": dict(k=256, in_size=32, blocks=(1, 4, 16, 32), dense=(1280, 640, 320), tau=40.0),
    "cdlgn-tiny": dict(k=8, in_size=32, blocks=(1, 4, 16, 32), dense=(1280, 640, 320), tau=10.0),
    "cdlgn-digits": dict(k=32, in_size=8, blocks=(1, 2), dense=(60, 30), tau=5.0),
    "cdlgn-mnist": dict(k=16, in_size=20, blocks=(1, 3, 9), dense=(160, 80), tau=4.0),
    # MNIST LogicTreeNet-S / -M sizes (147K / 566K gates published): the cdlgn-mnist topology
    # widened to k = 20 (139K gates) and k = 80 (554K), each with its own recipe (AdamW, cosine
    # decay), so `pylgn train --dataset mnist --arch cdlgn-mnist-s` needs no other flag.
    "cdlgn-mnist-s": dict(k=20, fuse=True, in_size=20, blocks=(1, 3, 9), dense=(160, 80), tau=4.0,
                          lr=0.05, lr_schedule="cosine", weight_decay=0.0005, steps=60000),
    "cdlgn-mnist-m": dict(k=80, fuse=True, in_size=20, blocks=(1, 3, 9), dense=(160, 80), tau=8.0,
                          lr=0.02, lr_schedule="cosine", weight_decay=0.0005, steps=200000),
}


def cdlgn(name="cdlgn-m", in_channels=9, classes=10, in_size=None, depth_scale=1, k=None,
          tau=None, head_scale=1, tree_channels=2, channel_groups=None, fuse=None,
          **gate_kwargs):
    """Layer list of a LogicTreeNet: per block, ``depth_scale`` LogicConv2d (3x3, depth-3 trees,
    padding 1; the first changes the channels) then a 2x2 stride-2 OrPool2d; then an implicit
    flatten, dense LogicLayers of widths ``dense`` * k (the last times ``head_scale``, e.g. 10 for
    CIFAR-100) and GroupSum(classes, tau). ``fuse`` (default: the architecture's ``fuse``,
    else False): each block's last LogicConv2d carries the pooling (``pool=2``) and trains with
    the fused tree + pool kernels instead of a separate OrPool2d. ``gate_kwargs`` (param,
    estimator, init, ...) go to
    every logic layer; ``channel_groups`` restricts every conv layer but the first (which reads
    the raw input channels). Input: (batch, in_channels, in_size, in_size) flattened channel-major.
    """
    if name not in ARCHS:
        raise ValueError(f"name: expected one of {tuple(ARCHS)}, got {name!r}")
    spec = ARCHS[name]
    k = spec["k"] if k is None else check_int("k", k, 1)
    size = _size2("in_size", spec["in_size"] if in_size is None else in_size)
    depth_scale = check_int("depth_scale", depth_scale, 1)
    check_int("head_scale", head_scale, 1)
    fuse = spec.get("fuse", False) if fuse is None else bool(fuse)
    layers, c = [], check_int("in_channels", in_channels, 1)
    for mult in spec["blocks"]:
        for rep in range(depth_scale):
            groups = channel_groups if layers else None
            pool = 2 if fuse and rep == depth_scale - 1 else None
            layers.append(LogicConv2d(c, mult * k, size, tree_channels=tree_channels,
                                      channel_groups=groups, pool=pool, **gate_kwargs))
            c, size = mult * k, layers[-1].out_size
        if not fuse:
            layers.append(OrPool2d(c, size))
            size = layers[-1].out_size
    widths = [w * k for w in spec["dense"]]
    widths[-1] *= head_scale
    if widths[-1] % classes:
        raise ValueError(f"classes: {classes} must divide the last width {widths[-1]} "
                         f"(raise head_scale or k)")
    width = layers[-1].out_dim
    for w in widths:
        layers.append(LogicLayer(width, w, **gate_kwargs))
        width = w
    layers.append(GroupSum(classes, spec["tau"] if tau is None else tau))
    return layers


def build_arch(name, **kwargs):
    """Layer list of the architecture ``name`` in ARCHS (keyword arguments as for ``cdlgn``)."""
    return cdlgn(name, **kwargs)


def gate_count(layers):
    """Gates of the unrolled circuit: dict(conv=tree gates x positions, pool=OR gates,
    dense=LogicLayer gates, total)."""
    count = dict(conv=0, pool=0, dense=0)
    for layer in layers:
        if isinstance(layer, LogicConv2d):
            pool = 0 if layer.pooling is None else layer.pooling.num_gates
            count["conv"] += layer.num_gates - pool
            count["pool"] += pool
        elif isinstance(layer, OrPool2d):
            count["pool"] += layer.num_gates
        elif isinstance(layer, LogicLayer):
            count["dense"] += layer.out_dim
    count["total"] = sum(count.values())
    return count


def _layer_memory(layer, width, batch, size):
    """(bytes kept for backward, peak transient bytes in its backward) of one layer; ``size`` is
    the float size, the pooling arg-max is one byte per output."""
    if isinstance(layer, LogicConv2d) and layer.fused:     # the output, its arg-max; the
        parts = min(layer.out_channels, DX_PARTS)           # backward's partial dx and tables
        tables = layer.out_channels * layer.gates_per_tree * 2 ** layer.arity
        return (layer.out_dim * batch * (size + 1),
                ((parts + 1) * layer.in_dim * batch + 2 * tables) * size)
    if isinstance(layer, LogicConv2d):
        P, cols = layer.positions, layer.levels[0].in_dim
        kept = (cols + sum(l.out_dim for l in layer.levels)) * P * batch
        m = -(-layer.receptive_field // layer.stride) ** 2
        conv = kept * size, (layer.in_dim * (m + 1) + 2 * cols * P) * batch * size
        if layer.pooling is None:
            return conv
        pool = _layer_memory(layer.pooling, width, batch, size)
        return conv[0] + pool[0], max(conv[1], pool[1])
    if isinstance(layer, OrPool2d):
        k2, m = layer.kernel ** 2, -(-layer.kernel // layer.stride) ** 2
        return (layer.out_dim * batch * (size + 1),
                (layer.in_dim * (m + 1) + 2 * layer.out_dim * k2) * batch * size)
    out = layer.k if isinstance(layer, GroupSum) else layer.out_dim
    if getattr(layer, "learned", False):            # + slot rows xs and the route; gs and corr
        S, C = layer.arity * out, layer.candidates_count
        return ((out + S) * batch + S * C) * size, ((width + out + S) * batch + S * C) * size
    return out * batch * size, (width + out) * batch * size


def memory_estimate(layers, batch, dtype=np.float32):
    """Training memory in bytes (array data only, no allocator or kernel scratch overhead):
    params = 4 x parameters (weights, gradients, Adam m and v); activations = the input plus what
    every layer keeps for backward (its output, and for conv the im2col leaves and tree levels);
    workspace = the largest transient of one layer's backward. Returns dict with a ``total``."""
    size = np.dtype(dtype).itemsize
    batch = check_int("batch", batch, 1)
    width = layers[0].in_dim
    kept, peak = width * batch * size, 0
    for layer in layers:
        k, t = _layer_memory(layer, width, batch, size)
        kept, peak = kept + k, max(peak, t)
        width = layer.k if isinstance(layer, GroupSum) else layer.out_dim
    est = dict(params=4 * size * sum(getattr(l, "n_params", 0) for l in layers),
               activations=int(kept), workspace=int(peak))
    est["total"] = sum(est.values())
    return est
