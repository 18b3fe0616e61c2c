"""Keep freed memory in the process: no page faults from glibc's return of large buffers.

By default glibc's ``malloc`` serves buffers above a threshold (128 KiB, raised
dynamically up to 32 MiB) with ``mmap`` and gives them back to the operating system
when they are freed, and it trims the top of the heap whenever more than a few MiB
are free there. A tensor program that allocates and frees the same large buffers at every
step (a decoder's output and the likelihood's temporaries: 12.5 MB each for 4000 x 784
floats) then takes a page fault on the first touch of every 4 KiB page, every time, a
large share of an importance-sampled evaluation pass or a small training step on the CPU
(``scripts/bench_train.py`` and ``scripts/bench_evaluate.py`` measure both allocators with
``--allocator``).

:func:`retain_freed_memory` sets glibc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD``
(``mallopt(3)``) so that freed buffers stay in the heap and are reused; the process then
keeps its peak heap size until it exits. It is the effect of the environment variables
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``, or of preloading jemalloc or
tcmalloc, chosen from inside the process. The ``ppl-vae`` command calls it; importing
the library does not, since the allocator is the whole process's business.
"""

import ctypes
import ctypes.util
import platform

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_THRESHOLD = -3
# mmap only buffers above 1 GiB (glibc versions that refuse so much take 32 MiB, the
# largest threshold they accept on 64-bit builds), and never trim the heap's top.
MMAP_THRESHOLDS_BYTES = (1 << 30, 32 << 20)
TRIM_THRESHOLD_BYTES = (1 << 31) - 1
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
#: The benchmarks' ``--allocator`` choices.
ALLOCATORS = ("retain", "default")  # the benchmarks' --allocator choices


def retain_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse instead of returning it to the OS.

    :returns: True if glibc accepted both settings; False where the C library is not glibc
        (macOS, Windows, musl), where nothing is changed.
    """
    if not GLIBC:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    mmap_set = any(mallopt(M_MMAP_THRESHOLD, value) for value in MMAP_THRESHOLDS_BYTES)
    return mmap_set and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def choose_allocator(name: str) -> str:
    """Apply an allocator choice of :data:`ALLOCATORS` (``"retain"``: :func:`retain_freed_memory`).

    :returns: the allocator in effect: ``"retain"``, or ``"default"`` where it was not asked
        for or glibc is absent.
    """
    return "retain" if name == "retain" and retain_freed_memory() else "default"
