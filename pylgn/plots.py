"""PNG plots of training histories and diagnostics (matplotlib, the ``plot`` extra).

matplotlib is imported inside each function (``import pylgn`` never pulls it in), and figures
are built with ``matplotlib.figure.Figure`` directly, so no pyplot state or GUI backend is used.
Each function saves ``path`` and returns it.

- ``training_curves(history)``: test accuracy, relaxed vs discretized, against the step (and the
  training accuracy), from ``Trainer.fit``'s history; several labelled histories share one axes.
- ``grad_norms(diag)``: a gradient norm per layer on a log scale (paper Figs. 7/18), from one or
  several ``pylgn.diagnostics.collect`` results.
- ``gate_distribution(diag)``: stacked fractions of the 16 two-input gates per layer.
- ``output_distribution(diag)``: per-layer histogram of the relaxed outputs in [0, 1]
  (paper Fig. 3).
"""
import numpy as np


def _figure(width=6.4, height=4.0):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("pylgn.plots needs matplotlib: pip install 'pylgn[plot]'") from None
    fig = Figure(figsize=(width, height), dpi=100)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _labelled(obj, marker):
    """{label: item}: ``obj`` itself when it is one item (has key ``marker``), else its items."""
    if not isinstance(obj, dict):
        raise TypeError(f"expected a dict (one result) or a dict of label -> result, got "
                        f"{type(obj).__name__}")
    return {"": obj} if marker in obj else dict(obj)


def training_curves(history, path, title=None):
    """Test accuracy relaxed (solid) and discretized (dashed) vs step, training accuracy (dotted);
    ``history``: a Trainer history dict or a dict of label -> history."""
    fig, ax = _figure()
    for i, (label, h) in enumerate(_labelled(history, "step").items()):
        color, steps = f"C{i}", h["step"]
        name = f"{label} " if label else ""
        for key, style, what in (("test_accuracy_relaxed", "-", "test relaxed"),
                                 ("test_accuracy_discrete", "--", "test discretized"),
                                 ("train_accuracy", ":", "train (relaxed)")):
            pts = [(s, v) for s, v in zip(steps, h.get(key, [])) if v is not None]
            if pts:
                ax.plot(*zip(*pts), style, color=color, label=f"{name}{what}")
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title or "training curves")
    return _save(fig, path)


def grad_norms(diag, path, key="input_grad_norm", title=None):
    """``key`` (input_grad_norm, output_grad_norm or param_grad_norm) per layer index, log scale;
    ``diag``: one diagnostics dict or a dict of label -> diagnostics dict. Norms of exactly 0
    cannot be drawn on a log scale; their count is given in the legend."""
    fig, ax = _figure()
    for i, (label, d) in enumerate(_labelled(diag, "layers").items()):
        pts = [(l["index"], l[key]) for l in d["layers"] if l.get(key) is not None]
        if not pts:
            raise ValueError(f"diag: no layer has {key!r}")
        idx, val = np.array(pts, dtype=np.float64).T
        zeros = int((val == 0).sum())
        note = f" ({zeros} layers at 0 not shown)" if zeros else ""
        ax.semilogy(idx[val > 0], val[val > 0], "o-", ms=3, color=f"C{i}",
                    label=(label + note) or None)
    ax.set_xlabel("layer")
    ax.set_ylabel(key.replace("_", " "))
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=7)
    ax.set_title(title or f"{key.replace('_', ' ')} per layer")
    return _save(fig, path)


def gate_distribution(diag, path, title=None):
    """Stacked bars: fraction of each of the 16 gates per layer (layers with two-input gates)."""
    from .gates import GATE_NAMES
    layers = [l for l in diag["layers"] if l.get("gate_counts") is not None]
    if not layers:
        raise ValueError("diag: no layer has two-input gate counts")
    counts = np.array([l["gate_counts"] for l in layers], dtype=np.float64)
    frac = counts / counts.sum(axis=1, keepdims=True)
    fig, ax = _figure(8.0, 4.0)
    x = np.arange(len(layers))
    bottom = np.zeros(len(layers))
    cmap = _colormap("tab20")
    for g, name in enumerate(GATE_NAMES):
        ax.bar(x, frac[:, g], bottom=bottom, color=cmap(g), label=name, width=0.8)
        bottom += frac[:, g]
    ax.set_xticks(x, [str(l["index"]) for l in layers])
    ax.set_xlabel("layer")
    ax.set_ylabel("fraction of gates")
    ax.legend(fontsize=6, ncol=2, bbox_to_anchor=(1.01, 1), loc="upper left")
    ax.set_title(title or "discretized gate types per layer")
    return _save(fig, path)


def output_distribution(diag, path, title=None):
    """Heat map: rows = layers, columns = bins of the relaxed output in [0, 1], colour = fraction
    of the layer's outputs in the bin (log colour scale)."""
    from matplotlib.colors import LogNorm
    layers = [l for l in diag["layers"] if l.get("output_hist") is not None]
    if not layers:
        raise ValueError("diag: no layer has an output histogram")
    hist = np.array([l["output_hist"] for l in layers], dtype=np.float64)
    fig, ax = _figure(6.4, 1.5 + 0.18 * len(layers))
    floor = max(hist[hist > 0].min() if (hist > 0).any() else 1e-6, 1e-6)
    im = ax.imshow(np.maximum(hist, floor), aspect="auto", origin="lower", cmap="viridis",
                   extent=(0.0, 1.0, -0.5, len(layers) - 0.5), norm=LogNorm(vmin=floor, vmax=1.0))
    ax.set_yticks(np.arange(len(layers)), [str(l["index"]) for l in layers], fontsize=6)
    ax.set_xlabel("relaxed output value")
    ax.set_ylabel("layer")
    fig.colorbar(im, ax=ax, label="fraction")
    ax.set_title(title or "output distribution per layer")
    return _save(fig, path)


def _colormap(name):
    from matplotlib import colormaps
    return colormaps[name]
