"""000's exact semantics as options: the built-in 000 specs, Multi-MNIST's published partners, QM9's
target statistics and plateau monitor, RotoGrad's rotation loss and lr floor, Auto-Lambda's meta batch."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from mtlbench.data import multi_mnist as mm
from mtlbench.errors import UserInputError
from mtlbench.methods import create
from mtlbench.problems import create_problem
from mtlbench.sweeps.plan import SweepPlan
from mtlbench.sweeps.spec import builtin_specs, load_spec

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "gg" / "multi_mnist"

# 000's scale per method (Gama & Grassi's optimizers/*.py next to mtlbench's sum convention)
OBJECTIVE_000 = {
    "unit_scal": "mean",
    "si": "mean",
    "famo": "mean",
    "cagrad": "mean_shared",
    **dict.fromkeys(["auto_lambda", "cdtt", "edm", "graddrop", "imtl", "mgda_ub", "nash_mtl", "pcgrad"], "sum"),
    **dict.fromkeys(["rlw_dirichlet", "rlw_normal", "rotograd", "uw"], "sum"),
}
LADDER = ("r50", "r18", "instseg", "hr", "19c")
SPECS_000 = [
    *(f"mnist_{tasks}" for tasks in ("cl_rr", "cl_cr", "rl_rr")),
    *(f"{data}_{step}" for data in ("city", "scenes") for step in LADDER),
    "qm9",
    "qm9_diverged",
]
THREE_TASK_STEPS = ("instseg", "hr", "19c")


def test_every_000_spec_is_known():
    assert set(SPECS_000) <= set(builtin_specs()) and len(SPECS_000) == 15


@pytest.mark.parametrize("scale", ["paper", "cpu", "smoke"])
@pytest.mark.parametrize("name", SPECS_000)
def test_000_specs_carry_000s_settings(name, scale):
    spec = load_spec(name, scale)
    plan = SweepPlan(spec, threads=1)
    n_tasks = len(plan.tasks) if spec.problem not in ("cityscapes", "synthetic_scenes") else None
    three_tasks = name.rpartition("_")[2] in THREE_TASK_STEPS or spec.problem == "qm9"
    for group in plan.method_groups:
        trial = group.search_trials()[0]
        config = trial.config
        assert config.objective == OBJECTIVE_000[group.name], (name, group.name)
        params = config.method_params
        if group.name == "imtl":
            assert params["system"] == ("transposed" if three_tasks else "paper"), name
        if group.name == "rotograd":
            two_d = spec.problem in ("multi_mnist", "qm9")
            assert params["rotation_loss"] == ("sum" if two_d else "mean")
            assert params["rotation_lr_floor"] == (1e-5 if spec.problem == "qm9" else 0.0)
            if spec.problem in ("cityscapes", "synthetic_scenes"):
                assert {t.config.weight_decay for t in group.search_trials()} == {0.0}
        if group.name == "auto_lambda":
            assert params["batchnorm_stats"] == "live"
            assert params["meta_batch_size"] == (100 if spec.problem == "multi_mnist" else None)
        if group.name == "nash_mtl" and spec.problem == "qm9" and scale == "paper":
            assert sorted({t.config.lr for t in group.search_trials()}) == [1e-4, 5e-4, 1e-3, 5e-3]
    base = plan.base
    options = plan.problem.option_values
    if spec.problem == "multi_mnist":
        assert options["partners"] == "published"
    if spec.problem == "qm9":
        assert options["target_stats"] == "all" and base.plateau_monitor == "last_batch"
        assert base.scheduler == "plateau"
    assert base.selection == "delta_m"
    assert n_tasks is None or n_tasks >= 2
    for group in plan.reference_groups:  # single-task references: the same numbers at any scale
        assert group.search_trials()[0].config.objective == "sum"


# ------------------------------------------------------------------------------------ Multi-MNIST
def test_published_partners_are_rebuilt_exactly():
    partners = mm.published_partners()
    assert [len(partners[s]) for s in ("train", "val", "test")] == [50_000, 60_000, 10_000]
    for split, (low, high, _) in mm.PUBLISHED_DRAWS.items():
        assert partners[split].min() >= low and partners[split].max() < high
        assert hashlib.sha256(mm.published_text(partners[split])).hexdigest() == mm.PUBLISHED_SHA256[split]
    assert partners["train"][:3].tolist() == [2732, 43567, 42613]


@pytest.mark.skipif(not SHARED.is_dir(), reason="the published index files live in ../shared (not shipped)")
def test_published_partners_equal_the_published_files():
    partners = mm.published_partners()
    for split in ("train", "val", "test"):
        data = (SHARED / f"{split}_right_idx.txt").read_bytes()
        assert hashlib.sha256(data).hexdigest() == mm.PUBLISHED_SHA256[split]
        assert np.array_equal(np.array(data.split(), dtype=np.int64), partners[split])


def test_published_partners_feed_the_splits(tmp_path):
    folder = tmp_path / "published"
    for split, (start, stop) in {"train": (0, 50_000), "val": (50_000, 60_000), "test": (0, 10_000)}.items():
        right = mm._partners(folder, split, start, stop, 0, "published")
        assert np.array_equal(right, mm.published_partners()[split][: stop - start])
    with pytest.raises(UserInputError, match="partners=published needs the full MNIST"):
        mm._partners(tmp_path / "small", "train", 0, 250, 0, "published")


def test_published_partners_need_the_full_mnist(fake_mnist):
    problem = create_problem("multi_mnist", "CL_RR", partners="published")
    with pytest.raises(UserInputError, match="full MNIST"):
        problem.prepare()
    seeded = create_problem("multi_mnist", "CL_RR")
    assert seeded.reference_config() == {"problem": "multi_mnist", "train_size": None, "partner_seed": 0}
    assert problem.reference_config()["partners"] == "published"


def test_new_problem_options_keep_reference_keys():
    assert "target_stats" not in create_problem("qm9", "mu").reference_config()
    assert create_problem("qm9", "mu", target_stats="all").reference_config()["target_stats"] == "all"
    with pytest.raises(UserInputError, match="target_stats='some'"):
        create_problem("qm9", "mu", target_stats="some")


# ------------------------------------------------------------------------------------------ RotoGrad
def _rotograd_step(**params):
    torch.manual_seed(0)
    method = create("rotograd", n_tasks=2, generator=torch.Generator().manual_seed(1), **params)

    class Context:
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)

    from mtlbench.models.base import MultiTaskModel

    encoder = torch.nn.Linear(3, 4)
    heads = torch.nn.ModuleDict({"a": torch.nn.Linear(4, 1), "b": torch.nn.Linear(4, 1)})
    model = method.wrap_model(MultiTaskModel(encoder, heads, representation_size=4))
    method.context = Context()
    x = torch.randn(8, 3)
    z = model.encode(x)
    outputs = model.decode(z)
    losses = torch.stack([outputs["a"].pow(2).mean(), (outputs["b"] - 1).pow(2).mean()])
    result = method.backward(losses, model.shared_parameters(), features=z, task_parameters=model.task_parameters())
    return method, result


def test_rotograd_rotation_loss_sum_is_batch_times_mean_and_the_lr_floor():
    mean_method, mean = _rotograd_step()
    _, total = _rotograd_step(rotation_loss="sum")
    assert total.info["rotation_loss"] == pytest.approx(8 * mean.info["rotation_loss"], rel=1e-5)
    assert mean_method._rotation_lr() == pytest.approx(1e-5)  # 1e-4 x lr_scale 0.1
    floored, _ = _rotograd_step(rotation_lr_floor=3e-5)
    assert floored._rotation_lr() == pytest.approx(3e-5)


# -------------------------------------------------------------------------------------- fixed weights
def test_fixed_weights_extract_at_one_lr_and_train_at_the_selected_one(tmp_path, capsys):
    from mtlbench.analysis.fixed_weights import ExtractedWeights, fixed_weights_config, parse_train_lr
    from mtlbench.cli.main import main
    from mtlbench.store.results import ResultsStore
    from tests.test_analysis import add_reference, add_run

    store = ResultsStore(tmp_path / "results.db")
    add_reference(store)
    add_run(store, "nash_mtl", 1, (1.0, 2.0), val_delta_m=-1.0, lr=0.01, weights=[(1.5, 0.5)] * 3)
    add_run(store, "nash_mtl", 1, (1.0, 2.0), val_delta_m=-9.0, lr=0.0001, weights=[(0.5, 1.5)] * 3)
    db = str(tmp_path / "results.db")
    args = ["fixed-weights", "--from", "nash_mtl", "-p", "synthetic", "-t", "T0_T1", "--results", db]
    assert main([*args, "--extract-lr", "0.0001", "--train-lr", "best"]) == 0
    out = capsys.readouterr().out
    assert "lr 0.0001" in out and "T0=0.250000" in out and "training lr:     0.01 (--train-lr best)" in out
    assert main([*args, "--train-lr", "fast"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "--train-lr='fast'" in error
    assert parse_train_lr("0.001") == 0.001 and parse_train_lr(None) is None
    source = ExtractedWeights(1, "nash_mtl", ["T0", "T1"], np.array([0.25, 0.75]), {"lr": 1e-4, "problem": "p"})
    config = fixed_weights_config(source, 1, lr=1e-3, objective="mean")
    assert config["lr"] == 1e-3 and config["objective"] == "mean" and config["method_params"]["weights"] == (0.5, 1.5)
    assert "objective" not in fixed_weights_config(source, 1)


# ------------------------------------------------------------------------------------------------ QM9
@pytest.fixture
def qm9_sample(tmp_path, monkeypatch):
    from mtlbench.data import DATASETS

    monkeypatch.setenv("MTLBENCH_DATA", str(tmp_path))
    DATASETS["qm9"].fetch(Path(__file__).parent / "data" / "qm9_sample.csv", workers=1, progress=False)
    return tmp_path


def test_qm9_target_stats_all_uses_every_molecule(qm9_sample):
    from mtlbench.data import qm9 as qm9_data

    targets = qm9_data.load_qm9(build=False).molecules.targets
    for options in ({"target_stats": "all"}, {"target_stats": "all", "subset": 5, "train_size": 3}):
        problem = create_problem("qm9", "mu_U0Atom", **options)
        problem.prepare()
        for name in ("mu", "U0Atom"):
            column = targets[:, qm9_data.TASKS.index(name)]
            mean, std = problem.target_statistics()[name]
            assert mean == pytest.approx(column.mean()) and std == pytest.approx(column.std(ddof=1))  # unbiased
    train_only = create_problem("qm9", "mu")
    train_only.prepare()
    assert train_only.target_statistics()["mu"][0] != pytest.approx(targets[:, 0].mean(), rel=1e-6)


def test_plateau_monitors(monkeypatch):
    from mtlbench.training import RunConfig, Trainer

    seen = []

    class Recorder(torch.optim.lr_scheduler.ReduceLROnPlateau):
        def step(self, metrics, epoch=None):
            seen.append(metrics)

    scheduler = Recorder(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0))
    train, last = torch.tensor([1.0, 2.0]), torch.tensor([0.25, 0.5])
    expected = {"train_loss": 3.0, "last_batch": 0.75, "val_loss": 7.0, "val_delta_m": -2.5}
    for monitor, value in expected.items():
        config = RunConfig(problem="synthetic", tasks="T0_T1", scheduler="plateau", plateau_monitor=monitor, threads=1)
        Trainer(config, require_reference=False)._step_scheduler(
            scheduler, train, {"T0": 3.0, "T1": 4.0}, last_losses=last, val_delta_m=2.5
        )
        assert seen[-1] == pytest.approx(value), monitor
    config = RunConfig(problem="synthetic", tasks="T0_T1", scheduler="plateau", plateau_monitor="val_delta_m")
    with pytest.raises(UserInputError, match="needs a single-task reference"):
        Trainer(config, require_reference=False)._step_scheduler(scheduler, train, {}, last_losses=last)


# ---------------------------------------------------------------------------------------- Auto-Lambda
def test_auto_lambda_meta_batch_size_and_live_batchnorm_statistics():
    from mtlbench.methods.auto_lambda import substituted
    from mtlbench.training import RunConfig
    from mtlbench.training.trainer import Session

    config = RunConfig(
        problem="synthetic",
        tasks="T0_T1",
        method="auto_lambda",
        method_params={"meta_batch_size": 16},
        batch_size=64,
        threads=1,
    ).resolved()
    problem = create_problem("synthetic", "T0_T1")
    problem.prepare()
    session = Session(config, problem, torch.device("cpu"), torch.Generator().manual_seed(0))
    sizes = []
    stream = session.method.context.next_validation_batch

    def recording(*args):
        batch = stream(*args)
        sizes.append(batch.size)
        return batch

    session.method.context.next_validation_batch = recording
    for _, batch in zip(range(2), problem.batches("train", 64), strict=False):
        session.step(batch)
    assert sizes == [16, 16]

    norm = torch.nn.BatchNorm1d(3)
    values = {id(p): p.detach() + 1.0 for p in norm.parameters()}
    x = torch.randn(8, 3) + 5.0
    with substituted(norm, values):
        norm(x)
    assert torch.equal(norm.running_mean, torch.zeros(3))  # isolated: the live statistics are untouched
    with substituted(norm, values, live_buffers=True):
        norm(x)
    torch.testing.assert_close(norm.running_mean, 0.1 * x.mean(dim=0))  # live: one momentum-0.1 update
