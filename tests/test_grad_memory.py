"""The gradient engine's memory budget as a run setting (``RunConfig.grad_memory``, ``--grad-memory``, the
sweep setting ``grad_memory``): validated with one-line errors, out of the config hash at its default,
reset for methods without a Gramian path, and the same numbers as without a budget."""

from __future__ import annotations

import math
import textwrap

import pytest
import torch

import mtlbench.methods.base as method_base
from mtlbench.cli.main import main
from mtlbench.errors import UserInputError
from mtlbench.methods.gradients import parameter_blocks
from mtlbench.problems import create_problem
from mtlbench.store.results import config_hash
from mtlbench.sweeps import load_spec
from mtlbench.sweeps.plan import SweepPlan
from mtlbench.training import RunConfig
from mtlbench.training.config import gradient_budget_bytes
from mtlbench.training.trainer import Session, Trainer

BASE = dict(
    problem="synthetic",
    tasks="T0_T1_T2",
    problem_options={"train_size": 48, "eval_size": 24},
    epochs=2,
    batch_size=16,
    threads=1,
)


def test_the_default_stays_out_of_the_hash_and_a_budget_is_recorded():
    plain = RunConfig(**BASE, method="pcgrad").resolved()
    assert "grad_memory" not in plain.to_dict()
    assert config_hash(plain.to_dict()) == config_hash(
        RunConfig(**BASE, method="pcgrad", grad_memory=0).resolved().to_dict()
    )
    budget = RunConfig(**BASE, method="pcgrad", grad_memory=64).resolved()
    assert budget.to_dict()["grad_memory"] == 64 and config_hash(budget.to_dict()) != config_hash(plain.to_dict())


@pytest.mark.parametrize(
    ("method", "params"),
    [("unit_scal", {}), ("rlw_dirichlet", {}), ("pcgrad", {"space": "representation"})],
)
def test_methods_without_a_gramian_path_drop_the_budget(method, params):
    config = RunConfig(**BASE, method=method, method_params=params, grad_memory=64).resolved()
    assert config.grad_memory == 0 and "grad_memory" not in config.to_dict()


@pytest.mark.parametrize("value", [-1, -0.5, math.nan, math.inf, "big"])
def test_bad_budgets_are_one_line_errors(value):
    with pytest.raises(UserInputError, match=r"^grad_memory=.* must be a finite number of MiB >= 0") as error:
        RunConfig(**BASE, method="unit_scal", grad_memory=value).resolved()
    assert "\n" not in str(error.value)


def test_bytes_of_a_budget():
    assert gradient_budget_bytes(0) is None
    assert gradient_budget_bytes(212) == 212 * 2**20
    assert gradient_budget_bytes(1e-9) == 1  # never a zero budget


def test_the_budget_reaches_the_engine():
    config = RunConfig(**BASE, method="mgda", grad_memory=0.5).resolved()
    problem = create_problem(config.problem, config.tasks, **config.problem_options)
    session = Session(config, problem, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert session.method.engine.max_gradient_bytes == 2**19 and session.method.engine.path == "auto"


@pytest.mark.parametrize("method", ["pcgrad", "mgda"])
def test_a_run_with_a_budget_gives_the_numbers_of_one_without(method, monkeypatch):
    blocks: list[int] = []
    original = method_base.gramian

    def counting(losses, inputs, *args, **kwargs):
        blocks.append(len(parameter_blocks(inputs, losses.shape[0], kwargs.get("max_bytes"))))
        return original(losses, inputs, *args, **kwargs)

    monkeypatch.setattr(method_base, "gramian", counting)
    plain = Trainer(RunConfig(**BASE, method=method, selection="val_loss")).run()
    assert blocks == []  # no budget: the (T, D) loop path
    # 1 KiB: smaller than the (3, D) matrix of the synthetic trunk, so the Gramian path, by several blocks
    budget = Trainer(RunConfig(**BASE, method=method, selection="val_loss", grad_memory=2**-10)).run()
    assert blocks and min(blocks) > 1
    assert plain.status == budget.status == "completed"
    for a, b in zip(plain.history, budget.history, strict=True):
        for task in a["train_losses"]:
            assert b["train_losses"][task] == pytest.approx(a["train_losses"][task], rel=1e-5, abs=1e-7)
            assert b["val_losses"][task] == pytest.approx(a["val_losses"][task], rel=1e-5, abs=1e-7)
    for task, metrics in plain.test_metrics.items():
        for name, value in metrics.items():
            assert budget.test_metrics[task][name] == pytest.approx(value, rel=1e-5, abs=1e-7)


def test_the_sweep_setting_and_the_cli_flag(tmp_path, capsys):
    path = tmp_path / "sweep.toml"
    body = """
        name = "budget"
        problem = "synthetic"
        tasks = "T0_T1_T2"
        methods = ["pcgrad", "unit_scal"]
        [problem_options]
        train_size = 48
        eval_size = 24
        [settings]
        epochs = 1
        grad_memory = {value}
        [references]
        enabled = false
    """
    path.write_text(textwrap.dedent(body.format(value=8)))
    plan = SweepPlan(load_spec(path), threads=1)
    configs = {g.name: g.search_trials()[0].config for g in plan.method_groups}
    assert configs["pcgrad"].grad_memory == 8 and configs["unit_scal"].grad_memory == 0
    path.write_text(textwrap.dedent(body.format(value='"big"')))
    with pytest.raises(UserInputError, match=r"settings.grad_memory: must be"):
        load_spec(path)
    path.write_text(textwrap.dedent(body.format(value=-2)))
    with pytest.raises(UserInputError, match=r"grad_memory=-2 must be a finite number of MiB"):
        SweepPlan(load_spec(path), threads=1)

    code = main(["train", "--problem", "synthetic", "--tasks", "T0_T1_T2", "-m", "pcgrad", "--grad-memory", "-1"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip().count("\n") == 0 and "grad_memory=-1.0 must be" in err
