"""Diagnostics against direct numpy, and the plots rendering to PNG files."""
import json
from collections import Counter

import numpy as np
import pytest

import pylgn
from pylgn import diagnostics
from reference import bits, gate_forward, gate_forward_discrete, relaxed_table, softmax


def _model(param="iwp", arity=2, widths=(12, 12), in_dim=6, classes=2, init="uniform",
           dtype=np.float64, seed=1):
    dims = (in_dim,) + tuple(widths)
    init = "gaussian" if param == "op" and init == "uniform" else init
    layers = [pylgn.LogicLayer(a, b, arity=arity, param=param, init=init, sigma=1.0)
              for a, b in zip(dims, dims[1:])]
    return pylgn.Sequential(layers + [pylgn.GroupSum(classes, 3.0)], seed=seed, dtype=dtype)


def _batch(model, n=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, model.in_dim)), rng.integers(0, model.out_dim, n)


def _numpy_forward(model, h, start=0, discrete=False):
    """Activations after each layer from layer ``start`` on, by the reference formulas."""
    outs = []
    for layer in model.layers[start:]:
        if isinstance(layer, pylgn.GroupSum):
            h = h.reshape(layer.k, -1, h.shape[1]).sum(axis=1) / layer.tau
        elif discrete:
            h = gate_forward_discrete(h >= 0.5, layer.connections, _discrete(layer)).astype(float)
        else:
            h = gate_forward(h, layer.connections, relaxed_table(layer))
        outs.append(h)
    return outs


def _discrete(layer):
    if layer.param == "op":
        return np.array([[(g >> (3 - r)) & 1 for r in range(4)]
                         for g in np.argmax(layer.weights, axis=1)])
    return (relaxed_table(layer) >= 0.5).astype(np.uint8)


def _loss(logits, y):
    """Mean softmax cross-entropy of (classes, batch) logits."""
    p = softmax(logits.T)
    return float(-np.log(p[np.arange(len(y)), y]).mean())


@pytest.mark.parametrize("param", ["iwp", "op"])
def test_gate_counts_match_numpy(param):
    model = _model(param, widths=(40, 30))
    x, y = _batch(model)
    d = diagnostics.collect(model, x, y)
    for entry, layer in zip(d["layers"], model.logic_layers):
        ids = (_discrete(layer) * (1 << np.arange(3, -1, -1))).sum(axis=1)
        assert entry["gate_counts"] == np.bincount(ids, minlength=16).tolist()
    assert d["layers"][-1]["gate_counts"] is None                    # GroupSum
    assert d["gate_names"][6] == "XOR"


def test_table_classes_for_arity_three():
    model = _model(arity=3, widths=(60, 20))
    x, y = _batch(model)
    d = diagnostics.collect(model, x, y, top_k=4)
    layer, entry = model.layers[0], d["layers"][0]
    codes = ((relaxed_table(layer) >= 0.5) * (1 << np.arange(7, -1, -1))).sum(axis=1)
    counts = Counter(codes.tolist())
    assert entry["gate_counts"] is None and entry["distinct_tables"] == len(counts)
    assert [c for _, _, c in entry["table_classes"]] == sorted(counts.values(), reverse=True)[:4]
    for arity, code, count in entry["table_classes"]:
        assert arity == 3 and counts[code] == count


@pytest.mark.parametrize("param", ["iwp", "op"])
def test_grad_norms_match_model_grads_and_finite_differences(param):
    model = _model(param)
    x, y = _batch(model)
    sentinel = np.random.default_rng(5).random(model.grads.shape)
    model.grads[...] = sentinel
    d = diagnostics.collect(model, x, y)
    np.testing.assert_array_equal(model.grads, sentinel)                 # restored
    model.zero_grad()
    _, dlogits = pylgn.softmax_cross_entropy(model.forward(x), y)
    model.backward(dlogits)
    off = 0
    for entry, layer in zip(d["layers"], model.layers):
        n = layer.n_params
        if n:
            want = np.linalg.norm(model.grads[off:off + n])
            assert entry["param_grad_norm"] == pytest.approx(want, rel=1e-12)
        else:
            assert entry["param_grad_norm"] is None
        off += n
    # dL/d(input of layer i) by central differences through the numpy reference forward
    acts = [x.T] + _numpy_forward(model, x.T)[:-1]
    for i, h in enumerate(acts):
        g = np.zeros_like(h)
        for idx in np.ndindex(*h.shape):
            e = np.zeros_like(h)
            e[idx] = 1e-6
            g[idx] = (_loss(_numpy_forward(model, h + e, i)[-1], y)
                      - _loss(_numpy_forward(model, h - e, i)[-1], y)) / 2e-6
        assert d["layers"][i]["input_grad_norm"] == pytest.approx(np.linalg.norm(g), rel=1e-5)
        if i:
            assert d["layers"][i - 1]["output_grad_norm"] == d["layers"][i]["input_grad_norm"]


