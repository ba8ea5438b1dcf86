"""HDF5 checkpoints: round trip, exact resume, atomic saves, clear errors on bad files."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

import pylgn
from pylgn.checkpoint import CHECKPOINT_FORMAT


def _trained(make_model, bits_data, steps=5, **model_kw):
    model = make_model(**model_kw)
    tr = pylgn.Trainer(model, pylgn.Adam(model, lr=0.05), batch_size=20, seed=1)
    tr.fit(*bits_data, steps, progress=False)
    return tr


@pytest.mark.parametrize("model_kw", [dict(), dict(param="op"), dict(arity=3, widths=(30, 60))])
def test_round_trip(make_model, bits_data, tmp_path, model_kw):
    tr = _trained(make_model, bits_data, **model_kw)
    model, opt = tr.model, tr.optimizer
    path = tmp_path / "c.h5"
    pylgn.save(path, model, opt, trainer_state=tr.state(), dataset="bits", thresholds=1)
    ck = pylgn.load(path)
    assert ck.step == 5 and ck.meta == dict(dataset="bits", thresholds=1)
    assert ck.model.config() == model.config()
    np.testing.assert_array_equal(ck.model.params, model.params)
    for a, b in zip(ck.model.logic_layers, model.logic_layers):
        np.testing.assert_array_equal(a.connections, b.connections)
    np.testing.assert_array_equal(ck.optimizer.m, opt.m)
    np.testing.assert_array_equal(ck.optimizer.v, opt.v)
    assert ck.optimizer.t == opt.t and ck.optimizer.config() == opt.config()
    np.testing.assert_array_equal(ck.trainer_state["permutation"], tr.permutation)
    assert ck.trainer_state["rng"] == tr.rng.bit_generator.state
    x = bits_data[0]
    for mode in ("train", "eval"):
        getattr(model, mode)(), getattr(ck.model, mode)()
        np.testing.assert_array_equal(ck.model.forward(x), model.forward(x))
    with h5py.File(path) as f:
        assert f.attrs["format"] == CHECKPOINT_FORMAT and f.attrs["version"] == 1
        assert f["layers/000/weights"].compression == "gzip"


def test_model_only_checkpoint(make_model, tmp_path):
    model = make_model()
    pylgn.save(tmp_path / "m.h5", model)
    ck = pylgn.load(str(tmp_path / "m.h5"), device="cpu")
    assert ck.optimizer is None and ck.trainer_state is None and ck.step == 0
    np.testing.assert_array_equal(ck.model.params, model.params)


def test_exact_resume(make_model, bits_data, tmp_path):
    """40 steps straight == 20 steps, save, load, 20 more steps: bit-identical on the CPU
    (batches cross epoch boundaries; accumulation on)."""
    x, y = bits_data

    def trainer(model, opt):
        return pylgn.Trainer(model, opt, batch_size=15, accumulate=2, seed=4)

    model = make_model()
    straight = trainer(model, pylgn.Adam(model, lr=0.05))
    straight.fit(x, y, 40, progress=False)

    model = make_model()
    first = trainer(model, pylgn.Adam(model, lr=0.05))
    first.fit(x, y, 20, progress=False, checkpoint_path=str(tmp_path / "r.h5"))
    ck = pylgn.load(tmp_path / "r.h5")
    resumed = trainer(ck.model, ck.optimizer).load_state(ck.trainer_state)
    assert resumed.step == 20
    resumed.fit(x, y, 20, progress=False)
    np.testing.assert_array_equal(resumed.model.params, straight.model.params)
    np.testing.assert_array_equal(resumed.optimizer.m, straight.optimizer.m)
    np.testing.assert_array_equal(resumed.optimizer.v, straight.optimizer.v)
    assert resumed.step == straight.step == 40 and resumed.epoch == straight.epoch


def test_failed_save_keeps_previous_file(make_model, tmp_path, monkeypatch):
    model = make_model()
    path = tmp_path / "c.h5"
    pylgn.save(path, model, step=1)
    boom = RuntimeError("disk full")

    def fail(*a, **k):
        raise boom
    monkeypatch.setattr(h5py.Group, "create_dataset", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        pylgn.save(path, model, step=2)
    monkeypatch.undo()
    assert pylgn.load(path).step == 1
    assert os.listdir(tmp_path) == ["c.h5"]          # no temporary file left behind


def test_killed_save_never_loses_the_checkpoint(tmp_path):
    """A process saving in a loop is SIGKILLed at arbitrary moments; the file always loads."""
    path = tmp_path / "c.h5"
    script = textwrap.dedent(f"""
        import sys, pylgn
        model = pylgn.Sequential([pylgn.LogicLayer(64, 50000), pylgn.LogicLayer(50000, 50000),
                                  pylgn.GroupSum(10, 1.0)])
        opt = pylgn.Adam(model)
        model.params[:] = 0
        pylgn.save({str(path)!r}, model, opt, step=0)
        print("ready", flush=True)
        step = 0
        while True:
            step += 1
            model.params[:] = step
            pylgn.save({str(path)!r}, model, opt, step=step)
    """)
    steps = []
    for delay in (0.05, 0.3, 0.7):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
        try:
            assert proc.stdout.readline().strip() == b"ready"
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        ck = pylgn.load(path)                          # a complete save: params match its step
        assert ck.model.num_gates == 100000 and ck.optimizer is not None
        np.testing.assert_array_equal(ck.model.params, np.float32(ck.step))
        steps.append(ck.step)
    assert max(steps) > 0                              # the loop did overwrite the file


def _saved(make_model, tmp_path):
    path = str(tmp_path / "c.h5")
    model = make_model()
    pylgn.save(path, model, pylgn.Adam(model))
    return path


def test_truncated_file(make_model, tmp_path):
    path = _saved(make_model, tmp_path)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(ValueError, match="c.h5"):
        pylgn.load(path)


def test_random_bytes(tmp_path):
    path = tmp_path / "junk.h5"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ValueError, match="junk.h5: not a readable HDF5 file"):
        pylgn.load(path)


def test_foreign_hdf5(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(ValueError, match="other.h5: not a pylgn checkpoint"):
        pylgn.load(path)


@pytest.mark.parametrize("member, match", [
    ("layers/000/weights", "missing dataset '/layers/000/weights'"),
    ("layers/001/connections", "missing dataset '/layers/001/connections'"),
    ("optimizer/v", "missing dataset '/optimizer/v'"),
    ("layers/001", "missing group '/layers/001'"),
])
def test_missing_member(make_model, tmp_path, member, match):
    path = _saved(make_model, tmp_path)
    with h5py.File(path, "a") as f:
        del f[member]
    with pytest.raises(ValueError, match=f"c.h5: {match}"):
        pylgn.load(path)


def test_inconsistent_contents(make_model, tmp_path):
    path = _saved(make_model, tmp_path)
    with h5py.File(path, "a") as f:
        conn = f["layers/000/connections"][...]
        del f["layers/000/connections"]
        f["layers/000/connections"] = conn + 1000
        f.attrs["version"] = 99
    with pytest.raises(ValueError, match="version 99 is not supported"):
        pylgn.load(path)
    with h5py.File(path, "a") as f:
        f.attrs["version"] = 1
    with pytest.raises(ValueError, match="connections' is invalid"):
        pylgn.load(path)


def test_save_and_load_arguments(make_model, tmp_path):
    model = make_model()
    with pytest.raises(TypeError, match="model"):
        pylgn.save(tmp_path / "x.h5", "not a model")
    with pytest.raises(TypeError, match="meta"):
        pylgn.save(tmp_path / "x.h5", model, note=object())
    with pytest.raises(ValueError, match="optimizer"):
        pylgn.save(tmp_path / "x.h5", model, pylgn.Adam(make_model()))
    with pytest.raises(FileNotFoundError, match="nothing.h5"):
        pylgn.load(tmp_path / "nothing.h5")
    pylgn.save(tmp_path / "x.h5", model)
    with pytest.raises(ValueError, match="device"):
        pylgn.load(tmp_path / "x.h5", device="tpu")


def test_round_trip_conv_model(tmp_path):
    """LogicConv2d stores its leaves; the rebuilt model computes the same function."""
    model = pylgn.Sequential([pylgn.LogicConv2d(2, 4, 6, tree_depth=2), pylgn.LogicLayer(144, 80),
                              pylgn.GroupSum(4, 1.0)], seed=5)
    model.params[:] = np.random.default_rng(0).normal(size=model.params.shape)
    pylgn.save(tmp_path / "conv.h5", model)
    ck = pylgn.load(tmp_path / "conv.h5")
    np.testing.assert_array_equal(ck.model.layers[0].leaves, model.layers[0].leaves)
    x = np.random.default_rng(1).random((9, 72))
    for mode in ("train", "eval"):
        getattr(model, mode)(), getattr(ck.model, mode)()
        np.testing.assert_array_equal(ck.model.forward(x), model.forward(x))
