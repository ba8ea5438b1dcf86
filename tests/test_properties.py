"""Property-based checks over the public entry points (hypothesis): layers, Sequential, Adam,
Trainer, Circuit, the checkpoint and dataset readers, and the CLI commands through
``pylgn.cli.main(argv)``, fed generated shapes, dtypes, non-finite values and edited HDF5
attributes and datasets.

The one property: a clear ValueError/TypeError naming the argument, file or field (the CLI:
exit status 2 and one line on stderr) or a correct result (checked against the numpy reference
formulas of tests/reference.py, or the model's own invariants), and no file changed.

Profiles: "pylgn-ci" (a few derandomized examples per property; in `make test`) and
"pylgn-fuzz" (PYLGN_FUZZ=1, `make fuzz`: PYLGN_FUZZ_EXAMPLES (default 1000) examples per unit
of weight: 10 units, >= 10,000 examples in all).
"""
import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pylgn
import reference as ref
from pylgn.cli import main
from pylgn.data import read_dataset, write_dataset
from pylgn.estimators import ESTIMATORS
from pylgn.init import INITS

FUZZ = os.environ.get("PYLGN_FUZZ", "") not in ("", "0")
_COMMON = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=list(HealthCheck))
settings.register_profile("pylgn-ci", max_examples=10, derandomize=True, **_COMMON)
settings.register_profile("pylgn-fuzz", max_examples=int(os.environ.get("PYLGN_FUZZ_EXAMPLES",
                                                                       1000)), **_COMMON)
PROFILE = settings.get_profile("pylgn-fuzz" if FUZZ else "pylgn-ci")


def examples(weight):
    """The profile's settings with ``weight`` x its example count (slow properties < 1)."""
    return settings(PROFILE, max_examples=max(2, int(PROFILE.max_examples * weight)))


def clear(error, *names):
    """A ValueError/TypeError with a one-line message naming one of ``names``."""
    assert isinstance(error, (ValueError, TypeError)), repr(error)
    msg = str(error)
    assert msg.strip() and "\n" not in msg.strip(), repr(msg)
    assert any(n in msg for n in names), f"{msg!r} names none of {names}"


