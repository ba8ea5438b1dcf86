"""Plain-numpy reference formulas the kernels are tested against (independent of pylgn's kernels)."""
import numpy as np


def bits(n):
    """(2**n, n): bit b_k of row r, first input = high bit."""
    r = np.arange(2 ** n)
    return (r[:, None] >> (n - 1 - np.arange(n))[None, :]) & 1


def gate_forward(x, conn, table):
    """y[g, s] = sum_r table[g, r] prod_k (x_k if b_k else 1 - x_k), written as a dense product."""
    n = conn.shape[0]
    b = bits(n)                                           # (R, n)
    xs = x[conn]                                          # (n, G, B)
    terms = np.ones((b.shape[0],) + xs.shape[1:])
    for k in range(n):
        bk = b[:, k][:, None, None]
        terms = terms * np.where(bk == 1, xs[k][None], 1.0 - xs[k][None])
    return np.einsum("gr,rgs->gs", table, terms)


def gate_forward_discrete(xbits, conn, table):
    """y[g, s] = table[g, sum_k x_k 2**(n-1-k)] on 0/1 inputs."""
    n = conn.shape[0]
    idx = np.zeros((conn.shape[1], xbits.shape[1]), dtype=np.int64)
    for k in range(n):
        idx = 2 * idx + xbits[conn[k]].astype(np.int64)
    return np.take_along_axis(table, idx, axis=1)


def softmax(w):
    e = np.exp(w - w.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def relaxed_table(layer):
    """omega from the layer's raw weights, by the estimator formulas of paper-notes section 1.5."""
    from pylgn.gates import OP_TABLES
    w = np.asarray(layer.weights, dtype=np.float64)
    if layer.param == "op":
        return softmax(w) @ OP_TABLES
    if layer.estimator in ("sin", "sin-st"):
        return 0.5 + 0.5 * np.sin(w)
    if layer.estimator in ("sigmoid", "sigmoid-st"):
        return 1.0 / (1.0 + np.exp(-w))
    return np.clip(w, 0.0, 1.0)


def finite_diff(f, arr, idx, h=1e-6):
    """Central difference (f(arr[idx] + h) - f(arr[idx] - h)) / 2h, restoring arr[idx]."""
    old = arr[idx]
    arr[idx] = old + h
    a = f()
    arr[idx] = old - h
    b = f()
    arr[idx] = old
    return (a - b) / (2 * h)
