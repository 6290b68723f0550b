"""Trainer features 002's Table IX needs: poly schedule, training length and evaluation in iterations,
gradient-norm clipping, AdamW's decoupled decay, and fixed weights used as given (normalize=false)."""

from __future__ import annotations

import math

import pytest
import torch

from mtlbench.errors import UserInputError
from mtlbench.methods import create
from mtlbench.training import RunConfig, Trainer
from mtlbench.training.trainer import Session, build_optimizer, build_scheduler


def _config(**kwargs) -> RunConfig:
    base = {"problem": "multi_mnist", "tasks": "CL_RR", "epochs": 1, "batch_size": 50, "threads": 1, "device": "cpu"}
    return RunConfig(**{**base, **kwargs}).resolved()


def test_poly_schedule_by_hand() -> None:
    parameter = torch.nn.Parameter(torch.zeros(1))
    config = _config(scheduler="poly", lr=0.1)
    optimizer = build_optimizer(config, [parameter])
    scheduler = build_scheduler(config, optimizer, total_steps=10)
    seen = []
    for _ in range(12):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen[:11] == pytest.approx([0.1 * (1 - k / 10) ** 0.9 for k in range(11)])
    assert seen[10] == 0.0 and seen[11] == 0.0  # stays at 0 past the end


def test_poly_steps_with_every_training_step(fake_mnist) -> None:
    # 250 training images, batch 50: 5 steps per epoch, 10 in all
    records = []
    config = RunConfig(
        "multi_mnist", "CL_RR", epochs=2, batch_size=50, lr=0.01, scheduler="poly", threads=1, device="cpu"
    )
    result = Trainer(config, require_reference=False, progress=records.append).run()
    assert result.status == "completed", result.error
    lrs = [record["lr"] for record in result.history]
    assert lrs == pytest.approx([0.01 * (1 - 5 / 10) ** 0.9, 0.0])


def test_iterations_and_evaluation_interval(fake_mnist) -> None:
    events = []
    config = RunConfig(
        "multi_mnist", "CL_RR", iterations=7, eval_every=3, batch_size=100, threads=1, device="cpu", scheduler="none"
    )
    assert config.resolved().epochs == 3
    result = Trainer(config, require_reference=False, progress=events.append).run()
    assert result.status == "completed", result.error
    assert len(result.history) == 3  # evaluations after steps 3, 6 and 7
    steps, current = [], 0
    for event in events:
        if event["event"] == "step":
            current = event["step"]
        elif event["event"] == "epoch_end":
            steps.append(current)
    # 250 images at batch 100: passes of 3 steps (the last of 50); blocks cross pass boundaries
    assert steps == [3, 3, 1]
    with pytest.raises(UserInputError, match="eval_every"):
        RunConfig("multi_mnist", "CL_RR", eval_every=5).resolved()
    with pytest.raises(UserInputError, match="iterations"):
        RunConfig("multi_mnist", "CL_RR", iterations=-1).resolved()


def test_gradient_norm_clipping_bounds_an_sgd_update(fake_mnist) -> None:
    config = _config(optimizer="sgd", momentum=0.0, lr=1.0, weight_decay=0.0, grad_clip=1e-3, scheduler="none")
    from mtlbench.problems import create_problem

    problem = create_problem("multi_mnist", "CL_RR")
    session = Session(config, problem, torch.device("cpu"), torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in session.model.parameters()]
    batch = next(problem.batches("train", 50))
    session.step(batch)
    delta = torch.sqrt(
        sum(((p.detach() - b) ** 2).sum() for p, b in zip(session.model.parameters(), before, strict=True))
    )
    assert float(delta) == pytest.approx(1e-3, rel=1e-4)  # the update is the clipped gradient
    with pytest.raises(UserInputError, match="grad_clip"):
        _config(grad_clip=-1.0)


def test_adamw_decays_decoupled_adam_couples() -> None:
    def one_step(optimizer_name: str) -> float:
        parameter = torch.nn.Parameter(torch.tensor([4.0]))
        config = _config(optimizer=optimizer_name, lr=0.1, weight_decay=0.5)
        optimizer = build_optimizer(config, [parameter])
        parameter.grad = torch.zeros(1)
        optimizer.step()
        return float(parameter.detach())

    assert one_step("adamw") == pytest.approx(4.0 * (1 - 0.1 * 0.5))  # p <- p - lr wd p
    assert one_step("adam") == pytest.approx(4.0 - 0.1)  # g = wd p, Adam's first step moves lr


def test_fixed_weights_as_given_or_renormalised() -> None:
    given = create("fixed_weights", n_tasks=4, weights="1,1,2,50", normalize="false")
    assert given.weights.tolist() == [1.0, 1.0, 2.0, 50.0]
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert given.loss_weights(losses).tolist() == [1.0, 1.0, 2.0, 50.0]
    renormalised = create("fixed_weights", n_tasks=4, weights="1,1,2,50")
    assert renormalised.weights.tolist() == pytest.approx([4 * v / 54 for v in (1, 1, 2, 50)])
    assert math.isclose(float(renormalised.weights.sum()), 4.0, rel_tol=1e-6)
