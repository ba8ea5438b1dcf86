"""Learned connections: each gate input chooses its source among C candidate rows.

A logic layer with ``connections="learned"`` has S = arity * G slots; slot j = g * arity + k is
input k of gate g. Slot j holds C candidate sources ``cand[j, :]`` (rows of the layer's input,
drawn at construction; ``cand[j, 0]`` is the random wiring the layer would have had) and C choice
logits ``theta[j, :]`` beside the gate parameters in the flat buffer. A training step routes the
candidates into S slot rows and runs the ordinary gate kernels on them with identity wiring:

    xs[j, s] = sum_c route[j, c] x[cand[j, c], s]                 (kernels.choice_forward)

Two relaxations of the choice (``choice=``):

- ``"ste"`` (straight-through, the learnable mapping of DWN): route = onehot(argmax theta), so
  training reads exactly the wires that the circuit will; the logits get the gradient of a linear
  surrogate  xs ~ sum_c theta_c (2 x_c - 1):
      dL/dtheta[j, c] = sum_s (2 x[cand[j, c], s] - 1) gs[j, s],    gs = dL/dxs
  and the input gradient goes to the chosen source only.
- ``"softmax"`` (a mixture, as LILogicNet's top-K): route = softmax(theta / t), the exact gradient
      dL/dtheta[j, c] = route[j, c] (sum_s x[cand[j, c], s] gs[j, s] - sum_s xs[j, s] gs[j, s]) / t
  and the input gradient spread by route. Eval and the circuit take the argmax (a gap to watch).

Both need corr[j, c] = sum_s x[cand[j, c], s] gs[j, s] (kernels.choice_backward), one read of
each candidate row per slot. At eval and in circuits the layer is an ordinary fixed-wiring layer
whose connections are cand[j, argmax theta[j]].
"""
import numpy as np

CHOICES = ("ste", "softmax")
#: initial logit lead of each slot's first candidate (the layer's random wiring) over the others,
#: whose logits start uniform in [0, INIT_SPREAD): the net starts from a real random wiring
INIT_LEAD = 1.0
INIT_SPREAD = 0.1


def first_wiring(in_dim, G, n, rng):
    """(G * n,) the initial source of each slot (slot g*n + k): the layer's random wiring
    (pylgn.wiring: every input read) when G * n >= in_dim, else G * n distinct inputs."""
    from .wiring import random_connections
    if G * n >= in_dim:
        return random_connections(in_dim, G, n, rng).T.ravel()
    return rng.choice(in_dim, G * n, replace=False)


def draw_candidates(first, in_dim, C, rng):
    """(S, C) int32 candidate rows per slot: column 0 = ``first`` (S,), the others drawn from
    stacked permutations of the inputs (each input in about (C - 1) S / in_dim pools); with
    C == in_dim every input, in the order first, first + 1, ... (mod in_dim)."""
    first = np.asarray(first, dtype=np.int64)
    S = first.shape[0]
    if C == in_dim:
        return ((first[:, None] + np.arange(in_dim)) % in_dim).astype(np.int32)
    rest = rng.permutation((C - 1) * S) % in_dim
    cand = np.concatenate([first[:, None], rng.permutation(rest).reshape(S, C - 1)], axis=1)
    return np.ascontiguousarray(cand, dtype=np.int32)


def initial_logits(S, C, rng):
    """(S, C) float64: U[0, INIT_SPREAD), plus INIT_LEAD on candidate 0."""
    theta = rng.random((S, C)) * INIT_SPREAD
    theta[:, 0] += INIT_LEAD
    return theta


def argmax_rows(cand, theta, xp):
    """(S,) the chosen source of each slot: cand[j, argmax theta[j]] (the first on ties)."""
    return cand[xp.arange(cand.shape[0]), xp.argmax(theta, axis=1)]


def route(kind, theta, t, xp):
    """(S, C) candidate weights: onehot(argmax theta) ("ste") or softmax(theta / t) ("softmax")."""
    if kind == "ste":
        r = xp.zeros_like(theta)
        r[xp.arange(theta.shape[0]), xp.argmax(theta, axis=1)] = 1
        return r
    z = xp.exp((theta - theta.max(axis=1, keepdims=True)) / t)   # <= 0 before exp: no overflow
    return z / z.sum(axis=1, keepdims=True)


def theta_grad(kind, corr, r, xs, gs, t, xp):
    """dL/dtheta (S, C) from corr[j, c] = sum_s x[cand[j, c], s] gs[j, s] (see the module doc)."""
    if kind == "ste":
        return 2 * corr - gs.sum(axis=1, keepdims=True)
    return r * (corr - (xs * gs).sum(axis=1, keepdims=True)) / t
