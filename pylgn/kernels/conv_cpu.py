"""Fused logic-tree convolution + OR pooling, CPU (numba). Re-exported by pylgn.kernels.cpu
(the CUDA twin lives in pylgn.kernels.conv_cuda, re-exported by pylgn.kernels.cuda).

One tree per output channel o, a complete ``n``-ary tree of depth d in heap order: its
L = n**d leaves are buffer rows 0..L-1, gate g (0 <= g < G, level by level from the leaves up,
G = (L - 1) / (n - 1), or d for n = 1) reads rows n*g .. n*g + n-1 and writes row L + g; the
root is row L + G - 1. Leaf m of tree o is the input cell ``leaves[o, m] = (c, dh, dw)``.

    leaf m at conv position (i, j):  x[c*H*W + h*W + w, s],  h = i*stride + dh - pad,
                                     w = j*stride + dw - pad  (0 outside the image)
    node L + g = multilinear(tables[o, g]; rows n*g + k)       (pylgn.kernels.cpu formula)
    y[(o, pi, pj), s] = max_{u, v < pk} root(o, pi*ps + u, pj*ps + v, s)
    arg[(o, pi, pj), s] = u*pk + v of the first maximum      (windows past the conv map skipped)

``geom`` (int64): H, W, stride, pad, Ho, Wo, pk, ps, Hp, Wp. The forward keeps nothing but y
and the arg-max; the backward gathers, per window cell, the samples whose arg-max it is,
recomputes their tree there (once per sample), pushes dy down the tree and scatters the leaf
gradients into dx. Deterministic: dtables[o] is written by the one part owning o, and dx
is summed over a fixed number of parts (``DX_PARTS``, independent of the thread count) in a
fixed order. No float atomics.
"""
import numpy as np
from numba import njit

from .common import DX_PARTS
from .cpu import (_FM, _difference_table, _expand, _in_parallel, _multilinear, _per_arity,
                  _sums_last_inputs)


@njit(cache=True, fastmath=_FM, inline="always")
def _load_leaves(x, leaves, o, i, j, geom, buf):
    """buf[m, :] = the input row of leaf m of tree o at conv position (i, j), or 0 (padding)."""
    H, W, stride, pad = geom[0], geom[1], geom[2], geom[3]
    B = x.shape[1]
    for m in range(leaves.shape[1]):
        h = i * stride + leaves[o, m, 1] - pad
        w = j * stride + leaves[o, m, 2] - pad
        dst = buf[m]
        if 0 <= h < H and 0 <= w < W:
            src = x[(leaves[o, m, 0] * H + h) * W + w]
            for s in range(B):
                dst[s] = src[s]
        else:
            for s in range(B):
                dst[s] = 0.0


@njit(cache=True, fastmath=_FM, inline="always")
def _tree(buf, table_o, L, n, rows, t):
    """Every gate of one tree, leaves up: buf[L + g] = multilinear(table_o[g]; buf[n*g + k])."""
    for g in range(table_o.shape[0]):
        for k in range(n):
            rows[k] = n * g + k
        _multilinear(table_o[g], n, buf, rows, t, buf[L + g])


@njit(cache=True, fastmath=_FM, inline="always")
def _forward_trees(x, leaves, tables, geom, y, arg, o0, o1, n):
    Ho, Wo, pk, ps, Hp, Wp = geom[4], geom[5], geom[6], geom[7], geom[8], geom[9]
    B, L, G = x.shape[1], leaves.shape[1], tables.shape[1]
    buf = np.empty((L + G, B), dtype=y.dtype)
    t = np.empty((max(1, tables.shape[2] >> 2), B), dtype=y.dtype)
    rows = np.empty(n, dtype=np.int64)
    root = buf[L + G - 1]
    for o in range(o0, o1):
        for pi in range(Hp):
            for pj in range(Wp):
                q = (o * Hp + pi) * Wp + pj
                yq, aq = y[q], arg[q]
                first = True
                for u in range(pk):
                    for v in range(pk):
                        i, j = pi * ps + u, pj * ps + v
                        if i >= Ho or j >= Wo:
                            continue
                        _load_leaves(x, leaves, o, i, j, geom, buf)
                        _tree(buf, tables[o], L, n, rows, t)
                        cell = u * pk + v
                        for s in range(B):
                            if first or root[s] > yq[s]:
                                yq[s] = root[s]
                                aq[s] = cell
                        first = False


