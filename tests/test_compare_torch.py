"""The bench's independent PyTorch implementation agrees with pylgn (runs only where torch is
installed, e.g. in .venv-torch from ``make bench-torch``)."""
import importlib.util
import os

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (optional: make bench-torch)")


def _bench():
    path = os.path.join(os.path.dirname(__file__), "..", "bench", "compare_torch.py")
    spec = importlib.util.spec_from_file_location("compare_torch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("param", ["iwp", "op"])
def test_torch_twin_matches_pylgn_loss_grads_and_adam(param):
    d = _bench().check(param)
    assert d["grad_scale"] > 1e-4                      # the gradients compared are not all ~0
    assert d["loss"] < 1e-12 and d["grad"] < 1e-12 and d["param"] < 1e-12
