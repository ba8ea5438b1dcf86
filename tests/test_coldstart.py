"""Kernels compile what a model uses, once per machine: per arity, on first use, cached on disk.

The cache checks run in child processes on a fresh NUMBA_CACHE_DIR: numba's compile events
("numba:compile") say what each process compiled; loading from the on-disk cache compiles nothing.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pylgn.kernels import cpu
from pylgn.wiring import reverse_index

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, numpy as np
from numba.core import event
compiled = []
class Rec(event.Listener):
    def on_start(self, e): pass
    def on_end(self, e): compiled.append(e.data["dispatcher"].py_func.__qualname__)
event.register("numba:compile", Rec())
from pylgn.kernels import cpu
from pylgn.wiring import reverse_index
rng = np.random.default_rng(0)
x = rng.random((6, 5)).astype(np.float32)
conn = rng.integers(0, 6, (2, 4)).astype(np.int32)
table = rng.random((4, 4)).astype(np.float32)
y = np.empty((4, 5), np.float32)
cpu.gate_forward(x, conn, table, y)
print(json.dumps(dict(compiled=compiled, built=sorted(cpu._forward_kernel.built),
                      y=y.tolist())))
"""


def _child(cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_arity_2_compiles_arity_2_once_and_a_second_process_loads_it(tmp_path):
    first, second = _child(tmp_path), _child(tmp_path)
    kernels = [n for n in first["compiled"] if "_forward_kernel" in n]
    assert kernels == ["_forward_kernel.<locals>.kernel"], first["compiled"]
    assert first["built"] == [2]                                # no other arity was built
    assert not any("_per_arity" in n or "kernel" in n for n in second["compiled"]), second
    assert second["y"] == first["y"]


def _case(n, in_dim=23, gates=37, batch=9, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((in_dim, batch))
    conn = rng.integers(0, in_dim, (n, gates)).astype(np.int32)
    table = rng.random((gates, 2 ** n))
    dy = rng.standard_normal((gates, batch))
    return x, conn, table, dy, reverse_index(conn, in_dim)


def _run_all(x, conn, table, dy, rev):
    y, dt, dx = (np.full((conn.shape[1], x.shape[1]), np.nan), np.full(table.shape, np.nan),
                 np.full(x.shape, np.nan))
    cpu.gate_forward(x, conn, table, y)
    cpu.gate_backward_table(x, conn, dy, dt)
    cpu.gate_backward_inputs(x, conn, *rev, table, dy, 0.5, dx)
    return y, dt, dx


@pytest.mark.parametrize("n", [1, 4])
def test_split_over_threads_equals_one_serial_call(n, monkeypatch):
    """The parallel kernels split rows over threads: the same numbers as the serial kernels run
    once over all rows (each row is computed by one call, so exactly equal), for any split."""
    args = _case(n)
    x, conn, table, dy, rev = args
    want_y = np.full((conn.shape[1], x.shape[1]), np.nan)
    cpu.gate_forward_range(x, conn, table, want_y, 0, conn.shape[1])
    want_dt = np.zeros(table.shape)
    cpu.gate_backward_table_range(x, conn, dy, want_dt, 0, conn.shape[1])
    want_dx = np.full(x.shape, np.nan)
    cpu.gate_backward_inputs_range(x, conn, *rev, table, dy, 0.5, want_dx, 0, x.shape[0])
    for threads in (1, 2, 5):
        monkeypatch.setattr(cpu.numba, "get_num_threads", lambda t=threads: t)
        for got, want in zip(_run_all(*args), (want_y, want_dt, want_dx)):
            assert np.array_equal(got, want), threads


def test_adam_split_equals_serial(monkeypatch):
    rng = np.random.default_rng(1)
    size = 2 * cpu.ADAM_GRAIN + 3
    g = rng.standard_normal(size)
    states = []
    for threads in (1, 3):
        monkeypatch.setattr(cpu.numba, "get_num_threads", lambda t=threads: t)
        p, m, v = np.linspace(-1, 1, size), np.zeros(size), np.zeros(size)
        for t in (1, 2):
            cpu.adam_step(p, g, m, v, 0.01, 0.9, 0.999, 1e-8, 0.1, t)
        states.append(np.concatenate([p, m, v]))
    assert np.array_equal(states[0], states[1])
    m1 = 0.1 * g                                                # first moment after one step...
    assert np.allclose(states[0][size:2 * size], 0.9 * m1 + 0.1 * g)  # ...and after two


def test_arity_outside_1_to_6_raises():
    x, conn = np.zeros((3, 2)), np.zeros((7, 3), np.int32)
    with pytest.raises(ValueError, match="arity"):
        cpu.gate_forward(x, conn, np.zeros((3, 128)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="arity"):
        cpu.gate_backward_table_range(x, conn[:0], np.zeros((3, 2)), np.zeros((3, 1)), 0, 3)
