"""Bit-packed circuit inference (numba, parallel, cached): 64 samples per uint64 word.

A circuit is run from a *plan*: a few flat arrays built once per circuit (``make_plan``), so one
compiled kernel (``run_circuit``) serves every circuit, with no per-circuit compilation and no C
compiler at run time.

Layout. Inputs are packed feature-major, ``x[i, w]`` bit ``b`` = input ``i`` of sample
``64 w + b``. The kernel works on blocks of a few words (``block_words``: up to 64 words, 4096
samples, while the node scratch stays within the L2 plus a core's share of the L3, read from
/sys at run time), carries each block through the whole circuit while it is hot in cache, and
runs the blocks in parallel. The word loops run over a run-time block width and vectorize
(AVX-512 / AVX2 as the CPU has). Node values live in a scratch
buffer of ``n_slots`` rows; slots are reused once a node's last reader has run (linear-scan
allocation), so the buffer holds the live frontier of the circuit rather than every node.

Gates, in plan order (sorted by level, then opcode, so the dispatch branch is predictable):

* opcode 0..15: the two-input gate of that id (``pylgn.gates.GATES``) on the words of its two
  source slots; arity-1 gates, constant tables and pass-through tables of any arity are mapped
  onto these opcodes (source b = source a where only one input matters);
* opcode 16: any other table of arity n, evaluated by Shannon expansion (a mux tree):
  ``f = f|x=0 ^ (x & (f|x=0 ^ f|x=1))`` folded from the last input up.

GroupSum by a bit-sliced counter per group: 16 output words at a time go through a fixed tree
of carry-save adders (``csa(a, b, c) = (a ^ b ^ c, (a & b) | (c & (a ^ b)))``) into the counter's
planes 0..3, held in registers, and the weight-16 carry ripples into planes 4..L-1 (L = bits of the
group size); each sample's count is then read from the planes, and ``predict`` takes the argmax
inside the kernel (no (n, k) scores array).

Raw inputs (``load_raw``): instead of packed bits a block may start from raw uint8 samples
(batch, D): input feature i is ``raw[s, pixel_i] >= cut_i`` (the thermometer code as integer
cut-offs, see ``pylgn.circuit.Thermometer``). The block's needed pixels are first transposed
pixel-major by 8 x 8 byte transposes on uint64 words (8 samples x 8 pixels per transpose), then
each (pixel, cut-off) is a byte compare over the block, collected into 64-bit words.
"""
import numpy as np
from numba import njit

MAX_WORDS = 64       # widest block: 64 x 64 = 4096 samples
OP_GENERIC = 16      # opcode of an arity-n gate evaluated from its truth table
MAX_LEVELS = 34      # counter planes: enough for any group size below 2**32

# pass-through / constant / arity-1 tables as two-input opcodes (b is a copy of a)
_OP_FALSE, _OP_A, _OP_NOT_A, _OP_TRUE = 0, 3, 12, 15


# -- planning (host side, once per circuit) ---------------------------------------------------

@njit(cache=True)
def gate_levels(in_dim, ptr, src):
    """level[node]: 0 for inputs, 1 + max(level of sources) for gate g (node in_dim + g)."""
    G = ptr.shape[0] - 1
    level = np.zeros(in_dim + G, dtype=np.int32)
    for g in range(G):
        m = 0
        for p in range(ptr[g], ptr[g + 1]):
            m = max(m, level[src[p]])
        level[in_dim + g] = m + 1
    return level


@njit(cache=True)
def assign_slots(in_dim, order, ptr, src, outputs):
    """Linear-scan slot allocation. Inputs take slots 0..in_dim-1; gates run in ``order`` and take a
    free slot; a node's slot is freed after its last reader ran (outputs live to the end).
    Returns (slot per node, number of slots)."""
    G = order.shape[0]
    n_nodes = in_dim + G
    last = np.full(n_nodes, -1, dtype=np.int64)
    for pos in range(G):
        g = order[pos]
        for p in range(ptr[g], ptr[g + 1]):
            last[src[p]] = pos
    for j in range(outputs.shape[0]):
        last[outputs[j]] = G
    slot = np.empty(n_nodes, dtype=np.int32)
    free = np.empty(n_nodes, dtype=np.int32)
    n_free = 0
    for i in range(in_dim):
        slot[i] = i
    n_slots = in_dim
    for pos in range(G):
        g = order[pos]
        if n_free > 0:
            n_free -= 1
            slot[in_dim + g] = free[n_free]
        else:
            slot[in_dim + g] = n_slots
            n_slots += 1
        for p in range(ptr[g], ptr[g + 1]):         # free sources read for the last time
            s = src[p]
            if last[s] == pos and (p == ptr[g] or not _seen(src, ptr[g], p, s)):
                free[n_free] = slot[s]
                n_free += 1
        if last[in_dim + g] < pos:                   # dead gate: its slot is free at once
            free[n_free] = slot[in_dim + g]
            n_free += 1
    return slot, n_slots


