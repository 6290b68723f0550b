"""The CPU allocator settings: step-sized blocks come from the heap, not from fresh mmap pages."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# In a fresh process, allocate an 8 MiB block (the size of a step's activations) and report how
# many bytes glibc holds in mmapped blocks (mallinfo2().hblkhd) while it is allocated.
PROBE = """
import ctypes, sys
from mtlbench.training.allocator import tune_allocator
state = tune_allocator() if sys.argv[1] == "tuned" else "untouched"
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.mallinfo2.restype = MallInfo2
block = libc.malloc(8 * 2**20)
print(state, "|", libc.mallinfo2().hblkhd)
libc.free(ctypes.c_void_p(block))
"""


def _mmapped_bytes(mode: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        pytest.skip(f"no glibc mallinfo2 here: {done.stderr.strip().splitlines()[-1]}")
    state, size = done.stdout.strip().rsplit("|", 1)
    return state.strip(), int(size)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc on Linux only")
def test_tuned_allocator_serves_step_sized_blocks_from_the_heap():
    state, tuned = _mmapped_bytes("tuned")
    if not state.startswith("glibc"):
        pytest.skip(f"allocator not tunable here: {state}")
    _, untouched = _mmapped_bytes("untouched")
    assert untouched >= 8 * 2**20  # glibc's default: a fresh mmap (page faults on every reuse)
    assert tuned < 8 * 2**20  # tuned: from the heap, reused without new pages


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc on Linux only")
def test_the_environment_variable_keeps_the_system_allocator():
    state, size = _mmapped_bytes("tuned", env={**os.environ, "MTLBENCH_MALLOC": "system"})
    assert state == "system (MTLBENCH_MALLOC=system)"
    assert size >= 8 * 2**20


def test_provenance_records_the_allocator_without_changing_it(monkeypatch):
    import torch

    from mtlbench.training import allocator, provenance

    monkeypatch.setattr(allocator, "_state", None)
    assert provenance.collect(torch.device("cpu"), {})["allocator"] == "system (not tuned in this process)"
    assert allocator._state is None  # recording applied nothing
    monkeypatch.setattr(allocator, "_state", "glibc 2.36 tuned")
    assert provenance.collect(torch.device("cpu"), {})["allocator"] == "glibc 2.36 tuned"
