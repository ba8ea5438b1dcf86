import os
import sys

os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.dirname(__file__), "..", ".numba_cache"))
sys.path.insert(0, os.path.dirname(__file__))


# shared fixtures for the data / train / checkpoint / CLI tests ------------------------------------
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def bits_data():
    """130 random 24-bit samples; 4 classes read off the first two bits (learnable)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=(130, 24)).astype(np.uint8)
    return x, (2 * x[:, 0] + x[:, 1]).astype(np.int64)


@pytest.fixture
def make_model():
    """Factory of small Sequential models over 24 inputs and 4 classes."""
    import pylgn

    def make(widths=(40, 40), param="iwp", arity=2, seed=0, in_dim=24, classes=4):
        dims = (in_dim,) + tuple(widths)
        layers = [pylgn.LogicLayer(a, b, arity=arity, param=param) for a, b in zip(dims, dims[1:])]
        return pylgn.Sequential(layers + [pylgn.GroupSum(classes, 2.0)], seed=seed)
    return make
