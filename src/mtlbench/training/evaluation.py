"""Evaluating a model on a split: per-task metrics and mean losses."""

from __future__ import annotations

import torch

from mtlbench.models.base import MultiTaskModel
from mtlbench.problems.base import Problem

#: task -> metric -> value
Metrics = dict[str, dict[str, float]]


@torch.no_grad()
def evaluate(
    model: MultiTaskModel, problem: Problem, split: str, *, batch_size: int, device: torch.device
) -> tuple[Metrics, dict[str, float]]:
    """Metrics of every task of ``problem`` on ``split`` and the mean loss per task."""
    was_training = model.training
    model.eval()
    accumulators = {task.name: task.make_accumulator() for task in problem.tasks}
    loss_sums = torch.zeros(len(problem.tasks), dtype=torch.float64, device=device)
    count = 0
    for batch in problem.batches(split, batch_size, shuffle=False):
        batch = batch.to(device)
        outputs = model(batch.inputs)
        for index, task in enumerate(problem.tasks):
            output, target = outputs[task.name], batch.targets[task.name]
            accumulators[task.name].update(output, target)
            loss_sums[index] += task.loss(output, target).double() * batch.size
        count += batch.size
    model.train(was_training)
    losses = (loss_sums / max(count, 1)).tolist()
    metrics = {name: accumulator.compute() for name, accumulator in accumulators.items()}
    return metrics, {task.name: loss for task, loss in zip(problem.tasks, losses, strict=True)}


def metric_directions(problem: Problem) -> dict[str, dict[str, bool]]:
    """Task -> metric -> higher is better."""
    return {task.name: {m.name: m.higher_is_better for m in task.metrics} for task in problem.tasks}
