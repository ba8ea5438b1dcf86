"""pylgn.encoders: every encoder's comparisons (bit = float32(x[src]) > cut) against its own
reference formula (Dataset.encode, LearnableThermometer on Dataset.scale, quantile_encode),
float32 cuts at and around every cut, configs, data checks."""
import numpy as np
import pytest

import pylgn
from pylgn.data import Dataset, TableDataset, quantile_encode, quantile_thresholds
from pylgn.encoders import (LearnedThermometer, QuantileEncoder, Thermometer, check_dataset,
                            dataset_config, float32_cuts, from_config)
from pylgn.thresholds import LearnableThermometer


def near(cut):
    """float32 values at, just below and just above each finite cut."""
    c = cut[np.isfinite(cut)].astype(np.float32)
    return np.concatenate([c, np.nextafter(c, np.float32(-np.inf)),
                           np.nextafter(c, np.float32(np.inf))])


def via_comparisons(enc, x):
    src, cut = enc.comparisons()
    v = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
    return (v[:, src] > cut).astype(np.uint8)


def test_float32_cuts_is_the_last_false_value():
    t = np.array([0.1, 0.5, -3.0, 1e30], dtype=np.float64)
    cut = float32_cuts(lambda v: v.astype(np.float64) > t, 4)
    for j in range(4):
        assert not cut[j].astype(np.float64) > t[j]
        assert np.nextafter(cut[j], np.float32(np.inf)).astype(np.float64) > t[j]
    assert float32_cuts(lambda v: np.zeros(v.shape, bool), 2).tolist() == [np.inf, np.inf]
    assert float32_cuts(lambda v: np.ones(v.shape, bool), 1).tolist() == [-np.inf]


@pytest.mark.parametrize("shape, n, crop, max_value", [
    ((1, 8, 8), 3, None, 16), ((1, 10, 10), 2, 6, 255), ((3, 6, 5), 3, 4, 255),
    ((1, 6, 6), 3, None, 4), ((10,), 7, None, 255)])
def test_thermometer_comparisons_equal_dataset_encode(shape, n, crop, max_value):
    rng = np.random.default_rng(n)
    enc = Thermometer(shape, n, crop=crop, max_value=max_value)
    x = rng.integers(0, max_value + 1, size=(300,) + shape).astype(np.uint8)
    ds = Dataset("t", x, np.zeros(300, int), x, np.zeros(300, int), ["a", "b"], max_value)
    assert np.array_equal(via_comparisons(enc, x), ds.encode(x, n, crop))
    xf = np.clip(rng.choice(near(enc.comparisons()[1]), size=(300,) + shape), 0, max_value)
    assert np.array_equal(via_comparisons(enc, xf), enc.encode(xf))     # the float64 reference
    back = from_config(enc.config())
    assert back.config() == enc.config() and np.array_equal(back.comparisons()[1],
                                                            enc.comparisons()[1])


@pytest.mark.parametrize("shape, crop, max_value", [((1, 8, 8), None, 16), ((2, 7, 7), 5, 255),
                                                    ((6,), None, 255)])
