"""What produced a run: versions, git commit, data checksums, device, thread count and memory allocator."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

import mtlbench
from mtlbench.training.allocator import allocator_state

_LIBRARIES = ("torch", "numpy", "scipy", "pandas", "torch_geometric", "rdkit", "cvxpy", "ray")


def _library_versions() -> dict[str, str]:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def git_commit() -> str | None:
    """The commit of the mtlbench source tree, if it is a git checkout (``+dirty`` if modified)."""
    source = Path(mtlbench.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def collect(device: torch.device, data_checksums: dict[str, str]) -> dict[str, Any]:
    return {
        "mtlbench": mtlbench.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "libraries": _library_versions(),
        "git_commit": git_commit(),
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "allocator": allocator_state(),
        "data_checksums": data_checksums,
    }
