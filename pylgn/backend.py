"""The backend object: an array module (numpy or cupy) paired with a kernel set (cpu or cuda).

Layers never branch on the device; they ask ``backend.xp`` for arrays and ``backend.kernels``
for the same-named kernels. Kernels are imported on first use, so ``import pylgn`` compiles
nothing and never imports cupy.
"""
import importlib
import os

import numpy as np

DEVICES = ("cpu", "cuda")


class Backend:
    """``xp``: numpy or cupy; ``kernels``: pylgn.kernels.cpu or pylgn.kernels.cuda."""

    def __init__(self, device):
        if device not in DEVICES:
            raise ValueError(f"device: expected one of {DEVICES}, got {device!r}")
        self.device = device
        self._kernels = None
        self.xp = np if device == "cpu" else _cuda_array_module()

    @property
    def kernels(self):
        if self._kernels is None:
            self._kernels = importlib.import_module(f"pylgn.kernels.{self.device}")
        return self._kernels

    def asarray(self, a, dtype=None):
        """Array on this backend (a host copy goes to the device when needed)."""
        return self.xp.ascontiguousarray(self.xp.asarray(a, dtype=dtype))

    def to_host(self, a):
        """numpy array of ``a`` (a device array is copied back)."""
        return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)

    def __repr__(self):
        return f"Backend({self.device!r}, xp={self.xp.__name__})"


def _cuda_array_module():
    """cupy when cupy, a GPU and numba's CUDA target are all usable; numpy under the CUDA
    simulator (NUMBA_ENABLE_CUDASIM=1, test-only: the cuda kernels then run on numpy arrays).
    Anything missing raises a ValueError that names it."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return np
    hint = "pip install 'pylgn[gpu]' (cupy-cuda12x and numba-cuda)"
    try:
        import cupy
    except ImportError as e:
        raise ValueError(f"device='cuda' needs cupy, which is not installed: {hint} ({e})") from None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise ValueError("device='cuda': no CUDA device found")
    except cupy.cuda.runtime.CUDARuntimeError as e:
        raise ValueError(f"device='cuda': no usable CUDA device ({e})") from None
    try:
        from numba import cuda
    except ImportError as e:
        raise ValueError(f"device='cuda' needs numba's CUDA target (numba-cuda): {hint} ({e})") from None
    if not cuda.is_available():
        raise ValueError("device='cuda': numba cannot use the GPU (numba-cuda or the CUDA "
                         f"driver/NVVM libraries are missing): {hint}")
    return cupy


_BACKENDS = {}
_STREAMS = {}


def cuda_stream():
    """The numba stream that CUDA kernels launch on: CuPy's current stream, so kernels are ordered
    with CuPy's allocations and array ops (numba alone would use its own default stream). Cached
    per (device, stream handle); 0 (numba's default) under the simulator."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return 0
    import cupy
    from numba import cuda
    key = (cupy.cuda.Device().id, cupy.cuda.get_current_stream().ptr)
    if key not in _STREAMS:
        _STREAMS[key] = cuda.legacy_default_stream() if key[1] == 0 else cuda.external_stream(key[1])
    return _STREAMS[key]


def get_backend(device):
    """Shared Backend instance per device name."""
    if device not in _BACKENDS:
        _BACKENDS[device] = Backend(device)
    return _BACKENDS[device]
