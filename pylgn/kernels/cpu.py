"""CPU kernels (numba, parallel, cached). One kernel per op, shared by OP and IWP and every arity.

Notation: a layer of G gates of arity n reads activations ``x`` (features, batch), C-contiguous.
``conn`` (n, G) int32 names the rows a gate reads; ``table`` (G, 2**n) holds the relaxed truth
table omega (row index r = sum_k b_k 2**(n-1-k), the first input is the high bit). The relaxed
gate is the multilinear extension of its table:

    y[g, s] = sum_r table[g, r] * prod_k (x_k if b_k(r) else 1 - x_k),   x_k = x[conn[k, g], s]

Every inner loop runs over the contiguous samples of whole rows (so it vectorizes); scratch rows
are allocated once per thread's part of the gates (or inputs), never per gate or sample. The
gate, GroupSum and Adam kernels are serial, ``nogil`` ``*_range`` kernels; the public kernel
splits the rows into one contiguous part per thread (``_in_parallel``), and the tiled training
step calls the serial kernels directly on one tile of samples per thread. The gate
kernels are built per arity (``_per_arity``): one generic body (``_forward_gates``,
``_table_grad_gates``, ``_input_grad_rows``) is compiled with n a constant (branches and scratch
loops folded: 10x faster per gate on 16-sample tiles, 1.7x on 256-sample rows, than one body
with n read at run time), on the first call at that arity, so a model compiles only the
arities it uses; the public names dispatch on ``conn.shape[0]``.
"""
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit, prange

from .common import difference_table

CHUNKS = 256
MAX_ARITY = 6
ADAM_GRAIN = 1 << 15        # Adam entries per thread at least (below, one thread beats a handoff)
#: serial kernels with no CUDA twin: the ``*_range`` parts that the parallel kernels run per chunk
#: and the tiled CPU training step (pylgn.tiling) runs per tile, and the tile's loss
CPU_ONLY = ("gate_forward_range", "gate_backward_table_range", "gate_backward_inputs_range",
            "group_sum_range", "group_sum_backward_range", "softmax_cross_entropy_columns")
_FM = {"nsz", "arcp", "contract", "reassoc"}


def _per_arity(make):
    """Memoise ``make(n) -> kernel`` of arity n, built on the first call at that arity. The
    kernel closes over n, which numba freezes as a compile-time constant (every branch and
    scratch loop on n folds); its on-disk cache (cache=True) is keyed by the closed-over value,
    so each arity is compiled once per machine, and only when a model uses it. An arity outside
    1..6 raises (the CUDA kernels' limit)."""
    kernels = {}

    def get(n):
        if n not in kernels:
            if not 1 <= n <= MAX_ARITY:
                raise ValueError(f"conn: arity (rows of conn) must be in 1..{MAX_ARITY}, got {n}")
            kernels[n] = make(int(n))
        return kernels[n]
    get.built = kernels
    return get


_POOLS = {}
_POOL_NAME = "pylgn-kernels"
_POOL_LOCK = threading.Lock()


def _pool(workers):
    """The shared thread pool of ``workers`` threads (one per size, created on first use)."""
    pool = _POOLS.get(workers)
    if pool is None:
        with _POOL_LOCK:
            pool = _POOLS.setdefault(workers, ThreadPoolExecutor(
                workers, thread_name_prefix=_POOL_NAME))
    return pool


