"""CUDA kernels (numba.cuda): the CPU kernels' names, argument order and formulas, on the GPU.

Arrays are CuPy arrays (``device="cuda"``) passed through ``__cuda_array_interface__``, or numpy
arrays under ``NUMBA_ENABLE_CUDASIM=1`` (the test-only pairing that checks these kernels on a
machine without a GPU). Notation as in ``pylgn.kernels.cpu``: activations ``x`` (features, batch)
C-contiguous, ``conn`` (n, G) int32, ``table`` (G, 2**n), row index r = sum_k b_k 2**(n-1-k).

Threads run over samples on the fast axis (the batch is contiguous, so a warp's loads coalesce)
and over gates or inputs on the slow axis. Every kernel walks its ranges with grid-stride loops,
so any grid covers any size; ``_grid`` only picks a sensible one. Weight gradients reduce over
the batch per gate in shared memory and input gradients gather through the reverse index: no
float atomics, so results are deterministic. Scratch lives in per-thread local arrays of
compile-time size (2**6 rows at most) whose dtype follows the data, hence one compiled kernel
per dtype (``_per_dtype``).

Each public function is a plain launcher with the CPU signature; it returns once the launch is
queued (CuPy and numba share the default stream, so later CuPy work sees the results).
"""
import math

import numpy as np
from numba import config, cuda, float64, from_dtype

from .common import difference_table

SIMULATED = bool(config.ENABLE_CUDASIM)
MAX_ROWS = 64                 # 2**6: the largest truth table (arity 6)
HALF_ROWS = 32                # a difference table: 2**(6-1)
FOLD_ROWS = 16                # fold scratch: a table after its last two inputs, 2**(6-2)
CHUNK = 8                     # table rows reduced per shared-memory pass (backward to the table)

# Launch shapes. The simulator runs every thread as a Python thread (~0.5 ms each), so under it
# blocks and grids are tiny and the grid-stride loops do the covering; the kernels are the same.
if SIMULATED:
    WARP, MAX_BX, THREADS, MAX_GRID, RED_X, RED_Y = 1, 8, 16, 3, 4, 4
else:
    WARP, MAX_BX, THREADS, MAX_GRID, RED_X, RED_Y = 32, 128, 256, 65535, 32, 8