@_per_arity
def _forward_kernel(n):
    @njit(cache=True, nogil=True, fastmath=_FM)
    def kernel(x, leaves, tables, geom, y, arg, o0, o1):
        _forward_trees(x, leaves, tables, geom, y, arg, o0, o1, n)
    return kernel


def _arity(tables):
    n = int(tables.shape[2]).bit_length() - 1
    if tables.shape[2] != 1 << n:
        raise ValueError(f"tables: expected (out_channels, gates, 2**arity), got {tables.shape}")
    return n


def tree_pool_forward(x, leaves, tables, geom, y, arg):
    """Fused relaxed forward (module docstring): y (O*Hp*Wp, B) the OR-pooled tree roots,
    arg (O*Hp*Wp, B) uint8 the window cell of each first maximum."""
    _in_parallel(_forward_kernel(_arity(tables)), leaves.shape[0], x, leaves, tables, geom, y,
                 arg)


@njit(cache=True, fastmath=_FM, inline="always")
def _gate2_backward(p, q, dn, w, dtable_g, dp, dq):
    """Two-input gate: dtable_g += sum_s dn [(1-p)(1-q), (1-p)q, p(1-q), pq];
    dp = dn (w2 - w0 + q c), dq = dn (w1 - w0 + p c), c = w3 - w2 - w1 + w0."""
    c = w[3] - w[2] - w[1] + w[0]
    c1, c2 = w[1] - w[0], w[2] - w[0]
    a0 = a1 = a2 = a3 = dn[0] * 0
    for s in range(dn.shape[0]):
        v = dn[s]
        vp = v * p[s]
        vn = v - vp
        a3 += vp * q[s]
        a2 += vp - vp * q[s]
        a1 += vn * q[s]
        a0 += vn - vn * q[s]
        dp[s] = v * (c2 + q[s] * c)
        dq[s] = v * (c1 + p[s] * c)
    dtable_g[0] += a0
    dtable_g[1] += a1
    dtable_g[2] += a2
    dtable_g[3] += a3


@njit(cache=True, fastmath=_FM, inline="always")
def _gate_backward(buf, dbuf, table_g, dtable_g, g, L, n, rows, other, e, t, d, f):
    """dtable_g[r] += sum_s dnode[s] prod_k (x_k or 1 - x_k); child row n*g + k of the gate
    gets dnode * (multilinear over the other inputs of table[b_k = 1] - table[b_k = 0])."""
    dn = dbuf[L + g]
    B = dn.shape[0]
    if n == 2:                                   # one pass: the four sums and both children
        _gate2_backward(buf[2 * g], buf[2 * g + 1], dn, table_g, dtable_g, dbuf[2 * g],
                        dbuf[2 * g + 1])
        return
    for k in range(n):
        rows[k] = n * g + k
    if n <= 2:
        _sums_last_inputs(dn, buf, rows, n, dtable_g, 0)
    else:
        _expand(dn, buf, rows, n - 2, e)
        for jj in range(1 << (n - 2)):
            _sums_last_inputs(e[jj], buf, rows, n, dtable_g, 4 * jj)
    for k in range(n):
        _difference_table(table_g, n, k, d)
        m = 0
        for jj in range(n):
            if jj != k:
                other[m] = rows[jj]
                m += 1
        _multilinear(d, n - 1, buf, other, t, f)
        dst = dbuf[rows[k]]                 # each child row is read by this gate only
        for s in range(B):
            dst[s] = dn[s] * f[s]


@njit(cache=True, fastmath=_FM, inline="always")
def _gather_leaves(x, leaves, o, i, j, geom, idx, buf):
    """buf[m, t] = the input of leaf m of tree o at conv position (i, j) for sample idx[t]."""
    H, W, stride, pad = geom[0], geom[1], geom[2], geom[3]
    for m in range(leaves.shape[1]):
        h = i * stride + leaves[o, m, 1] - pad
        w = j * stride + leaves[o, m, 2] - pad
        dst = buf[m]
        if 0 <= h < H and 0 <= w < W:
            src = x[(leaves[o, m, 0] * H + h) * W + w]
            for t in range(dst.shape[0]):
                dst[t] = src[idx[t]]
        else:
            for t in range(dst.shape[0]):
                dst[t] = 0.0