@njit(cache=True)
def _seen(src, p0, p, s):
    """True when node s already appears in src[p0:p] (a gate reading the same node twice)."""
    for q in range(p0, p):
        if src[q] == s:
            return True
    return False


def opcodes(arity, codes):
    """Opcode per gate (see module doc) and, for a pass-through table of arity > 2, the index of
    the input it passes (0 otherwise). ``codes``: table codes, row 0 as the most significant bit."""
    op = np.full(arity.shape[0], OP_GENERIC, dtype=np.uint8)
    which = np.zeros(arity.shape[0], dtype=np.int64)
    for n in (int(v) for v in np.unique(arity)):
        sel = np.flatnonzero(arity == n)
        c = codes[sel]
        R = 1 << n
        if n == 1:
            o = np.array([_OP_FALSE, _OP_A, _OP_NOT_A, _OP_TRUE], dtype=np.uint8)[c.astype(np.int64)]
        elif n == 2:
            o = c.astype(np.uint8)
        else:
            o = np.full(sel.shape[0], OP_GENERIC, dtype=np.uint8)
            o[c == 0] = _OP_FALSE
            o[c == np.uint64(2 ** R - 1)] = _OP_TRUE
            for k in range(n):
                hit = c == np.uint64(_pass_code(n, k))
                o[hit], which[sel[hit]] = _OP_A, k
        op[sel] = o
    return op, which


def _pass_code(n, k):
    """Table code of the arity-n gate that outputs input k (row r = bit 2**n - 1 - r)."""
    R = 1 << n
    return sum(1 << (R - 1 - r) for r in range(R) if (r >> (n - 1 - k)) & 1)


def make_plan(in_dim, arity, ptr, src, codes, outputs):
    """Flat arrays for ``run_circuit``: gates ordered by (level, opcode); sources and destinations
    as scratch slots (unsigned, so indexing skips the negative-index wraparound); two sources for
    opcodes < 16, ``arity`` sources for the generic opcode."""
    op, which = opcodes(arity, codes)
    level = gate_levels(in_dim, ptr, src)[in_dim:]
    order = np.lexsort((op, level)).astype(np.int64)
    slot, n_slots = assign_slots(in_dim, order, ptr, src, outputs)
    arity_o, op_o, start = arity[order].astype(np.int64), op[order], ptr[order]
    two = op_o < OP_GENERIC
    n_src = np.where(two, 2, arity_o)
    g_ptr = np.zeros(order.shape[0] + 1, dtype=np.int64)
    np.cumsum(n_src, out=g_ptr[1:])
    idx = np.repeat(start - g_ptr[:-1], n_src) + np.arange(g_ptr[-1])   # generic: all sources
    first = start + which[order]
    idx[g_ptr[:-1][two]] = first[two]
    idx[g_ptr[:-1][two] + 1] = np.where(arity_o == 2, start + 1, first)[two]
    return dict(op=op_o, ptr=g_ptr.astype(np.uint64), src=slot[src[idx]].astype(np.uint32),
                dst=slot[in_dim + order].astype(np.uint32), arity=arity_o.astype(np.int32),
                table=codes[order].astype(np.uint64), out=slot[outputs].astype(np.uint32),
                n_slots=int(n_slots))


# -- the kernel -------------------------------------------------------------------------------

