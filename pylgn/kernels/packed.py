"""Bit-packed circuit inference (numba, parallel, cached): 64 samples per uint64 word.

A circuit is run from a *plan*: a few flat arrays built once per circuit (``make_plan``), so one
compiled kernel (``run_circuit``) serves every circuit, with no per-circuit compilation and no C
compiler at run time.

Layout. Inputs are packed feature-major, ``x[i, w]`` bit ``b`` = input ``i`` of sample
``64 w + b``. The kernel works on blocks of a few words (``block_words``: up to 32 words, 2048
samples, while the node scratch stays under 8 MiB per thread), carries each block through the whole
circuit while it is hot in cache, and runs the blocks in parallel. Node values live in a scratch
buffer of ``n_slots`` rows; slots are reused once a node's last reader has run (linear-scan
allocation), so the buffer holds the live frontier of the circuit rather than every node.

Gates, in plan order (sorted by level, then opcode, so the dispatch branch is predictable):

* opcode 0..15: the two-input gate of that id (``pylgn.gates.GATES``) on the words of its two
  source slots; arity-1 gates, constant tables and pass-through tables of any arity are mapped
  onto these opcodes (source b = source a where only one input matters);
* opcode 16: any other table of arity n, evaluated by Shannon expansion (a mux tree):
  ``f = f|x=0 ^ (x & (f|x=0 ^ f|x=1))`` folded from the last input up.

GroupSum by a carry-save vertical counter: the group's output words are added as bit-sliced
numbers (full adders ``s = a ^ b ^ c``, ``carry = (a & b) | (c & (a ^ b))``, about one full adder
per output word), then each sample's count is read from the bit planes.
"""
import numpy as np
from numba import njit

MAX_WORDS = 32       # widest block: 32 x 64 = 2048 samples
CACHE_BUDGET = 8 << 20  # bytes of node scratch per thread a block may use (see block_words)
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
def _run_block(x, w0, buf, t, op, ptr, src, dst, arity, table):
    """Load the block's input words (zero past the end of x), then run every gate in order.
    The block width nw = buf.shape[1] is a run-time value, so LLVM vectorizes the word loops
    behind an overlap check (a gate's destination slot never equals its sources)."""
    NW, nw = x.shape[1], buf.shape[1]
    for i in range(x.shape[0]):
        for w in range(nw):
            buf[i, w] = x[i, w0 + w] if w0 + w < NW else np.uint64(0)
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


@njit(cache=True)
def _push(bk, cnt, lev, c):
    """Add the word vector c (weight 2**lev) to the carry-save counter: level ``lev`` holds up to two
    pending words; a third triggers a full adder, the sum stays, the carry moves up a level."""
    nw = c.shape[0]
    while cnt[lev] == 2:
        for w in range(nw):
            a, b = bk[lev, 0, w], bk[lev, 1, w]
            u = a ^ b
            bk[lev, 0, w] = u ^ c[w]
            c[w] = (a & b) | (u & c[w])
        cnt[lev] = 1
        lev += 1
    for w in range(nw):
        bk[lev, cnt[lev], w] = c[w]
    cnt[lev] += 1


@njit(cache=True)
def _count_group(buf, out, j0, j1, bk, cnt, c):
    """Bit planes of sum_{j0 <= j < j1} buf[out[j]] per sample: afterwards level l holds at most one
    word (cnt[l] in {0, 1}) and count(sample) = sum_l 2**l * bit(bk[l, 0], sample)."""
    cnt[:] = 0
    nw = c.shape[0]
    for j in range(j0, j1):
        for w in range(nw):
            c[w] = buf[out[j], w]
        _push(bk, cnt, 0, c)
    for lev in range(MAX_LEVELS - 1):
        if cnt[lev] == 2:                              # half adder: sum stays, carry moves up
            for w in range(nw):
                c[w] = bk[lev, 0, w] & bk[lev, 1, w]
                bk[lev, 0, w] ^= bk[lev, 1, w]
            cnt[lev] = 1
            _push(bk, cnt, lev + 1, c)