@njit(cache=True, fastmath=_FM, inline="always")
def _scatter_leaves(dbuf, leaves, o, i, j, geom, idx, dx):
    """dx[input row of leaf m, idx[t]] += dbuf[m, t] for the leaves inside the image."""
    H, W, stride, pad = geom[0], geom[1], geom[2], geom[3]
    for m in range(leaves.shape[1]):
        h = i * stride + leaves[o, m, 1] - pad
        w = j * stride + leaves[o, m, 2] - pad
        if 0 <= h < H and 0 <= w < W:
            dst = dx[(leaves[o, m, 0] * H + h) * W + w]
            src = dbuf[m]
            for t in range(src.shape[0]):
                dst[idx[t]] += src[t]


@njit(cache=True, fastmath=_FM, inline="always")
def _backward_trees(x, leaves, tables, geom, dy, arg, dtables, dx, o0, o1, n):
    """Per pooled output and window cell: the samples whose arg-max is that cell are gathered
    into contiguous scratch columns (each sample's tree is recomputed once, at its arg-max),
    their tree is recomputed and back-propagated, and the leaf gradients scattered into dx."""
    Ho, Wo, pk, ps, Hp, Wp = geom[4], geom[5], geom[6], geom[7], geom[8], geom[9]
    B, L, G = x.shape[1], leaves.shape[1], tables.shape[1]
    N = L + G
    flat = np.empty(N * B, dtype=dx.dtype)
    dflat = np.empty(N * B, dtype=dx.dtype)
    t = np.empty((max(1, tables.shape[2] >> 2), B), dtype=dx.dtype)
    E = max(1, tables.shape[2] >> 2)
    eflat = np.empty(E * B, dtype=dx.dtype)
    f = np.empty(B, dtype=dx.dtype)
    d = np.empty(max(1, tables.shape[2] >> 1), dtype=tables.dtype)
    rows = np.empty(n, dtype=np.int64)
    other = np.empty(max(1, n - 1), dtype=np.int64)
    idx = np.empty(B, dtype=np.int64)
    for o in range(o0, o1):
        for pi in range(Hp):
            for pj in range(Wp):
                q = (o * Hp + pi) * Wp + pj
                for u in range(pk):
                    for v in range(pk):
                        i, j = pi * ps + u, pj * ps + v
                        if i >= Ho or j >= Wo:
                            continue
                        cell = u * pk + v
                        cnt = 0
                        for s in range(B):
                            if arg[q, s] == cell:
                                idx[cnt] = s
                                cnt += 1
                        if cnt == 0:
                            continue
                        buf = flat[:N * cnt].reshape(N, cnt)
                        dbuf = dflat[:N * cnt].reshape(N, cnt)
                        e = eflat[:E * cnt].reshape(E, cnt)
                        for c in range(cnt):
                            dbuf[N - 1, c] = dy[q, idx[c]]
                        _gather_leaves(x, leaves, o, i, j, geom, idx, buf)
                        _tree(buf, tables[o], L, n, rows, t)
                        for g in range(G - 1, -1, -1):
                            _gate_backward(buf, dbuf, tables[o, g], dtables[o, g], g, L, n,
                                           rows, other, e, t, d, f[:cnt])
                        _scatter_leaves(dbuf, leaves, o, i, j, geom, idx, dx)


@_per_arity
def _backward_kernel(n):
    @njit(cache=True, nogil=True, fastmath=_FM)
    def kernel(x, leaves, tables, geom, dy, arg, dtables, dx, o0, o1):
        _backward_trees(x, leaves, tables, geom, dy, arg, dtables, dx, o0, o1, n)
    return kernel


def tree_pool_backward(x, leaves, tables, geom, dy, arg, dtables, dx):
    """Fused backward of ``tree_pool_forward``: dtables (O, G, 2**n) = dL/dtables (overwritten),
    dx (C*H*W, B) = dL/dx (overwritten). The output channels split into min(O, DX_PARTS) fixed
    contiguous parts, each with its own partial dx, summed in part order afterwards."""
    kernel = _backward_kernel(_arity(tables))
    O = leaves.shape[0]
    parts = min(O, DX_PARTS)
    bounds = [p * O // parts for p in range(parts + 1)]
    dtables.fill(0)
    partial = np.zeros((parts,) + dx.shape, dtype=dx.dtype)

    def run(p):
        kernel(x, leaves, tables, geom, dy, arg, dtables, partial[p], bounds[p], bounds[p + 1])

    _in_parallel(_parts_range, parts, run)
    dx[...] = partial[0]
    for p in range(1, parts):
        dx += partial[p]


def _parts_range(run, p0, p1):
    """Runs ``run(p)`` for the parts p0 <= p < p1 (the unit ``_in_parallel`` splits)."""
    for p in range(p0, p1):
        run(p)