def _cdiv(a, b):
    return -(-a // b)


def _grid(samples, rows):
    """(grid, block) for a 2-D launch: samples on x (a warp multiple, <= MAX_BX), rows on y."""
    samples, rows = max(1, samples), max(1, rows)
    bx = min(MAX_BX, _cdiv(samples, WARP) * WARP)
    by = max(1, THREADS // bx)
    return (min(_cdiv(samples, bx), MAX_GRID), min(_cdiv(rows, by), MAX_GRID)), (bx, by)


def _grid_1d(n):
    """(grid, block) for a 1-D launch over n items."""
    return min(_cdiv(max(1, n), THREADS), MAX_GRID), THREADS


def _dev(a):
    """A kernel argument: CuPy arrays are wrapped without the per-launch stream sync numba adds."""
    if SIMULATED or isinstance(a, np.ndarray):
        return a
    return cuda.as_cuda_array(a, sync=False)


def _per_dtype(make):
    """Memoise ``make(numba_dtype) -> kernel``: local scratch needs its dtype at compile time."""
    kernels = {}

    def get(dtype):
        key = np.dtype(dtype)
        if key not in kernels:
            kernels[key] = make(from_dtype(key))
        return kernels[key]
    return get


# device functions ---------------------------------------------------------------------------

@cuda.jit(device=True)
def _input(p, skip):
    """Index of the p-th input of a gate when input ``skip`` is left out (skip < 0: none)."""
    return p + 1 if 0 <= skip <= p else p


@cuda.jit(device=True)
def _quad(v, o, p, q):
    """Bilinear extension of v[o:o+4] (rows 00, 01, 10, 11 of inputs p, q) at (p, q):
    w0 + q (w1 - w0) + p (w2 - w0 + q (w3 - w2 - w1 + w0))."""
    w0 = v[o]
    c1 = v[o + 1] - w0
    return w0 + q * c1 + p * (v[o + 2] - w0 + q * (v[o + 3] - v[o + 2] - c1))


@cuda.jit(device=True)
def _fold(vals, m, x, conn, g, skip, s, t):
    """Multilinear extension of ``vals`` (2**m rows) at sample s of gate g's inputs but ``skip``.

    The last two inputs fold in one pass (``_quad`` per group of four rows) and each input further
    up halves the table by a lerp, t[i] = t[2i] + x (t[2i+1] - t[2i]), as the CPU kernel does;
    for m <= 2 no scratch is touched, so the common gates stay in registers.
    """
    if m == 0:
        return vals[0]
    q = x[conn[_input(m - 1, skip), g], s]
    if m == 1:
        return vals[0] + q * (vals[1] - vals[0])
    p = x[conn[_input(m - 2, skip), g], s]
    if m == 2:
        return _quad(vals, 0, p, q)
    for i in range(1 << (m - 2)):
        t[i] = _quad(vals, 4 * i, p, q)
    for j in range(m - 3, -1, -1):
        xv = x[conn[_input(j, skip), g], s]
        for i in range(1 << j):
            t[i] = t[2 * i] + xv * (t[2 * i + 1] - t[2 * i])
    return t[0]


@cuda.jit(device=True)
def _expand(x, conn, g, s, n, e):
    """e[r] <- e[0] prod_k (x_k if b_k(r) else 1 - x_k), built as e <- [e (1 - x_k), e x_k]."""
    for k in range(n):
        xv = x[conn[k, g], s]
        for j in range((1 << k) - 1, -1, -1):
            v = e[j]
            e[2 * j + 1] = v * xv
            e[2 * j] = v - v * xv


_difference_table = cuda.jit(device=True)(difference_table)


@cuda.jit(device=True)
def _reduce_rows(acc, P, sh, ty, tx, dtable, g, live):
    """dtable[g, p] = sum over the block's x threads of their acc[p], CHUNK rows per pass.

    Each thread parks its partial sums in shared memory; thread tx then adds up rows
    tx, tx + RED_X, ... in a fixed order (deterministic). Every thread of the block must call it.
    """
    for c0 in range(0, P, CHUNK):
        rows = P - c0 if P - c0 < CHUNK else CHUNK     # (no min(): the built-in target lacks it)
        for j in range(rows):
            sh[ty, j, tx] = acc[c0 + j]
        cuda.syncthreads()
        if live:
            for j in range(tx, rows, RED_X):
                tot = 0.0
                for u in range(RED_X):
                    tot += sh[ty, j, u]
                dtable[g, c0 + j] = tot
        cuda.syncthreads()


# kernels ------------------------------------------------------------------------------------

@_per_dtype
def _forward_kernel(dt):
    @cuda.jit
    def kernel(x, conn, table, y):
        n, G = conn.shape
        t = cuda.local.array(FOLD_ROWS, dt)
        s0, g0 = cuda.grid(2)
        ss, gs = cuda.gridsize(2)
        for g in range(g0, G, gs):
            for s in range(s0, x.shape[1], ss):
                y[g, s] = _fold(table[g], n, x, conn, g, -1, s, t)
    return kernel


@cuda.jit
def _forward_discrete_kernel(x, conn, table, y):
    n, G = conn.shape
    s0, g0 = cuda.grid(2)
    ss, gs = cuda.gridsize(2)
    for g in range(g0, G, gs):
        for s in range(s0, x.shape[1], ss):
            r = 0
            for k in range(n):
                r = 2 * r + (1 if x[conn[k, g], s] >= 0.5 else 0)
            y[g, s] = table[g, r]


@_per_dtype
def _backward_table_kernel(dt):
    @cuda.jit
    def kernel(x, conn, dy, dtable):
        n, G = conn.shape
        P = dtable.shape[1]
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        e = cuda.local.array(MAX_ROWS, dt)
        acc = cuda.local.array(MAX_ROWS, float64)
        sh = cuda.shared.array((RED_Y, CHUNK, RED_X), float64)
        for g0 in range(cuda.blockIdx.x * RED_Y, G, cuda.gridDim.x * RED_Y):
            g = g0 + ty                    # the whole block walks the same g0: uniform syncs
            for p in range(P):
                acc[p] = 0.0
            if g < G:
                for s in range(tx, x.shape[1], RED_X):
                    e[0] = dy[g, s]
                    _expand(x, conn, g, s, n, e)
                    for p in range(P):
                        acc[p] += e[p]
            _reduce_rows(acc, P, sh, ty, tx, dtable, g, g < G)
    return kernel


@_per_dtype
def _backward_inputs_kernel(dt):
    @cuda.jit
    def kernel(x, conn, rev_ptr, rev_idx, table, dy, grad_factor, dx):
        n, G = conn.shape
        d = cuda.local.array(HALF_ROWS, dt)
        t = cuda.local.array(FOLD_ROWS, dt)
        s0, i0 = cuda.grid(2)
        ss, is_ = cuda.gridsize(2)
        for i in range(i0, dx.shape[0], is_):
            for s in range(s0, dx.shape[1], ss):
                acc = 0.0
                for p in range(rev_ptr[i], rev_ptr[i + 1]):
                    k = rev_idx[p] // G
                    g = rev_idx[p] - k * G
                    _difference_table(table[g], n, k, d)
                    acc += dy[g, s] * _fold(d, n - 1, x, conn, g, k, s, t)
                dx[i, s] = grad_factor * acc
    return kernel


@cuda.jit
def _adam_kernel(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, c1, c2):
    for i in range(cuda.grid(1), param.shape[0], cuda.gridsize(1)):
        g = grad[i]
        mi = beta1 * m[i] + (1.0 - beta1) * g
        vi = beta2 * v[i] + (1.0 - beta2) * g * g
        m[i] = mi
        v[i] = vi
        param[i] -= lr * ((mi / c1) / (math.sqrt(vi / c2) + eps) + weight_decay * param[i])


@cuda.jit
def _op_table_kernel(w, tables, p, omega):
    acc = cuda.local.array(MAX_ROWS, float64)
    for g in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        mx = w[g, 0]
        for i in range(1, w.shape[1]):
            if w[g, i] > mx:
                mx = w[g, i]
        z = 0.0
        for i in range(w.shape[1]):
            p[g, i] = math.exp(w[g, i] - mx)
            z += p[g, i]
        for r in range(tables.shape[1]):
            acc[r] = 0.0
        for i in range(w.shape[1]):
            p[g, i] /= z
            for r in range(tables.shape[1]):
                acc[r] += p[g, i] * tables[i, r]
        for r in range(tables.shape[1]):
            omega[g, r] = acc[r]


@cuda.jit
def _op_table_backward_kernel(p, tables, domega, dw):
    for g in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        dot = 0.0
        for i in range(p.shape[1]):
            dp = 0.0
            for r in range(tables.shape[1]):
                dp += domega[g, r] * tables[i, r]
            dw[g, i] = dp
            dot += p[g, i] * dp
        for i in range(p.shape[1]):
            dw[g, i] = p[g, i] * (dw[g, i] - dot)


# launchers with the CPU kernels' signatures ----------------------------------------------------

@cuda.jit
def _group_sum_kernel(x, tau, out):
    k, B = out.shape
    m = x.shape[0] // k
    for c in range(cuda.grid(2)[1], k, cuda.gridsize(2)[1]):
        for s in range(cuda.grid(2)[0], B, cuda.gridsize(2)[0]):
            acc = 0.0
            for j in range(c * m, (c + 1) * m):
                acc += x[j, s]
            out[c, s] = acc / tau


@cuda.jit
def _group_sum_backward_kernel(dout, tau, dx):
    m = dx.shape[0] // dout.shape[0]
    for j in range(cuda.grid(2)[1], dx.shape[0], cuda.gridsize(2)[1]):
        for s in range(cuda.grid(2)[0], dx.shape[1], cuda.gridsize(2)[0]):
            dx[j, s] = dout[j // m, s] / tau


def gate_forward(x, conn, table, y):
    """Relaxed forward: y[g, s] = sum_r table[g, r] prod_k (x_k if b_k(r) else 1 - x_k)."""
    grid, block = _grid(x.shape[1], conn.shape[1])
    _forward_kernel(y.dtype)[grid, block](_dev(x), _dev(conn), _dev(table), _dev(y))


def gate_forward_discrete(x, conn, table, y):
    """Discrete forward: y[g, s] = table[g, r(s)], r(s) = sum_k [x_k >= 0.5] 2**(n-1-k); table 0/1."""
    grid, block = _grid(x.shape[1], conn.shape[1])
    _forward_discrete_kernel[grid, block](_dev(x), _dev(conn), _dev(table), _dev(y))


def gate_backward_table(x, conn, dy, dtable):
    """Gradient w.r.t. the relaxed table only: dtable[g, r] = sum_s dy[g, s] prod_k (x_k or 1 - x_k).

    RED_Y gates per block, RED_X threads over the batch per gate, reduced in shared memory."""
    grid = min(_cdiv(max(1, conn.shape[1]), RED_Y), MAX_GRID)
    _backward_table_kernel(dy.dtype)[grid, (RED_X, RED_Y)](_dev(x), _dev(conn), _dev(dy),
                                                            _dev(dtable))


def gate_backward_inputs(x, conn, rev_ptr, rev_idx, table, dy, grad_factor, dx):
    """Gradient w.r.t. the inputs, gathered per input row (no races, deterministic):

        dx[i, s] = grad_factor * sum_{(k, g) reads i} dy[g, s] * dy_g/dx_k(s)
        dy_g/dx_k = multilinear extension over the other inputs of table[b_k=1] - table[b_k=0]

    ``rev_idx[rev_ptr[i]:rev_ptr[i+1]]`` lists the slots k*G + g that read input i.
    """
    grid, block = _grid(dx.shape[1], dx.shape[0])
    _backward_inputs_kernel(dx.dtype)[grid, block](
        _dev(x), _dev(conn), _dev(rev_ptr), _dev(rev_idx), _dev(table), _dev(dy),
        float(grad_factor), _dev(dx))


def adam_step(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """One Adam step over flat arrays (decoupled weight decay, bias-corrected):

        m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2
        p <- p - lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) - lr * wd * p
    """
    grid, block = _grid_1d(param.shape[0])
    _adam_kernel[grid, block](_dev(param), _dev(grad), _dev(m), _dev(v), float(lr), float(beta1),
                              float(beta2), float(eps), float(weight_decay),
                              1.0 - float(beta1) ** step, 1.0 - float(beta2) ** step)


def op_table(w, tables, p, omega):
    """OP projection: p[g] = softmax(w[g]) over the 16 gate logits, omega[g, r] = sum_i p[g, i] tables[i, r]."""
    grid, block = _grid_1d(w.shape[0])
    _op_table_kernel[grid, block](_dev(w), _dev(tables), _dev(p), _dev(omega))


def op_table_backward(p, tables, domega, dw):
    """Jacobian of the OP projection: dw[g, i] = p_i (dp_i - sum_j p_j dp_j),
    dp_i = sum_r domega[g, r] tables[i, r], p = softmax(w[g]) as computed by op_table."""
    grid, block = _grid_1d(p.shape[0])
    _op_table_backward_kernel[grid, block](_dev(p), _dev(tables), _dev(domega), _dev(dw))


def group_sum(x, tau, out):
    """GroupSum: out[c, s] = sum_{j < m} x[c m + j, s] / tau, m = rows of x / rows of out.
    One thread per (class, sample), summing its group in a fixed order (deterministic)."""
    grid, block = _grid(out.shape[1], out.shape[0])
    _group_sum_kernel[grid, block](_dev(x), x.dtype.type(tau), _dev(out))


def group_sum_backward(dout, tau, dx):
    """GroupSum backward: dx[c m + j, s] = dout[c, s] / tau."""
    grid, block = _grid(dx.shape[1], dx.shape[0])
    _group_sum_backward_kernel[grid, block](_dev(dout), dout.dtype.type(tau), _dev(dx))
