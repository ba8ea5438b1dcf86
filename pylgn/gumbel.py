"""Gumbel noise with a straight-through estimator on the truth tables ("Mind the Gap").

During a training step every gate's table is *sampled*: the relaxed network then computes exactly
what one discrete network would (its gates are 0/1 tables, its inputs bits), while the gradient
flows through the tempered soft sample. The noise is shared by the samples of a step (one draw
per gate entry per step) and counter-based: a function of (seed, layer, step, micro-batch) only,
drawn with numpy's Philox on the host and copied to the device, so a run is bit-exact on resume
and identical on the CPU and the GPU.

IWP (each table entry a Bernoulli of probability omega_b = rho(W_b)), with L ~ Logistic(0, 1):

    a_b = logit(omega_b) + L_b,   s_b = sigmoid(a_b / T),   forward z_b = [a_b > 0]
    dL/dW_b = dL/dz_b * s_b (1 - s_b) / T * rho'(W_b) / (omega_b (1 - omega_b))

OP (one of the 16 gates, categorical softmax(W)), with G_i ~ Gumbel(0, 1):

    p = softmax((W + G) / T),     forward table = OP_TABLES[argmax_i (W_i + G_i)]
    dL/dW = J_softmax(p) (OP_TABLES dL/domega) / T

Without noise (evaluation) the layers use their deterministic relaxed tables as before; the
discretized tables ([omega >= 0.5], argmax W) are the noise-free hard samples.
"""
import numpy as np

_EPS = 1e-6


def uniforms(key, shape):
    """U(0, 1) of ``shape`` (float64, never exactly 0 or 1) from the counter-based key
    (seed, layer, step, micro): Philox keyed by (seed, layer), counter (step, micro)."""
    seed, layer, step, micro = (int(k) for k in key)
    bits = np.random.Philox(key=(seed << 32) | layer, counter=[step, micro, 0, 0])
    u = np.random.Generator(bits).random(shape)
    return np.clip(u, _EPS, 1.0 - _EPS)


def iwp_sample(omega, key, temperature, xp):
    """(hard 0/1 table z, saved s) for IWP: z = [logit(omega) + L > 0], s = sigmoid(. / T)."""
    u = xp.asarray(uniforms(key, omega.shape), dtype=omega.dtype)
    w = xp.clip(omega, _EPS, 1.0 - _EPS)
    a = xp.log(w) - xp.log1p(-w) + xp.log(u) - xp.log1p(-u)
    s = 1.0 / (1.0 + xp.exp(-a / temperature))
    return (a > 0).astype(omega.dtype), s


def iwp_backward(dtable, omega, s, drho, temperature, xp):
    """dL/dW = dL/dz * s (1 - s) / T * rho'(W) / (omega (1 - omega))."""
    w = xp.clip(omega, _EPS, 1.0 - _EPS)
    return dtable * (s * (1.0 - s) / temperature) * drho / (w * (1.0 - w))


def op_noisy_logits(weights, key, temperature, xp):
    """(W + G) / T with G ~ Gumbel(0, 1) = -log(-log U); its argmax is the sampled gate."""
    u = xp.asarray(uniforms(key, weights.shape), dtype=weights.dtype)
    return (weights - xp.log(-xp.log(u))) / temperature
