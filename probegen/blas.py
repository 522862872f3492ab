"""Which BLAS does the CPU products of the probe stage: numpy's (OpenBLAS) or torch's (MKL).

Measured on the 2-core development CPU (an AMD EPYC):
with one torch thread — each job of the local launcher, where joblib gives every worker
cores // n_jobs threads — OpenBLAS does matrix-vector products 2x faster than MKL, skinny
products ([rows, 2560] @ [2560, 17]) 1.6x and Gram matrices ([512, 2560] @ [2560, 512])
1.8x. With more threads torch's OpenMP workers keep spinning between calls and slow
OpenBLAS's threads down 2-10x, so there torch does every product. Results differ between
the two only by float32 rounding.

The sweep fits probes under `one_thread_each` (one torch and one BLAS thread), so a fit
takes the same path, and gives the same numbers, whichever launcher runs the job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache

import numpy as np
import scipy.linalg
import torch
from threadpoolctl import ThreadpoolController


@cache
def _controller() -> ThreadpoolController:
    return ThreadpoolController()  # inspects the loaded libraries once


@contextmanager
def one_thread_each() -> Iterator[None]:
    """Within the block torch and the BLAS/OpenMP libraries run one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _controller().limit(limits=1):
            yield
    finally:
        torch.set_num_threads(threads)


def numpy_blas(A: torch.Tensor | None = None) -> bool:
    """True where numpy's BLAS should do the products (of A, when given): torch runs one
    thread and A lives on the CPU. Elsewhere — more threads, or A on a GPU — torch does
    them, on A's device; the probes take the same torch path in both cases, which is how
    the tests exercise the GPU code on a CPU."""
    return torch.get_num_threads() == 1 and (A is None or A.device.type == "cpu")


def matvecs(
    A: torch.Tensor,
) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    """(v -> A @ v, u -> A^T @ u) for float64 numpy vectors, computed in A's dtype on A's
    device and returned in float64 (A is not copied). On a GPU each call moves one vector
    each way: the solvers' bookkeeping stays on the CPU, the passes over A do not."""
    if numpy_blas(A):
        An = A.numpy()
        return (
            lambda v: (An @ v.astype(An.dtype)).astype(np.float64),
            lambda u: (u.astype(An.dtype) @ An).astype(np.float64),
        )
    cast = lambda x: torch.from_numpy(x).to(A.device, A.dtype)  # noqa: E731
    return (
        lambda v: (A @ cast(v)).double().cpu().numpy(),
        lambda u: (cast(u) @ A).double().cpu().numpy(),
    )


def gram(A: torch.Tensor) -> torch.Tensor:
    """A @ A^T in A's dtype, on A's device."""
    if numpy_blas(A):
        An = A.numpy()
        return torch.from_numpy(An @ An.T)
    return A @ A.T


def top_eigh(G: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest eigenvalues (descending) of the symmetric float64 matrix G and their
    eigenvectors as columns. One thread: LAPACK's subset driver through scipy (only the k
    wanted pairs; 2x faster than a full decomposition at 400 x 400); more, or G on a GPU:
    torch's, on G's device."""
    m = G.shape[0]
    if numpy_blas(G):
        values, vectors = scipy.linalg.eigh(G.numpy(), subset_by_index=[m - k, m - 1])
        values, vectors = torch.from_numpy(values), torch.from_numpy(vectors)
    else:
        values, vectors = torch.linalg.eigh(G)
        values, vectors = values[m - k :], vectors[:, m - k :]
    return values.flip(0), vectors.flip(1).contiguous()
