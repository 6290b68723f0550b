"""A tiny multi-task problem and the per-step protocol of the trainer, for method tests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from mtlbench.methods import Method, TrainingContext
from mtlbench.models.base import MultiTaskModel
from mtlbench.problems.base import Batch


@dataclass
class TinyProblem:
    model: MultiTaskModel
    batch: Batch
    n_tasks: int

    def losses(self, batch: Batch | None = None) -> torch.Tensor:
        batch = batch or self.batch
        outputs = self.model(batch.inputs)
        return torch.stack(
            [nn.functional.mse_loss(outputs[name].squeeze(-1), batch.targets[name]) for name in self.model.task_names]
        )


def make_tiny_problem(n_tasks: int = 2, *, seed: int = 0, n: int = 32, features: int = 6) -> TinyProblem:
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, features), nn.ReLU())
    names = [f"t{i}" for i in range(n_tasks)]
    heads = {name: nn.Linear(features, 1) for name in names}
    model = MultiTaskModel(encoder, heads, representation_size=features)
    x = torch.randn(n, 4)
    targets = {name: torch.randn(n) * (i + 1) for i, name in enumerate(names)}
    return TinyProblem(model, Batch(x, targets, n), n_tasks)


@pytest.fixture
def tiny_problem() -> TinyProblem:
    return make_tiny_problem()


def train_steps(method: Method, problem: TinyProblem, steps: int = 5, lr: float = 1e-2) -> list[torch.Tensor | None]:
    """Run the trainer's per-step protocol for ``steps`` steps; return the weights each step reported."""
    model = wrapped = method.wrap_model(problem.model)
    optimizer = torch.optim.Adam([*wrapped.parameters(), *method.parameters()], lr=lr)
    method.attach(
        TrainingContext(
            model=wrapped,
            optimizer=optimizer,
            lr=lr,
            weight_decay=0.0,
            task_names=model.task_names,
            loss_types=["mse"] * problem.n_tasks,
            compute_losses=problem.losses,
            next_validation_batch=lambda: problem.batch,
            current_batch=lambda: problem.batch,
        )
    )
    weights = []
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        features = wrapped.encode(problem.batch.inputs)
        outputs = wrapped.decode(features)
        losses = torch.stack(
            [nn.functional.mse_loss(outputs[n].squeeze(-1), problem.batch.targets[n]) for n in wrapped.task_names]
        )
        result = method.backward(
            losses, wrapped.shared_parameters(), features=features, task_parameters=wrapped.task_parameters()
        )
        optimizer.step()
        if method.needs_extra_forward:
            with torch.no_grad():
                method.after_step(lambda: problem.losses())
        else:
            method.after_step(None)
        weights.append(result.weights)
    method.end_epoch(problem.losses().detach())
    return weights
