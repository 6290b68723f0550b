"""CPU memory allocator settings for steady training steps (glibc on Linux).

glibc's malloc serves large blocks (above a threshold that it moves at run time, from 128 KiB up to
32 MiB) with fresh ``mmap`` pages and returns them to the system when freed. A training step frees
and reallocates the same activations and gradients every step, so whether they land above or below
the moving threshold decides, per process, whether every step pays page faults for them: on the
2-core CPU of ``docs/performance.md`` three of five fresh processes took Multi-MNIST steps of
32 ms instead of 24 ms. :func:`tune_allocator` fixes the threshold at its maximum (32 MiB) and
keeps freed memory in the heap (trim threshold 1 GiB): every process then takes the fast steps,
for about 1 % more peak memory. ``MTLBENCH_MALLOC=system`` leaves glibc's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed value on 64-bit systems
TRIM_THRESHOLD = 2**30
ENV_VAR = "MTLBENCH_MALLOC"

_state: str | None = None


def tune_allocator() -> str:
    """Apply the settings once per process; returns what is in effect ("glibc tuned", "system" or why not)."""
    global _state
    if _state is not None:
        return _state
    if os.environ.get(ENV_VAR, "").strip().lower() == "system":
        _state = "system (MTLBENCH_MALLOC=system)"
    elif not sys.platform.startswith("linux"):
        _state = "system (not Linux)"
    else:
        _state = _mallopt()
    return _state


def allocator_state() -> str:
    """What :func:`tune_allocator` put in effect in this process, without changing anything."""
    return _state if _state is not None else "system (not tuned in this process)"


def _mallopt() -> str:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        version = libc.gnu_get_libc_version().decode()
    except (OSError, AttributeError):
        return "system (not glibc)"
    ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return f"glibc {version} tuned" if ok else f"system (glibc {version} refused mallopt)"
