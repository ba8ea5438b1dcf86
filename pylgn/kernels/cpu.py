"""CPU kernels (numba, parallel, cached). One kernel per op, shared by OP and IWP and every arity.

Notation: a layer of G gates of arity n reads activations ``x`` (features, batch), C-contiguous.
``conn`` (n, G) int32 names the rows a gate reads; ``table`` (G, 2**n) holds the relaxed truth
table omega (row index r = sum_k b_k 2**(n-1-k), the first input is the high bit). The relaxed
gate is the multilinear extension of its table:

    y[g, s] = sum_r table[g, r] * prod_k (x_k if b_k(r) else 1 - x_k),   x_k = x[conn[k, g], s]

Kernels work on blocks of BLOCK samples so every inner loop runs over contiguous samples and
vectorizes; scratch is allocated once per chunk of gates (or inputs), never per sample.
"""
import numpy as np
from numba import njit, prange

BLOCK = 256
_FM = {"nsz", "arcp", "contract", "reassoc"}


CHUNKS = 256


@njit(cache=True)
def _chunks(total):
    """Number of parallel chunks (each allocates its scratch once): CHUNKS, or fewer rows."""
    return max(1, min(total, CHUNKS))


@njit(cache=True, fastmath=_FM)
def _multilinear(vals, m, x, rows, s0, length, t):
    """t[0, :length] = multilinear extension of vals (2**m entries) at x[rows[j], s0:s0+length].

    Folds the last input first: t[i] = v[2i] + x_last * (v[2i+1] - v[2i]), then repeats with the
    next input up on the halved table, 2**m - 1 lerps per sample in all.
    """
    if m == 0:
        for s in range(length):
            t[0, s] = vals[0]
        return
    r = x[rows[m - 1]]
    for i in range(1 << (m - 1)):
        w0 = vals[2 * i]
        d = vals[2 * i + 1] - w0
        for s in range(length):
            t[i, s] = w0 + r[s0 + s] * d
    for j in range(m - 2, -1, -1):
        r = x[rows[j]]
        for i in range(1 << j):
            for s in range(length):
                a = t[2 * i, s]
                t[i, s] = a + r[s0 + s] * (t[2 * i + 1, s] - a)