@njit(cache=True)
def _gate_table(buf, src, p, n, code, d, t):
    """buf[d] = table ``code`` (row r = bit 2**n-1-r) of the n sources src[p:p+n], by a mux tree:
    t[i] = row 2i ^ (x_last & (row 2i ^ row 2i+1)), then fold inputs n-2 .. 0 the same way."""
    R, nw = 1 << n, buf.shape[1]
    last = src[p + n - 1]
    one = np.uint64(1)
    for i in range(R >> 1):
        m0 = np.uint64(0) - ((code >> np.uint64(R - 1 - 2 * i)) & one)
        m1 = np.uint64(0) - ((code >> np.uint64(R - 2 - 2 * i)) & one)
        for w in range(nw):
            t[i, w] = m0 ^ (buf[last, w] & (m0 ^ m1))
    for j in range(n - 2, -1, -1):
        v = src[p + j]
        for i in range(1 << j):
            for w in range(nw):
                lo = t[2 * i, w]
                t[i, w] = lo ^ (buf[v, w] & (lo ^ t[2 * i + 1, w]))
    for w in range(nw):
        buf[d, w] = t[0, w]


@njit(cache=True)
def _run_block(buf, t, op, ptr, src, dst, arity, table):
    """Run every gate in plan order on the block's rows of buf (inputs already loaded).
    The block width nw = buf.shape[1] is a run-time value, so LLVM vectorizes the word loops
    behind an overlap check (a gate's destination slot never equals its sources)."""
    nw = buf.shape[1]
    for g in range(op.shape[0]):
        p, d, o = ptr[g], dst[g], op[g]
        if o >= OP_GENERIC:
            _gate_table(buf, src, p, arity[g], table[g], d, t)
            continue
        a, b = src[p], src[p + 1]
        # the 16 two-input gates, as in pylgn.gates.GATE_EXPRS (written out for numba)
        if o == 1:
            for w in range(nw): buf[d, w] = buf[a, w] & buf[b, w]
        elif o == 2:
            for w in range(nw): buf[d, w] = buf[a, w] & ~buf[b, w]
        elif o == 3:
            for w in range(nw): buf[d, w] = buf[a, w]
        elif o == 4:
            for w in range(nw): buf[d, w] = ~buf[a, w] & buf[b, w]
        elif o == 5:
            for w in range(nw): buf[d, w] = buf[b, w]
        elif o == 6:
            for w in range(nw): buf[d, w] = buf[a, w] ^ buf[b, w]
        elif o == 7:
            for w in range(nw): buf[d, w] = buf[a, w] | buf[b, w]
        elif o == 8:
            for w in range(nw): buf[d, w] = ~(buf[a, w] | buf[b, w])
        elif o == 9:
            for w in range(nw): buf[d, w] = ~(buf[a, w] ^ buf[b, w])
        elif o == 10:
            for w in range(nw): buf[d, w] = ~buf[b, w]
        elif o == 11:
            for w in range(nw): buf[d, w] = buf[a, w] | ~buf[b, w]
        elif o == 12:
            for w in range(nw): buf[d, w] = ~buf[a, w]
        elif o == 13:
            for w in range(nw): buf[d, w] = ~buf[a, w] | buf[b, w]
        elif o == 14:
            for w in range(nw): buf[d, w] = ~(buf[a, w] & buf[b, w])
        else:
            fill = np.uint64(0) if o == 0 else ~np.uint64(0)
            for w in range(nw): buf[d, w] = fill


@njit(inline="always")
def _csa(a, b, c):
    """Carry-save adder on words: a + b + c = sum + 2 carry, per bit."""
    u = a ^ b
    return u ^ c, (a & b) | (u & c)


@njit(cache=True)
def _ripple(planes, carry, lo, L):
    """Add the word vector ``carry`` (weight 2**lo) into planes lo..L-1 (ripple carry)."""
    for lev in range(lo, L):
        for w in range(carry.shape[0]):
            c = planes[lev, w] & carry[w]
            planes[lev, w] ^= carry[w]
            carry[w] = c


