"""Parameter initializations (paper-notes section 2).

IWP, per gate g and row r, with c the estimator's center (rho(c) = 0.5):

    gaussian:                 W[g, r] = c + N(0, sigma)                    sigma = 0.25
    residual / and-or / ...:  W[g, r] = c + (2 t_g[r] - 1) mu + N(0, sigma)  mu = 1.2 (sin), 3 (sigmoid)

where t_g is the target truth table of gate g: a pass-through (``residual``, the default target
"a" = first input), a draw from {AND, OR} (``and-or``), from {AND, OR, A, B} (``and-or-residual``)
or uniform over all tables (``uniform``). OP: gaussian W ~ N(0, 1); the others put logit ``shift``
(default 5) on the target gate and 0 elsewhere (plus N(0, sigma) when sigma is given).
"""
import numpy as np

from . import gates
from .estimators import CENTER, SHIFT

INITS = ("gaussian", "residual", "and-or", "and-or-residual", "uniform")


def target_table(init_target, arity):
    """Truth table of the residual target: "a", "b", ... (pass-through of that input) or a 0/1 string."""
    if isinstance(init_target, str) and len(init_target) == 1 and init_target.isalpha():
        k = ord(init_target.lower()) - ord("a")
        if not 0 <= k < arity:
            raise ValueError(f"init_target: input {init_target!r} does not exist for arity {arity}")
        return gates.pass_through_table(arity, k)
    return gates.table_from_string(init_target, arity)


def target_tables(init, arity, out_dim, init_target, rng):
    """(out_dim, 2**arity) uint8 target tables for the shifted initializations."""
    a, b = gates.pass_through_table(arity, 0), gates.pass_through_table(arity, min(1, arity - 1))
    choices = {
        "residual": [target_table(init_target, arity)],
        "and-or": [gates.and_table(arity), gates.or_table(arity)],
        "and-or-residual": [gates.and_table(arity), gates.or_table(arity), a, b],
    }
    if init == "uniform":
        return rng.integers(0, 2, size=(out_dim, 2 ** arity)).astype(np.uint8)
    pool = np.stack(choices[init])
    return pool[rng.integers(len(pool), size=out_dim)] if len(pool) > 1 else \
        np.repeat(pool, out_dim, axis=0)


def init_iwp(init, arity, out_dim, estimator, sigma, shift, init_target, rng):
    """IWP parameters (out_dim, 2**arity) float64."""
    sigma = 0.25 if sigma is None else sigma
    center = CENTER[estimator]
    noise = rng.normal(0.0, sigma, size=(out_dim, 2 ** arity))
    if init == "gaussian":
        return center + noise
    mu = SHIFT[estimator] if shift is None else shift
    signs = 2.0 * target_tables(init, arity, out_dim, init_target, rng) - 1.0
    return center + mu * signs + noise


def init_op(init, arity, out_dim, sigma, shift, init_target, rng):
    """OP logits (out_dim, 16) float64."""
    if init == "gaussian":
        return rng.normal(0.0, 1.0 if sigma is None else sigma, size=(out_dim, 16))
    tables = target_tables(init, arity, out_dim, init_target, rng)
    ids = gates.table_class(tables).astype(np.int64)   # a 4-row table read as bits = gate id
    w = np.zeros((out_dim, 16)) if sigma is None else rng.normal(0.0, sigma, size=(out_dim, 16))
    w[np.arange(out_dim), ids] += 5.0 if shift is None else shift
    return w
