"""Hostile and broken inputs: files that reach outside themselves, declared sizes, casts, lost
runs, stale temporary files, error messages that name the argument or field."""
import io
import os
import pickle
import tarfile
import time

import h5py
import numpy as np
import pytest

import pylgn
from pylgn.checkpoint import STALE_SECONDS, atomic_path
from pylgn.cli import main
from test_data import _script


@pytest.fixture
def saved(make_model, tmp_path):
    model = make_model()
    opt = pylgn.Adam(model)
    path = tmp_path / "c.h5"
    pylgn.save(path, model, opt, step=3)
    return path, model, opt


def _edit(path, fn):
    with h5py.File(path, "a") as f:
        fn(f)


def test_external_link_and_storage_refused(saved, tmp_path):
    path, model, _ = saved
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["w"] = np.zeros(3)
    p1 = tmp_path / "link.h5"
    p1.write_bytes(path.read_bytes())
    _edit(p1, lambda f: f.__setitem__("/layers/000/extra", h5py.ExternalLink(str(other), "/w")))
    with pytest.raises(ValueError, match="ExternalLink"):
        pylgn.load(p1)
    p2 = tmp_path / "soft.h5"
    p2.write_bytes(path.read_bytes())
    _edit(p2, lambda f: f.__setitem__("/alias", h5py.SoftLink("/layers")))
    with pytest.raises(ValueError, match="SoftLink"):
        pylgn.load(p2)
    raw = tmp_path / "secret.bin"
    raw.write_bytes(np.arange(4, dtype="<f8").tobytes())
    p3 = tmp_path / "external.h5"
    p3.write_bytes(path.read_bytes())
    _edit(p3, lambda f: f.create_dataset("/trainer_x", shape=(4,), dtype="<f8",
                                         external=[(str(raw), 0, 32)]))
    with pytest.raises(ValueError, match="stored outside the file"):
        pylgn.load(p3)


def test_declared_size_checked_before_allocating(saved):
    path, _, _ = saved
    import json

    def huge(f):
        cfg = json.loads(f.attrs["model_config"])
        cfg["layers"][0].update(out_dim=2_000_000, arity=6)
        f.attrs["model_config"] = json.dumps(cfg)
    _edit(path, huge)
    t = time.perf_counter()
    with pytest.raises(ValueError, match="declares 128000000 parameters, the file holds"):
        pylgn.load(path)
    assert time.perf_counter() - t < 5


@pytest.mark.parametrize("edit, match", [
    (lambda f: f.attrs.__setitem__("step", "abc"), "step must be an int"),
    (lambda f: f.attrs.__setitem__("step", -4), "step must be an int"),
    (lambda f: f.attrs.__setitem__("model_config", f.attrs["model_config"].replace(
        '"LogicLayer"', '"__class__"', 1)), "unknown layer type"),
    (lambda f: f.attrs.__setitem__("model_config", f.attrs["model_config"].replace(
        '"float32"', '"bogus"')), "invalid model_config"),
    (lambda f: f["optimizer/v"].__setitem__(0, np.nan), "Adam moments"),
    (lambda f: f["optimizer/v"].__setitem__(0, -1.0), "Adam moments"),
    (lambda f: f["optimizer"].attrs.__setitem__("t", 2.5), "t must be an int"),
])
def test_edited_fields_name_the_file_and_field(saved, edit, match):
    path, _, _ = saved
    _edit(path, edit)
    with pytest.raises(ValueError, match=match) as e:
        pylgn.load(path)
    assert str(path) in str(e.value)


def test_connections_cast_refused(saved):
    path, model, _ = saved

    def wide(f):
        conn = f["layers/000/connections"][...].astype(np.int64)
        del f["layers/000/connections"]
        f["layers/000/connections"] = conn + 2 ** 32
    _edit(path, wide)
    with pytest.raises(ValueError, match="connections"):
        pylgn.load(path)
    _edit(path, lambda f: (f.__delitem__("layers/000/connections"),
                           f.__setitem__("layers/000/connections",
                                         np.full((2, 40), 1.7))))
    with pytest.raises(ValueError, match="must hold integers"):
        pylgn.load(path)


