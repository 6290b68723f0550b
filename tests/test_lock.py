"""The lock file requirements/lock.txt (what `make` and CI install with --require-hashes) matches pyproject.toml:
every runtime and `dev` requirement is pinned there within its range, every pin has a hash, torch is the CPU
build; and the installed packages are the locked ones."""

from __future__ import annotations

import hashlib
import re
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
TORCH_WHEEL = Path("/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl")


def locked() -> dict[str, tuple[Version, list[str]]]:
    """name -> (pinned version, sha256 hashes) of every entry of the lock."""
    entries: dict[str, tuple[Version, list[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text()):
        match = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", block)
        if match:
            hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", block)
            entries[canonicalize_name(match[1])] = (Version(match[2]), hashes)
    return entries


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(text) for text in [*project["dependencies"], *project["optional-dependencies"]["dev"]]]


def test_every_declared_requirement_is_locked_within_its_range_with_hashes() -> None:
    entries = locked()
    assert len(entries) > 20
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{name} is in pyproject.toml but not in {LOCK.name}: run `make lock`"
        pinned, _ = entries[name]
        assert requirement.specifier.contains(pinned, prereleases=True), f"{name}=={pinned} not in {requirement}"
    for name, (_, hashes) in entries.items():
        assert hashes, f"{name} has no hash in {LOCK.name}"
    # the build back-end is locked too (the editable install runs without build isolation)
    assert {"setuptools", "wheel"} <= set(entries)


def test_torch_is_the_local_cpu_wheel() -> None:
    pinned, hashes = locked()["torch"]
    assert pinned == Version("2.13.0+cpu") and len(hashes) == 1
    if TORCH_WHEEL.is_file():  # the wheel pip's find-links holds on this kind of machine
        assert hashes == [hashlib.sha256(TORCH_WHEEL.read_bytes()).hexdigest()]


def test_the_environment_runs_the_locked_versions_of_the_ranged_packages() -> None:
    entries = locked()
    for name in ("typer", "rich", "pandas", "numpy", "ray", "torch"):
        try:
            installed = Version(version(name))
        except PackageNotFoundError:
            raise AssertionError(f"{name} is not installed: install from {LOCK.name} (`make test` does)") from None
        assert installed == entries[name][0], f"{name} {installed} installed, {entries[name][0]} locked"