@njit(parallel=True, cache=True, fastmath=_FM)
def gate_forward(x, conn, table, y):
    """Relaxed forward: y[g, s] = sum_r table[g, r] prod_k (x_k if b_k(r) else 1 - x_k)."""
    n, G = conn.shape
    B = x.shape[1]
    nc = _chunks(G)
    for c in prange(nc):
        t = np.empty((max(1, table.shape[1] >> 1), BLOCK), dtype=y.dtype)
        rows = np.empty(n, dtype=np.int64)
        for g in range(c * G // nc, (c + 1) * G // nc):
            for k in range(n):
                rows[k] = conn[k, g]
            for s0 in range(0, B, BLOCK):
                length = min(BLOCK, B - s0)
                _multilinear(table[g], n, x, rows, s0, length, t)
                for s in range(length):
                    y[g, s0 + s] = t[0, s]


@njit(parallel=True, cache=True)
def gate_forward_discrete(x, conn, table, y):
    """Discrete forward: y[g, s] = table[g, r(s)], r(s) = sum_k [x_k >= 0.5] 2**(n-1-k); table 0/1."""
    n, G = conn.shape
    B = x.shape[1]
    nc = _chunks(G)
    for c in prange(nc):
        idx = np.empty(BLOCK, dtype=np.int64)
        for g in range(c * G // nc, (c + 1) * G // nc):
            for s0 in range(0, B, BLOCK):
                length = min(BLOCK, B - s0)
                idx[:length] = 0
                for k in range(n):
                    r = x[conn[k, g]]
                    for s in range(length):
                        idx[s] = 2 * idx[s] + (r[s0 + s] >= 0.5)
                for s in range(length):
                    y[g, s0 + s] = table[g, idx[s]]


@njit(parallel=True, cache=True, fastmath=_FM)
def gate_backward_table(x, conn, dy, dtable):
    """Gradient w.r.t. the relaxed table: dtable[g, r] = sum_s dy[g, s] prod_k (x_k or 1 - x_k).

    The product terms are built by expansion, e <- [e (1 - x_k), e x_k] per input, starting
    from e = dy so the batch reduction is one sum per row.
    """
    n, G = conn.shape
    B = x.shape[1]
    P = dtable.shape[1]
    nc = _chunks(G)
    for c in prange(nc):
        e = np.empty((P, BLOCK), dtype=dy.dtype)
        acc = np.empty(P, dtype=np.float64)
        for g in range(c * G // nc, (c + 1) * G // nc):
            acc[:] = 0.0
            for s0 in range(0, B, BLOCK):
                length = min(BLOCK, B - s0)
                for s in range(length):
                    e[0, s] = dy[g, s0 + s]
                for k in range(n):
                    r = x[conn[k, g]]
                    for j in range((1 << k) - 1, -1, -1):
                        for s in range(length):
                            v = e[j, s]
                            xv = r[s0 + s]
                            e[2 * j + 1, s] = v * xv
                            e[2 * j, s] = v - v * xv
                for p in range(P):
                    tot = 0.0
                    for s in range(length):
                        tot += e[p, s]
                    acc[p] += tot
            for p in range(P):
                dtable[g, p] = acc[p]


@njit(cache=True)
def _difference_table(table_g, n, k, d):
    """d[r'] = table[r with b_k = 1] - table[r with b_k = 0], r' = r without bit k (n-1 bits)."""
    bit = n - 1 - k
    low = (1 << bit) - 1
    for rp in range(1 << (n - 1)):
        r0 = ((rp & ~low) << 1) | (rp & low)
        d[rp] = table_g[r0 | (1 << bit)] - table_g[r0]


@njit(parallel=True, cache=True, fastmath=_FM)
def gate_backward_inputs(x, conn, rev_ptr, rev_idx, table, dy, grad_factor, dx):
    """Gradient w.r.t. the inputs, gathered per input row (no races, deterministic):

        dx[i, s] = grad_factor * sum_{(k, g) reads i} dy[g, s] * dy_g/dx_k(s)
        dy_g/dx_k = multilinear extension over the other inputs of table[b_k=1] - table[b_k=0]

    ``rev_idx[rev_ptr[i]:rev_ptr[i+1]]`` lists the slots k*G + g that read input i.
    """
    n, G = conn.shape
    I, B = dx.shape
    nc = _chunks(I)
    for c in prange(nc):
        half = max(1, 1 << (n - 1))
        t = np.empty((max(1, half >> 1), BLOCK), dtype=dx.dtype)
        d = np.empty(half, dtype=table.dtype)
        rows = np.empty(max(1, n - 1), dtype=np.int64)
        for i in range(c * I // nc, (c + 1) * I // nc):
            dx[i, :] = 0.0
            for p in range(rev_ptr[i], rev_ptr[i + 1]):
                k = rev_idx[p] // G
                g = rev_idx[p] - k * G
                _difference_table(table[g], n, k, d)
                m = 0
                for j in range(n):
                    if j != k:
                        rows[m] = conn[j, g]
                        m += 1
                for s0 in range(0, B, BLOCK):
                    length = min(BLOCK, B - s0)
                    _multilinear(d, n - 1, x, rows, s0, length, t)
                    for s in range(length):
                        dx[i, s0 + s] += dy[g, s0 + s] * t[0, s]
            if grad_factor != 1.0:
                for s in range(B):
                    dx[i, s] *= grad_factor


@njit(parallel=True, cache=True, fastmath=_FM)
def adam_step(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """One Adam step over flat arrays (decoupled weight decay, bias-corrected):

        m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2
        p <- p - lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) - lr * wd * p
    """
    c1 = 1.0 - beta1 ** step
    c2 = 1.0 - beta2 ** step
    for i in prange(param.shape[0]):
        g = grad[i]
        mi = beta1 * m[i] + (1.0 - beta1) * g
        vi = beta2 * v[i] + (1.0 - beta2) * g * g
        m[i] = mi
        v[i] = vi
        param[i] -= lr * ((mi / c1) / (np.sqrt(vi / c2) + eps) + weight_decay * param[i])
