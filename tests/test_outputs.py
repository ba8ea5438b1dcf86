"""Outputs never overwrite inputs, and writes fail cleanly: the CLI resolves every output path
against the inputs before anything is written; saves refuse empty paths and folders and turn a
full disk into an OSError naming the file, with the previous file kept."""
import errno
import os

import numpy as np
import pytest

import pylgn
from pylgn.cli import main

TINY = ["--layers", "1", "--width", "200", "--steps", "2", "--eval-every", "2", "--no-progress"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


def _one_error_line(capsys, pattern):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pylgn: error: "), err
    assert pattern in err[0], err[0]


@pytest.mark.parametrize("fmt", ["c", "verilog", "circuit"])
def test_export_onto_its_checkpoint_is_refused(run_dir, tmp_path, capsys, fmt):
    ckpt = run_dir / "checkpoint.h5"
    before = ckpt.read_bytes()
    assert main(["export", str(ckpt), "--format", fmt, "-o", str(ckpt)]) == 2
    _one_error_line(capsys, "is the input checkpoint")
    link = tmp_path / "link.h5"
    os.symlink(ckpt, link)                                  # a link to the input is the input
    assert main(["export", str(ckpt), "--format", fmt, "-o", str(link)]) == 2
    _one_error_line(capsys, "is the input checkpoint")
    hard = tmp_path / "hard.h5"
    os.link(ckpt, hard)                                     # so is a hard link
    assert main(["export", str(hard), "--format", fmt, "-o", str(ckpt)]) == 2
    _one_error_line(capsys, "is the input checkpoint")
    assert ckpt.read_bytes() == before


@pytest.mark.parametrize("out, message", [("", "-o: expected a path, got ''"),
                                          (" ", "-o: expected a path"),
                                          ("FOLDER", "is a folder")])
def test_export_to_no_path_or_a_folder_is_refused(run_dir, tmp_path, capsys, out, message):
    out = str(tmp_path) if out == "FOLDER" else out
    listing = sorted(os.listdir(tmp_path))
    assert main(["export", str(run_dir / "checkpoint.h5"), "--format", "c", "-o", out]) == 2
    _one_error_line(capsys, message)
    assert sorted(os.listdir(tmp_path)) == listing


def test_train_onto_another_runs_folder_is_refused_unless_resumed_or_overwritten(run_dir,
                                                                                 capsys):
    ckpt = run_dir / "checkpoint.h5"
    before = ckpt.read_bytes()
    capsys.readouterr()
    assert main(["train", *TINY, "--seed", "5", "--out", str(run_dir)]) == 2
    _one_error_line(capsys, f"--out {run_dir}: holds the checkpoint of another run")
    assert ckpt.read_bytes() == before
    assert main(["train", "--resume", str(ckpt), "--steps", "2", "--out", str(run_dir),
                 "--no-progress"]) == 0                  # the same run, nothing to do
    assert ckpt.read_bytes() == before


def test_train_overwrite_replaces_the_run(tmp_path, capsys):
    assert main(["train", *TINY, "--out", str(tmp_path)]) == 0
    assert main(["train", *TINY, "--seed", "7", "--out", str(tmp_path), "--overwrite"]) == 0
    assert pylgn.load(tmp_path / "checkpoint.h5").meta["settings"]["seed"] == 7


def test_train_out_must_be_a_folder_and_not_its_input(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["train", *TINY, "--out", str(f)]) == 2
    _one_error_line(capsys, "is a file; expected a folder")
    assert main(["train", *TINY, "--out", ""]) == 2
    _one_error_line(capsys, "--out: expected a path, got ''")
    (tmp_path / "run" / "checkpoint.h5").mkdir(parents=True)
    assert main(["train", *TINY, "--out", str(tmp_path / "run")]) == 2
    _one_error_line(capsys, "checkpoint.h5 is a folder")
    assert f.read_text() == "x"


def test_save_onto_a_folder_or_an_empty_path_names_the_path(tmp_path, make_model):
    model = make_model()
    with pytest.raises(ValueError, match=f"^path: {tmp_path} is a folder"):
        pylgn.save(tmp_path, model)
    with pytest.raises(ValueError, match="^path: expected a file path, got ''"):
        pylgn.save("", model)
    assert os.listdir(tmp_path) == []


def test_a_full_disk_during_a_save_is_a_clean_error(tmp_path, make_model, monkeypatch):
    """The HDF5 file is built in memory and written with plain writes: a disk that fills up
    mid-write raises OSError(ENOSPC) naming the file; the previous checkpoint survives and no
    temporary file is left."""
    path = tmp_path / "ck.h5"
    old = make_model(seed=1)
    pylgn.save(path, old)
    before = path.read_bytes()
    real_write, calls = os.write, []

    def write(fd, data):
        calls.append(len(data))
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, bytes(data[:100]))               # a short write, then full
    monkeypatch.setattr(os, "write", write)
    with pytest.raises(OSError, match=f"{path}: could not be written \\(No space left"):
        pylgn.save(path, make_model(seed=2), optimizer=None)
    monkeypatch.undo()
    assert len(calls) == 2 and path.read_bytes() == before
    assert os.listdir(tmp_path) == ["ck.h5"]
    np.testing.assert_array_equal(pylgn.load(path).model.params, old.params)


def test_save_checks_the_free_space_against_the_file_size(tmp_path, make_model, monkeypatch):
    import collections
    import shutil
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 20, (1 << 20) - 100, 100))
    with pytest.raises(OSError, match="needs about .* bytes, the disk has 100 free"):
        pylgn.save(tmp_path / "ck.h5", make_model())
    assert os.listdir(tmp_path) == []