def snapshot(folder):
    """{relative path: sha256} of every file under ``folder``."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            p = os.path.join(root, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, folder)] = hashlib.sha256(f.read()).hexdigest()
    return out


# values ------------------------------------------------------------------------------------------

IN = 6
DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int64, np.uint8, np.bool_,
          np.complex64]
TEXT = st.text(st.characters(blacklist_characters="\x00"), max_size=6)   # HDF5: no NULs
ANY = st.one_of(st.none(), st.booleans(), st.integers(-3, 70),
                st.floats(allow_nan=True, allow_infinity=True), TEXT)


def shapes(width):
    return st.one_of(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=7),
                     st.integers(0, 6).map(lambda b: (b, width)))


def inputs(width):
    """Anything a user might pass as a batch: valid [0, 1] floats and 0/1 bits of the right
    width, and arrays of any dtype, shape and value (NaN, inf, out of range), lists, None."""
    valid_shape = st.integers(1, 6).map(lambda b: (b, width))
    floats01 = hnp.arrays(st.sampled_from([np.float32, np.float64]), valid_shape,
                          elements=st.floats(0, 1, width=32))
    bits = st.tuples(hnp.arrays(np.uint8, valid_shape, elements=st.integers(0, 1)),
                     st.sampled_from([np.uint8, np.bool_, np.int64, np.float32])
                     ).map(lambda t: t[0].astype(t[1]))
    anything = hnp.arrays(st.sampled_from(DTYPES), shapes(width))
    lists = st.lists(st.lists(st.floats(0, 1), min_size=width, max_size=width), max_size=3)
    return st.one_of(floats01, bits, anything, lists, ANY)


def tiny_model(dtype=np.float64, seed=0):
    layers = [pylgn.LogicLayer(IN, 8, init="gaussian", sigma=1.5),
              pylgn.LogicLayer(8, 4, arity=3, init="gaussian", sigma=1.5),
              pylgn.GroupSum(2, tau=2.0)]
    return pylgn.Sequential(layers, seed=seed, dtype=dtype)


def reference_logits(model, x, discrete):
    """The numpy reference of the model's forward: relaxed tables on x, or 0/1 tables on the
    bits [x >= 0.5]."""
    h = np.asarray(x, dtype=np.float64).T
    if discrete:
        h = (h >= 0.5).astype(np.float64)
    for layer in model.layers[:-1]:
        table = ref.relaxed_table(layer)
        h = ref.gate_forward(h, model.backend.to_host(layer.connections),
                             (table >= 0.5).astype(np.float64) if discrete else table)
    g = model.layers[-1]
    return (h.reshape(g.k, -1, h.shape[1]).sum(axis=1) / g.tau).T


# layers, Sequential, Circuit --------------------------------------------------------------------

MODEL = tiny_model()
CIRCUIT = MODEL.to_circuit()


@examples(2)
@given(x=inputs(IN), train=st.booleans())
def test_forward_and_circuit(x, train):
    model = MODEL.train() if train else MODEL.eval()
    try:
        out = model.forward(x)
    except (ValueError, TypeError) as e:
        return clear(e, "x")
    xa = np.asarray(x, dtype=np.float64)
    np.testing.assert_allclose(out, reference_logits(model, xa, not train), rtol=1e-9,
                               atol=1e-12)
    bits = xa >= 0.5
    np.testing.assert_array_equal(CIRCUIT.scores(bits), reference_logits(model, xa, True) * 2.0)
    np.testing.assert_array_equal(CIRCUIT.predict(bits), np.argmax(CIRCUIT.scores(bits), axis=1))


@examples(1)
@given(x=inputs(IN))
def test_circuit_inputs(x):
    try:
        scores = CIRCUIT.scores(x)
    except (ValueError, TypeError) as e:
        return clear(e, "x")
    xa = np.asarray(x)
    assert xa.dtype.kind in "biu" or xa.dtype.kind == "f"
    np.testing.assert_array_equal(scores, reference_logits(MODEL, xa.astype(np.float64), True)
                                  * 2.0)


@examples(2)
@given(in_dim=st.one_of(st.integers(1, 12), ANY), out_dim=st.one_of(st.integers(1, 24), ANY),
       arity=st.one_of(st.integers(1, 6), ANY), param=st.one_of(st.sampled_from(["iwp", "op"]), ANY),
       estimator=st.one_of(st.sampled_from(ESTIMATORS), ANY),
       init=st.one_of(st.sampled_from(INITS), ANY), gumbel=st.one_of(st.none(), ANY),
       grad_factor=st.one_of(st.floats(0.1, 3), ANY), seed=st.integers(0, 3))
def test_logic_layer_arguments(in_dim, out_dim, arity, param, estimator, init, gumbel,
                               grad_factor, seed):
    kw = dict(in_dim=in_dim, out_dim=out_dim, arity=arity, param=param, estimator=estimator,
              init=init, gumbel=gumbel, grad_factor=grad_factor)
    try:
        layer = pylgn.LogicLayer(**kw)
        model = pylgn.Sequential([layer], seed=seed, dtype=np.float64)
    except (ValueError, TypeError) as e:
        return clear(e, *kw)
    config = {k: v for k, v in layer.config().items() if k != "type"}
    assert pylgn.LogicLayer(**config).config() == layer.config()
    x = np.random.default_rng(seed).random((3, layer.in_dim))
    out = model.forward(x)
    conn = layer.connections
    assert conn.shape == (layer.arity, layer.out_dim) and 0 <= conn.min() <= conn.max() < in_dim
    np.testing.assert_allclose(out.T, ref.gate_forward(x.T, conn, ref.relaxed_table(layer)),
                               rtol=1e-9, atol=1e-12)


# Adam ---------------------------------------------------------------------------------------------

N_PARAMS = MODEL.params.size
FINITE = st.floats(-1e6, 1e6, allow_nan=False)
GRADS = st.one_of(hnp.arrays(np.float64, N_PARAMS, elements=FINITE),
                  hnp.arrays(np.float64, N_PARAMS, elements=st.floats(allow_nan=True,
                                                                      allow_infinity=True)),
                  st.tuples(hnp.arrays(np.float64, N_PARAMS, elements=FINITE),
                            st.integers(0, N_PARAMS - 1),
                            st.sampled_from([np.nan, np.inf, -np.inf])).map(
                                lambda t: np.where(np.arange(N_PARAMS) == t[1], t[2], t[0])))


@examples(2)
@given(grads=GRADS, lr=st.one_of(st.floats(1e-4, 1.0), ANY),
       betas=st.one_of(st.tuples(st.floats(0, 0.99), st.floats(0, 0.999)), ANY),
       eps=st.one_of(st.floats(1e-10, 1e-3), ANY), wd=st.one_of(st.floats(0, 0.5), ANY))
def test_adam_step(grads, lr, betas, eps, wd):
    model = tiny_model()
    try:
        opt = pylgn.Adam(model, lr=lr, betas=betas, eps=eps, weight_decay=wd)
    except (ValueError, TypeError) as e:
        return clear(e, "lr", "betas", "eps", "weight_decay")
    model.grads[:] = grads
    p, m, v = model.params.copy(), opt.m.copy(), opt.v.copy()
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(grads) < np.sqrt(np.finfo(np.float64).max) / 16)   # NaN, inf, huge
    if bad.any():
        with pytest.raises(ValueError) as e:
            opt.step()
        first = int(np.argmax(bad))
        bounds = np.cumsum([l.n_params for l in model.layers])
        clear(e.value, f"layers[{int(np.searchsorted(bounds, first, side='right'))}]")
        for a, b in ((model.params, p), (opt.m, m), (opt.v, v)):
            np.testing.assert_array_equal(a, b)
        assert opt.t == 0
        return
    opt.step()
    b1, b2 = opt.betas
    m = (1 - b1) * grads
    v = (1 - b2) * grads * grads
    want = p - opt.lr * ((m / (1 - b1)) / (np.sqrt(v / (1 - b2)) + opt.eps)
                         + opt.weight_decay * p)
    np.testing.assert_allclose(model.params, want, rtol=1e-9, atol=1e-12)


# Trainer -----------------------------------------------------------------------------------------

@st.composite
def training_data(draw):
    if draw(st.booleans()):                                   # anything
        return draw(inputs(IN)), draw(st.one_of(inputs(1), hnp.arrays(
            st.sampled_from([np.int64, np.int8, np.float64, np.uint8]), shapes(1).map(
                lambda s: s[:1]))))
    n = draw(st.integers(1, 12))                              # valid x, labels maybe not
    x = draw(hnp.arrays(np.float32, (n, IN), elements=st.floats(0, 1, width=32)))
    y = draw(hnp.arrays(np.int64, n, elements=st.integers(-1, 2)))
    return x, y


@examples(1)
@given(data=training_data(), batch_size=st.one_of(st.integers(1, 8), ANY),
       accumulate=st.one_of(st.integers(1, 3), ANY), steps=st.one_of(st.integers(1, 3), ANY))
def test_trainer_fit(data, batch_size, accumulate, steps):
    x, y = data
    model = tiny_model(np.float32)
    try:
        trainer = pylgn.Trainer(model, pylgn.Adam(model), batch_size=batch_size,
                                accumulate=accumulate)
        history = trainer.fit(x, y, steps, eval_every=1, progress=False)
    except (ValueError, TypeError) as e:
        return clear(e, "x", "y", "batch_size", "accumulate", "steps")
    assert trainer.step == steps and len(history["train_loss"]) == steps
    assert np.isfinite(history["train_loss"]).all() and np.isfinite(model.params).all()
    ya = np.asarray(y)
    assert ya.min() >= 0 and ya.max() < 2 and len(ya) >= batch_size


# HDF5 edits --------------------------------------------------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 10 ** 6) |
                    st.floats(allow_nan=True, allow_infinity=True) | TEXT,
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(TEXT, c,
                                                                         max_size=3),
                    max_leaves=6)
RAW = st.one_of(st.integers(-2 ** 40, 2 ** 40), st.floats(allow_nan=True, allow_infinity=True),
                TEXT, st.binary(max_size=8).filter(lambda b: b"\x00" not in b),
                JSON.map(json.dumps))


def _mutate_json(value, draw):
    """``value`` with one node (a dict entry or list item, at any depth) replaced or removed."""
    if isinstance(value, (dict, list)) and value and draw(st.booleans()):
        keys = list(value) if isinstance(value, dict) else list(range(len(value)))
        key = draw(st.sampled_from(keys))
        if draw(st.integers(0, 3)) == 0:
            value = dict(value) if isinstance(value, dict) else list(value)
            del value[key]
            return value
        value = dict(value) if isinstance(value, dict) else list(value)
        value[key] = _mutate_json(value[key], draw)
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and draw(st.booleans()):
        return draw(st.sampled_from([0, -1, value + 1, value * 10 ** 6, 0.5, float("nan"),
                                     -value]))
    return draw(JSON)


@st.composite
def hdf5_edit(draw, attrs, datasets):
    """An edit of an HDF5 file: (kind, where, name, value)."""
    kind = draw(st.sampled_from(["attr-json", "attr-raw", "attr-del", "data", "data-del"]))
    if kind.startswith("attr"):
        where, name = draw(st.sampled_from(attrs))
        return kind, where, name, draw(RAW) if kind == "attr-raw" else draw
    where = draw(st.sampled_from(datasets))
    shape = draw(st.one_of(st.just(None), hnp.array_shapes(min_dims=0, max_dims=3, max_side=6)))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.uint8, np.bool_,
                                  "S3"]))
    special = draw(st.sampled_from([None, np.nan, np.inf, -1, 10 ** 9, 255]))
    return kind, where, None, (shape, np.dtype(dtype), special, draw(st.integers(0, 2 ** 16)))


def apply_edit(path, edit):
    kind, where, name, value = edit
    with h5py.File(path, "a") as f:
        if kind == "attr-del":
            if name in f[where].attrs:
                del f[where].attrs[name]
        elif kind == "attr-raw":
            f[where].attrs[name] = value
        elif kind == "attr-json":
            old = f[where].attrs.get(name)
            try:
                parsed = json.loads(old)
            except (TypeError, ValueError):
                parsed = old.item() if isinstance(old, np.generic) else old
            new = _mutate_json(parsed, value)
            f[where].attrs[name] = new if isinstance(new, (str, int, float)) and not \
                isinstance(new, bool) else json.dumps(new)
        else:
            old = f[where][...] if where in f else np.zeros(3)
            del f[where]
            if kind == "data":
                shape, dtype, special, seed = value
                shape = old.shape if shape is None else shape
                rng = np.random.default_rng(seed)
                if dtype.kind == "S":
                    new = np.full(shape, b"ab", dtype=dtype)
                else:
                    new = old.astype(np.float64).ravel()[:int(np.prod(shape))] if \
                        old.size >= np.prod(shape) else rng.random(shape) * 4
                    new = np.asarray(new).reshape(shape)
                    if special is not None and new.size:
                        new.flat[rng.integers(0, new.size)] = special
                    with np.errstate(invalid="ignore", over="ignore"):
                        new = new.astype(dtype)
                f.create_dataset(where, data=new)


@contextlib.contextmanager
def edited(base, edit, name):
    folder = tempfile.mkdtemp()
    try:
        path = os.path.join(folder, name)
        shutil.copy(base, path)
        apply_edit(path, edit)
        yield folder, path
    finally:
        shutil.rmtree(folder)


@pytest.fixture(scope="module")
def base_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("base")
    model = tiny_model(np.float32)
    trainer = pylgn.Trainer(model, pylgn.Adam(model), batch_size=4)
    rng = np.random.default_rng(0)
    x = rng.random((12, IN)).astype(np.float32)
    trainer.fit(x, (x[:, 0] > 0.5).astype(np.int64), 3, progress=False)
    ckpt = folder / "ck.h5"
    trainer.save(ckpt)
    data = folder / "data.h5"
    write_dataset(str(data), "t", rng.integers(0, 256, (9, 2, 3)), np.arange(9) % 3,
                  rng.integers(0, 256, (3, 2, 3)), np.arange(3) % 3, ["a", "b", "c"])
    circuit = folder / "circuit.h5"
    CIRCUIT.save(circuit)
    return dict(ckpt=str(ckpt), data=str(data), circuit=str(circuit))


CKPT_ATTRS = [("/", "format"), ("/", "version"), ("/", "step"), ("/", "device"),
              ("/", "model_config"), ("/", "meta"), ("/layers/000", "config"),
              ("/optimizer", "type"), ("/optimizer", "config"), ("/optimizer", "t"),
              ("/trainer", "state")]
CKPT_DATA = ["/layers/000/weights", "/layers/000/connections", "/layers/001/weights",
             "/layers/001/connections", "/optimizer/m", "/optimizer/v", "/trainer/permutation"]


@examples(2)
@given(edit=hdf5_edit(CKPT_ATTRS, CKPT_DATA))
def test_edited_checkpoint(base_files, edit):
    with edited(base_files["ckpt"], edit, "ck.h5") as (folder, path):
        before = snapshot(folder)
        try:
            ck = pylgn.load(path)
        except (ValueError, TypeError) as e:
            clear(e, path)
        else:
            x = np.random.default_rng(0).random((5, ck.model.in_dim))
            assert np.isfinite(ck.model.train().forward(x)).all()
            c = ck.model.to_circuit()                 # without a GroupSum: bits out, no k
            assert (c.predict(x >= 0.5) if c.k else c.evaluate(x >= 0.5)).shape[0] == 5
            if ck.optimizer is not None:
                assert np.isfinite(ck.optimizer.m).all() and (ck.optimizer.v >= 0).all()
        assert snapshot(folder) == before


DATA_ATTRS = [("/", "format"), ("/", "version"), ("/", "name"), ("/", "shape"),
              ("/", "max_value"), ("/", "class_names")]
DATA_DATA = ["/x_train", "/y_train", "/x_test", "/y_test"]


@examples(1.5)
@given(edit=hdf5_edit(DATA_ATTRS, DATA_DATA))
def test_edited_dataset(base_files, edit):
    with edited(base_files["data"], edit, "data.h5") as (folder, path):
        before = snapshot(folder)
        try:
            ds = read_dataset(path)
        except (ValueError, TypeError) as e:
            clear(e, path)
        else:
            for split in ("train", "test"):
                x, y = getattr(ds, f"x_{split}"), getattr(ds, f"y_{split}")
                assert x.dtype == np.uint8 and len(x) == len(y) >= 1
                assert 0 <= y.min() <= y.max() < ds.num_classes
            assert 1 <= ds.max_value <= 255 and all(isinstance(n, str) for n in ds.class_names)
            assert ds.encode(ds.x_test, 2).shape == (len(ds.x_test), int(np.prod(ds.shape)) * 2)
        assert snapshot(folder) == before


# the CLI -----------------------------------------------------------------------------------------

def run_cli(argv):
    """(exit status, stderr lines) of main(argv), stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, [l for l in err.getvalue().splitlines() if l.strip()]