def test_learned_comparisons_equal_the_layer_on_scaled_values(shape, crop, max_value):
    rng = np.random.default_rng(1)
    n = 3
    from pylgn._io import cropped_shape
    cs = cropped_shape(shape, crop)
    layer = LearnableThermometer(shape[0], n, positions=int(np.prod(cs)) // shape[0])
    model = pylgn.Sequential([layer, pylgn.LogicLayer(layer.out_dim, 400), pylgn.GroupSum(2)])
    layer.weights[:] = rng.random(layer.weights.shape).astype(np.float32)
    enc = LearnedThermometer.from_layer(layer, shape, crop=crop, max_value=max_value)
    x = rng.integers(0, max_value + 1, size=(400,) + shape).astype(np.uint8)
    ds = Dataset("t", x, np.zeros(400, int), x, np.zeros(400, int), ["a", "b"], max_value)
    ref = layer.encode(ds.scale(x, crop))
    assert np.array_equal(via_comparisons(enc, x), ref)
    assert np.array_equal(enc.encode(x), ref)
    back = from_config(enc.config(), model)
    assert np.array_equal(back.comparisons()[1], enc.comparisons()[1])
    with pytest.raises(ValueError, match="LearnableThermometer"):
        from_config(enc.config(), None)


def test_quantile_comparisons_equal_quantile_encode_on_float32_values():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 4)).astype(np.float32).astype(np.float64)
    x[:, 2] = np.round(x[:, 2], 1)                              # many values on the cut points
    feats, cuts = quantile_thresholds(x, 5, distinct=False)
    enc = QuantileEncoder(feats, cuts, ["a", "b", "c", "d"], target="y", class_names=["n", "p"])
    assert np.array_equal(enc.encode(x), quantile_encode(x, feats, cuts))
    assert np.array_equal(via_comparisons(enc, x), quantile_encode(x, feats, cuts))
    assert from_config(enc.config()).config() == enc.config()
    with pytest.raises(ValueError, match="NaN"):
        enc.encode(np.full((1, 4), np.nan))
    with pytest.raises(ValueError, match="x: expected shape"):
        enc.encode(np.zeros((2, 5)))


def test_table_checks_refuse_other_columns_and_labels():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 3))
    ds = TableDataset("t", x, np.arange(50) % 2, x, np.arange(50) % 2, ["no", "yes"], 1,
                      ["a", "b", "c"])
    enc = from_config(dataset_config(ds, 4, target="label"))
    assert enc.kind == "quantile" and np.array_equal(enc.encode(x), ds.encode(x, 4))
    assert np.array_equal(check_dataset(enc, ds), ds.y_test)
    for cols, why in ((["b", "a", "c"], "reordered"), (["a", "b", "z"], "unknown"),
                      (["a", "b"], "missing")):
        other = TableDataset("t", x, ds.y_train, x, ds.y_test, ["no", "yes"], 1, cols)
        with pytest.raises(ValueError, match=f"columns.*{why}"):
            check_dataset(enc, other)
    renamed = TableDataset("t", x, ds.y_train, x, ds.y_test, ["no", "YES"], 1, ["a", "b", "c"])
    with pytest.raises(ValueError, match="labels.*YES"):
        check_dataset(enc, renamed)
    swapped = TableDataset("t", x, ds.y_train, x, ds.y_test, ["yes", "no"], 1, ["a", "b", "c"])
    assert np.array_equal(check_dataset(enc, swapped), 1 - ds.y_test)  # mapped by name


def test_image_checks_and_bad_configs():
    x = np.zeros((4, 1, 8, 8), np.uint8)
    ds = Dataset("d", x, np.arange(4) % 2, x, np.arange(4) % 2, ["0", "1"], 16)
    enc = from_config(dataset_config(ds, 3))
    assert isinstance(enc, Thermometer) and enc.class_names == ["0", "1"]
    other = Dataset("d", x, ds.y_train, x, ds.y_test, ["0", "1"], 255)
    with pytest.raises(ValueError, match="max_value"):
        check_dataset(enc, other)
    with pytest.raises(ValueError, match="encoder"):
        from_config(dict(type="nope"))
    with pytest.raises(ValueError, match="encoder"):
        from_config(dict(type="thermometer", shape=[1, 8, 8], thresholds=3, bogus=1))
    with pytest.raises(ValueError, match="thresholds"):
        QuantileEncoder([0, 3], [0.5, 1.0], ["a", "b"])


def test_learned_refuses_values_above_max_value():
    enc = LearnedThermometer((1, 4, 4), np.full((1, 2), 0.5), max_value=16)
    with pytest.raises(ValueError, match="x: values"):
        enc.encode(np.full((2, 16), 17, np.uint8))
    with pytest.raises(ValueError, match="x: values"):
        enc.encode(np.full((2, 16), 16.5))
    assert enc.encode(np.full((2, 16), 16, np.uint8)).all()
