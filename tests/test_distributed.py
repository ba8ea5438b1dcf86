"""pylgn.distributed and data-parallel training: the single-process communicator, sharding, lazy
imports and clear errors, then 2-rank runs under the venv's ``mpiexec`` (the ``mpi`` extra):
equality with one process, resume with another rank count, a raising / dying / hanging rank and
parameter drift (each job must end within seconds, leaving a loadable checkpoint)."""
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import pylgn
from pylgn.distributed import (Communicator, DistributedError, array_hash, get_communicator,
                               launched_size)

HERE = os.path.dirname(os.path.abspath(__file__))
HELPER = os.path.join(HERE, "mpi_helper.py")


# single process ---------------------------------------------------------------------------------

def test_single_communicator_collectives_are_identities():
    comm = get_communicator()
    assert (comm.rank, comm.size, comm.backend) == (0, 1, "single")
    buf = np.arange(5.0)
    assert comm.allreduce_sum(buf) is buf and comm.broadcast(buf) is buf
    np.testing.assert_array_equal(buf, np.arange(5.0))
    np.testing.assert_array_equal(comm.allgather(buf), buf[None])
    assert comm.broadcast_int(7) == 7
    assert comm.shard(9) == slice(0, 9)
    assert comm.check_identical(buf) == array_hash(buf)
    comm.barrier()


@pytest.mark.parametrize("size", [1, 2, 3, 5])
@pytest.mark.parametrize("n", [5, 25, 100])
def test_shards_partition_the_batch(size, n):
    parts = []
    for rank in range(size):
        comm = Communicator()
        comm.rank, comm.size = rank, size
        parts.append(np.arange(n)[comm.shard(n)])
    np.testing.assert_array_equal(np.concatenate(parts), np.arange(n))
    lengths = [len(p) for p in parts]
    assert max(lengths) - min(lengths) <= 1


class _TwoRanks(Communicator):
    """Rank 0 of a pretend pair whose other rank holds ``other`` (hash rows for allgather)."""

    def __init__(self, other):
        super().__init__()
        self.size, self.other = 2, other

    def allgather(self, buf):
        return np.stack([np.asarray(buf), self.other(np.asarray(buf))])


def test_check_identical_detects_drift():
    a = np.linspace(0, 1, 10)
    same = _TwoRanks(lambda mine: mine)
    assert same.check_identical(a) == array_hash(a)
    drifted = _TwoRanks(lambda mine: np.frombuffer(bytes.fromhex(array_hash(a + 1e-9)),
                                                   dtype=np.uint8))
    with pytest.raises(DistributedError, match=r"parameters: ranks \[1\] differ from rank 0"):
        drifted.check_identical(a)


def test_array_hash_sees_dtype_shape_and_values():
    a = np.zeros(4, dtype=np.float32)
    assert array_hash(a) == array_hash(a.copy())
    assert array_hash(a) != array_hash(a.astype(np.float64))
    assert array_hash(a) != array_hash(a.reshape(2, 2))
    b = a.copy()
    b[3] = np.nextafter(np.float32(0), np.float32(1))
    assert array_hash(a) != array_hash(b)


def test_trainer_default_comm_is_single_and_checks_comm(make_model):
    model = make_model()
    trainer = pylgn.Trainer(model, pylgn.Adam(model))
    assert trainer.comm.size == 1
    with pytest.raises(TypeError, match="comm: expected a pylgn.distributed communicator"):
        pylgn.Trainer(model, pylgn.Adam(model), comm=object())
    comm = Communicator()
    comm.size = 4
    with pytest.raises(ValueError, match="batch_size: 3 is below the 4 ranks"):
        pylgn.Trainer(model, pylgn.Adam(model), batch_size=3, comm=comm)