@njit(cache=True)
def _count_group(buf, out, j0, j1, planes, tmp, L):
    """planes[l, w] (l < L) = bit l of the number of ones among rows out[j0:j1] of buf, per
    sample: 16 rows at a time are copied into tmp (16, words) and go through a carry-save tree
    into planes 0..3, the weight-16 carry rippled into planes 4..L-1; the remaining rows are
    rippled in one by one. L >= 4. (Reading the 16 rows from one scratch array rather than
    from buf directly keeps LLVM's run-time alias checks few enough to vectorize the word loop:
    2.5x faster at 32 words.)"""
    nw = buf.shape[1]
    planes[:L] = 0
    j = j0
    while j + 16 <= j1:
        for i in range(16):
            r = out[j + i]
            for w in range(nw):
                tmp[i, w] = buf[r, w]
        for w in range(nw):
            o, t, f, e = planes[0, w], planes[1, w], planes[2, w], planes[3, w]
            o, t1 = _csa(o, tmp[0, w], tmp[1, w])
            o, t2 = _csa(o, tmp[2, w], tmp[3, w])
            t, f1 = _csa(t, t1, t2)
            o, t1 = _csa(o, tmp[4, w], tmp[5, w])
            o, t2 = _csa(o, tmp[6, w], tmp[7, w])
            t, f2 = _csa(t, t1, t2)
            f, e1 = _csa(f, f1, f2)
            o, t1 = _csa(o, tmp[8, w], tmp[9, w])
            o, t2 = _csa(o, tmp[10, w], tmp[11, w])
            t, f1 = _csa(t, t1, t2)
            o, t1 = _csa(o, tmp[12, w], tmp[13, w])
            o, t2 = _csa(o, tmp[14, w], tmp[15, w])
            t, f2 = _csa(t, t1, t2)
            f, e2 = _csa(f, f1, f2)
            e, tmp[0, w] = _csa(e, e1, e2)
            planes[0, w], planes[1, w], planes[2, w], planes[3, w] = o, t, f, e
        _ripple(planes, tmp[0], 4, L)
        j += 16
    for jj in range(j, j1):
        for w in range(nw):
            tmp[0, w] = buf[out[jj], w]
        _ripple(planes, tmp[0], 0, L)


