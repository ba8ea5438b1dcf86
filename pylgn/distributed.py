"""Data-parallel communicators: rank, size and the few collectives the Trainer needs.

Every rank holds the whole model; each step it computes the gradient of its shard of the global
batch, ``allreduce_sum`` adds the flat gradient buffers, and every rank applies the same Adam
update. Three backends, one interface:

    Communicator        one process (size 1): every collective is the identity (the default)
    MPICommunicator     mpi4py on host buffers (numpy; a cupy array is staged through the host)
    NCCLCommunicator    NCCL through cupy.cuda.nccl on device buffers; MPI starts the processes,
                        broadcasts NCCL's unique id and carries the small host-side collectives

Nothing here imports mpi4py or cupy until a communicator of that kind is made, so
``import pylgn`` stays light. ``timeout`` (seconds, or None to block) bounds every wait for the
other ranks: a rank that is stuck or gone raises ``DistributedError`` instead of hanging, after
which the communicator is unusable and the caller should ``abort()`` (the CLI does).
"""
import hashlib
import os
import sys
import time

import numpy as np

#: Variables an MPI launcher sets in every rank's environment, first found wins:
#: Open MPI (mpirun/mpiexec), MPICH / Intel MPI (hydra: PMI_SIZE, MPI_LOCALNRANKS).
LAUNCHER_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS")
BACKENDS = ("single", "mpi", "nccl")
_MPI_HINT = "pip install 'pylgn[mpi]' (mpi4py and an MPI library, e.g. mpich, from PyPI)"
_GPU_HINT = "pip install 'pylgn[gpu,mpi]' (cupy-cuda12x with NCCL, mpi4py)"


class DistributedError(RuntimeError):
    """A collective failed: the ranks' parameters drifted apart, or another rank did not answer
    in time (stuck or gone)."""


def launched_size():
    """The number of ranks an MPI launcher started, read from its environment variables
    (``LAUNCHER_SIZE_VARIABLES``); 1 when the process was not started by one."""
    for name in LAUNCHER_SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) >= 1:
            return int(value)
    return 1


def array_hash(a):
    """SHA-256 hex digest of an array's dtype, shape and bytes (a device array is copied to
    the host), or of ``bytes``."""
    if isinstance(a, (bytes, bytearray)):
        return hashlib.sha256(a).hexdigest()
    host = a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)
    h = hashlib.sha256(f"{host.dtype.str}{host.shape}".encode())
    h.update(np.ascontiguousarray(host).tobytes())
    return h.hexdigest()


