"""Keep the host memory that XLA:CPU frees, so long sequences do not page-fault at every step.

XLA:CPU allocates all the intermediates of a compiled program in one temporary block, with
``malloc`` at every call, and frees it after the call. glibc serves a block over 32 MiB (its
largest mmap threshold), and a block over 64 MiB asked for by any thread but the main one
(its per-thread heaps are capped at 64 MiB), with a fresh ``mmap`` and unmaps it on
``free``. The kernel then zero-fills every 4 KiB page of the block again at its first touch
in the next call. A B1 training step (784-256-10 LIF, batch 128) holds 0.64 MiB of
intermediates per time step, so from T = 50 on each step page-faults its whole temporary
block: 16,350 faults per step at T = 100, none at T = 25 (bench/README.md, "B1 scaling in
T"). That cost grows with the block, which is why the per-time-step cost grew with T.

:func:`configure_host_malloc` sets three glibc ``mallopt`` options so freed blocks stay
mapped and the next step reuses them: no mmap for large blocks (``M_MMAP_MAX = 0``), one
arena (``M_ARENA_MAX = 1``: every thread grows the main heap, which has no 64 MiB cap) and a
2 GiB trim threshold. ``import jsnn`` applies it on Linux with glibc unless the environment
sets ``JSNN_HOST_MALLOC=system``. The price is that the process keeps its peak heap, as
XLA's GPU allocator keeps its pool.

Limit: ``mallopt`` cannot take back an arena that a thread made before the call. If some thread
allocated before ``import jsnn`` (a JAX computation, pytest-xdist's or Jupyter's I/O threads),
glibc may hand XLA's threads that secondary arena, where it maps blocks over 64 MiB anew. So
import jsnn before running any JAX computation, and where that is not in your hands (a notebook
kernel) start the process with ``GLIBC_TUNABLES`` set to :data:`GLIBC_TUNABLES`, which sets the
same options before any thread exists.

Example:
  >>> from jsnn.hostmem import configure_host_malloc
  >>> isinstance(configure_host_malloc(), bool)  # True on Linux with glibc
  True
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

__all__ = ["GLIBC_TUNABLES", "HOST_MALLOC_ENV", "configure_host_malloc"]

#: Environment variable: ``system`` leaves ``malloc`` as it is on ``import jsnn``.
HOST_MALLOC_ENV = "JSNN_HOST_MALLOC"

_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # glibc <malloc.h>
_TRIM_THRESHOLD = 2**31 - 1  # bytes of free memory at the top of the heap kept before trimming (an int)

#: The same options as glibc tunables, for a process started with ``GLIBC_TUNABLES=...`` (see the Limit above).
GLIBC_TUNABLES = f"glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold={_TRIM_THRESHOLD}"


def configure_host_malloc() -> bool:
    """Make glibc's ``malloc`` keep and reuse large freed blocks instead of unmapping them.

    Idempotent. Called on ``import jsnn`` (see the module docstring); call it yourself only if
    ``JSNN_HOST_MALLOC=system`` kept it from running and you want it after all.

    Returns:
      ``True`` if the options were set; ``False`` on a C library other than glibc (macOS,
      Windows, musl), where nothing changes.
    """
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(option, value) == 1 for option, value in
               ((_M_MMAP_MAX, 0), (_M_ARENA_MAX, 1), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)))


if os.environ.get(HOST_MALLOC_ENV, "").strip().lower() != "system":
    configure_host_malloc()