@njit(cache=True)
def _store_scores(bk, cnt, acc, s0, n, cls, scores):
    """scores[s, cls] = sum_l 2**l bit(bk[l, 0], s - s0) for the block's samples s < n
    (accumulated per plane over the 64 bit positions of each word, which vectorizes)."""
    acc[:] = 0
    for lev in range(MAX_LEVELS):
        if cnt[lev]:
            for w in range(acc.shape[0] // 64):
                word = bk[lev, 0, w]
                for b in range(64):
                    acc[64 * w + b] += np.int32((word >> np.uint64(b)) & np.uint64(1)) << lev
    for i in range(min(acc.shape[0], n - s0)):
        scores[s0 + i, cls] = acc[i]


@njit(nogil=True, cache=True)
def run_blocks(x, n, blk0, blk1, buf, t, bk, op, ptr, src, dst, arity, table, out, k, bits,
               scores):
    """Run a planned circuit on blocks blk0 .. blk1-1 of packed inputs x (in_dim, NW words).

    k == 0: bits[j, w] = words of output j (bits past n are unspecified).
    k > 0:  scores[s, c] = number of ones among outputs c*m .. (c+1)*m - 1 of sample s, m = n_out/k.
    Scratch (64-byte aligned, ``aligned_empty``): node values buf (slots, words), mux tree t
    (32, words), counter planes bk (MAX_LEVELS, 2, words); a block is ``words`` words.
    Releases the GIL: ``run_circuit`` runs chunks of blocks on threads.
    """
    words, NW = buf.shape[1], x.shape[1]
    m = out.shape[0] // k if k > 0 else 0
    cnt = np.zeros(MAX_LEVELS, dtype=np.int64)
    c = np.empty(words, dtype=np.uint64)
    acc = np.empty(64 * words, dtype=np.int32)
    for blk in range(blk0, blk1):
        w0 = blk * words
        _run_block(x, w0, buf, t, op, ptr, src, dst, arity, table)
        if k == 0:
            for j in range(out.shape[0]):
                for w in range(min(words, NW - w0)):
                    bits[j, w0 + w] = buf[out[j], w]
        else:
            for cls in range(k):
                _count_group(buf, out, cls * m, (cls + 1) * m, bk, cnt, c)
                _store_scores(bk, cnt, acc, w0 * 64, n, cls, scores)


_POOL = {}


def run_circuit(x, n, plan, k, threads, bits=None):
    """Bits (n_out, NW) uint64 (k == 0; written into ``bits`` when given) or scores (n, k) int32
    of a planned circuit on packed x.

    Blocks are split into ``threads`` contiguous chunks run on a thread pool (the kernel releases
    the GIL). Threads rather than a numba prange: the parfor version of this loop measured about
    twice slower per gate here."""
    from concurrent.futures import ThreadPoolExecutor
    NW, p = x.shape[1], plan
    words = block_words(p["n_slots"], NW, threads)
    nb = -(-NW // words)
    chunks = max(1, min(threads, nb))
    slots = -(-p["n_slots"] // 8) * 8                     # whole cache lines per slab
    if bits is None:
        bits = np.empty((p["out"].shape[0], NW) if k == 0 else (1, 1), dtype=np.uint64)
    scores = np.empty((n, k) if k else (1, 1), dtype=np.int32)

    def chunk(ch):
        run_blocks(x, n, ch * nb // chunks, (ch + 1) * nb // chunks,
                   aligned_empty((slots, words)), aligned_empty((32, words)),
                   aligned_empty((MAX_LEVELS, 2, words)), p["op"], p["ptr"], p["src"], p["dst"],
                   p["arity"], p["table"], p["out"], k, bits, scores)
    if chunks == 1:
        chunk(0)
    else:
        if threads not in _POOL:
            _POOL[threads] = ThreadPoolExecutor(threads, thread_name_prefix="pylgn-packed")
        list(_POOL[threads].map(chunk, range(chunks)))
    return bits if k == 0 else scores


def aligned_empty(shape):
    """uint64 array of ``shape`` starting on a 64-byte boundary; with a last axis of 8 words each
    node row is exactly one cache line (a misaligned row straddles two, about twice the traffic)."""
    size = int(np.prod(shape))
    raw = np.empty(size + 8, dtype=np.uint64)
    off = (-(raw.ctypes.data // 8)) % 8
    return raw[off:off + size].reshape(shape)


def block_words(n_slots, n_words, n_threads, budget=CACHE_BUDGET):
    """Words per block: the widest power of two (1..MAX_WORDS) whose scratch (n_slots rows) fits
    ``budget`` bytes, but no wider than needed to give every thread a block. Measured on random
    2-input nets (2,000 and 16,000 gates per layer): 32 words was the fastest per gate-word, 2-4x
    faster than 2-4 words (the per-gate index loads are amortized) even where the scratch spills
    out of L2; 64 and 128 were slower again."""
    w = MAX_WORDS
    while w > 1 and n_slots * w * 8 > budget:
        w //= 2
    while w > 1 and -(-n_words // w) < n_threads:
        w //= 2
    return w