def test_save_refuses_what_load_refuses(saved):
    path, model, opt = saved
    before = path.read_bytes()
    model.params[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pylgn.save(path, model, opt)
    model.params[0] = 0.0
    opt.v[1] = np.inf
    with pytest.raises(ValueError, match="Adam moments"):
        pylgn.save(path, model, opt)
    assert path.read_bytes() == before
    assert not [p for p in os.listdir(path.parent) if p.endswith(".tmp")]


def test_nonfinite_training_stops_before_writing(make_model, bits_data, tmp_path):
    x, y = bits_data
    model = make_model()
    tr = pylgn.Trainer(model, pylgn.Adam(model), batch_size=10)
    ck = tmp_path / "c.h5"
    tr.fit(x, y, 2, checkpoint_path=str(ck), progress=False)
    before = ck.read_bytes()
    model.params[:] = np.nan
    with pytest.raises((ValueError, FloatingPointError), match="NaN|training stopped"):
        tr.fit(x, y, 2, checkpoint_path=str(ck), checkpoint_every=1, progress=False)
    assert ck.read_bytes() == before
    assert pylgn.load(ck).step == 2


def test_stale_temp_files_removed_on_next_save(tmp_path):
    target = tmp_path / "c.h5"
    stale = tmp_path / ".c.h5.abc123.tmp"
    fresh = tmp_path / ".c.h5.def456.tmp"
    other = tmp_path / ".d.h5.zzz.tmp"
    for p in (stale, fresh, other):
        p.write_bytes(b"x")
    old = time.time() - STALE_SECONDS - 5
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    with atomic_path(target) as tmp, open(tmp, "w") as f:
        f.write("ok")
    assert target.read_text() == "ok"
    assert not stale.exists() and fresh.exists() and other.exists()


def test_atomic_path_errors_name_the_target(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(OSError, match=str(blocked / "out.c")):
        with atomic_path(blocked / "out.c"):
            pass
    with pytest.raises(OSError, match="nothing was written"):
        with atomic_path(tmp_path / "big", need_bytes=1 << 62):
            pass
    assert not (tmp_path / "big").exists()


def test_resume_below_the_checkpoint_step_fails(tmp_path, capsys):
    tiny = ["--layers", "1", "--width", "200", "--eval-every", "10", "--no-progress"]
    assert main(["train", *tiny, "--steps", "10", "--out", str(tmp_path)]) == 0
    ck = tmp_path / "checkpoint.h5"
    before = ck.read_bytes()
    capsys.readouterr()
    assert main(["train", "--resume", str(ck), "--steps", "5", "--no-progress"]) == 2
    assert "below the checkpoint's step 10" in capsys.readouterr().err
    assert ck.read_bytes() == before


def test_cli_out_of_memory_is_a_user_error(capsys, monkeypatch, tmp_path):
    import pylgn.model
    monkeypatch.chdir(tmp_path)              # not the checkout: `make demo` leaves runs/digits

    def boom(*a, **k):
        raise MemoryError
    monkeypatch.setattr(pylgn.model.Sequential, "_build", boom)
    assert main(["train", "--width", "1000000000", "--steps", "1", "--no-progress"]) == 2
    assert "out of memory" in capsys.readouterr().err


def test_api_errors_name_the_argument(make_model):
    model = make_model()
    with pytest.raises(TypeError, match="model"):
        pylgn.Adam(None)
    with pytest.raises(ValueError, match="betas"):
        pylgn.Adam(model, betas=0.9)
    with pytest.raises(ValueError, match="logits"):
        pylgn.softmax_cross_entropy([[0.1, 0.2]] * 2 + [[0.3]], [0, 1, 0])
    with pytest.raises(TypeError, match="logits"):
        pylgn.softmax_cross_entropy([[1, 2]], [0])
    masked = np.ma.masked_array(np.zeros((2, 24)), mask=np.zeros((2, 24), bool))
    with pytest.raises(TypeError, match="masked"):
        model.forward(masked)


def test_dataset_casts_refused(tmp_path):
    from pylgn.data import Dataset, write_dataset
    x = np.zeros((4, 1, 2, 2), np.uint8)
    with pytest.raises(TypeError, match="y_train"):
        write_dataset(str(tmp_path / "d.h5"), "d", x, np.array([0.5, 1, 0, 1]), x, [0, 1, 0, 1],
                      ["a", "b"])
    with pytest.raises(ValueError, match="x_train"):
        write_dataset(str(tmp_path / "d.h5"), "d", x + 300 * 0 + np.uint8(200), [0] * 4, x,
                      [0] * 4, ["a"], max_value=100)
    ds = Dataset("d", x, np.zeros(4, int), x, np.zeros(4, int), ["a"], 255)
    with pytest.raises(TypeError, match="raw integer samples"):
        ds.encode(np.full((4, 1, 2, 2), 0.9), 1)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.attrs.update(format="pylgn-dataset", version=1, name="f", shape=[1, 2, 2],
                       max_value=255, class_names='["a", "b"]')
        for k in ("x_train", "x_test"):
            f[k] = x
        for k in ("y_train", "y_test"):
            f[k] = np.array([0.0, 1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="integer labels"):
        pylgn.data.read_dataset(str(tmp_path / "f.h5"))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar_unpickler_refuses_code(tmp_path):
    mod = _script("prepare_cifar")
    tar_path = tmp_path / "a.tar.gz"
    data = pickle.dumps({b"data": _Evil()}, protocol=2)
    with tarfile.open(tar_path, "w:gz") as tar:
        info = tarfile.TarInfo("x/evil")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with tarfile.open(tar_path, "r:gz") as tar:
        with pytest.raises(ValueError, match="refusing to load posix.system|refusing to load"):
            mod._unpickle(tar, "x/evil")


def test_layer_objects_are_not_shared():
    layer = pylgn.LogicLayer(8, 8)
    with pytest.raises(ValueError, match=r"layers\[1\].*already used in this model"):
        pylgn.Sequential([layer, layer, pylgn.GroupSum(2)])
    first = pylgn.Sequential([layer, pylgn.GroupSum(2)], seed=0)
    with pytest.raises(ValueError, match="by another model"):
        pylgn.Sequential([layer, pylgn.GroupSum(2)])
    del first                                   # once its model is gone, a layer may be reused
    import gc
    gc.collect()
    assert pylgn.Sequential([layer, pylgn.GroupSum(2)]).layers[0] is layer


def test_layer_entry_points_check_their_arrays():
    model = pylgn.Sequential([pylgn.LogicLayer(4096, 4096), pylgn.GroupSum(2)], seed=0)
    layer, head = model.layers
    with pytest.raises(ValueError, match=r"x: expected shape \(4096, batch >= 1\)"):
        layer.forward(np.ones((2, 8), np.float32))
    with pytest.raises(TypeError, match="x: expected dtype"):
        layer.forward(np.ones((4096, 8), np.int64))
    with pytest.raises(ValueError, match="C-contiguous"):
        layer.forward(np.ones((8, 4096), np.float32).T)
    layer.forward(np.ones((4096, 8), np.float32))
    with pytest.raises(ValueError, match=r"dy: expected shape \(4096, 8\)"):
        layer.backward(np.ones((4096, 3), np.float32))
    with pytest.raises(TypeError, match="dy: expected dtype float32"):
        layer.backward(np.ones((4096, 8), np.float64))
    with pytest.raises(ValueError, match="dlogits"):
        head.backward(np.ones((3, 8), np.float32))
