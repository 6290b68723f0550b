"""The hard-parameter-sharing model every problem builds: a shared encoder and one head per task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn


class MultiTaskModel(nn.Module):
    """``encoder`` -> shared representation z -> (optional per-task adapter) -> ``heads[task]``.

    - ``encode`` returns the shared representation, on which representation-level methods act.
    - ``adapters`` is the seam between encoder and heads: a model-changing method (RotoGrad) puts one
      module per task there, so head ``t`` sees ``adapters[t](z)``. Adapters are not task parameters:
      the method that installs them owns and updates them.
    - ``last_shared_layer`` is the module whose parameters AvgNorm and GradNorm measure gradients on
      (by default the last module of the encoder that has parameters).
    """

    def __init__(
        self,
        encoder: nn.Module,
        heads: Mapping[str, nn.Module],
        *,
        last_shared_layer: nn.Module | None = None,
        representation_size: int | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict(dict(heads))
        self.adapters: nn.ModuleDict | None = None
        self.representation_size = representation_size
        self._last_shared_layer = last_shared_layer

    @property
    def task_names(self) -> list[str]:
        return list(self.heads.keys())

    def encode(self, inputs: Any) -> Tensor:
        return self.encoder(inputs)

    def decode(self, features: Tensor) -> dict[str, Tensor]:
        if self.adapters is None:
            return {name: head(features) for name, head in self.heads.items()}
        return {name: head(self.adapters[name](features)) for name, head in self.heads.items()}

    def forward(self, inputs: Any) -> dict[str, Tensor]:
        return self.decode(self.encode(inputs))

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def task_parameters(self) -> list[list[nn.Parameter]]:
        """One list of head parameters per task, in task order."""
        return [[p for p in head.parameters() if p.requires_grad] for head in self.heads.values()]

    @property
    def last_shared_layer(self) -> nn.Module:
        if self._last_shared_layer is not None:
            return self._last_shared_layer
        last = None
        for module in self.encoder.modules():
            if any(True for _ in module.parameters(recurse=False)):
                last = module
        if last is None:
            raise ValueError("the encoder has no parameters")
        return last
