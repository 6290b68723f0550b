"""Bonds, aromaticity and hybridisation of QM9 molecules from their 3D geometry, with RDKit.

Per molecule: ``Chem.MolFromXYZBlock`` on the elements and coordinates (angstrom), then
``rdDetermineBonds.DetermineBonds(mol, charge=0, useHueckel=True)`` (bond orders from an extended
Hueckel calculation; the molecule is sanitised, so aromaticity and hybridisation are perceived).
Where that fails (2 of the 130,831 molecules), a connectivity-only fallback
(``DetermineConnectivity``, all bonds single, no aromaticity or hybridisation) keeps the molecule,
so the molecule order, and with it the seeded split, stays the one of PyTorch Geometric's QM9.
The molecule ids and the count are recorded by the caller.

The work is split into chunks of molecules; each chunk's result is written atomically to its own
file, so an interrupted run resumes where it stopped. Chunks run in parallel worker processes
(forked where the platform allows, with their stdout/stderr sent to /dev/null: RDKit's Hueckel code prints warnings from
C++), with a progress bar.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import multiprocessing.pool
import os
import shutil
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from mtlbench.data.cache import atomic_write
from mtlbench.data.qm9_deps import require_rdkit

#: Bumped whenever the featurisation changes (it keys the chunk folder and the cache manifest).
FEATURE_VERSION = 1

SYMBOLS = {1: "H", 6: "C", 7: "N", 8: "O", 9: "F"}

#: Bond type codes: the one-hot position of PyG's QM9 (single, double, triple, aromatic).
SINGLE, DOUBLE, TRIPLE, AROMATIC = 0, 1, 2, 3
#: Hybridisation codes: 0 = other / unspecified, 1 = sp, 2 = sp2, 3 = sp3.
STATUS_OK, STATUS_FALLBACK, STATUS_NO_BONDS = 0, 1, 2

FEATURE_KEYS = ("bond_count", "bonds", "bond_type", "bond_kekule", "atom_aromatic", "atom_hybrid", "status")


@contextlib.contextmanager
def silenced_fds() -> Iterator[None]:
    """Send file descriptors 1 and 2 to /dev/null for the duration (C++ code prints there directly)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = []
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(devnull, fd)
            except OSError:  # no such descriptor (embedded interpreters)
                pass
        yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


def _silence_worker() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")


def xyz_block(z: np.ndarray, pos: np.ndarray) -> str:
    """An XYZ file (count line, empty comment line, one ``symbol x y z`` line per atom)."""
    lines = [str(len(z)), ""]
    lines += [f"{SYMBOLS[int(a)]} {x:.10f} {y:.10f} {w:.10f}" for a, (x, y, w) in zip(z, pos, strict=True)]
    return "\n".join(lines) + "\n"


def featurize_molecule(z: np.ndarray, pos: np.ndarray) -> dict[str, np.ndarray | int]:
    """Bonds (local index pairs i < j, sorted), their perceived and Kekule types, atom flags, status."""
    Chem = require_rdkit()
    from rdkit.Chem import rdDetermineBonds

    n = len(z)
    status = STATUS_OK
    mol = Chem.MolFromXYZBlock(xyz_block(z, pos))
    if mol is None:
        raise ValueError("RDKit could not read the XYZ block")
    try:
        rdDetermineBonds.DetermineBonds(mol, charge=0, useHueckel=True)
    except Exception:  # RDKit raises ValueError / RuntimeError for unassignable bond orders
        status = STATUS_FALLBACK
        mol = Chem.MolFromXYZBlock(xyz_block(z, pos))
        try:
            rdDetermineBonds.DetermineConnectivity(mol, useHueckel=False)
        except Exception:
            status = STATUS_NO_BONDS
            mol = Chem.MolFromXYZBlock(xyz_block(z, pos))
    if mol.GetNumAtoms() != n:
        raise ValueError(f"RDKit read {mol.GetNumAtoms()} atoms, expected {n}")
    codes = {
        Chem.BondType.SINGLE: SINGLE,
        Chem.BondType.DOUBLE: DOUBLE,
        Chem.BondType.TRIPLE: TRIPLE,
        Chem.BondType.AROMATIC: AROMATIC,
    }
    hybrid = {Chem.HybridizationType.SP: 1, Chem.HybridizationType.SP2: 2, Chem.HybridizationType.SP3: 3}
    kekule_mol = Chem.Mol(mol)
    if status == STATUS_OK:
        with contextlib.suppress(Exception):
            Chem.Kekulize(kekule_mol, clearAromaticFlags=True)
    pairs, types, kekule = [], [], []
    for bond, kbond in zip(mol.GetBonds(), kekule_mol.GetBonds(), strict=True):
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        pairs.append((min(i, j), max(i, j)))
        perceived = codes.get(bond.GetBondType(), SINGLE) if status == STATUS_OK else SINGLE
        kcode = codes.get(kbond.GetBondType(), SINGLE) if status == STATUS_OK else SINGLE
        types.append(perceived)
        kekule.append(SINGLE if kcode == AROMATIC else kcode)
    order = sorted(range(len(pairs)), key=lambda k: pairs[k])
    ok = status == STATUS_OK
    return {
        "bond_count": len(pairs),
        "bonds": np.array([pairs[k] for k in order], dtype=np.int16).reshape(-1, 2),
        "bond_type": np.array([types[k] for k in order], dtype=np.int8),
        "bond_kekule": np.array([kekule[k] for k in order], dtype=np.int8),
        "atom_aromatic": np.array([int(ok and a.GetIsAromatic()) for a in mol.GetAtoms()], dtype=np.int8),
        "atom_hybrid": np.array([hybrid.get(a.GetHybridization(), 0) if ok else 0 for a in mol.GetAtoms()], np.int8),
        "status": status,
    }


