"""Training diagnostics of a model on one batch, as JSON-serializable data (lists, floats, ints).

``collect(model, x, y)`` runs one relaxed forward and backward pass layer by layer (mirroring
``Sequential.forward``/``backward``) and one discretized forward, and reports per layer:

- ``param_grad_norm``: ||dL/dW||_2 of the layer's parameters (its slice of ``model.grads``)
  for this batch alone; the model's accumulated gradients are saved and restored;
- ``input_grad_norm``: ||dL/dx||_2 of the layer's input activations (the dx its backward
  returns, including its grad_factor); paper Figs. 7/18 plot such norms against depth;
- ``output_hist``: fractions of the relaxed outputs falling in ``bins`` equal bins of [0, 1]
  (paper Fig. 3), with their mean and standard deviation;
- ``gate_counts``: for two-input logic gates, how many gates of the layer discretize to each of
  the 16 gates (order ``gate_names``, ids of pylgn.gates); for other arities ``table_classes``,
  the ``top_k`` most frequent discretized truth tables as [arity, code, count] (code =
  pylgn.gates.table_class) and ``distinct_tables``.

Model-level entries: ``loss`` (relaxed), ``accuracy_relaxed``, ``accuracy_discrete`` and
``discretization_gap`` = relaxed - discrete accuracy on the batch.
Norms are taken in float64, so float64 models show gradients below float32's range.
"""
import numpy as np

from . import gates
from ._checks import check_batch, check_int, check_labels
from .layers import GroupSum
from .loss import softmax_cross_entropy


def collect(model, x, y, bins=20, top_k=10):
    """Diagnostics dict of ``model`` on the batch ``x`` (batch, in_dim) in [0, 1], labels ``y``."""
    bins, top_k = check_int("bins", bins, 1), check_int("top_k", top_k, 1)
    xp = model.backend.xp
    x = check_batch("x", x, model.in_dim, xp=np if isinstance(x, np.ndarray) else xp)
    y = check_labels("y", y, x.shape[0], model.out_dim, xp=np if isinstance(y, np.ndarray) else xp)
    y = model.backend.to_host(y).astype(np.int64)
    was_training = model.training
    try:
        relaxed = _relaxed_pass(model, x, y, bins)
        model.eval()
        pred_discrete = model.backend.to_host(model.forward(x)).argmax(axis=1)
    finally:
        model.train() if was_training else model.eval()
    acc_discrete = float((pred_discrete == y).mean())
    layers = relaxed.pop("layers")
    for entry, layer in zip(layers, model.layers):
        entry.update(gate_histogram(layer, top_k))
    return dict(relaxed, accuracy_discrete=acc_discrete,
                discretization_gap=relaxed["accuracy_relaxed"] - acc_discrete,
                gate_names=list(gates.GATE_NAMES), output_bins=bins, layers=layers)


def _relaxed_pass(model, x, y, bins):
    """Relaxed forward + backward layer by layer on zeroed gradients (restored afterwards)."""
    xp, host = model.backend.xp, model.backend.to_host
    saved = model.grads.copy()
    try:
        model.grads[...] = 0
        h = xp.ascontiguousarray(xp.asarray(x, dtype=model.dtype).T)
        layers = []
        for layer in model.layers:
            h = layer.forward(h, train=True)
            layers.append(dict(index=len(layers), type=type(layer).__name__,
                               width=int(h.shape[0]), **_output_stats(layer, h, bins, xp, host)))
        logits = xp.ascontiguousarray(h.T)
        loss, d = softmax_cross_entropy(logits, y)
        d = xp.ascontiguousarray(d.T)
        for i in range(len(model.layers) - 1, -1, -1):
            layers[i]["output_grad_norm"] = _norm(d, host)
            d = model.layers[i].backward(d, need_dx=True)
            layers[i]["input_grad_norm"] = _norm(d, host)
        for entry, g in zip(layers, layer_grads(model)):
            entry["param_grad_norm"] = None if g is None else _norm(g, host)
    finally:
        model.grads[...] = saved
    accuracy = float((host(logits).argmax(axis=1) == y).mean())
    return dict(loss=float(loss), accuracy_relaxed=accuracy, layers=layers)


def layer_grads(model):
    """Per layer of ``model.layers``: its slice of the flat ``model.grads``, or None without params.
    The slices follow the layout Sequential builds (layers with parameters, in order)."""
    out, off = [], 0
    for layer in model.layers:
        n = int(layer.n_params)
        out.append(model.grads[off:off + n] if n else None)
        off += n
    return out


def _norm(a, host):
    return float(np.linalg.norm(host(a).astype(np.float64).ravel()))


def _output_stats(layer, h, bins, xp, host):
    """Histogram of the layer's relaxed outputs over [0, 1] (none for GroupSum's logits)."""
    if isinstance(layer, GroupSum):
        return dict(output_hist=None, output_mean=None, output_std=None)
    v = host(h).astype(np.float64).ravel()
    counts, _ = np.histogram(v, bins=bins, range=(0.0, 1.0))
    return dict(output_hist=(counts / max(1, v.size)).tolist(), output_mean=float(v.mean()),
                output_std=float(v.std()))


def discrete_tables(layer):
    """The layer's discretized truth tables as host uint8 arrays, one per logic sub-layer
    (a LogicLayer itself, or the tree levels of a LogicConv2d); [] for layers without gates."""
    subs = getattr(layer, "levels", None) or ([layer] if hasattr(layer, "discrete_table") else [])
    return [np.asarray(layer.backend.to_host(s.discrete_table()), dtype=np.uint8) for s in subs]


def gate_histogram(layer, top_k=10):
    """dict(gate_counts=[16 ints]) when every gate has two inputs, else dict(table_classes=
    [[arity, code, count], ...] (the top_k most frequent), distinct_tables=int);
    dict(gate_counts=None) for layers without gates."""
    tables = discrete_tables(layer)
    if not tables:
        return dict(gate_counts=None)
    if all(t.shape[1] == 4 for t in tables):
        ids = np.concatenate([gates.table_class(t) for t in tables]).astype(np.int64)
        return dict(gate_counts=np.bincount(ids, minlength=16).tolist())
    keys = np.concatenate([np.stack([np.full(len(t), t.shape[1], dtype=np.uint64),
                                     gates.table_class(t)], axis=1) for t in tables])
    values, counts = np.unique(keys, axis=0, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:top_k]
    return dict(gate_counts=None, distinct_tables=int(len(values)),
                table_classes=[[int(values[i, 0]).bit_length() - 1, int(values[i, 1]),
                                int(counts[i])] for i in order])