def check_cli(rc, err, before, after, outputs=()):
    """Exit 0 changing only ``outputs``, or exit 2 with one line and nothing changed."""
    if rc == 0:
        changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
        assert changed <= set(outputs), (changed, outputs)
        return
    assert rc == 2, (rc, err)
    assert len(err) == 1 and err[0].startswith("pylgn: error: "), err
    assert after == before, "files changed on an error"


@contextlib.contextmanager
def in_folder(folder):
    old = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(old)


OUT_CHOICES = ["new.out", "", "ck.h5", ".", "sub/new.out", "link.h5", "other.txt", "hard.h5"]


@examples(0.5)
@given(edit=st.one_of(st.none(), hdf5_edit(CKPT_ATTRS, CKPT_DATA)),
       command=st.sampled_from(["info", "export", "eval"]), fmt=st.sampled_from(["c", "verilog",
                                                                        "circuit", "x"]),
       out=st.sampled_from(OUT_CHOICES), flags=st.lists(st.sampled_from(
           [["--no-simplify"], ["--json"], ["--batch-size", "0"], ["--batch-size", "7"],
            ["--lut", "4"], ["--main"]]), max_size=2))
def test_cli_info_export_eval(base_files, edit, command, fmt, out, flags):
    edit = edit or ("attr-del", "/", "no-such-attribute", None)
    with edited(base_files["ckpt"], edit, "ck.h5") as (folder, path):
        with open(os.path.join(folder, "other.txt"), "w") as f:
            f.write("keep me")
        os.symlink(path, os.path.join(folder, "link.h5"))
        os.link(path, os.path.join(folder, "hard.h5"))
        flat = [a for f in flags for a in f]
        if command == "eval":
            argv = ["eval", "ck.h5", *{"c": [], "verilog": ["--dataset", "digits"],
                                       "circuit": ["--dataset", "data.h5"],
                                       "x": ["--dataset", "missing.h5"]}[fmt]]
            shutil.copy(base_files["data"], os.path.join(folder, "data.h5"))
        elif command == "info":
            argv = ["info", "ck.h5", *[a for a in flat if a in ("--json", "--batch-size", "0",
                                                                "7")]]
        else:
            argv = ["export", "ck.h5", "--format", fmt, "-o", out,
                    *[a for a in flat if a not in ("--batch-size", "0", "7", "--json")]]
        with in_folder(folder):
            before = snapshot(".")
            rc, err = run_cli(argv)
            after = snapshot(".")
        check_cli(rc, err, before, after, outputs=[os.path.normpath(out)] if out else [])


