"""Device-agnostic helpers compiled by both kernel sets (numba.njit in cpu.py, cuda.jit in cuda.py)."""


def difference_table(table_g, n, k, d):
    """d[r'] = table[r with b_k = 1] - table[r with b_k = 0], r' = r without bit k (n-1 bits)."""
    bit = n - 1 - k
    low = (1 << bit) - 1
    for rp in range(1 << (n - 1)):
        r0 = ((rp & ~low) << 1) | (rp & low)
        d[rp] = table_g[r0 | (1 << bit)] - table_g[r0]


#: Partial dx buffers of the fused tree + pool backward (pylgn.kernels.conv_cpu): a fixed count,
#: so the sums do not depend on the thread count.
DX_PARTS = 8