def featurize_block(z: np.ndarray, pos: np.ndarray, atom_ptr: np.ndarray) -> dict[str, np.ndarray]:
    """Featurise consecutive molecules (``atom_ptr`` local, starting at 0); arrays concatenated."""
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    results = [
        featurize_molecule(z[atom_ptr[m] : atom_ptr[m + 1]], pos[atom_ptr[m] : atom_ptr[m + 1]])
        for m in range(len(atom_ptr) - 1)
    ]
    return {
        "bond_count": np.array([r["bond_count"] for r in results], dtype=np.int64),
        "bonds": np.concatenate([r["bonds"] for r in results]).reshape(-1, 2).astype(np.int16),
        "bond_type": np.concatenate([r["bond_type"] for r in results]).astype(np.int8),
        "bond_kekule": np.concatenate([r["bond_kekule"] for r in results]).astype(np.int8),
        "atom_aromatic": np.concatenate([r["atom_aromatic"] for r in results]).astype(np.int8),
        "atom_hybrid": np.concatenate([r["atom_hybrid"] for r in results]).astype(np.int8),
        "status": np.array([r["status"] for r in results], dtype=np.int8),
    }


def _work(task: tuple[int, np.ndarray, np.ndarray, np.ndarray]) -> tuple[int, dict[str, np.ndarray]]:
    index, z, pos, ptr = task
    return index, featurize_block(z, pos, ptr)


def _pool(processes: int) -> multiprocessing.pool.Pool:
    """A worker pool: forked where possible (spawn would re-run an unguarded ``__main__`` script)."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with warnings.catch_warnings():  # Python >= 3.12 warns about forking a threaded process
        warnings.simplefilter("ignore", DeprecationWarning)
        return multiprocessing.get_context(method).Pool(processes, initializer=_silence_worker)


def _save_chunk(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(handle: io.BufferedWriter) -> None:
        np.savez(handle, **arrays)

    atomic_write(path, write)


def _load_chunk(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in FEATURE_KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return arrays


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def featurize_all(
    z: np.ndarray,
    pos: np.ndarray,
    atom_ptr: np.ndarray,
    chunk_dir: Path,
    *,
    chunk_size: int = 1000,
    workers: int | None = None,
    progress: bool = True,
    on_chunk: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Featurise every molecule, resuming from the chunk files already in ``chunk_dir``.

    Returns the concatenated arrays (``bond_count`` per molecule, ``bonds`` (B, 2) local pairs,
    ``bond_type``, ``bond_kekule`` per bond, ``atom_aromatic``, ``atom_hybrid`` per atom,
    ``status`` per molecule). ``chunk_dir`` is removed once the result is assembled.
    ``on_chunk(index)`` is called after each chunk is saved (tests use it to interrupt a run).
    """
    require_rdkit()
    n = len(atom_ptr) - 1
    starts = list(range(0, n, chunk_size))
    chunk_dir.mkdir(parents=True, exist_ok=True)
    paths = [chunk_dir / f"chunk_{k:05d}.npz" for k in range(len(starts))]
    results: dict[int, dict[str, np.ndarray]] = {}
    for k, path in enumerate(paths):
        if path.is_file() and (arrays := _load_chunk(path)) is not None:
            results[k] = arrays

    def task(k: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        lo, hi = starts[k], min(starts[k] + chunk_size, n)
        a0, a1 = int(atom_ptr[lo]), int(atom_ptr[hi])
        return k, z[a0:a1], pos[a0:a1], np.asarray(atom_ptr[lo : hi + 1] - a0)

    todo = [k for k in range(len(starts)) if k not in results]
    workers = default_workers() if workers is None else max(1, workers)
    done_molecules = sum(min(starts[k] + chunk_size, n) - starts[k] for k in results)

    from mtlbench.progress import task_progress

    # a live bar on a terminal; in a log, one line every few seconds with the ETA
    with task_progress("featurising QM9", n, unit="molecules", completed=done_molecules, enabled=progress) as bar:

        def record(k: int, arrays: dict[str, np.ndarray]) -> None:
            _save_chunk(paths[k], arrays)
            results[k] = arrays
            bar.advance(min(starts[k] + chunk_size, n) - starts[k])
            if on_chunk is not None:
                on_chunk(k)

        if workers == 1 or len(todo) <= 1:
            for k in todo:
                with silenced_fds():
                    _, arrays = _work(task(k))
                record(k, arrays)
        elif todo:
            with _pool(min(workers, len(todo))) as pool:
                for k, arrays in pool.imap_unordered(_work, (task(k) for k in todo)):
                    record(k, arrays)
    merged = {key: np.concatenate([results[k][key] for k in range(len(starts))]) for key in FEATURE_KEYS}
    merged["bonds"] = merged["bonds"].reshape(-1, 2)
    shutil.rmtree(chunk_dir, ignore_errors=True)
    return merged
