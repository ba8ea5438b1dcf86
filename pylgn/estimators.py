"""Binary-output estimators rho: relaxed truth-table entry omega = rho(Omega) and its surrogate gradient.

| name        | forward rho(W)        | backward d rho / dW        |
|-------------|-----------------------|----------------------------|
| sin         | 0.5 + 0.5 sin W       | 0.5 cos W                  |
| sigmoid     | 1 / (1 + exp(-W))     | s (1 - s)                  |
| sin-st      | 0.5 + 0.5 sin W       | sign(cos W)  (straight-through) |
| sigmoid-st  | sigmoid(W)            | 1            (straight-through) |
| linear-st   | clip(W, 0, 1)         | 1            (straight-through) |

``center`` is the W where rho = 0.5 (the undecided state); ``shift`` the default residual-init shift.
"""
ESTIMATORS = ("sin", "sigmoid", "sin-st", "sigmoid-st", "linear-st")
CENTER = {"sin": 0.0, "sigmoid": 0.0, "sin-st": 0.0, "sigmoid-st": 0.0, "linear-st": 0.5}
SHIFT = {"sin": 1.2, "sigmoid": 3.0, "sin-st": 1.2, "sigmoid-st": 3.0, "linear-st": 0.45}


def _sigmoid(xp, w):
    if xp.__name__ == "numpy":
        from scipy.special import expit      # lazy: scipy.special costs 0.3 s at import
        return expit(w)
    return 1.0 / (1.0 + xp.exp(-w))


def rho(name, w, xp):
    """omega = rho(W), elementwise."""
    if name in ("sin", "sin-st"):
        return 0.5 + 0.5 * xp.sin(w)
    if name in ("sigmoid", "sigmoid-st"):
        return _sigmoid(xp, w).astype(w.dtype, copy=False)
    if name == "linear-st":
        return xp.clip(w, 0.0, 1.0)
    raise ValueError(f"estimator: expected one of {ESTIMATORS}, got {name!r}")


def rho_grad(name, w, omega, xp):
    """Surrogate d omega / d W used by backward (omega = rho(W), passed to avoid recomputing)."""
    if name == "sin":
        return 0.5 * xp.cos(w)
    if name == "sigmoid":
        return omega * (1.0 - omega)
    if name == "sin-st":
        return xp.sign(xp.cos(w))
    if name in ("sigmoid-st", "linear-st"):
        return xp.ones_like(w)
    raise ValueError(f"estimator: expected one of {ESTIMATORS}, got {name!r}")