def test_output_distribution_accuracies_and_gap_match_numpy():
    model = _model(widths=(16, 16), classes=4)
    x, y = _batch(model, n=40)
    d = diagnostics.collect(model, x, y, bins=7)
    relaxed = _numpy_forward(model, x.T)
    for entry, h in zip(d["layers"][:-1], relaxed[:-1]):
        counts, _ = np.histogram(h, bins=7, range=(0, 1))
        np.testing.assert_allclose(entry["output_hist"], counts / h.size)
        assert entry["output_mean"] == pytest.approx(h.mean())
    assert d["layers"][-1]["output_hist"] is None
    acc_r = float((relaxed[-1].argmax(axis=0) == y).mean())
    acc_d = float((_numpy_forward(model, x.T, discrete=True)[-1].argmax(axis=0) == y).mean())
    assert d["loss"] == pytest.approx(_loss(relaxed[-1], y))
    assert (d["accuracy_relaxed"], d["accuracy_discrete"]) == (acc_r, acc_d)
    assert d["discretization_gap"] == pytest.approx(acc_r - acc_d)


def test_collect_is_json_and_keeps_mode_and_handles_conv():
    conv = pylgn.LogicConv2d(1, 4, (6, 6), receptive_field=3, tree_depth=2)
    model = pylgn.Sequential([conv, pylgn.OrPool2d(4, (conv.out_shape[1], conv.out_shape[2])),
                              pylgn.LogicLayer(36, 20), pylgn.GroupSum(2, 2.0)], dtype=np.float32)
    x = (np.random.default_rng(0).random((7, 36)) > 0.5).astype(np.uint8)
    model.eval()
    d = diagnostics.collect(model, x, np.arange(7) % 2)
    assert model.training is False
    json.dumps(d)
    assert sum(d["layers"][0]["gate_counts"]) == sum(level.out_dim for level in conv.levels)
    assert d["layers"][1]["param_grad_norm"] is None and d["layers"][1]["gate_counts"] is None


def test_bad_input_names_the_argument():
    model = _model()
    x, y = _batch(model)
    with pytest.raises(ValueError, match="x: expected shape"):
        diagnostics.collect(model, x[:, :3], y)
    with pytest.raises(ValueError, match=r"y: values must lie in \[0, 2\)"):
        diagnostics.collect(model, x, y + 2)
    with pytest.raises(ValueError, match="bins"):
        diagnostics.collect(model, x, y, bins=0)


def test_trainer_diagnostics_hook(make_model, bits_data):
    x, y = bits_data
    model = make_model()
    tr = pylgn.Trainer(model, pylgn.Adam(model), batch_size=10)
    hist = tr.fit(x, y, 5, diagnostics_every=2, progress=False)
    assert [e["step"] for e in hist["diagnostics"]] == [2, 4]
    assert len(hist["diagnostics"][0]["layers"]) == len(model.layers)
    json.dumps(hist["diagnostics"])


# plots ---------------------------------------------------------------------------------------

def _png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plots_write_png(tmp_path, make_model, bits_data):
    pytest.importorskip("matplotlib", reason="matplotlib (pylgn[plot]) is not installed")
    from pylgn import plots
    x, y = bits_data
    model = make_model(widths=(40, 40, 40))
    hist = pylgn.Trainer(model, pylgn.Adam(model), batch_size=10).fit(
        x, y, 4, eval_data=(x, y), eval_every=2, progress=False)
    d = diagnostics.collect(model, x[:20], y[:20])
    paths = [plots.training_curves(hist, tmp_path / "t.png"),
             plots.training_curves({"a": hist, "b": hist}, tmp_path / "t2.png"),
             plots.grad_norms(d, tmp_path / "g.png"),
             plots.grad_norms({"x": d, "y": d}, tmp_path / "g2.png", key="param_grad_norm"),
             plots.gate_distribution(d, tmp_path / "gates.png"),
             plots.output_distribution(d, tmp_path / "out.png")]
    assert all(_png(p) for p in paths)
    with pytest.raises(ValueError, match="diag: no layer has 'nope'"):
        plots.grad_norms(d, tmp_path / "bad.png", key="nope")
