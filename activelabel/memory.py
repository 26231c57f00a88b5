"""Keep a long scoring pass's memory flat.

glibc's allocator raises its mmap threshold after the first large buffer is freed; later
multi-MiB activation buffers of the model's forward passes then come from the heap and are not
always returned, so a process's peak RSS creeps up with the number of batches it scores (about
+100 MiB over 20,000 images; see BENCHMARKS.md, "Lazy pool scoring"). Fixing the threshold at
1 MiB keeps large buffers in mmap, returned to the system as soon as they are freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 1 << 20


def steady_allocator() -> bool:
    """Fix glibc's mmap threshold (1 MiB) unless the user set MALLOC_MMAP_THRESHOLD_.

    Returns True when applied; a no-op (False) on other C libraries and platforms.
    """
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") is not None:
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES))
