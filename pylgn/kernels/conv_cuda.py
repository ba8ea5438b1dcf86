"""Fused logic-tree convolution + OR pooling, CUDA (numba.cuda): the twin of
pylgn.kernels.conv_cpu (same names, argument order and formulas; see its docstring for the
heap-ordered trees and ``geom``). Re-exported by pylgn.kernels.cuda.

Forward: one thread per (output channel o, pooled position q, sample s) evaluates the tree at
each cell of its window from registers/local memory and keeps the first maximum.
Backward, without float atomics, in three fixed-order passes:
  1. one thread per (o, q) walks the samples, recomputes the tree at each sample's arg-max cell
     only, pushes dy down and writes the leaf gradients dleaf[(o, q, m), s] and its own partial
     dtables[o, q] (summed over its samples in order);
  2. one thread per table entry (o, g, r) sums the partials over q in order;
  3. one thread per (input row, sample) gathers dx through a reverse table of the
     (o, q, m, cell) slots whose leaf reads that row, keeping those whose cell is the arg-max.
The reverse table is built on the host from the leaves and ``geom`` (numpy, once per call).
"""
import numpy as np
from numba import cuda, from_dtype

from .cuda import BLOCK, MAX_BLOCKS, _dev, cuda_stream

_KERNELS = {}


