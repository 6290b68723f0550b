"""Training engine: run configuration, the trainer, evaluation, single-task references."""

from mtlbench.training.config import RunConfig
from mtlbench.training.trainer import RunResult, Trainer, train

__all__ = ["RunConfig", "RunResult", "Trainer", "train"]