TRAIN_FLAGS = {
    "--layers": ["1", "2", "0", "-1", "100000", "x"],
    "--width": ["10", "20", "7", "0", "10000000000"],
    "--arity": ["1", "3", "6", "0", "7"],
    "--tau": ["1", "0.5", "nan", "inf", "-1", "1e-50"],
    "--gumbel": ["0", "1", "1e-50", "-1", "nan"],
    "--lr": ["0.01", "0", "nan", "-1"],
    "--batch-size": ["1", "10", "0", "100000000"],
    "--accumulate": ["1", "2", "0"],
    "--thresholds": ["1", "3", "0", "256"],
    "--param": ["iwp", "op", "x"],
    "--estimator": list(ESTIMATORS) + ["x"],
    "--init": list(INITS) + ["x"],
    "--crop": ["0", "4", "9", "-1"],
    "--arch": ["dense", "cdlgn-digits", "x"],
    "--augment": ["none", "crop", "shift", "x"],
    "--seed": ["0", "-1", "8589934592"],
    "--steps": ["1", "0"],
    "--out": ["run", "", "other.txt", "done", "ck.h5"],
    "--resume": ["ck.h5", "missing.h5", "done/checkpoint.h5"],
    "--dataset": ["digits", "data.h5", "ck.h5", "missing.h5"],
}