class Communicator:
    """One process, ``rank`` 0 of ``size`` 1: every collective leaves its buffers as they are.
    The MPI and NCCL communicators override the collectives; ``shard``, ``broadcast_int`` and
    ``check_identical`` are built on them."""

    backend = "single"

    def __init__(self):
        self.rank, self.size = 0, 1

    # collectives (in place on contiguous arrays; return the buffer) ----------------------------

    def allreduce_sum(self, buf):
        """buf <- sum of every rank's buf."""
        return buf

    def broadcast(self, buf, root=0):
        """buf <- root's buf."""
        return buf

    def allgather(self, buf):
        """(size, *buf.shape) host array: every rank's buf, in rank order."""
        return np.asarray(buf)[None].copy()

    def barrier(self):
        """Returns when every rank has called it."""

    def abort(self, code=1):
        """End every rank's process with exit status ``code`` (here: just this one)."""
        sys.stderr.flush()
        os._exit(code)

    # built on the collectives --------------------------------------------------------------------

    def shard(self, n):
        """This rank's contiguous part of ``range(n)`` as a slice: sizes differ by at most one,
        rank 0 first, and the parts of all ranks cover ``range(n)`` exactly once."""
        return slice(n * self.rank // self.size, n * (self.rank + 1) // self.size)

    def broadcast_int(self, value, root=0):
        """``root``'s integer ``value`` on every rank (e.g. the data-order seed)."""
        return int(self.broadcast(np.array([value], dtype=np.int64), root)[0])

    def check_identical(self, a, what="parameters"):
        """Raise DistributedError unless ``a`` (array or bytes) hashes the same on every rank;
        returns the hash. Collective: every rank must call it."""
        digest = array_hash(a)
        mine = np.frombuffer(bytes.fromhex(digest), dtype=np.uint8).copy()
        every = self.allgather(mine)
        differ = [r for r in range(self.size) if not np.array_equal(every[r], every[0])]
        if differ:
            rows = ", ".join(f"rank {r}: {every[r].tobytes().hex()[:16]}" for r in range(self.size))
            raise DistributedError(f"{what}: ranks {differ} differ from rank 0 (SHA-256 {rows}); "
                                   f"the ranks drifted apart, so training stopped here")
        return digest

    def __repr__(self):
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


class MPICommunicator(Communicator):
    """MPI through mpi4py (``comm``: an mpi4py communicator, default COMM_WORLD). Collectives
    run on numpy buffers in place (``Allreduce(IN_PLACE, buf, SUM)``); a cupy buffer is copied to
    the host and back. With ``timeout`` the nonblocking forms are polled until it runs out."""

    backend = "mpi"

    def __init__(self, comm=None, timeout=None):
        MPI = _import_mpi()
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.timeout = _check_timeout(timeout)

    def allreduce_sum(self, buf):
        host = _host_buffer("buf", buf)
        self._run("all-reduce", lambda: self.comm.Allreduce(self.MPI.IN_PLACE, host, self.MPI.SUM),
                  lambda: self.comm.Iallreduce(self.MPI.IN_PLACE, host, self.MPI.SUM))
        return _copy_back(buf, host)

    def broadcast(self, buf, root=0):
        host = _host_buffer("buf", buf)
        self._run("broadcast", lambda: self.comm.Bcast(host, root),
                  lambda: self.comm.Ibcast(host, root))
        return _copy_back(buf, host)

    def allgather(self, buf):
        host = _host_buffer("buf", buf, writeable=False)
        out = np.empty((self.size,) + host.shape, dtype=host.dtype)
        self._run("all-gather", lambda: self.comm.Allgather(host, out),
                  lambda: self.comm.Iallgather(host, out))
        return out

    def barrier(self):
        self._run("barrier", self.comm.Barrier, self.comm.Ibarrier)

    def abort(self, code=1):
        """MPI_Abort: the launcher ends every rank (exit status ``code`` where it passes it on)."""
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(code)

    def _run(self, what, blocking, nonblocking):
        """The blocking call, or (with a timeout) the nonblocking one polled until it completes;
        raise DistributedError when the timeout runs out first."""
        if self.timeout is None or self.size == 1:
            blocking()
            return
        _poll(nonblocking().Test, self.timeout, what, self.rank, self.size)


class NCCLCommunicator(MPICommunicator):
    """NCCL (``cupy.cuda.nccl.NcclCommunicator``) for device buffers, one GPU per rank.

    The processes come from the MPI launcher; each selects GPU ``device`` (default: its rank
    among the ranks on its node, so call this before building the model), rank 0's NCCL unique
    id is broadcast over MPI, and ``allreduce_sum`` / ``broadcast`` of cupy arrays run as NCCL
    collectives on the current stream (then synchronized, so the buffer is ready for the next
    kernel on any stream). numpy buffers (loss sums, hashes) use MPI."""

    backend = "nccl"

    def __init__(self, comm=None, timeout=None, device=None):
        self.cupy, self.nccl = _import_nccl()
        super().__init__(comm, timeout)
        local = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED, key=self.rank)
        local_rank, local_size = local.Get_rank(), local.Get_size()
        local.Free()
        count = self.cupy.cuda.runtime.getDeviceCount()
        if device is None:
            if local_size > count:
                raise ValueError(f"device: {local_size} ranks on this node but {count} GPUs; NCCL "
                                 f"needs one GPU per rank (start at most {count} ranks per node)")
            device = local_rank
        if not 0 <= device < count:
            raise ValueError(f"device: expected a GPU index in [0, {count}), got {device}")
        self.device = device
        self.cupy.cuda.Device(device).use()
        uid = self.nccl.get_unique_id() if self.rank == 0 else None
        uid = self.comm.bcast(uid, root=0)
        self.nccl_comm = self.nccl.NcclCommunicator(self.size, uid, self.rank)

    def allreduce_sum(self, buf):
        if isinstance(buf, np.ndarray):
            return super().allreduce_sum(buf)
        dtype, stream = self._nccl_dtype(buf), self.cupy.cuda.get_current_stream()
        self.nccl_comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, dtype, self.nccl.NCCL_SUM,
                                 stream.ptr)
        self._synchronize(stream, "all-reduce")
        return buf

    def broadcast(self, buf, root=0):
        if isinstance(buf, np.ndarray):
            return super().broadcast(buf, root)
        dtype, stream = self._nccl_dtype(buf), self.cupy.cuda.get_current_stream()
        self.nccl_comm.bcast(buf.data.ptr, buf.size, dtype, root, stream.ptr)
        self._synchronize(stream, "broadcast")
        return buf

    def abort(self, code=1):
        """Abort NCCL's pending work (so no kernel waits on a dead peer), then MPI_Abort."""
        try:
            self.nccl_comm.abort()
        finally:
            super().abort(code)

    def _nccl_dtype(self, buf):
        if not buf.flags.c_contiguous:
            raise ValueError("buf: expected a C-contiguous device array")
        kinds = {np.dtype(np.float32): self.nccl.NCCL_FLOAT32,
                 np.dtype(np.float64): self.nccl.NCCL_FLOAT64,
                 np.dtype(np.int64): self.nccl.NCCL_INT64}
        if np.dtype(buf.dtype) not in kinds:
            raise TypeError(f"buf: expected float32, float64 or int64, got {buf.dtype}")
        return kinds[np.dtype(buf.dtype)]

    def _synchronize(self, stream, what):
        """Wait for the stream; with a timeout poll it, checking NCCL's asynchronous errors."""
        if self.timeout is None:
            stream.synchronize()
        else:
            def done():
                self.nccl_comm.check_async_error()
                return stream.done
            _poll(done, self.timeout, what, self.rank, self.size)


