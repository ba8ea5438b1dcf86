"""Softmax cross-entropy over logits (batch, classes)."""
import numpy as np

from ._checks import check_labels


def softmax_cross_entropy(logits, labels):
    """Mean loss L = mean_s [logsumexp(z_s) - z_s[y_s]] and dL/dz = (softmax(z) - onehot(y)) / batch."""
    if not hasattr(logits, "__cuda_array_interface__"):
        try:
            logits = np.asarray(logits)
        except ValueError as e:
            raise ValueError(f"logits: expected a float array (batch, classes): {e}") from None
        if logits.dtype == object:
            raise TypeError("logits: expected a float array (batch, classes)")
    xp = np if isinstance(logits, np.ndarray) else __import__("cupy")
    if logits.ndim != 2 or logits.shape[0] < 1:
        raise ValueError(f"logits: expected shape (batch >= 1, classes), got {tuple(logits.shape)}")
    if logits.dtype.kind != "f":
        raise TypeError(f"logits: expected a float array, got dtype {logits.dtype}")
    batch, k = logits.shape
    host = xp is np or not hasattr(labels, "__cuda_array_interface__")   # host labels: checked
    labels = check_labels("labels", np.asarray(labels) if host else labels, batch, k,
                          xp=np if host else xp)
    labels = xp.asarray(labels)                                          # there, no device sync
    z = logits - logits.max(axis=1, keepdims=True)
    lse = xp.log(xp.exp(z).sum(axis=1))
    rows = xp.arange(batch)
    loss = float((lse - z[rows, labels]).mean())
    if not np.isfinite(loss):
        raise ValueError("logits: contain NaN or inf")
    d = xp.exp(z - lse[:, None])
    d[rows, labels] -= 1.0
    return loss, d / batch
