"""jsnn.hostmem: after ``import jsnn`` a large block freed and allocated again is not page-faulted afresh."""

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import jsnn
from jsnn.hostmem import GLIBC_TUNABLES as TUNABLES
from jsnn.hostmem import HOST_MALLOC_ENV, configure_host_malloc

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                           reason="jsnn.hostmem tunes glibc's malloc only")

#: Allocate, touch, free a block twice in a new thread (as XLA:CPU does with its temporary block
#: at every call, from its own threads) and print the page faults of the second round.
PROBE = """
import ctypes, resource, threading
n = 96 * 2**20  # over both glibc limits: the 32 MiB mmap threshold and the 64 MiB per-thread heap
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
faults = []
def rounds():
    for _ in range(2):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = libc.malloc(n)
        libc.memset(block, 1, n)
        libc.free(block)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
thread = threading.Thread(target=rounds)
thread.start()
thread.join()
print(faults[1], n // 4096)
"""


def _second_round_faults(code: str, env: dict[str, str]) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                         env={**os.environ, **env})
    faults, pages = map(int, out.stdout.split())
    return faults, pages


@glibc
def test_after_import_a_freed_large_block_is_reused_without_page_faults():
    # a fresh process that imports jsnn before any JAX computation, as the module asks, then runs one
    faults, pages = _second_round_faults("import jsnn, jax.numpy as jnp\njnp.ones(3).block_until_ready()\n" + PROBE, {})
    assert faults < pages // 100, f"{faults} page faults for a block of {pages} pages"


@glibc
def test_glibc_tunables_cover_threads_that_allocated_before_import():
    # mallopt cannot take back a secondary arena made before `import jsnn` (pytest-xdist's and Jupyter's I/O
    # threads make one), where glibc maps blocks over 64 MiB anew; the documented remedy sets the options at start
    before = ("import ctypes, threading\nready = threading.Event()\n"
              "def allocate():\n    ctypes.CDLL('libc.so.6').malloc(1000)\n    ready.set()\n    threading.Event().wait(5)\n"
              "threading.Thread(target=allocate, daemon=True).start()\nready.wait()\n")
    faults, pages = _second_round_faults(before + PROBE, {"GLIBC_TUNABLES": TUNABLES, HOST_MALLOC_ENV: "system"})
    assert faults < pages // 100, f"{faults} page faults for a block of {pages} pages with {TUNABLES}"


@glibc
def test_system_malloc_faults_every_page_again_so_the_probe_can_fail():
    # hostmem.py loaded alone (no jax) with the opt-out set: glibc maps and zero-fills the block anew
    load = (f"import importlib.util as u; s = u.spec_from_file_location('h', {str(Path(jsnn.hostmem.__file__))!r}); "
            "s.loader.exec_module(u.module_from_spec(s))\n")
    faults, pages = _second_round_faults(load + PROBE, {HOST_MALLOC_ENV: "system"})
    assert faults > pages // 2, f"only {faults} page faults for a fresh block of {pages} pages"
    faults, pages = _second_round_faults(load + PROBE, {HOST_MALLOC_ENV: ""})
    assert faults < pages // 100, f"{faults} page faults for a block of {pages} pages once hostmem ran"


@glibc
def test_configure_host_malloc_reports_that_it_applied():
    assert configure_host_malloc() is True
