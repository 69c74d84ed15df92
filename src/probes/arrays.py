"""Where the probe solver's arithmetic runs: NumPy on the host, or torch on a device.

The solver's formulas (``solver.py``: the loss and gradient, the feature statistics, the loss
Hessian, the whitening maps; ``estimator.metrics``) are written once, against a small array
namespace ``xp``: ``NUMPY`` is NumPy itself (every call is the NumPy call the code made before,
so the default path's numbers are unchanged to the bit), and ``Torch(device)`` implements the
same few functions on torch tensors of one device, with NumPy's dtype rules where they differ
(``zeros`` is float64; ``sum(..., dtype=float64)`` accumulates in float64; ``matmul`` promotes).
Only small arrays cross between host and device: weights, gradients, statistics.

``resolve`` turns the ``device`` setting (``cpu``, ``cuda``, ``auto``; ``torch:cpu`` for tests)
into one of those names, ``namespace`` into the namespace itself; torch is imported only for a
torch namespace (``cpu`` never imports it).
"""

from __future__ import annotations

import numpy as np

DEVICE_CHOICES = "auto, cpu or cuda (torch:cpu: the torch path on the CPU, for tests and diagnosis)"


class DeviceError(ValueError):
    """A ``device`` setting this machine cannot honour (say ``cuda`` without a CUDA device)."""


class _Numpy:
    """NumPy itself (every attribute is NumPy's), plus ``astype`` and ``to_host``."""

    name = "cpu"
    on_device = False
    device_type = "cpu"

    def __getattr__(self, attr: str):
        return getattr(np, attr)

    @staticmethod
    def astype(a: np.ndarray, dtype) -> np.ndarray:
        return a.astype(dtype)

    @staticmethod
    def to_host(a: np.ndarray) -> np.ndarray:
        return a

    def reserve(self, nbytes: int) -> bool:
        return True

    def __repr__(self) -> str:
        return "NUMPY"


NUMPY = _Numpy()


class Torch:
    """The NumPy functions the solver uses, on torch tensors of ``device``.

    ``memory_bytes`` is the device memory the solver may fill with resident matrices
    (``reserve``); the default is unlimited on the CPU and, on CUDA, 80% of the memory
    free when the namespace is made (counting what torch's allocator holds unused), less
    room for eight ``block_bytes`` blocks' temporaries.
    """

    on_device = True

    def __init__(self, device: str = "cpu", memory_bytes: float | None = None, block_bytes: int = 0) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.device_type = self.device.type
        self.name = "torch:cpu" if self.device.type == "cpu" else str(self.device)
        self.float32, self.float64, self.linalg = torch.float32, torch.float64, torch.linalg
        self.exp, self.sqrt, self.einsum = torch.exp, torch.sqrt, torch.einsum
        self.hstack, self.where = torch.hstack, torch.where
        if self.device.type == "cuda":
            # full float32 products: TF32 (10-bit mantissas) would change the probe's numbers
            torch.backends.cuda.matmul.allow_tf32 = False
        if memory_bytes is None:
            if self.device.type == "cuda":  # free, with what torch's allocator holds unused (a past probe's)
                free = torch.cuda.mem_get_info(self.device)[0] + torch.cuda.memory_reserved(self.device)
                free -= torch.cuda.memory_allocated(self.device)
                memory_bytes = max(0.0, 0.8 * free - 8 * block_bytes)
            else:
                memory_bytes = float("inf")
        self.budget = float(memory_bytes)

    def reserve(self, nbytes: int) -> bool:
        """Whether ``nbytes`` more fit the memory budget; if so they are counted against it."""
        if nbytes > self.budget:
            return False
        self.budget -= nbytes
        return True

    def asarray(self, a, dtype=None):
        return self.torch.as_tensor(a, dtype=dtype, device=self.device)

    def to_host(self, a) -> np.ndarray:
        return a.cpu().numpy()

    def zeros(self, shape, dtype=None):
        return self.torch.zeros(shape, dtype=dtype or self.float64, device=self.device)

    def ones(self, shape, dtype=None):
        return self.torch.ones(shape, dtype=dtype or self.float64, device=self.device)

    def empty(self, shape, dtype=None):
        return self.torch.empty(shape, dtype=dtype or self.float64, device=self.device)

    def arange(self, n: int):
        return self.torch.arange(n, device=self.device)

    @staticmethod
    def astype(a, dtype):
        return a.to(dtype)

    def log1p(self, a, dtype=None):
        return self.torch.log1p(a if dtype is None else a.to(dtype))

    def sum(self, a, axis=None, dtype=None, keepdims=False):
        if axis is None:
            return self.torch.sum(a, dtype=dtype)
        return self.torch.sum(a, dim=axis, keepdim=keepdims, dtype=dtype)

    def max(self, a, axis, keepdims=False):
        return self.torch.amax(a, dim=axis, keepdim=keepdims)

    def argmax(self, a, axis):
        return self.torch.argmax(a, dim=axis)

    def maximum(self, a, value: float):
        return self.torch.clamp_min(a, value)

    def matmul(self, a, b):
        """``a @ b`` in their common dtype (NumPy's rule; torch refuses mixed operands)."""
        common = self.torch.promote_types(a.dtype, b.dtype)
        return a.to(common) @ b.to(common)

    def __repr__(self) -> str:
        return f"Torch({self.name!r})"


def resolve(device: str) -> str:
    """The name of the namespace ``device`` asks for: ``cpu`` (NumPy), ``cuda`` / ``cuda:N``
    (refused with a ``DeviceError`` where no CUDA device is available), ``auto`` (``cuda`` when
    available, else ``cpu``), or ``torch:<torch device>`` (``torch:cpu``: the torch path on the
    CPU, to test or diagnose it)."""
    if device == "cpu":
        return "cpu"
    if device != "auto" and device.split(":")[0] not in ("cuda", "torch"):
        raise DeviceError(f"device: {device!r}; expected {DEVICE_CHOICES}")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    name = device[len("torch:") :] if device.startswith("torch:") else device
    if name.split(":")[0] == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device: {device}: no CUDA device is available here (torch {torch.__version__}); "
                          "set the config's top-level device (probes fit --device) to auto or cpu")  # fmt: skip
    try:
        torch.device(name)
    except RuntimeError as exc:
        raise DeviceError(f"device: {device!r}: {exc}; expected {DEVICE_CHOICES}") from None
    return "torch:cpu" if name == "cpu" else name


def namespace(device: str, memory_mb: float | None = None, block_bytes: int = 0):
    """``NUMPY`` or a ``Torch`` namespace for ``device`` (``resolve``), with ``memory_mb`` MiB of
    device memory for resident matrices (default: ``Torch``'s)."""
    name = resolve(device)
    if name == "cpu":
        return NUMPY
    memory = None if memory_mb is None else memory_mb * 2**20
    return Torch(name[len("torch:") :] if name.startswith("torch:") else name, memory, block_bytes)


def array_namespace(a):
    """The namespace of an array: ``NUMPY`` for a NumPy array, a ``Torch`` of a tensor's device."""
    if isinstance(a, np.ndarray) or type(a).__module__.split(".")[0] != "torch":
        return NUMPY
    return Torch(str(a.device), memory_bytes=0)
