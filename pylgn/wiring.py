"""Fixed connections between layers and their reverse index."""
from math import comb

import numpy as np

CONNECTIONS = ("random", "unique")


def random_connections(in_dim, out_dim, arity, rng):
    """(arity, out_dim) int32: a shuffled arange(arity*out_dim) % in_dim, so every input is read
    and reads are spread evenly; a narrowing layer (out_dim*arity < in_dim) reads out_dim*arity
    distinct inputs (the others feed nothing: a circuit's simplify drops the gates behind them)."""
    if out_dim * arity < in_dim:
        return rng.choice(in_dim, arity * out_dim, replace=False).reshape(arity, out_dim) \
            .astype(np.int32)
    slots = rng.permutation(arity * out_dim) % in_dim
    return rng.permutation(slots).reshape(arity, out_dim).astype(np.int32)


def unique_connections(in_dim, out_dim, arity, rng):
    """(arity, out_dim) int32: each gate reads ``arity`` distinct inputs and no two gates read the
    same set of inputs. Needs out_dim <= C(in_dim, arity)."""
    if arity > in_dim or out_dim > comb(in_dim, arity):
        raise ValueError(f"connections='unique': out_dim ({out_dim}) must be <= C(in_dim, arity) "
                         f"= C({in_dim}, {arity})")
    conn = np.empty((arity, out_dim), dtype=np.int32)
    seen = set()
    cover = rng.permutation(max(in_dim, out_dim)) % in_dim   # spread first inputs evenly
    g = 0
    while g < out_dim:
        rest = rng.choice(in_dim - 1, size=arity - 1, replace=False)
        first = cover[g]
        others = np.where(rest >= first, rest + 1, rest)
        key = tuple(sorted((int(first), *map(int, others))))
        if key in seen:
            cover[g] = rng.integers(in_dim)
            continue
        seen.add(key)
        conn[:, g] = rng.permutation([first, *others])
        g += 1
    return conn


def make_connections(kind, in_dim, out_dim, arity, rng):
    if kind == "random":
        return random_connections(in_dim, out_dim, arity, rng)
    if kind == "unique":
        return unique_connections(in_dim, out_dim, arity, rng)
    raise ValueError(f"connections: expected one of {CONNECTIONS}, got {kind!r}")


def reverse_index(conn, in_dim):
    """CSR of readers per input: slots ``k*G + g`` that read input i lie in
    ``rev_idx[rev_ptr[i]:rev_ptr[i+1]]`` (ascending, so the gather order is fixed). Both are
    int32 (the kernels' index type): arity * gates must stay below 2**31."""
    if np.size(conn) >= 2 ** 31:
        raise ValueError(f"connections: arity x out_dim = {np.size(conn)} slots; the int32 "
                         f"reverse index holds fewer than 2**31 (split the layer)")
    flat = np.asarray(conn, dtype=np.int64).ravel()
    order = np.argsort(flat, kind="stable").astype(np.int32)
    counts = np.bincount(flat, minlength=in_dim)
    rev_ptr = np.zeros(in_dim + 1, dtype=np.int32)
    np.cumsum(counts, out=rev_ptr[1:])
    return rev_ptr, order
