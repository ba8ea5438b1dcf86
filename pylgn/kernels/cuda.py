"""CUDA kernels (numba.cuda): the CPU kernels' names, argument order and formulas, on the GPU.

Arrays are CuPy arrays (``device="cuda"``) passed through ``__cuda_array_interface__``, or numpy
arrays under ``NUMBA_ENABLE_CUDASIM=1`` (the test-only pairing that checks these kernels on a
machine without a GPU). Notation as in ``pylgn.kernels.cpu``: activations ``x`` (features, batch)
C-contiguous, ``conn`` (n, G) int32, ``table`` (G, 2**n), row index r = sum_k b_k 2**(n-1-k).

Work is split by **warp per row**: each warp owns one gate (or input row, or output row) at a time
and walks the rows with a grid-stride loop; its 32 lanes walk the batch, so each load of a row
coalesces. A row's set-up (its wiring, offsets ``conn[k, g] * B`` into the flattened activations,
its truth table) is done once per row and held in registers, not once per sample. Gate kernels
are compiled **per arity** (``_per_arity``): with n a compile-time constant every scratch loop
unrolls and the scratch arrays live in registers (``tests/test_cuda_sim.py`` checks the PTX for
local memory). Weight gradients reduce over the batch per gate with warp shuffles (a fixed order,
so deterministic), long columns split across warps and summed in a fixed order by a second
kernel; input gradients gather through the reverse index. No float atomics anywhere.

Launches go to CuPy's current stream (``pylgn.backend.cuda_stream``), so they are ordered with
CuPy's allocations and ops on any stream. Each public function is a launcher with the CPU
signature; it returns once the launch is queued.
"""
import math
import threading
import weakref

import numpy as np
from numba import config, cuda, from_dtype, int64

from ..backend import cuda_stream
from .common import difference_table

SIMULATED = bool(config.ENABLE_CUDASIM)
MAX_ARITY = 6
WARP = 32
BLOCK = 128                   # threads per block: 4 warps (the same shape under the simulator)
WARPS = BLOCK // WARP
FULL_MASK = 0xFFFFFFFF
SPL = 4                       # samples per lane held in registers per pass (gate_backward_inputs)
SUM_ROWS = 256                # rows per partial sum in group_sum's first pass
SPLIT_SAMPLES = 1024          # gate_backward_table: a column splits only into parts this long,
TARGET_WARPS = 132 * 64       # and only while gates x parts < resident warps of an H200 (132 SMs)
# The simulator runs every thread as a Python thread: there the grid is capped at 2 blocks (the
# grid-stride loops cover the rest); blocks keep their real shape, so the warp logic is exercised.
MAX_BLOCKS = 2 if SIMULATED else 8192