def _in_parallel(serial, total, *args, grain=1):
    """Runs ``serial(*args, r0, r1)`` (a nogil ``*_range`` kernel) over the rows 0 <= r < total
    split into numba.get_num_threads() contiguous parts of at least ``grain`` rows (fewer parts
    when there are not enough rows; one part runs serially): the first part on the calling thread,
    the others on a shared thread pool (serially when called from that pool). Every row is
    computed by one call, so the result does not depend on the split. The serial kernel is the
    only compiled code, shared with the tiled step (a numba prange would compile each kernel a
    second time, 2-3x the compile time of the serial one)."""
    parts = min(numba.get_num_threads(), total // grain)
    if parts <= 1 or threading.current_thread().name.startswith(_POOL_NAME):
        serial(*args, 0, total)
        return
    bounds = [p * total // parts for p in range(parts + 1)]
    pool = _pool(parts - 1)
    futures = [pool.submit(serial, *args, bounds[p], bounds[p + 1]) for p in range(1, parts)]
    serial(*args, 0, bounds[1])
    for f in futures:
        f.result()


@njit(cache=True, inline="always")
def _chunks(total):
    """Number of parallel chunks (each allocates its scratch once): CHUNKS, or fewer rows."""
    return max(1, min(total, CHUNKS))


@njit(cache=True, fastmath=_FM, inline="always")
def _multilinear(vals, m, x, rows, t, out):
    """out[s] = multilinear extension of vals (2**m entries) at x[rows[j], s], for every sample s.

    The last two inputs p, q are folded in one pass, per group of four entries w0..w3:
        f = w0 + q (w1 - w0) + p (w2 - w0 + q (w3 - w2 - w1 + w0))
    then each input further up halves the table by a lerp, t[i] = t[2i] + x (t[2i+1] - t[2i]).
    ``t`` is scratch of at least max(1, 2**(m-2)) batch rows; the last level writes ``out``.
    """
    B = out.shape[0]
    if m == 0:
        out[:] = vals[0]
        return
    if m == 1:
        r = x[rows[0]]
        w0 = vals[0]
        d = vals[1] - w0
        for s in range(B):
            out[s] = w0 + r[s] * d
        return
    p = x[rows[m - 2]]
    q = x[rows[m - 1]]
    for i in range(1 << (m - 2)):
        dst = out if m == 2 else t[i]
        w0 = vals[4 * i]
        c1 = vals[4 * i + 1] - w0
        c2 = vals[4 * i + 2] - w0
        c3 = vals[4 * i + 3] - vals[4 * i + 2] - c1
        for s in range(B):
            dst[s] = w0 + q[s] * c1 + p[s] * (c2 + q[s] * c3)
    for j in range(m - 3, -1, -1):
        r = x[rows[j]]
        for i in range(1 << j):
            dst = out if j == 0 else t[i]
            lo = t[2 * i]
            hi = t[2 * i + 1]
            for s in range(B):
                dst[s] = lo[s] + r[s] * (hi[s] - lo[s])


@njit(cache=True, fastmath=_FM, inline="always")
def _forward_gates(x, conn, table, y, g0, g1, n):
    t = np.empty((max(1, table.shape[1] >> 2), x.shape[1]), dtype=y.dtype)
    rows = np.empty(n, dtype=np.int64)
    for g in range(g0, g1):
        for k in range(n):
            rows[k] = conn[k, g]
        _multilinear(table[g], n, x, rows, t, y[g])


@_per_arity
def _forward_kernel(n):
    @njit(cache=True, nogil=True, fastmath=_FM)
    def kernel(x, conn, table, y, g0, g1):
        _forward_gates(x, conn, table, y, g0, g1, n)
    return kernel


def gate_forward_range(x, conn, table, y, g0, g1):
    """``gate_forward`` for the gates g0 <= g < g1 only, serial: one parallel chunk of gates, or
    every gate on one tile of samples (x, y holding that tile's columns) in the tiled step."""
    _forward_kernel(conn.shape[0])(x, conn, table, y, g0, g1)


def gate_forward(x, conn, table, y):
    """Relaxed forward: y[g, s] = sum_r table[g, r] prod_k (x_k if b_k(r) else 1 - x_k)."""
    _in_parallel(_forward_kernel(conn.shape[0]), conn.shape[1], x, conn, table, y)


@njit(parallel=True, cache=True)
def gate_forward_discrete(x, conn, table, y):
    """Discrete forward: y[g, s] = table[g, r(s)], r(s) = sum_k [x_k >= 0.5] 2**(n-1-k); table 0/1."""
    n, G = conn.shape
    B = x.shape[1]
    nc = _chunks(G)
    for c in prange(nc):
        idx = np.empty(B, dtype=np.int64)
        for g in range(c * G // nc, (c + 1) * G // nc):
            idx[:] = 0
            for k in range(n):
                r = x[conn[k, g]]
                for s in range(B):
                    idx[s] = 2 * idx[s] + (r[s] >= 0.5)
            tg = table[g]
            yg = y[g]
            for s in range(B):
                yg[s] = tg[idx[s]]


@njit(cache=True, fastmath=_FM, inline="always")
def _expand(dy, x, rows, count, e):
    """e[j, s] = dy[s] prod_{k < count} (x_k if b_k(j) else 1 - x_k), j over 2**count rows.

    Built by expansion, e <- [e (1 - x_k), e x_k] per input (the first input ends as the high bit).
    """
    for s in range(dy.shape[0]):
        e[0, s] = dy[s]
    for k in range(count):
        r = x[rows[k]]
        for j in range((1 << k) - 1, -1, -1):
            src = e[j]
            lo = e[2 * j]
            hi = e[2 * j + 1]
            for s in range(dy.shape[0]):
                v = src[s]
                hi[s] = v * r[s]
                lo[s] = v - v * r[s]


@njit(cache=True, fastmath=_FM, inline="always")
def _sums_last_inputs(v, x, rows, n, acc, off):
    """acc[off + r] += sum_s v[s] * (product terms of the last min(n, 2) inputs for bits r)."""
    if n == 1:
        p = x[rows[0]]
        a0 = a1 = v[0] * 0
        for s in range(v.shape[0]):
            vp = v[s] * p[s]
            a1 += vp
            a0 += v[s] - vp
        acc[off] += a0
        acc[off + 1] += a1
        return
    p = x[rows[n - 2]]
    q = x[rows[n - 1]]
    a0 = a1 = a2 = a3 = v[0] * 0
    for s in range(v.shape[0]):
        vp = v[s] * p[s]
        vn = v[s] - vp
        a3 += vp * q[s]
        a2 += vp - vp * q[s]
        a1 += vn * q[s]
        a0 += vn - vn * q[s]
    acc[off] += a0
    acc[off + 1] += a1
    acc[off + 2] += a2
    acc[off + 3] += a3


@njit(cache=True, fastmath=_FM, inline="always")
def _table_grad_gates(x, conn, dy, dtable, g0, g1, n):
    e = np.empty((max(1, dtable.shape[1] >> 2), x.shape[1]), dtype=dy.dtype)
    rows = np.empty(n, dtype=np.int64)
    for g in range(g0, g1):
        for k in range(n):
            rows[k] = conn[k, g]
        if n <= 2:
            _sums_last_inputs(dy[g], x, rows, n, dtable[g], 0)
        else:
            _expand(dy[g], x, rows, n - 2, e)
            for j in range(1 << (n - 2)):
                _sums_last_inputs(e[j], x, rows, n, dtable[g], 4 * j)


@_per_arity
def _table_grad_kernel(n):
    @njit(cache=True, nogil=True, fastmath=_FM)
    def kernel(x, conn, dy, dtable, g0, g1):
        _table_grad_gates(x, conn, dy, dtable, g0, g1, n)
    return kernel


def gate_backward_table_range(x, conn, dy, dtable, g0, g1):
    """dtable[g, r] += sum_s dy[g, s] prod_k (x_k or 1 - x_k) for the gates g0 <= g < g1, serial.

    Accumulates (the tiled step adds its tiles up). The first n-2 inputs are expanded into
    scratch rows (``_expand``, starting from dy); the last two are folded into the batch sums
    directly, four sums per scratch row.
    """
    _table_grad_kernel(conn.shape[0])(x, conn, dy, dtable, g0, g1)


def gate_backward_table(x, conn, dy, dtable):
    """Gradient w.r.t. the relaxed table: dtable[g, r] = sum_s dy[g, s] prod_k (x_k or 1 - x_k)."""
    dtable.fill(0)
    _in_parallel(_table_grad_kernel(conn.shape[0]), conn.shape[1], x, conn, dy, dtable)


_difference_table = njit(cache=True, inline="always")(difference_table)


@njit(cache=True, fastmath=_FM, inline="always")
def _input_grad_rows(x, conn, rev_ptr, rev_idx, table, dy, grad_factor, dx, i0, i1, n):
    G = conn.shape[1]
    B = dx.shape[1]
    half = max(1, 1 << (n - 1))
    t = np.empty((max(1, half >> 2), B), dtype=dx.dtype)
    f = np.empty(B, dtype=dx.dtype)
    d = np.empty(half, dtype=table.dtype)
    rows = np.empty(max(1, n - 1), dtype=np.int64)
    for i in range(i0, i1):
        acc = dx[i]
        for s in range(B):
            acc[s] = 0.0
        for p in range(rev_ptr[i], rev_ptr[i + 1]):
            k, g = 0, rev_idx[p]
            while g >= G:                              # slot = k G + g, k < n (no division)
                g -= G
                k += 1
            _difference_table(table[g], n, k, d)
            m = 0
            for j in range(n):
                if j != k:
                    rows[m] = conn[j, g]
                    m += 1
            _multilinear(d, n - 1, x, rows, t, f)
            dyg = dy[g]
            for s in range(B):
                acc[s] += dyg[s] * f[s]
        if grad_factor != 1.0:
            for s in range(B):
                acc[s] *= grad_factor


@_per_arity
def _input_grad_kernel(n):
    @njit(cache=True, nogil=True, fastmath=_FM)
    def kernel(x, conn, rev_ptr, rev_idx, table, dy, grad_factor, dx, i0, i1):
        _input_grad_rows(x, conn, rev_ptr, rev_idx, table, dy, grad_factor, dx, i0, i1, n)
    return kernel


def gate_backward_inputs_range(x, conn, rev_ptr, rev_idx, table, dy, grad_factor, dx, i0, i1):
    """``gate_backward_inputs`` for the input rows i0 <= i < i1 only (overwritten), serial."""
    _input_grad_kernel(conn.shape[0])(x, conn, rev_ptr, rev_idx, table, dy, grad_factor, dx, i0, i1)


def gate_backward_inputs(x, conn, rev_ptr, rev_idx, table, dy, grad_factor, dx):
    """Gradient w.r.t. the inputs, gathered per input row (no races, deterministic):

        dx[i, s] = grad_factor * sum_{(k, g) reads i} dy[g, s] * dy_g/dx_k(s)
        dy_g/dx_k = multilinear extension over the other inputs of table[b_k=1] - table[b_k=0]

    ``rev_idx[rev_ptr[i]:rev_ptr[i+1]]`` lists the slots k*G + g that read input i.
    """
    _in_parallel(_input_grad_kernel(conn.shape[0]), dx.shape[0], x, conn, rev_ptr, rev_idx, table,
                 dy, grad_factor, dx)


def adam_step(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """One Adam step over flat arrays (decoupled weight decay, bias-corrected):

        m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2
        p <- p - lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) - lr * wd * p
    """
    _in_parallel(_adam_range, param.shape[0], param, grad, m, v, lr, beta1, beta2, eps,
                 weight_decay, step, grain=ADAM_GRAIN)


@njit(cache=True, nogil=True, fastmath=_FM)
def _adam_range(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, i0, i1):
    """``adam_step`` on the entries i0 <= i < i1 only, serial."""
    c1 = 1.0 - beta1 ** step
    c2 = 1.0 - beta2 ** step
    for i in range(i0, i1):
        g = grad[i]
        mi = beta1 * m[i] + (1.0 - beta1) * g
        vi = beta2 * v[i] + (1.0 - beta2) * g * g
        m[i] = mi
        v[i] = vi
        param[i] -= lr * ((mi / c1) / (np.sqrt(vi / c2) + eps) + weight_decay * param[i])


@njit(parallel=True, cache=True, fastmath=_FM)
def op_table(w, tables, p, omega):
    """OP projection: p[g] = softmax(w[g]) over the 16 gate logits, omega[g, r] = sum_i p[g, i] tables[i, r]."""
    G, K = w.shape
    R = tables.shape[1]
    for g in prange(G):
        mx = w[g, 0]
        for i in range(1, K):
            mx = max(mx, w[g, i])
        z = 0.0
        for i in range(K):
            p[g, i] = np.exp(w[g, i] - mx)
            z += p[g, i]
        for r in range(R):
            omega[g, r] = 0.0
        for i in range(K):
            p[g, i] /= z
            for r in range(R):
                omega[g, r] += p[g, i] * tables[i, r]


@njit(parallel=True, cache=True, fastmath=_FM)
def op_table_backward(p, tables, domega, dw):
    """Jacobian of the OP projection: dw[g, i] = p_i (dp_i - sum_j p_j dp_j),
    dp_i = sum_r domega[g, r] tables[i, r], p = softmax(w[g]) as computed by op_table."""
    G, K = p.shape
    R = tables.shape[1]
    for g in prange(G):
        dot = 0.0
        for i in range(K):
            dp = 0.0
            for r in range(R):
                dp += domega[g, r] * tables[i, r]
            dw[g, i] = dp
            dot += p[g, i] * dp
        for i in range(K):
            dw[g, i] = p[g, i] * (dw[g, i] - dot)


@njit(cache=True, nogil=True)
def group_sum_range(x, tau, out, c0, c1):
    """``group_sum`` for the groups c0 <= c < c1 only, serial."""
    m = x.shape[0] // out.shape[0]
    for c in range(c0, c1):
        o = out[c]
        o[:] = 0.0
        for j in range(c * m, (c + 1) * m):
            r = x[j]
            for s in range(out.shape[1]):
                o[s] += r[s]
        for s in range(out.shape[1]):
            o[s] /= tau


def group_sum(x, tau, out):
    """GroupSum: out[c, s] = sum_{j < m} x[c m + j, s] / tau, m = rows of x / rows of out."""
    _in_parallel(group_sum_range, out.shape[0], x, tau, out)


@njit(cache=True, nogil=True)
def group_sum_backward_range(dout, tau, dx, j0, j1):
    """``group_sum_backward`` for the rows j0 <= j < j1 of dx only, serial."""
    m = dx.shape[0] // dout.shape[0]
    for j in range(j0, j1):
        d = dout[j // m]
        r = dx[j]
        for s in range(dx.shape[1]):
            r[s] = d[s] / tau


def group_sum_backward(dout, tau, dx):
    """GroupSum backward: dx[c m + j, s] = dout[c, s] / tau."""
    _in_parallel(group_sum_backward_range, dx.shape[0], dout, tau, dx)


@njit(cache=True, nogil=True)
def softmax_cross_entropy_columns(z, labels, inv_batch, dz):
    """Softmax cross-entropy on logits laid out (classes, samples), serial (one tile):

        returns sum_s [logsumexp(z[:, s]) - z[labels[s], s]]
        dz[c, s] = (softmax(z[:, s])_c - [c == labels[s]]) * inv_batch

    (``pylgn.loss.softmax_cross_entropy`` on the transposed tile, with the mean's 1/batch taken
    over the whole batch: tiles of one batch add up to its gradient.)
    """
    K, B = z.shape
    total = 0.0
    for s in range(B):
        mx = z[0, s]
        for c in range(1, K):
            mx = max(mx, z[c, s])
        se = 0.0
        for c in range(K):
            se += np.exp(z[c, s] - mx)
        lse = np.log(se)
        total += lse - (z[labels[s], s] - mx)
        for c in range(K):
            dz[c, s] = np.exp(z[c, s] - mx - lse) * inv_batch
        dz[labels[s], s] -= inv_batch
    return total


# learned connections (pylgn.layers.LogicLayer, connections="learned") ---------------------------
# A layer with learned wiring has S = arity * G slots (gate input k of gate g is slot g*arity + k);
# slot j chooses its source among C candidate rows ``cand[j, :]`` of x with weights ``route[j, :]``
# (one-hot in the straight-through choice, a softmax in the mixed one). The gate kernels above then
# run on the S slot rows ``xs`` with identity wiring.

@njit(cache=True, nogil=True, fastmath=_FM)
def _choice_forward_range(x, cand, route, xs, j0, j1):
    B = x.shape[1]
    for j in range(j0, j1):
        out = xs[j]
        out[:] = 0.0
        for c in range(cand.shape[1]):
            w = route[j, c]
            if w != 0.0:
                r = x[cand[j, c]]
                for s in range(B):
                    out[s] += w * r[s]


def choice_forward(x, cand, route, xs):
    """Slot rows: xs[j, s] = sum_c route[j, c] * x[cand[j, c], s] (terms with route 0 skipped)."""
    _in_parallel(_choice_forward_range, cand.shape[0], x, cand, route, xs)


@njit(cache=True, nogil=True, fastmath=_FM)
def _choice_backward_range(x, cand, gs, corr, j0, j1):
    B = x.shape[1]
    for j in range(j0, j1):
        g = gs[j]
        for c in range(cand.shape[1]):
            r = x[cand[j, c]]
            acc = g[0] * 0
            for s in range(B):
                acc += r[s] * g[s]
            corr[j, c] = acc


def choice_backward(x, cand, gs, corr):
    """Correlation of each candidate with its slot's gradient: corr[j, c] = sum_s x[cand[j, c], s] gs[j, s].

    gs[j, s] = dL/dxs[j, s]. Both choice gradients are formed from it: straight-through
    dL/dtheta[j, c] = 2 corr[j, c] - sum_s gs[j, s]; mixed (route = softmax(theta / t))
    dL/dtheta[j, c] = route[j, c] (corr[j, c] - sum_s xs[j, s] gs[j, s]) / t.
    """
    _in_parallel(_choice_backward_range, cand.shape[0], x, cand, gs, corr)


@njit(cache=True, nogil=True, fastmath=_FM)
def _choice_backward_inputs_range(gs, rev_ptr, rev_idx, route, grad_factor, dx, i0, i1):
    B = dx.shape[1]
    C = route.shape[1]
    for i in range(i0, i1):
        acc = dx[i]
        acc[:] = 0.0
        for p in range(rev_ptr[i], rev_ptr[i + 1]):
            e = rev_idx[p]
            j = e // C
            w = route[j, e - j * C]
            if w != 0.0:
                g = gs[j]
                for s in range(B):
                    acc[s] += w * g[s]
        if grad_factor != 1.0:
            for s in range(B):
                acc[s] *= grad_factor


def choice_backward_inputs(gs, rev_ptr, rev_idx, route, grad_factor, dx):
    """Input gradient through the choice, gathered per input row (no races, deterministic):

        dx[i, s] = grad_factor * sum_{(j, c): cand[j, c] = i} route[j, c] * gs[j, s]

    ``rev_idx[rev_ptr[i]:rev_ptr[i+1]]`` lists the entries j*C + c whose candidate is input i.
    """
    _in_parallel(_choice_backward_inputs_range, dx.shape[0], gs, rev_ptr, rev_idx, route,
                 grad_factor, dx)


# fused logic-tree convolution + OR pooling (kernels in pylgn.kernels.conv_cpu) ---------------

def tree_pool_forward(x, leaves, tables, geom, y, arg):
    """Fused LogicConv2d + OrPool2d forward: y = OR-pooled tree roots, arg = the window cell of
    each first maximum (formulas in pylgn.kernels.conv_cpu)."""
    from .conv_cpu import tree_pool_forward as kernel
    kernel(x, leaves, tables, geom, y, arg)


def tree_pool_backward(x, leaves, tables, geom, dy, arg, dtables, dx):
    """Fused backward: dtables = dL/dtables, dx = dL/dx, trees recomputed (pylgn.kernels.conv_cpu)."""
    from .conv_cpu import tree_pool_backward as kernel
    kernel(x, leaves, tables, geom, dy, arg, dtables, dx)