def _cdiv(a, b):
    return -(-a // b)


def _grid(total):
    return min(_cdiv(max(1, total), BLOCK), MAX_BLOCKS)


def _kernels(n, L, G, dtype):
    """The three kernels compiled for arity n, L leaves, G gates per tree and ``dtype``."""
    key = (n, L, G, np.dtype(dtype))
    if key in _KERNELS:
        return _KERNELS[key]
    nt, R, N = from_dtype(np.dtype(dtype)), 1 << n, L + G

    @cuda.jit(device=True, inline=True)
    def leaf(x, leaves, geom, o, m, i, j, s):
        H, W = geom[0], geom[1]
        h = i * geom[2] + leaves[o, m, 1] - geom[3]
        w = j * geom[2] + leaves[o, m, 2] - geom[3]
        if 0 <= h < H and 0 <= w < W:
            return x[(leaves[o, m, 0] * H + h) * W + w, s]
        return x[0, s] * 0

    @cuda.jit(device=True, inline=True)
    def gate(table_g, buf, g, tmp):
        """multilinear(table_g; buf[n*g + k]) by lerps from the last input up."""
        for r in range(R):
            tmp[r] = table_g[r]
        width = R
        for k in range(n - 1, -1, -1):
            xk = buf[n * g + k]
            width >>= 1
            for r in range(width):
                tmp[r] = tmp[2 * r] + xk * (tmp[2 * r + 1] - tmp[2 * r])
        return tmp[0]

    @cuda.jit(device=True, inline=True)
    def tree(x, leaves, tables, geom, o, i, j, s, buf, tmp):
        for m in range(L):
            buf[m] = leaf(x, leaves, geom, o, m, i, j, s)
        for g in range(G):
            buf[L + g] = gate(tables[o, g], buf, g, tmp)
        return buf[N - 1]

    @cuda.jit
    def forward(x, leaves, tables, geom, y, arg):
        B, Ho, Wo, pk, ps = x.shape[1], geom[4], geom[5], geom[6], geom[7]
        Q = geom[8] * geom[9]
        buf = cuda.local.array(N, nt)
        tmp = cuda.local.array(R, nt)
        for t in range(cuda.grid(1), y.shape[0] * B, cuda.gridsize(1)):
            row, s = t // B, t % B
            o, q = row // Q, row % Q
            pi, pj = q // geom[9], q % geom[9]
            best, cell = x[0, s] * 0, 0
            first = True
            for u in range(pk):
                for v in range(pk):
                    i, j = pi * ps + u, pj * ps + v
                    if i < Ho and j < Wo:
                        root = tree(x, leaves, tables, geom, o, i, j, s, buf, tmp)
                        if first or root > best:
                            best, cell = root, u * pk + v
                        first = False
            y[row, s] = best
            arg[row, s] = cell

    @cuda.jit
    def backward_trees(x, leaves, tables, geom, dy, arg, dleaf, dpart):
        """Per (o, q): dleaf[(o*Q + q)*L + m, s] and dpart[o, q, g, r] = sum over samples."""
        B, pk, ps, Wp = x.shape[1], geom[6], geom[7], geom[9]
        Q = geom[8] * Wp
        buf = cuda.local.array(N, nt)
        dbuf = cuda.local.array(N, nt)
        tmp = cuda.local.array(R, nt)
        acc = cuda.local.array(G * R, nt)
        for row in range(cuda.grid(1), tables.shape[0] * Q, cuda.gridsize(1)):
            o, q = row // Q, row % Q
            pi, pj = q // Wp, q % Wp
            for e in range(G * R):
                acc[e] = 0
            for s in range(B):
                c = arg[row, s]
                tree(x, leaves, tables, geom, o, pi * ps + c // pk, pj * ps + c % pk, s, buf,
                     tmp)
                dbuf[N - 1] = dy[row, s]
                for g in range(G - 1, -1, -1):
                    dn = dbuf[L + g]
                    for r in range(R):                   # basis products of the gate's inputs
                        p = dn
                        for k in range(n):
                            xk = buf[n * g + k]
                            p *= xk if (r >> (n - 1 - k)) & 1 else 1 - xk
                        acc[g * R + r] += p
                    for k in range(n):                   # d/dx_k: table[b_k=1] - table[b_k=0]
                        bit = n - 1 - k
                        dk = dn * 0
                        for r in range(R):
                            if (r >> bit) & 1 == 0:
                                p = tables[o, g, r | (1 << bit)] - tables[o, g, r]
                                for kk in range(n):
                                    if kk != k:
                                        xk = buf[n * g + kk]
                                        p *= xk if (r >> (n - 1 - kk)) & 1 else 1 - xk
                                dk += p
                        dbuf[n * g + k] = dn * dk
                for m in range(L):
                    dleaf[row * L + m, s] = dbuf[m]
            for e in range(G * R):
                dpart[o, q, e // R, e % R] = acc[e]

    @cuda.jit
    def sum_parts(dpart, dtables):
        O, Q = dpart.shape[0], dpart.shape[1]
        for t in range(cuda.grid(1), O * G * R, cuda.gridsize(1)):
            o, e = t // (G * R), t % (G * R)
            total = dpart[o, 0, e // R, e % R]
            for q in range(1, Q):
                total += dpart[o, q, e // R, e % R]
            dtables[o, e // R, e % R] = total

    _KERNELS[key] = (forward, backward_trees, sum_parts)
    return _KERNELS[key]


@cuda.jit
def _gather_dx(dleaf, arg, rev_ptr, rev_slot, rev_row, rev_cell, dx):
    """dx[i, s] = sum over the slots of row i (in order) of dleaf[slot, s] where the slot's
    cell is the arg-max of its pooled output at s."""
    B = dx.shape[1]
    for t in range(cuda.grid(1), dx.shape[0] * B, cuda.gridsize(1)):
        i, s = t // B, t % B
        total = dleaf[0, s] * 0                  # (dx is not read: it may be uninitialised)
        for p in range(rev_ptr[i], rev_ptr[i + 1]):
            if arg[rev_row[p], s] == rev_cell[p]:
                total += dleaf[rev_slot[p], s]
        dx[i, s] = total


def reverse_slots(leaves, geom, n_in):
    """CSR over input rows of the slots (o, q, m, cell) whose leaf reads that row: rev_ptr
    (n_in + 1,), then per entry the dleaf row (o*Q + q)*L + m, the pooled row o*Q + q and the
    window cell; entries of a row in increasing slot order (a fixed summation order)."""
    H, W, stride, pad, Ho, Wo, pk, ps, Hp, Wp = (int(g) for g in geom)
    O, L, _ = leaves.shape
    o, pi, pj, m, u, v = np.ix_(np.arange(O), np.arange(Hp), np.arange(Wp), np.arange(L),
                                np.arange(pk), np.arange(pk))
    i, j = pi * ps + u, pj * ps + v
    h = i * stride + leaves[o, m, 1] - pad
    w = j * stride + leaves[o, m, 2] - pad
    ok = (i < Ho) & (j < Wo) & (h >= 0) & (h < H) & (w >= 0) & (w < W)
    full = np.broadcast_to
    shape = ok.shape
    rows = ((leaves[o, m, 0] * H + h) * W + w)
    q = pi * Wp + pj
    slot = full((o * Hp * Wp + q) * L + m, shape)[ok]
    prow = full(o * Hp * Wp + q, shape)[ok]
    cell = full(u * pk + v, shape)[ok]
    rows = full(rows, shape)[ok]
    order = np.lexsort((slot, rows))
    ptr = np.zeros(n_in + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_in), out=ptr[1:])
    return ptr, slot[order].astype(np.int64), prow[order].astype(np.int64), \
        cell[order].astype(np.uint8)


def _host(a):
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


def tree_pool_forward(x, leaves, tables, geom, y, arg):
    """Fused relaxed forward (pylgn.kernels.conv_cpu): y the OR-pooled tree roots, arg the
    window cell of each first maximum."""
    n = int(tables.shape[2]).bit_length() - 1
    forward = _kernels(n, leaves.shape[1], tables.shape[1], y.dtype)[0]
    forward[_grid(y.size), BLOCK, cuda_stream()](_dev(x), _dev(leaves), _dev(tables), _dev(geom),
                                                 _dev(y), _dev(arg))


def tree_pool_backward(x, leaves, tables, geom, dy, arg, dtables, dx):
    """Fused backward (pylgn.kernels.conv_cpu): dtables = dL/dtables, dx = dL/dx (overwritten)."""
    xp = np if isinstance(x, np.ndarray) else __import__("cupy")
    n = int(tables.shape[2]).bit_length() - 1
    O, L = leaves.shape[:2]
    G = tables.shape[1]
    Q = int(geom[8]) * int(geom[9])
    _, backward_trees, sum_parts = _kernels(n, L, G, dx.dtype)
    dleaf = xp.empty((O * Q * L, x.shape[1]), dtype=dx.dtype)
    dpart = xp.empty((O, Q, G, tables.shape[2]), dtype=dx.dtype)
    stream = cuda_stream()
    backward_trees[_grid(O * Q), BLOCK, stream](_dev(x), _dev(leaves), _dev(tables), _dev(geom),
                                                _dev(dy), _dev(arg), _dev(dleaf), _dev(dpart))
    sum_parts[_grid(dtables.size), BLOCK, stream](_dev(dpart), _dev(dtables))
    rev = [xp.asarray(a) for a in reverse_slots(_host(leaves), _host(geom), dx.shape[0])]
    _gather_dx[_grid(dx.size), BLOCK, stream](_dev(dleaf), _dev(arg), *(_dev(a) for a in rev),
                                              _dev(dx))