def get_communicator(backend="single", timeout=None, device=None):
    """A communicator: "single" (one process), "mpi" or "nccl" (started by an MPI launcher,
    e.g. ``mpirun -n 2``). ``device``: the GPU of an NCCL rank (default: its node-local rank)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    if backend == "single":
        return Communicator()
    if backend == "mpi":
        return MPICommunicator(timeout=timeout)
    return NCCLCommunicator(timeout=timeout, device=device)


# helpers ---------------------------------------------------------------------------------------

def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ValueError(f"the MPI backend needs mpi4py, which is not installed: {_MPI_HINT} "
                         f"({e})") from None
    return MPI


def _import_nccl():
    try:
        import cupy
        from cupy.cuda import nccl
    except ImportError as e:
        raise ValueError(f"the NCCL backend needs cupy built with NCCL: {_GPU_HINT} ({e})") \
            from None
    if not getattr(nccl, "available", True):
        raise ValueError(f"the NCCL backend: cupy finds no NCCL library: {_GPU_HINT}")
    return cupy, nccl


def _check_timeout(timeout):
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout: expected seconds > 0 or None, got {timeout!r}")
    return float(timeout)


def _host_buffer(name, buf, writeable=True):
    """A C-contiguous numpy buffer for MPI: ``buf`` itself, or a host copy of a device array."""
    if isinstance(buf, np.ndarray):
        if not buf.flags.c_contiguous or (writeable and not buf.flags.writeable):
            raise ValueError(f"{name}: expected a C-contiguous{' writeable' * writeable} array")
        return buf
    if hasattr(buf, "get"):
        return np.ascontiguousarray(buf.get())
    raise TypeError(f"{name}: expected a numpy or cupy array, got {type(buf).__name__}")


def _copy_back(buf, host):
    if host is not buf:
        buf.set(host)
    return buf


def _poll(done, timeout, what, rank, size):
    """Call ``done()`` until it is true, sleeping at most 1 ms between calls; DistributedError
    after ``timeout`` seconds."""
    deadline, pause = time.monotonic() + timeout, 0.0
    while not done():
        if time.monotonic() > deadline:
            raise DistributedError(f"{what}: rank {rank} of {size} waited {timeout:g} s for the "
                                   f"other ranks (one is stuck or gone)")
        time.sleep(pause)
        pause = min(1e-3, pause * 2 or 1e-5)