@examples(0.3)
@given(flags=st.dictionaries(st.sampled_from(sorted(TRAIN_FLAGS)), st.integers(0, 10 ** 6),
                             max_size=4),
       edit=st.one_of(st.none(), hdf5_edit([("/trainer", "state"), ("/", "meta")],
                                           ["/trainer/permutation"])))
def test_cli_train(base_files, flags, edit):
    edit = edit or ("attr-del", "/", "no-such-attribute", None)
    argv = ["train", "--eval-every", "1", "--no-progress", "--threads", "1"]
    if "--steps" not in flags:
        argv += ["--steps", "1"]
    if not {"--layers", "--width", "--arch"} & set(flags):
        argv += ["--layers", "1", "--width", "20"]
    for flag, i in flags.items():
        argv += [flag, TRAIN_FLAGS[flag][i % len(TRAIN_FLAGS[flag])]]
    with edited(base_files["ckpt"], edit, "ck.h5") as (folder, path):
        shutil.copy(base_files["data"], os.path.join(folder, "data.h5"))
        with open(os.path.join(folder, "other.txt"), "w") as f:
            f.write("keep me")
        os.makedirs(os.path.join(folder, "done"))
        pylgn.save(os.path.join(folder, "done", "checkpoint.h5"), tiny_model())
        with in_folder(folder):
            before = snapshot(".")
            rc, err = run_cli(argv)
            after = snapshot(".")
        if rc != 0:
            return check_cli(rc, err, before, after)
        written = [p for p in after if before.get(p) != after.get(p)]
        folders = {os.path.dirname(p) for p in written}
        assert len(folders) <= 1, written                      # one output folder
        assert not {"ck.h5", "other.txt", "data.h5"} & set(written), written
        if folders == {"done"}:                                # another run's folder
            resume = flags.get("--resume")
            assert resume is not None and TRAIN_FLAGS["--resume"][resume % 3] == \
                "done/checkpoint.h5", (argv, written)


CIRCUIT_ATTRS = [("/", "format"), ("/", "version"), ("/", "in_dim"), ("/", "k"), ("/", "tau")]
CIRCUIT_DATA = ["/arity", "/codes", "/outputs", "/src"]


@examples(1)
@given(edit=hdf5_edit(CIRCUIT_ATTRS, CIRCUIT_DATA))
def test_edited_circuit(base_files, edit):
    with edited(base_files["circuit"], edit, "circuit.h5") as (folder, path):
        before = snapshot(folder)
        try:
            c = pylgn.Circuit.load(path)
        except (ValueError, TypeError) as e:
            clear(e, path, "path")
        else:
            x = np.random.default_rng(0).integers(0, 2, (5, c.in_dim)).astype(bool)
            assert c.evaluate(x).shape == (5, c.num_outputs)
            if c.k:
                assert c.predict(x).shape == (5,)
        assert snapshot(folder) == before