def _cdiv(a, b):
    return -(-a // b)


def _blocks(rows):
    """Blocks for a warp-per-row launch over ``rows`` rows."""
    return min(_cdiv(max(1, rows), WARPS), MAX_BLOCKS)


def _dev(a):
    """A kernel argument: CuPy arrays are wrapped without numba's per-argument stream sync (the
    launch goes to CuPy's current stream, which already orders it after the array's producers)."""
    if SIMULATED or isinstance(a, np.ndarray):
        return a
    return cuda.as_cuda_array(a, sync=False)


def _flat(a):
    """The C-contiguous array ``a`` as a 1-D kernel argument (a view: never a copy, which would
    drop a kernel's output)."""
    if not a.flags.c_contiguous:
        raise ValueError(f"expected a C-contiguous array, got shape {a.shape} strides {a.strides}")
    return _dev(a.reshape(-1))


def _empty(like, shape):
    """Scratch on the same device as ``like`` (numpy under the simulator, CuPy on a GPU)."""
    if isinstance(like, np.ndarray):
        return np.empty(shape, dtype=like.dtype)
    import cupy
    return cupy.empty(shape, dtype=like.dtype)


def _per_arity(make):
    """Memoise ``make(n, numba_dtype) -> kernel``: n fixed at compile time (registers, unrolled
    loops); an arity outside 1..6 raises instead of overrunning fixed-size scratch."""
    kernels = {}

    def get(n, dtype):
        if not 1 <= n <= MAX_ARITY:
            raise ValueError(f"conn: arity (rows of conn) must be in 1..{MAX_ARITY}, got {n}")
        key = (int(n), np.dtype(dtype))
        if key not in kernels:
            kernels[key] = make(key[0], from_dtype(key[1]))
        return kernels[key]
    return get


# the simulator lacks warp shuffles: a faithful stand-in (lanes of a warp exchange values) --------

_SIM_WARPS = weakref.WeakKeyDictionary()
_SIM_LOCK = threading.Lock()


def _sim_shfl_xor_sync(self, mask, value, lane_mask):
    """Simulated shfl_xor_sync: lane l gets lane (l ^ lane_mask)'s value.

    One barrier per shuffle: rounds alternate between two value buffers, so a lane writing round
    k + 2 has passed barrier k + 1, which every lane reaches only after reading round k."""
    t = threading.current_thread()
    key = (tuple(t.blockIdx), t.thread_id // WARP)
    with _SIM_LOCK:
        warps = _SIM_WARPS.setdefault(t._manager, {})
        if key not in warps:
            warps[key] = (threading.Barrier(WARP, timeout=120),
                          ([None] * WARP, [None] * WARP), [0] * WARP)
        barrier, buffers, rounds = warps[key]
    lane = t.thread_id % WARP
    vals = buffers[rounds[lane] & 1]
    rounds[lane] += 1
    vals[lane] = value
    barrier.wait()
    return vals[lane ^ lane_mask]


if SIMULATED:
    import sys
    from numba.cuda.simulator.kernelapi import FakeCUDAModule
    if not hasattr(FakeCUDAModule, "shfl_xor_sync"):
        FakeCUDAModule.shfl_xor_sync = _sim_shfl_xor_sync
    # Each simulated thread is a Python thread and a warp's lanes meet at a barrier per shuffle:
    # with the default 5 ms GIL switch interval most of a run is spent waiting for it to expire.
    sys.setswitchinterval(min(sys.getswitchinterval(), 1e-4))


# device functions ---------------------------------------------------------------------------

@cuda.jit(device=True, inline="always")
def _warp_row():
    """(first row, row stride, lane) of this warp in a warp-per-row grid-stride loop."""
    tid = cuda.threadIdx.x
    return cuda.blockIdx.x * WARPS + tid // WARP, cuda.gridDim.x * WARPS, tid % WARP


@cuda.jit(device=True, inline="always")
def _warp_sums(acc, R, lane, out, base):
    """out[base + r] = sum over the warp's 32 lanes of acc[r], r < R (R a power of two).

    Transposing halving, T = min(log2 R, 5) steps with d = 16, 8, ...: a lane keeps the half of
    its m values that its lane bit d selects and adds its partner's (lane ^ d) copy of that half,
        acc[i] = keep_i + shfl_xor(send_i, d),   i < m / 2;
    then lane l holds partial sums of r = i + (R >> T) (l >> (5 - T)), i < R >> T, and 5 - T
    plain xor steps add over the lane bits left. R - 1 + (5 - T) shuffles in all for R <= 32
    (5 R for a shuffle tree per value); every step in a fixed order, so deterministic."""
    m = R
    d = WARP // 2
    while m > 1 and d > 0:
        h = m // 2
        upper = (lane & d) != 0
        for i in range(h):
            lo = acc[i]
            hi = acc[i + h]
            acc[i] = (hi if upper else lo) + cuda.shfl_xor_sync(FULL_MASK, lo if upper else hi, d)
        m = h
        d //= 2
    rest = 2 * d if d > 0 else 1                   # lanes that share a set of sums
    while d > 0:
        for i in range(m):
            acc[i] += cuda.shfl_xor_sync(FULL_MASK, acc[i], d)
        d //= 2
    if lane % rest == 0:
        for i in range(m):
            out[base + i + m * (lane // rest)] = acc[i]


@cuda.jit(device=True, inline="always")
def _fold(w, m, x, off, s, t):
    """Multilinear extension of w (2**m rows) at inputs x[off[j] + s], j < m.

    The last two inputs p, q fold in one pass per group of four rows w0..w3,
        f = w0 + q (w1 - w0) + p (w2 - w0 + q (w3 - w2 - w1 + w0)),
    then each input further up halves the table by a lerp, t[i] = t[2i] + x (t[2i+1] - t[2i]).
    m is a compile-time constant at every call, so the loops unroll and ``t`` stays in registers.
    """
    if m == 0:
        return w[0]
    q = x[off[m - 1] + s]
    if m == 1:
        return w[0] + q * (w[1] - w[0])
    p = x[off[m - 2] + s]
    for i in range(1 << (m - 2)):
        w0 = w[4 * i]
        c1 = w[4 * i + 1] - w0
        t[i] = w0 + q * c1 + p * (w[4 * i + 2] - w0 + q * (w[4 * i + 3] - w[4 * i + 2] - c1))
    for j in range(m - 3, -1, -1):
        xv = x[off[j] + s]
        for i in range(1 << j):
            t[i] = t[2 * i] + xv * (t[2 * i + 1] - t[2 * i])
    return t[0]


@cuda.jit(device=True, inline="always")
def _expand(x, off, s, n, e):
    """e[r] <- e[0] prod_k (x_k if b_k(r) else 1 - x_k), built as e <- [e (1 - x_k), e x_k]."""
    for k in range(n):
        xv = x[off[k] + s]
        for j in range((1 << k) - 1, -1, -1):
            v = e[j]
            e[2 * j + 1] = v * xv
            e[2 * j] = v - v * xv


_difference_table = cuda.jit(device=True, inline="always")(difference_table)


# gate kernels, one per (arity, dtype) ------------------------------------------------------

@_per_arity
def _forward_kernel(n, dt):
    R, T = 1 << n, max(1, 1 << n >> 2)

    @cuda.jit
    def kernel(x, B, conn, table, y):
        w = cuda.local.array(R, dt)
        t = cuda.local.array(T, dt)
        off = cuda.local.array(n, int64)
        g0, gs, lane = _warp_row()
        for g in range(g0, conn.shape[1], gs):
            for r in range(R):
                w[r] = table[g, r]
            for k in range(n):
                off[k] = conn[k, g] * B
            for s in range(lane, B, WARP):
                y[g * B + s] = _fold(w, n, x, off, s, t)
    return kernel


@_per_arity
def _forward_discrete_kernel(n, dt):
    @cuda.jit
    def kernel(x, B, conn, table, y):
        off = cuda.local.array(n, int64)
        g0, gs, lane = _warp_row()
        for g in range(g0, conn.shape[1], gs):
            for k in range(n):
                off[k] = conn[k, g] * B
            for s in range(lane, B, WARP):
                r = 0
                for k in range(n):
                    r = 2 * r + (1 if x[off[k] + s] >= 0.5 else 0)
                y[g * B + s] = table[g, r]
    return kernel


@cuda.jit(device=True, inline="always")
def _add_last_inputs(e, E, p, q, acc):
    """acc[4j + 2a + b] += e[j] (p if a else 1 - p) (q if b else 1 - q) for j < E: the last two
    inputs folded into the sums, as the CPU kernel does (``_sums_last_inputs``)."""
    for j in range(E):
        vp = e[j] * p
        vn = e[j] - vp
        acc[4 * j + 3] += vp * q
        acc[4 * j + 2] += vp - vp * q
        acc[4 * j + 1] += vn * q
        acc[4 * j] += vn - vn * q


@_per_arity
def _backward_table_kernel(n, dt):
    R, E = 1 << n, max(1, 1 << n >> 2)

    @cuda.jit
    def kernel(x, B, conn, dy, parts, out):
        """out[(j G + g) R + r] = sum over part j of the samples of dy[g, s] prod_k (...): the
        first n-2 inputs expanded from dy (``_expand``), the last two folded into the sums."""
        G = conn.shape[1]
        e = cuda.local.array(E, dt)
        acc = cuda.local.array(R, dt)
        off = cuda.local.array(n, int64)
        w0, ws, lane = _warp_row()
        for item in range(w0, parts * G, ws):          # warp-uniform: shuffles below are safe
            j = item // G
            g = item - j * G
            for k in range(n):
                off[k] = conn[k, g] * B
            for r in range(R):
                acc[r] = 0
            for s in range(j * B // parts + lane, (j + 1) * B // parts, WARP):
                q = x[off[n - 1] + s]
                v = dy[g * B + s]
                if n == 1:
                    acc[1] += v * q
                    acc[0] += v - v * q
                else:
                    e[0] = v
                    _expand(x, off, s, n - 2, e)
                    _add_last_inputs(e, E, x[off[n - 2] + s], q, acc)
            _warp_sums(acc, R, lane, out, item * R)
    return kernel


@_per_arity
def _backward_inputs_kernel(n, dt):
    H, T = 1 << (n - 1), max(1, 1 << (n - 1) >> 2)

    @cuda.jit
    def kernel(x, B, conn, rev_ptr, rev_idx, table, dy, grad_factor, dx):
        G = conn.shape[1]
        d = cuda.local.array(H, dt)
        t = cuda.local.array(T, dt)
        off = cuda.local.array(n, int64)            # the other n-1 inputs' offsets (n >= 1 slots)
        acc = cuda.local.array(SPL, dt)
        i0, is_, lane = _warp_row()
        for i in range(i0, rev_ptr.shape[0] - 1, is_):
            for base in range(0, B, WARP * SPL):
                for u in range(SPL):
                    acc[u] = 0
                for p in range(rev_ptr[i], rev_ptr[i + 1]):
                    k, g = 0, rev_idx[p]
                    while g >= G:                          # slot = k G + g, k < n: no division
                        g -= G
                        k += 1
                    _difference_table(table[g], n, k, d)
                    for j in range(n - 1):
                        off[j] = conn[j + 1 if j >= k else j, g] * B
                    for u in range(SPL):
                        s = base + u * WARP + lane
                        if s < B:
                            acc[u] += dy[g * B + s] * _fold(d, n - 1, x, off, s, t)
                for u in range(SPL):
                    s = base + u * WARP + lane
                    if s < B:
                        dx[i * B + s] = grad_factor * acc[u]
    return kernel


@cuda.jit
def _sum_parts_kernel(parts, out):
    """out[i] = sum_j parts[j N + i], j ascending (N = out size): the second, fixed-order stage."""
    N = out.shape[0]
    for i in range(cuda.grid(1), N, cuda.gridsize(1)):
        tot = parts[i]
        for j in range(1, parts.shape[0] // N):
            tot += parts[j * N + i]
        out[i] = tot


# small kernels -------------------------------------------------------------------------------

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
    for g in range(cuda.grid(1), w.shape[0], cuda.gridsize(1)):
        mx = w[g, 0]
        for i in range(1, w.shape[1]):
            if w[g, i] > mx:
                mx = w[g, i]
        z = 0.0
        for i in range(w.shape[1]):
            p[g, i] = math.exp(w[g, i] - mx)
            z += p[g, i]
        for i in range(w.shape[1]):
            p[g, i] /= z
        for r in range(tables.shape[1]):
            acc = 0.0
            for i in range(w.shape[1]):
                acc += p[g, i] * tables[i, r]
            omega[g, r] = acc


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


@cuda.jit
def _group_sum_kernel(x, B, m, R, div, out):
    """out[q, s] = sum of rows c m + i R .. min(c m + (i+1) R, (c+1) m) - 1 of x, / div, where
    q = c C + i, C = ceil(m / R): class c's i-th chunk of R rows (all of them when R >= m)."""
    C = (m + R - 1) // R
    q0, qs, lane = _warp_row()
    for q in range(q0, out.shape[0] // B if B > 0 else 0, qs):
        c = q // C
        j0 = c * m + (q - c * C) * R
        j1 = j0 + R if j0 + R < (c + 1) * m else (c + 1) * m
        for s in range(lane, B, WARP):
            acc = 0.0
            for j in range(j0, j1):
                acc += x[j * B + s]
            out[q * B + s] = acc / div


@cuda.jit
def _group_sum_backward_kernel(dout, B, m, tau, dx):
    j0, js, lane = _warp_row()
    for j in range(j0, dx.shape[0] // B if B > 0 else 0, js):
        c = j // m
        for s in range(lane, B, WARP):
            dx[j * B + s] = dout[c * B + s] / tau


# learned connections (see pylgn.kernels.cpu: slots j choose among candidate rows cand[j, :]) -----

@cuda.jit
def _choice_forward_kernel(x, B, cand, route, xs):
    j0, js, lane = _warp_row()
    for j in range(j0, cand.shape[0], js):
        for s in range(lane, B, WARP):
            acc = x[0] * 0                                 # a zero of the data's type
            for c in range(cand.shape[1]):
                w = route[j, c]
                if w != 0:
                    acc += w * x[cand[j, c] * B + s]
            xs[j * B + s] = acc


@cuda.jit
def _choice_backward_kernel(x, B, cand, gs, corr):
    j0, js, lane = _warp_row()
    for j in range(j0, cand.shape[0], js):
        for c in range(cand.shape[1]):
            off = cand[j, c] * B
            acc = gs[0] * 0
            for s in range(lane, B, WARP):
                acc += x[off + s] * gs[j * B + s]
            d = WARP // 2
            while d > 0:                                   # butterfly: every lane ends with the sum
                acc += cuda.shfl_xor_sync(FULL_MASK, acc, d)
                d //= 2
            if lane == 0:
                corr[j, c] = acc


@cuda.jit
def _choice_backward_inputs_kernel(gs, B, rev_ptr, rev_idx, route, grad_factor, dx):
    C = route.shape[1]
    i0, is_, lane = _warp_row()
    for i in range(i0, rev_ptr.shape[0] - 1, is_):
        for s in range(lane, B, WARP):
            acc = gs[0] * 0
            for p in range(rev_ptr[i], rev_ptr[i + 1]):
                e = rev_idx[p]
                j = e // C
                w = route[j, e - j * C]
                if w != 0:
                    acc += w * gs[j * B + s]
            dx[i * B + s] = grad_factor * acc


# launchers with the CPU kernels' signatures ----------------------------------------------------

def _launch(kernel, rows, *args):
    """kernel[blocks, BLOCK] on CuPy's current stream, warp per row over ``rows`` rows."""
    kernel[_blocks(rows), BLOCK, cuda_stream()](*args)


def gate_forward(x, conn, table, y):
    """Relaxed forward: y[g, s] = sum_r table[g, r] prod_k (x_k if b_k(r) else 1 - x_k)."""
    _launch(_forward_kernel(conn.shape[0], y.dtype), conn.shape[1],
            _flat(x), x.shape[1], _dev(conn), _dev(table), _flat(y))


def gate_forward_discrete(x, conn, table, y):
    """Discrete forward: y[g, s] = table[g, r(s)], r(s) = sum_k [x_k >= 0.5] 2**(n-1-k); table 0/1."""
    _launch(_forward_discrete_kernel(conn.shape[0], y.dtype), conn.shape[1],
            _flat(x), x.shape[1], _dev(conn), _dev(table), _flat(y))


def table_splits(gates, batch):
    """Parts each gate's batch splits into for gate_backward_table: 1 unless the batch holds two
    or more SPLIT_SAMPLES-long parts and the gates alone leave resident warps idle."""
    return max(1, min(batch // SPLIT_SAMPLES, TARGET_WARPS // max(1, gates)))


def gate_backward_table(x, conn, dy, dtable):
    """Gradient w.r.t. the relaxed table only: dtable[g, r] = sum_s dy[g, s] prod_k (x_k or 1 - x_k).

    A warp per (gate, part of the batch) sums its samples lane-wise and then across lanes by
    shuffles; with more than one part, the parts are added in order by a second kernel."""
    n, G = conn.shape
    B = x.shape[1]
    parts = table_splits(G, B)
    out = dtable if parts == 1 else _empty(dtable, (parts,) + dtable.shape)
    _launch(_backward_table_kernel(n, dtable.dtype), parts * G,
            _flat(x), B, _dev(conn), _flat(dy), parts, _flat(out))
    if parts > 1:
        _sum_parts_kernel[_blocks(dtable.size // WARP), BLOCK, cuda_stream()](_flat(out),
                                                                             _flat(dtable))


def gate_backward_inputs(x, conn, rev_ptr, rev_idx, table, dy, grad_factor, dx):
    """Gradient w.r.t. the inputs, gathered per input row (no races, deterministic):

        dx[i, s] = grad_factor * sum_{(k, g) reads i} dy[g, s] * dy_g/dx_k(s)
        dy_g/dx_k = multilinear extension over the other inputs of table[b_k=1] - table[b_k=0]

    ``rev_idx[rev_ptr[i]:rev_ptr[i+1]]`` lists the slots k*G + g that read input i.
    A warp per input row; each reader's difference table is built once per 128 samples.
    """
    _launch(_backward_inputs_kernel(conn.shape[0], dx.dtype), dx.shape[0],
            _flat(x), x.shape[1], _dev(conn), _dev(rev_ptr), _dev(rev_idx), _dev(table),
            _flat(dy), float(grad_factor), _flat(dx))


def adam_step(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
    """One Adam step over flat arrays (decoupled weight decay, bias-corrected):

        m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2
        p <- p - lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) - lr * wd * p
    """
    _adam_kernel[_blocks(param.shape[0] // WARP), BLOCK, cuda_stream()](
        _dev(param), _dev(grad), _dev(m), _dev(v), float(lr), float(beta1), float(beta2),
        float(eps), float(weight_decay), 1.0 - float(beta1) ** step, 1.0 - float(beta2) ** step)


def op_table(w, tables, p, omega):
    """OP projection: p[g] = softmax(w[g]) over the 16 gate logits, omega[g, r] = sum_i p[g, i] tables[i, r]."""
    _op_table_kernel[_blocks(w.shape[0] // WARP), BLOCK, cuda_stream()](
        _dev(w), _dev(tables), _dev(p), _dev(omega))


def op_table_backward(p, tables, domega, dw):
    """Jacobian of the OP projection: dw[g, i] = p_i (dp_i - sum_j p_j dp_j),
    dp_i = sum_r domega[g, r] tables[i, r], p = softmax(w[g]) as computed by op_table."""
    _op_table_backward_kernel[_blocks(p.shape[0] // WARP), BLOCK, cuda_stream()](
        _dev(p), _dev(tables), _dev(domega), _dev(dw))


def group_sum(x, tau, out):
    """GroupSum: out[c, s] = sum_{j < m} x[c m + j, s] / tau, m = rows of x / rows of out.

    Groups longer than SUM_ROWS rows are summed in two passes, partial sums of SUM_ROWS rows per
    (class, chunk) and then the chunks of each class in order: both passes fixed-order."""
    k, B = out.shape
    m = x.shape[0] // k
    if m > SUM_ROWS:
        part = _empty(out, (k * _cdiv(m, SUM_ROWS), B))
        _launch(_group_sum_kernel, part.shape[0], _flat(x), B, m, SUM_ROWS, 1.0, _flat(part))
        x, m = part, part.shape[0] // k
    _launch(_group_sum_kernel, k, _flat(x), B, m, m, float(tau), _flat(out))


def group_sum_backward(dout, tau, dx):
    """GroupSum backward: dx[c m + j, s] = dout[c, s] / tau."""
    m = dx.shape[0] // dout.shape[0]
    _launch(_group_sum_backward_kernel, dx.shape[0], _flat(dout), dx.shape[1], m,
            dout.dtype.type(tau), _flat(dx))


def choice_forward(x, cand, route, xs):
    """Slot rows: xs[j, s] = sum_c route[j, c] * x[cand[j, c], s] (terms with route 0 skipped)."""
    _launch(_choice_forward_kernel, cand.shape[0], _flat(x), x.shape[1], _dev(cand), _dev(route),
            _flat(xs))


def choice_backward(x, cand, gs, corr):
    """corr[j, c] = sum_s x[cand[j, c], s] gs[j, s]: a warp per slot, lanes over the batch, a
    shuffle butterfly per candidate (fixed order, deterministic)."""
    _launch(_choice_backward_kernel, cand.shape[0], _flat(x), x.shape[1], _dev(cand), _flat(gs),
            _dev(corr))


def choice_backward_inputs(gs, rev_ptr, rev_idx, route, grad_factor, dx):
    """dx[i, s] = grad_factor * sum_{(j, c): cand[j, c] = i} route[j, c] * gs[j, s], gathered per
    input row through ``rev_idx[rev_ptr[i]:rev_ptr[i+1]]`` (entries j*C + c)."""
    _launch(_choice_backward_inputs_kernel, dx.shape[0], _flat(gs), gs.shape[1], _dev(rev_ptr),
            _dev(rev_idx), _dev(route), dx.dtype.type(grad_factor), _flat(dx))


# fused logic-tree convolution + OR pooling (kernels in pylgn.kernels.conv_cuda) --------------

def tree_pool_forward(x, leaves, tables, geom, y, arg):
    """Fused LogicConv2d + OrPool2d forward: y = OR-pooled tree roots, arg = the window cell of
    each first maximum (formulas in pylgn.kernels.conv_cpu)."""
    from .conv_cuda import tree_pool_forward as kernel
    kernel(x, leaves, tables, geom, y, arg)


def tree_pool_backward(x, leaves, tables, geom, dy, arg, dtables, dx):
    """Fused backward: dtables = dL/dtables, dx = dL/dx, trees recomputed (pylgn.kernels.conv_cuda)."""
    from .conv_cuda import tree_pool_backward as kernel
    kernel(x, leaves, tables, geom, dy, arg, dtables, dx)
