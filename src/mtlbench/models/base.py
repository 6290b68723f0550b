"""The hard-parameter-sharing model every problem builds: a shared encoder and one head per task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from mtlbench.errors import UserInputError

REPRESENTATIONS = ("single", "packed", "none")


class MultiTaskModel(nn.Module):
    """``encoder`` -> shared representation z -> (optional per-task adapter) -> ``heads[task]``.

    - ``encode`` returns the shared representation, on which representation-level methods act.
    - ``adapters`` is the seam between encoder and heads: a model-changing method (RotoGrad) puts one
      module per task there, so head ``t`` sees ``adapters[t](z)``. Adapters are not task parameters:
      the method that installs them owns and updates them.
    - ``last_shared_layer`` is the module whose parameters AvgNorm and GradNorm measure gradients on
      (by default the last module of the encoder that has parameters).
    - ``representation`` says what z is (:data:`REPRESENTATIONS`): ``single`` (one shared layer, as
      here), ``packed`` (several shared layers the heads read, packed exactly into one tensor:
      representation-level methods are exact on it, rotations of it mean nothing) or ``none`` (the
      heads read task-specific features, e.g. MTAN's attention: no shared z). :func:`check_method`
      turns a method that needs more than the model has into a one-line error.
    """

    #: architecture name used in error messages (the dense problems' ``model`` option)
    architecture: str = "model"
    representation: str = "single"

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


def check_method(model: MultiTaskModel, method: Any) -> None:
    """Raise a one-line error if ``method`` needs a shared representation the model does not have.

    Representation-level methods (``space=representation``) need a shared z (``single`` or ``packed``);
    methods that install per-task adapters on z (RotoGrad's rotations of its channels) need ``single``.
    """
    kind = getattr(model, "representation", "single")
    name = getattr(model, "architecture", type(model).__name__)
    method_name = getattr(method, "name", type(method).__name__)
    space = getattr(method, "hparams", {}).get("space")
    if space == "representation" and kind == "none":
        raise UserInputError(
            f"model {name} has no shared representation (each head reads its own task's attended features); "
            f"method {method_name} needs one: use space=parameters or another model"
        )
    from mtlbench.methods.base import LossWeightingMethod, Method

    measures_shared = "layer" in getattr(method, "hparams", {})  # GradNorm, AvgNorm: shared-gradient norms
    if not model.shared_parameters() and (not isinstance(method, LossWeightingMethod) or measures_shared):
        raise UserInputError(
            f"model {name} has a frozen encoder (no shared parameters to train); method {method_name} acts on "
            "shared gradients or features: use a loss-weighting method (unit_scal, uw, dwa, ...) or "
            "freeze_encoder=false"
        )
    installs_adapters = type(method).wrap_model is not Method.wrap_model
    if installs_adapters and kind != "single":
        what = "no shared representation" if kind == "none" else "a representation packed from several layers"
        raise UserInputError(
            f"model {name} has {what}; method {method_name} transforms a single shared feature map: use another model"
        )
