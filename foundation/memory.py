"""The C allocator's handling of freed memory during CPU training (Linux with glibc; elsewhere nothing).

A CPU training step allocates the same large tensors every time (logits [B, N + 1], the item table); glibc's
default maps large ones afresh and unmaps them when freed (always above 32 MiB), and every page is then
faulted in again (tens of thousands of page faults per Scientific text step). ``keep_freed_memory`` serves
every allocation from the heap and keeps what is freed. Freed blocks between live ones are never given back by
that, though: with tensors of changing sizes (the LoRA encoder's batch of distinct items) the process grew by
about 0.2-0.4 GB a minute on Scientific, to 15 GB, and one call of ``release_freed_memory`` (glibc's
malloc_trim, which also returns free pages inside the heap) took it from 9.7 GB to 3.6 GB. Training calls it
once an epoch, so memory stays bounded by one epoch's growth and the steps within an epoch stay warm.
"""

from __future__ import annotations

import ctypes
import sys

_libc: list = []  # glibc, once keep_freed_memory has set it up


def keep_freed_memory() -> None:
    """Serve every allocation from the heap and keep up to 1 GiB of freed memory at its top for reuse."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # another C library (musl, or a shim without mallopt): nothing to set
        return
    m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
    mallopt(m_mmap_max, 0)  # no allocation gets its own mapping
    mallopt(m_trim_threshold, 2**30)  # up to 1 GiB of free heap is kept rather than given back
    _libc[:] = [libc]


def release_freed_memory() -> None:
    """Give the system back the heap's free pages, wherever they lie (after keep_freed_memory only)."""
    if _libc and hasattr(_libc[0], "malloc_trim"):
        _libc[0].malloc_trim(0)