@njit(cache=True)
def _plane_counts(planes, L, acc):
    """acc[64 w + b] = sum_l 2**l bit b of planes[l, w] (the block's counts of one group)."""
    acc[:] = 0
    for lev in range(L):
        for w in range(acc.shape[0] // 64):
            word = planes[lev, w]
            for b in range(64):
                acc[64 * w + b] += np.int32((word >> np.uint64(b)) & np.uint64(1)) << lev


@njit(cache=True)
def load_packed(x, w0, buf):
    """Rows 0..in_dim-1 of buf = words w0.. of packed x (zero past its end)."""
    NW, nw = x.shape[1], buf.shape[1]
    for i in range(x.shape[0]):
        for w in range(nw):
            buf[i, w] = x[i, w0 + w] if w0 + w < NW else np.uint64(0)


@njit(inline="always")
def _swap(a, b, shift, mask):
    """Exchange the bits of a >> shift under mask with those of b (a block transpose step)."""
    t = ((a >> np.uint64(shift)) ^ b) & np.uint64(mask)
    return a ^ (t << np.uint64(shift)), b ^ t


@njit(inline="always")
def _row(raw64, r, g):
    return raw64[r, g] if r < raw64.shape[0] else np.uint64(0)


@njit(inline="always")
def _transpose8(raw64, b0, g):
    """Word g of samples b0 .. b0 + 7 (rows past the batch read 0) as an 8 x 8 byte matrix,
    transposed: word k of the result holds byte k of each sample, sample j at byte j.
    3 rounds of 4 swaps of 32-, 16- and 8-bit blocks."""
    if b0 + 8 <= raw64.shape[0]:
        r0, r1, r2, r3 = raw64[b0, g], raw64[b0 + 1, g], raw64[b0 + 2, g], raw64[b0 + 3, g]
        r4, r5, r6, r7 = raw64[b0 + 4, g], raw64[b0 + 5, g], raw64[b0 + 6, g], raw64[b0 + 7, g]
    else:
        r0, r1, r2, r3 = (_row(raw64, b0, g), _row(raw64, b0 + 1, g), _row(raw64, b0 + 2, g),
                          _row(raw64, b0 + 3, g))
        r4, r5, r6, r7 = (_row(raw64, b0 + 4, g), _row(raw64, b0 + 5, g),
                          _row(raw64, b0 + 6, g), _row(raw64, b0 + 7, g))
    r0, r4 = _swap(r0, r4, 32, 0x00000000FFFFFFFF)
    r1, r5 = _swap(r1, r5, 32, 0x00000000FFFFFFFF)
    r2, r6 = _swap(r2, r6, 32, 0x00000000FFFFFFFF)
    r3, r7 = _swap(r3, r7, 32, 0x00000000FFFFFFFF)
    r0, r2 = _swap(r0, r2, 16, 0x0000FFFF0000FFFF)
    r1, r3 = _swap(r1, r3, 16, 0x0000FFFF0000FFFF)
    r4, r6 = _swap(r4, r6, 16, 0x0000FFFF0000FFFF)
    r5, r7 = _swap(r5, r7, 16, 0x0000FFFF0000FFFF)
    r0, r1 = _swap(r0, r1, 8, 0x00FF00FF00FF00FF)
    r2, r3 = _swap(r2, r3, 8, 0x00FF00FF00FF00FF)
    r4, r5 = _swap(r4, r5, 8, 0x00FF00FF00FF00FF)
    r6, r7 = _swap(r6, r7, 8, 0x00FF00FF00FF00FF)
    return r0, r1, r2, r3, r4, r5, r6, r7


@njit(cache=True)
def _transpose_block(raw64, s0, groups, vt64):
    """vt64[8 i + k, c] = byte k of raw64[s0 + 8 c + j, groups[i]] at byte j: the block's pixels
    8 g .. 8 g + 7 of each needed 8-pixel group g, pixel-major (rows past the batch read 0).
    Group by group over all the block's samples: the stride-D row reads stream well (measured
    faster than tiling 64 samples at a time over all groups, 80 vs 125 ns per MNIST image)."""
    for i in range(groups.shape[0]):
        for c in range(vt64.shape[1]):
            r0, r1, r2, r3, r4, r5, r6, r7 = _transpose8(raw64, s0 + 8 * c, groups[i])
            vt64[8 * i, c], vt64[8 * i + 1, c], vt64[8 * i + 2, c] = r0, r1, r2
            vt64[8 * i + 3, c], vt64[8 * i + 4, c], vt64[8 * i + 5, c] = r3, r4, r5
            vt64[8 * i + 6, c], vt64[8 * i + 7, c] = r6, r7


@njit(cache=True)
def load_raw(raw64, s0, enc, buf, vt64):
    """Thermometer bits straight from raw uint8 samples, viewed as raw64 (batch, D / 8) uint64,
    for the block of samples s0 ..: ``enc`` = (groups, vrow, ptr, cut, slot). The needed 8-pixel
    groups are transposed pixel-major into vt64 (``_transpose_block``); then for pixel u (vt
    row vrow[u]) and entry q in ptr[u]:ptr[u+1], row slot[q] of buf gets bit b of word w =
    pixel >= cut[q] for sample s0 + 64 w + b (1 <= cut <= 256, so padding reads give 0): a byte
    compare over the block's row (vectorizes) and bits collected 64 at a time."""
    groups, vrow, ptr, cut, slot = enc
    nw = buf.shape[1]
    _transpose_block(raw64, s0, groups, vt64)
    vt = vt64.view(np.uint8)
    for u in range(vrow.shape[0]):
        r = vrow[u]
        for q in range(ptr[u], ptr[u + 1]):
            d, c = slot[q], cut[q]
            if c > 255:
                for w in range(nw):
                    buf[d, w] = 0
                continue
            c8 = np.uint8(c)
            for w in range(nw):
                word = np.uint64(0)
                for b in range(64):
                    word |= np.uint64(vt[r, 64 * w + b] >= c8) << np.uint64(b)
                buf[d, w] = word


@njit(cache=True)
def pack_raw(raw64, n, enc, in_dim):
    """Packed words (in_dim, ceil(n / 64)) of the features ``load_raw`` encodes (other rows 0)."""
    W = 8
    NW = -(-n // 64)
    words = np.zeros((in_dim, NW), dtype=np.uint64)
    buf = np.zeros((in_dim, W), dtype=np.uint64)
    vt64 = np.empty((8 * enc[0].shape[0], 8 * W), dtype=np.uint64)
    slot = enc[4]
    for blk in range(-(-NW // W)):
        load_raw(raw64[:n], 64 * W * blk, enc, buf, vt64)
        for q in range(slot.shape[0]):
            for w in range(min(W, NW - W * blk)):
                words[slot[q], W * blk + w] = buf[slot[q], w]
    return words


def run_blocks(x, raw, enc, n, blk0, blk1, buf, t, planes, op, ptr, src, dst, arity, table,
               out, k, mode, bits, scores, pred):
    """Run a planned circuit on blocks blk0 .. blk1-1 of n samples.

    Inputs: packed x (in_dim, NW words), or with ``raw`` (n, D / 8) uint64 (x unused) the raw
    uint8 samples, encoded per block by ``load_raw`` with ``enc`` (see there).
    mode 0: bits[j, w] = words of output j (bits past n are unspecified).
    mode 1: scores[s, c] = number of ones among outputs c*m .. (c+1)*m - 1 of sample s, m = n_out/k.
    mode 2: pred[s] = argmax_c of those counts (the lowest c on ties).
    Scratch (64-byte aligned, ``aligned_empty``): node values buf (slots, words), mux tree t
    (32, words), counter planes (MAX_LEVELS, words); a block is ``words`` words.
    Releases the GIL: ``run_circuit`` runs chunks of blocks on threads. The kernel is compiled
    per input path (``_blocks_kernel``): packed inputs never compile the raw encoder.
    """
    _blocks_kernel(raw.shape[0] == n)(x, raw, enc, n, blk0, blk1, buf, t, planes, op, ptr, src,
                                      dst, arity, table, out, k, mode, bits, scores, pred)


_BLOCK_KERNELS = {}


def _blocks_kernel(from_raw):
    """``run_blocks``'s kernel for raw (True) or packed (False) inputs, built on first use; the
    closed-over ``from_raw`` is a compile-time constant, so numba prunes the other path before
    typing it (the raw encoder, ``load_raw``, is most of the packed engine's compile time)."""
    if from_raw not in _BLOCK_KERNELS:
        _BLOCK_KERNELS[from_raw] = _make_blocks_kernel(bool(from_raw))
    return _BLOCK_KERNELS[from_raw]


def _make_blocks_kernel(from_raw):
    @njit(nogil=True, cache=True)
    def kernel(x, raw, enc, n, blk0, blk1, buf, t, planes, op, ptr, src, dst, arity, table,
               out, k, mode, bits, scores, pred):
        words = buf.shape[1]
        m = out.shape[0] // k if k > 0 else 0
        L = max(4, int(np.ceil(np.log2(m + 1))) + 1) if k > 0 else 0
        tmp = np.empty((16, words), dtype=np.uint64)
        acc = np.empty(64 * words, dtype=np.int32)
        best = np.empty(64 * words, dtype=np.int32)
        arg = np.empty(64 * words, dtype=np.int64)
        vt64 = np.empty((8 * enc[0].shape[0], 8 * words), dtype=np.uint64)
        for blk in range(blk0, blk1):
            w0 = blk * words
            if from_raw:
                load_raw(raw, 64 * w0, enc, buf, vt64)
            else:
                load_packed(x, w0, buf)
            _run_block(buf, t, op, ptr, src, dst, arity, table)
            ns = min(64 * words, n - 64 * w0)
            if mode == 0:
                for j in range(out.shape[0]):
                    for w in range(min(words, bits.shape[1] - w0)):
                        bits[j, w0 + w] = buf[out[j], w]
                continue
            best[:] = -1
            for cls in range(k):
                _count_group(buf, out, cls * m, (cls + 1) * m, planes, tmp, L)
                _plane_counts(planes, L, acc)
                if mode == 1:
                    for i in range(ns):
                        scores[64 * w0 + i, cls] = acc[i]
                else:
                    for i in range(ns):
                        if acc[i] > best[i]:
                            best[i], arg[i] = acc[i], cls
            if mode == 2:
                for i in range(ns):
                    pred[64 * w0 + i] = arg[i]
    return kernel


_POOL = {}
_EMPTY_ENC = None


def run_circuit(x, n, plan, k, threads, bits=None, mode=None, raw=None, enc=None, budget=None):
    """Bits (n_out, NW) uint64 (k == 0; written into ``bits`` when given), scores (n, k) int32, or
    with mode 2 the argmax (n,) int64, of a planned circuit on packed x (or on ``raw`` samples with
    the encoding ``enc`` = (pix, ptr, cut, slot), see ``load_raw``; x is then None).

    Blocks are split into ``threads`` contiguous chunks run on a thread pool (the kernel releases
    the GIL). Threads rather than a numba prange: the parfor version of this loop measured about
    twice slower per gate here."""
    from concurrent.futures import ThreadPoolExecutor
    p = plan
    mode = (1 if k else 0) if mode is None else mode
    NW = -(-n // 64)
    if raw is None:
        raw = np.zeros((0, 1), dtype=np.uint64)
        enc = _empty_enc()
    else:
        x = np.zeros((1, 1), dtype=np.uint64)
    words = block_words(p["n_slots"], NW, threads, budget)
    nb = -(-NW // words)
    chunks = max(1, min(threads, nb))
    slots = -(-p["n_slots"] // 8) * 8                     # whole cache lines per slab
    if bits is None:
        bits = np.empty((p["out"].shape[0], NW) if mode == 0 else (1, 1), dtype=np.uint64)
    scores = np.empty((n, k) if mode == 1 else (1, 1), dtype=np.int32)
    pred = np.empty(n if mode == 2 else 1, dtype=np.int64)

    def chunk(ch):
        run_blocks(x, raw, enc, n, ch * nb // chunks, (ch + 1) * nb // chunks,
                   aligned_empty((slots, words)), aligned_empty((32, words)),
                   aligned_empty((MAX_LEVELS, words)), p["op"], p["ptr"], p["src"], p["dst"],
                   p["arity"], p["table"], p["out"], k, mode, bits, scores, pred)
    if chunks == 1:
        chunk(0)
    else:
        if threads not in _POOL:
            _POOL[threads] = ThreadPoolExecutor(threads, thread_name_prefix="pylgn-packed")
        list(_POOL[threads].map(chunk, range(chunks)))
    return (bits, scores, pred)[mode]


def _empty_enc():
    global _EMPTY_ENC
    if _EMPTY_ENC is None:
        z = np.zeros(1, dtype=np.int64)
        _EMPTY_ENC = (z[:0], z[:0], z, z[:0], z[:0])
    return _EMPTY_ENC


def aligned_empty(shape):
    """uint64 array of ``shape`` starting on a 64-byte boundary; with a last axis of 8 words each
    node row is exactly one cache line (a misaligned row straddles two, about twice the traffic)."""
    size = int(np.prod(shape))
    raw = np.empty(size + 8, dtype=np.uint64)
    off = (-(raw.ctypes.data // 8)) % 8
    return raw[off:off + size].reshape(shape)


def cache_sizes():
    """(L2, L3) bytes of cpu0 from /sys/devices/system/cpu/cpu0/cache (1 MiB, 32 MiB if absent)."""
    import glob
    sizes = {}
    for d in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*"):
        try:
            with open(d + "/level") as f:
                level = int(f.read())
            with open(d + "/type") as f:
                kind = f.read().strip()
            with open(d + "/size") as f:
                text = f.read().strip()
        except (OSError, ValueError):
            continue
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        if kind != "Instruction" and text.rstrip("KMG").isdigit():
            sizes[level] = int(text.rstrip("KMG")) * mult
    return sizes.get(2, 1 << 20), sizes.get(3, 32 << 20)


def default_budget():
    """Scratch bytes per thread a block may use: L2 plus half of a core's share of the L3 (the
    other half left to the input and output streams). Measured (1 thread, CPU time, predict):
    on the simplified MNIST net (7,182 scratch rows) 178 / 139 / 122 / 133 ns per image at
    16 / 32 / 64 / 128-word blocks, so the 16-word block whose scratch (0.9 MB) fits the 1 MiB
    L2 is the slowest (the per-gate index loads, dispatch and loop set-up, paid once per block,
    cost more than L3 hits); on the random 784 -> 4 x 16,000 net (18,377 rows) 32 words (4.5 MB)
    beat 64 (9 MB)."""
    import os
    l2, l3 = cache_sizes()
    return l2 + l3 // (2 * max(1, os.cpu_count() or 1))


def block_words(n_slots, n_words, n_threads, budget=None):
    """Words per block: the widest power of two (1..MAX_WORDS) whose scratch (n_slots rows) fits
    ``budget`` bytes (default ``default_budget()``), but no wider than needed to give every thread
    a block."""
    budget = default_budget() if budget is None else budget
    w = MAX_WORDS
    while w > 1 and n_slots * w * 8 > budget:
        w //= 2
    while w > 1 and -(-n_words // w) < n_threads:
        w //= 2
    return w
