"""The QM9 problem: graph completion, batching, z-scoring, MAE units, the MPNN, options and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mtlbench.data import DATASETS
from mtlbench.data import qm9 as qm9_data
from mtlbench.data.qm9_deps import MissingDependencyError
from mtlbench.data.qm9_graphs import complete_edges
from mtlbench.errors import UserInputError
from mtlbench.problems import PROBLEMS, create_problem
from mtlbench.problems.qm9 import METRIC_SCALE, QM9Problem

SAMPLE = Path(__file__).parent / "data" / "qm9_sample.csv"
needs_extra = pytest.mark.usefixtures()  # the dev extra installs mtlbench[qm9]: a missing package fails


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qm9problem")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MTLBENCH_DATA", str(root))
        DATASETS["qm9"].fetch(SAMPLE, workers=1, progress=False)
    return root


@pytest.fixture
def data_env(cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MTLBENCH_DATA", str(cache_root))
    return cache_root


def position(qm9_id: int) -> int:
    """Position of a molecule in the sample cache (sorted by QM9 id)."""
    return int(np.flatnonzero(qm9_data.load_qm9(build=False).molecules.ids == qm9_id)[0])


def prepared(tasks: str = "all", **options: object) -> QM9Problem:
    problem = create_problem("qm9", tasks, **options)
    problem.prepare()
    assert isinstance(problem, QM9Problem)
    return problem


def test_registered_with_the_papers_defaults() -> None:
    cls = PROBLEMS["qm9"]
    assert list(cls.available_tasks()) == list(qm9_data.TASKS) and len(qm9_data.TASKS) == 11
    d = cls.defaults
    assert (d.lr, d.batch_size, d.epochs, d.optimizer, d.scheduler, d.scheduler_gamma) == (
        1e-3, 120, 300, "adam", "plateau", 0.7
    )  # fmt: skip
    assert list(d.grids["lr"]) == [5e-3, 1e-3, 5e-4]


def test_unknown_task_and_bad_options_are_one_line_errors() -> None:
    with pytest.raises(UserInputError, match=r"unknown task of qm9 'gap'; choose one of: .*U0Atom.*mu"):
        create_problem("qm9", "mu_gap")
    with pytest.raises(UserInputError, match=r"graph='full'.*complete, bonded"):
        create_problem("qm9", "mu", graph="full")
    with pytest.raises(UserInputError, match="subset"):
        create_problem("qm9", "mu", subset="-3")
    assert create_problem("qm9", "mu_alpha_homo", subset="100").option_values["subset"] == 100
    assert create_problem("qm9", "mu", subset="none").option_values["subset"] is None


@needs_extra
def test_complete_graph_matches_a_pairwise_construction(data_env: Path) -> None:
    problem = prepared("mu")
    data = qm9_data.load_qm9(build=False)
    ids = np.array([position(3), position(1), position(214), position(133850)])  # water, methane, benzene, fallback
    batch = problem.make_batch(torch.as_tensor(ids)).inputs
    ptr = data.molecules.atom_ptr
    rows, cols, bonded, distances = [], [], [], []
    offset = 0
    for i in ids:
        n = ptr[i + 1] - ptr[i]
        pos = data.molecules.pos[ptr[i] : ptr[i + 1]].astype(np.float64)
        bonds = {tuple(p) for p in data.bonds[data.bond_ptr[i] : data.bond_ptr[i + 1]].tolist()}
        code = dict(zip(map(tuple, data.bonds[data.bond_ptr[i] : data.bond_ptr[i + 1]].tolist()),
                        data.bond_kekule[data.bond_ptr[i] : data.bond_ptr[i + 1]].tolist(), strict=True))  # fmt: skip
        for a in range(n):
            for b in range(n):
                if a != b:
                    rows.append(offset + a)
                    cols.append(offset + b)
                    key = (min(a, b), max(a, b))
                    bonded.append(code[key] if key in bonds else -1)
                    distances.append(np.linalg.norm(pos[a] - pos[b]))
        offset += n
    sizes = np.diff(ptr)[ids]
    assert batch.edge_index.shape[1] == int((sizes * (sizes - 1)).sum())
    assert batch.edge_index.tolist() == [rows, cols]
    attr = batch.edge_attr.numpy()
    expected = np.zeros((len(rows), 4))
    for k, c in enumerate(bonded):
        if c >= 0:
            expected[k, c] = 1
    np.testing.assert_array_equal(attr[:, :4], expected)
    np.testing.assert_allclose(attr[:, 4], distances, rtol=1e-5)
    assert batch.batch.tolist() == np.repeat(np.arange(len(ids)), sizes).tolist()
    assert batch.num_graphs == len(ids)


def test_complete_edges_count_and_no_self_loops() -> None:
    sizes = np.array([3, 1, 5, 2])
    edge_index, row_start = complete_edges(sizes)
    assert edge_index.shape[1] == (sizes * (sizes - 1)).sum() == 28
    assert not (edge_index[0] == edge_index[1]).any()
    graph = np.repeat(np.arange(4), sizes)
    assert (graph[edge_index[0]] == graph[edge_index[1]]).all()
    assert len({tuple(e) for e in edge_index.T.tolist()}) == 28  # no duplicates
    assert row_start.tolist() == [0, 2, 4, 6, 6, 10, 14, 18, 22, 26, 27]  # degrees n - 1 of the 11 atoms


@needs_extra
def test_bonded_graph_has_both_directions_of_each_bond(data_env: Path) -> None:
    problem = prepared("mu", graph="bonded", features="rdkit")
    data = qm9_data.load_qm9(build=False)
    i = position(214)  # benzene
    batch = problem.make_batch(torch.tensor([i])).inputs
    s, e = data.bond_ptr[i], data.bond_ptr[i + 1]
    expected = sorted([tuple(p) for p in data.bonds[s:e].tolist()] + [tuple(p[::-1]) for p in data.bonds[s:e].tolist()])
    assert [tuple(p) for p in batch.edge_index.T.tolist()] == expected
    attr = batch.edge_attr
    assert torch.all(attr[:, :4].sum(dim=1) == 1)
    ring = (batch.edge_index < 6).all(dim=0)
    assert torch.all(attr[ring, 3] == 1)  # aromatic ring bonds with the rdkit features
    pos = torch.from_numpy(data.molecules.pos[data.molecules.atom_ptr[i] : data.molecules.atom_ptr[i + 1]])
    torch.testing.assert_close(attr[:, 4], (pos[batch.edge_index[0]] - pos[batch.edge_index[1]]).norm(dim=1))


@needs_extra
def test_targets_are_zscored_with_train_statistics_only(data_env: Path) -> None:
    problem = prepared("mu_U0Atom")
    targets = qm9_data.load_qm9(build=False).molecules.targets
    train = problem.split_indices("train").numpy()
    for name in ("mu", "U0Atom"):
        column = targets[:, qm9_data.TASKS.index(name)]
        mean, std = problem.target_statistics()[name]
        assert mean == pytest.approx(column[train].mean()) and std == pytest.approx(column[train].std(ddof=1))
        assert mean != pytest.approx(column.mean(), rel=1e-6)  # the held-out molecules are not used
        z = torch.cat([b.targets[name] for b in problem.batches("train", 7)]).double()
        assert z.mean().item() == pytest.approx(0.0, abs=1e-6) and z.std().item() == pytest.approx(1.0, abs=1e-6)
        val = torch.cat([b.targets[name] for b in problem.batches("val", 7)]).double()
        expected = (column[problem.split_indices("val").numpy()] - mean) / std
        np.testing.assert_allclose(val.numpy(), expected, rtol=1e-5)


@needs_extra
def test_mae_is_in_original_units_with_mev_for_energies(data_env: Path) -> None:
    problem = prepared("mu_homo_U0Atom")
    rng = np.random.default_rng(0)
    for task in problem.tasks:
        mean, std = problem.target_statistics()[task.name]
        accumulator = task.make_accumulator()
        errors = []
        for batch in problem.batches("test", 3):
            truth = batch.targets[task.name].double() * std + mean
            prediction = truth + torch.from_numpy(rng.normal(0, 0.1 * std, batch.size))
            accumulator.update(((prediction - mean) / std).float().unsqueeze(1), batch.targets[task.name])
            errors.append((prediction - truth).abs().numpy())
        mae = accumulator.compute()["MAE"]
        assert mae == pytest.approx(np.concatenate(errors).mean() * METRIC_SCALE[task.name], rel=1e-5)
        assert METRIC_SCALE[task.name] == (1000.0 if task.name in ("homo", "U0Atom") else 1.0)
    assert problem.tasks[1].metrics[0].higher_is_better is False and "meV" in problem.tasks[1].description


@needs_extra
def test_batches_cover_each_split_once_and_shuffle_reproducibly(data_env: Path) -> None:
    problem = prepared("mu", subset=20)
    assert [problem.num_examples(s) for s in ("train", "val", "test")] == [20, 4, 4]  # val/test have 4 < 20
    mu = torch.cat([b.targets["mu"] for b in problem.batches("train", 6)])

    def order(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.cat([b.targets["mu"] for b in problem.batches("train", 6, shuffle=True, generator=generator)])

    assert torch.equal(order(0), order(0)) and not torch.equal(order(0), order(1))
    assert torch.equal(order(0).sort().values, mu.sort().values)
    assert [b.size for b in problem.batches("train", 6)] == [6, 6, 6, 2]
    with pytest.raises(UserInputError, match="unknown split"):
        problem.num_examples("dev")
    short = prepared("mu", subset=20, train_size=5)  # mtlbench train --train-size: train only
    assert [short.num_examples(s) for s in ("train", "val", "test")] == [5, 4, 4]
    assert torch.equal(short.split_indices("train"), problem.split_indices("train")[:5])


@needs_extra
def test_mpnn_forward_backward_and_structure(data_env: Path) -> None:
    problem = prepared("all")
    torch.manual_seed(0)
    model = problem.build_model()
    encoder = model.encoder
    assert model.representation_size == 64 and model.last_shared_layer is encoder.lin1
    assert encoder.conv.aggr == "mean" and encoder.set2set.processing_steps == 3 and encoder.steps == 3
    by_hand = (11 * 64 + 64) + (5 * 128 + 128) + (128 * 4096 + 4096) + (64 * 64 + 64)  # lin0, edge net, root
    by_hand += 2 * (3 * 64 * 64 + 3 * 64) + (128 * 64 + 64)  # GRU (input and hidden), lin1
    by_hand += 4 * 64 * 128 + 4 * 64 * 64 + 2 * 4 * 64  # Set2Set's LSTM(128 -> 64)
    assert sum(p.numel() for p in model.shared_parameters()) == by_hand
    assert sum(p.numel() for ps in model.task_parameters() for p in ps) == 11 * 65

    ids = torch.tensor([0, 5, position(214), 30])
    batch = problem.make_batch(ids)
    outputs = model(batch.inputs)
    assert set(outputs) == set(qm9_data.TASKS) and all(o.shape == (4, 1) for o in outputs.values())
    loss = sum(task.loss(outputs[task.name], batch.targets[task.name]) for task in problem.tasks)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert all(p.grad.abs().sum() > 0 for p in model.shared_parameters())

    with torch.no_grad():  # molecules are independent: reordering the batch reorders the outputs
        permuted = model(problem.make_batch(ids[[2, 0, 3, 1]]).inputs)
        again = model(batch.inputs)
    for name in qm9_data.TASKS:
        torch.testing.assert_close(permuted[name], again[name][[2, 0, 3, 1]], rtol=1e-4, atol=1e-5)


@needs_extra
def test_data_checksums_name_the_files_read(data_env: Path) -> None:
    problem = prepared("mu", split_seed=3)
    sums = problem.data_checksums()
    assert {"qm9/targets.npy", "qm9/bonds.npy", "qm9/split_seed3.npy"} <= set(sums)
    assert all(len(v) == 64 for v in sums.values())


def test_missing_optional_dependency_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from mtlbench.data.qm9_deps import require_pyg, require_rdkit

    monkeypatch.setitem(sys.modules, "torch_geometric.nn", None)
    monkeypatch.setitem(sys.modules, "rdkit.Chem", None)
    for require in (require_pyg, require_rdkit):
        with pytest.raises(MissingDependencyError, match=r"pip install 'mtlbench\[qm9\]'") as error:
            require()
        assert "\n" not in str(error.value)


@needs_extra
def test_edge_network_once_is_the_same_function_as_pyg_nnconv(data_env: Path) -> None:
    """Evaluating the edge network once per forward equals NNConv's per-step evaluation, gradients too."""
    from mtlbench.models.mpnn import build_mpnn

    problem = prepared("mu_Cv", graph="complete")
    batch = problem.make_batch(torch.arange(0, 12))
    torch.manual_seed(1)
    fast = build_mpnn(problem.task_names, edge_network_once=True)
    literal = build_mpnn(problem.task_names, edge_network_once=False)
    literal.load_state_dict(fast.state_dict())
    outputs = [model(batch.inputs) for model in (fast, literal)]
    for name in problem.task_names:
        torch.testing.assert_close(outputs[0][name], outputs[1][name], rtol=1e-5, atol=1e-6)
    for out in outputs:
        sum(task.loss(out[task.name], batch.targets[task.name]) for task in problem.tasks).backward()
    for (name, a), b in zip(fast.named_parameters(), literal.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)