def test_import_is_lazy():
    code = ("import sys, pylgn, pylgn.distributed, pylgn.cli; "
            "m = pylgn.Sequential([pylgn.LogicLayer(4, 4), pylgn.GroupSum(2)]); "
            "pylgn.Trainer(m, pylgn.Adam(m)); "
            "bad = [k for k in ('mpi4py', 'cupy') if k in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=HERE)


def test_missing_mpi4py_and_cupy_give_clear_errors(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ValueError, match=r"needs mpi4py.*pip install 'pylgn\[mpi\]'"):
        get_communicator("mpi")
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(ValueError, match="the NCCL backend needs cupy"):
        get_communicator("nccl")
    with pytest.raises(ValueError, match="backend: expected one of"):
        get_communicator("gloo")


def test_launched_size_reads_launcher_variables(monkeypatch):
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS"):
        monkeypatch.delenv(name, raising=False)
    assert launched_size() == 1
    monkeypatch.setenv("PMI_SIZE", "3")
    assert launched_size() == 3
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert launched_size() == 4


def test_cli_distributed_flags(monkeypatch, capsys, tmp_path):
    from pylgn.cli import main
    monkeypatch.chdir(tmp_path)              # not the checkout: `make demo` leaves runs/digits
    assert main(["train", "--distributed", "nccl", "--steps", "1"]) == 2
    assert "--distributed nccl: needs --device cuda" in capsys.readouterr().err
    assert main(["train", "--distributed", "mpi", "--comm-timeout", "0", "--steps", "1"]) == 2
    assert "--comm-timeout: expected seconds > 0" in capsys.readouterr().err
    monkeypatch.setenv("PMI_SIZE", "2")                  # as if started by mpiexec -n 2
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    assert main(["train", "--steps", "1"]) == 2
    assert "needs mpi4py" in capsys.readouterr().err


# several ranks under mpiexec ---------------------------------------------------------------------

def _mpiexec():
    pytest.importorskip("mpi4py", reason="mpi4py is not installed: pip install '.[mpi]'")
    for cand in (os.path.join(os.path.dirname(sys.executable), "mpiexec"),
                 shutil.which("mpiexec"), shutil.which("mpirun")):
        if cand and os.access(cand, os.X_OK):
            return cand
    pytest.skip("no mpiexec beside the Python executable or on PATH: pip install '.[mpi]'")


def _run(ranks, *args, fault=None, timeout=180):
    """``mpiexec -n ranks python mpi_helper.py args`` (ranks 0: without mpiexec); returns
    (completed process, seconds)."""
    env = dict(os.environ, NUMBA_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1",
               PRTE_MCA_rmaps_default_mapping_policy=":oversubscribe")
    env.pop("PYLGN_TEST_FAULT", None)
    if fault:
        env["PYLGN_TEST_FAULT"] = fault
    cmd = [sys.executable, HELPER, *args]
    if ranks:
        cmd = [_mpiexec(), "-n", str(ranks)] + cmd
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    return proc, time.perf_counter() - t0


def test_two_ranks_equal_one_process_float64(tmp_path):
    """Uneven shards (12 + 13 of 25), accumulation, an RNG-drawing transform, rank-dependent
    seeds and parameters before the broadcast, sharded evaluation: the 2-rank run is the
    1-process run up to float64 summation order."""
    import mpi_helper
    out = tmp_path / "fit.npz"
    proc, _ = _run(2, "fit", str(out))
    assert proc.returncode == 0, proc.stderr
    got = np.load(out)
    assert int(got["size"]) == 2
    trainer, h = mpi_helper.fit_run(Communicator())
    np.testing.assert_allclose(got["params"], trainer.model.params, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got["loss"], h["train_loss"], rtol=1e-12)
    np.testing.assert_array_equal(got["acc"], h["train_accuracy"])
    np.testing.assert_array_equal(got["relaxed"], h["test_accuracy_relaxed"])
    np.testing.assert_array_equal(got["discrete"], h["test_accuracy_discrete"])
    np.testing.assert_array_equal(got["permutation"], trainer.permutation)


CLI = ["cli", "train", "--layers", "2", "--width", "200", "--batch-size", "50",
       "--eval-every", "2", "--no-progress"]


def test_resume_with_another_rank_count(tmp_path):
    """2 ranks to step 4, then 3 ranks (uneven shards) to step 6 = one process to step 6."""
    mpi, ref = tmp_path / "mpi", tmp_path / "ref"
    proc, _ = _run(2, *CLI, "--steps", "4", "--out", str(mpi))
    assert proc.returncode == 0, proc.stderr
    assert pylgn.load(str(mpi / "checkpoint.h5")).step == 4
    proc, _ = _run(3, *CLI, "--steps", "6", "--resume", str(mpi / "checkpoint.h5"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("pylgn train:") == 1                 # rank 0 alone reports
    proc, _ = _run(0, *CLI, "--steps", "6", "--out", str(ref))
    assert proc.returncode == 0, proc.stderr
    a, b = pylgn.load(str(mpi / "checkpoint.h5")), pylgn.load(str(ref / "checkpoint.h5"))
    assert a.step == b.step == 6
    np.testing.assert_allclose(a.model.params, b.model.params, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(a.trainer_state["permutation"], b.trainer_state["permutation"])
    np.testing.assert_allclose(a.trainer_state["history"]["train_loss"],
                               b.trainer_state["history"]["train_loss"], rtol=1e-5)


@pytest.mark.parametrize("fault, wait, expect", [
    ("raise:1:3", 60, "error on rank 1 of 2: RuntimeError: injected fault at step 3"),
    ("exit:1:3", 60, 3),                   # the process dies (os._exit(3)): the launcher ends all
                                           # and returns its status (stderr stays empty)
    ("hang:1:3", 8, "rank 0 of 2 waited 8 s for the other ranks"),
    ("drift:1:3", 60, "parameters at step 4: ranks [1] differ from rank 0"),
])
def test_a_failing_rank_ends_the_job_and_the_checkpoint_stays(tmp_path, fault, wait, expect):
    out = tmp_path / "run"
    proc, seconds = _run(2, *CLI, "--steps", "8", "--comm-timeout", str(wait), "--out", str(out),
                         fault=fault, timeout=120)
    assert proc.returncode != 0
    if isinstance(expect, int):
        assert proc.returncode == expect, (proc.returncode, proc.stderr)
    else:
        assert expect and expect in proc.stderr, proc.stderr
    assert seconds < 90
    ckpt = pylgn.load(str(out / "checkpoint.h5"))          # written at step 2, intact
    assert ckpt.step == 2 and np.isfinite(ckpt.model.params).all()
