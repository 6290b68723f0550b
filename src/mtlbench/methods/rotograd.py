"""RotoGrad: per-task rotations of the shared representation and gradient-magnitude homogenisation.

Javaloy & Valera (2022), *RotoGrad: Gradient Homogenization in Multitask Learning*, ICLR; reference
code ``adrianjav/rotograd`` (class ``RotoGrad``, rotations by ``geotorch.orthogonal``); Gama & Grassi
(000, ``train_rotograd.py``, Appendix A.3) ran rotograd 0.1.6 (their Dockerfile's unpinned
``pip install rotograd``: the PyPI release current since 2023-08).

Model. The encoder gives z (shape (B, C, ...)); head k sees z_k = R_k z, where R_k in SO(m) acts on
the first m = ``rotation_size`` channels of dimension 1 (the rest pass unchanged; for images this
rotates the channels at every position, the reference's ``post_shape``). R_k enters the forward pass
as a constant, so the task losses never train it. Parametrisation (geotorch's ``expm``
trivialisation): R_k = B_k expm(S_k), S_k = L_k - L_k^T with L_k the strictly lower triangle of an
unconstrained m x m parameter that starts at 0, and B_k a fixed base drawn from the Haar measure on
SO(m) (geotorch samples its initial value); ``initial_rotation=identity`` sets B_k = I.

Per step, with g_k = dL_k/dz (the task gradient the encoder sees) and r_k = dL_k/dz_k = R_k g_k
(norms ||.|| are Frobenius norms over the whole batch tensor, as in the paper and the reference):

- direction target: v = mean_k g_k ||g_bar|| / ||g_k||, g_bar = mean_k g_k (the mean of the unit
  gradients U_k = g_k / ||g_k||, rescaled by ||g_bar|| as the reference does);
- rotation loss: L_rot = sum_k L_rot,k, L_rot,k = mean_b ||R_k v_b - r_k,b||^2 (sum over channels and
  positions, mean over the batch), with v and r_k constants; since R_k is orthogonal this equals
  const - 2 mean_b <v_b, R_k^T r_k,b>, the paper's -sum_n <R_k^T r_n,k, v_n> up to scale. It is
  minimised over R_k alone by the rotations' own Adam (lr = main lr x ``lr_scale``, following the
  main optimizer's schedule, at least ``rotation_lr_floor``; no weight decay, as 000's code, whose
  single Adam is built without weight decay), stepped inside :meth:`backward`. ``rotation_loss=sum``
  sums over the batch instead (rotograd 0.1.6 on 2-D features: B times the mean);
- magnitude: n_k = ||g_k||, n_k^0 its value at the first step and again at step ``burn_in_period``,
  alpha_k = (n_k / n_k^0) / sum_j (n_j / n_j^0), C = sum_k alpha_k n_k; the encoder receives
  sum_k C g_k / n_k (every task with norm C, the least converged task setting the scale).

Heads get their own plain gradients dL_k/dtheta_k (the reference backpropagates each loss to its
head; with ``normalize_losses`` both use L_k / L_k^0). The step reports ``weights`` c_k = C / n_k,
the effective coefficients of the encoder's direction sum_k c_k g_k (they do not sum to T), and
``info["rotation_loss"]`` = L_rot before the rotation step (000 Fig. 9).

Cost. With m = 256 and T = 11 nearly all of a step went into the T matrix exponentials and, above
all, their backward passes (PyTorch differentiates ``matrix_exp`` through the exponential of a 2m x 2m
block matrix). For a skew-symmetric S the exponential and its exact adjoint Frechet derivative have a
closed form on the eigendecomposition of the Hermitian iS = U diag(theta) U^H:
expm(S) = U diag(e^{-i theta}) U^H and, for the gradient G of R, dL/dS = U ((U^H G U) o Phi) U^H with
Phi_jk = e^{i (theta_j + theta_k)/2} sinc((theta_j - theta_k)/2) (:class:`SkewExpm`): the same
mathematics, one eigendecomposition per rotation and step instead of the block exponential (about
3x faster at m = 256, and more accurate in float32), and the decomposition made for the forward
pass's constant R is reused by the rotation loss's backward (one decomposition per rotation and step).

Best settings in 000's code: ``lr_scale`` 0.1 (Multi-MNIST, QM9), 1.0 (Cityscapes); rotation size 50
(Multi-MNIST, the whole LeNet feature), 512 (Cityscapes, capped), 64 (QM9, the whole feature).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from mtlbench.errors import UserInputError
from mtlbench.methods import register_method
from mtlbench.methods.base import HeadGradient, Method, MethodKind, StepResult, TrainingContext
from mtlbench.methods.gradients import accumulate_grad, per_task_gradients
from mtlbench.methods.hyperparameters import Hyperparameter
from mtlbench.models.base import MultiTaskModel

NORM_FLOOR = 1e-15
LR_SCALE_GRID = (5.0, 1.0, 0.5, 0.1)


def rotate(features: Tensor, rotation: Tensor) -> Tensor:
    """Apply ``rotation`` (m x m) to the first m channels (dimension 1) of ``features``: z -> R z."""
    size = rotation.shape[0]
    if features.ndim < 2 or features.shape[1] < size:
        raise UserInputError(
            f"rotograd: the representation of shape {tuple(features.shape)} has fewer than {size} channels "
            "(dimension 1) to rotate; lower rotation_size"
        )
    head = torch.movedim(torch.movedim(features[:, :size], 1, -1) @ rotation.transpose(0, 1), -1, 1)
    if size == features.shape[1]:
        return head
    return torch.cat([head, features[:, size:]], dim=1)


def haar_rotation(size: int, generator: torch.Generator | None = None) -> Tensor:
    """A rotation drawn from the Haar measure on SO(size) (QR of a Gaussian matrix, signs fixed)."""
    gaussian = torch.randn(size, size, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    if torch.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.to(torch.get_default_dtype())


def skew_decomposition(skew: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(U, theta, expm(S))`` for a real skew-symmetric ``S``: ``iS = U diag(theta) U^H`` (Hermitian)."""
    complex_dtype = torch.complex128 if skew.dtype == torch.float64 else torch.complex64
    theta, U = torch.linalg.eigh(1j * skew.detach().to(complex_dtype))
    return U, theta, ((U * torch.exp(-1j * theta).unsqueeze(-2)) @ U.mH).real.to(skew.dtype)


class SkewExpm(torch.autograd.Function):
    """``expm(S)`` of a real skew-symmetric ``S`` from the eigendecomposition of ``iS``, with its exact gradient.

    ``iS = U diag(theta) U^H`` (Hermitian), ``expm(S) = U diag(e^{-i theta}) U^H``. The adjoint of the
    Frechet derivative at ``S`` is the derivative at ``S^T = -S`` (eigenvalues ``i theta``, same ``U``):
    ``U ((U^H G U) o Phi) U^H``, ``Phi_jk = (e^{i theta_j} - e^{i theta_k}) / (i theta_j - i theta_k)
    = e^{i (theta_j + theta_k)/2} sinc((theta_j - theta_k)/2)``, continuous at equal eigenvalues.
    ``apply(S)`` decomposes ``S``; ``apply(S, U, theta, E)`` reuses a decomposition of the same ``S``.
    """

    @staticmethod
    def forward(ctx: Any, skew: Tensor, *decomposition: Tensor) -> Tensor:
        U, theta, exponential = decomposition if decomposition else skew_decomposition(skew)
        ctx.save_for_backward(U, theta)
        return exponential.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        U, theta = ctx.saved_tensors
        # Phi = diag(h) sinc-matrix diag(h) with h = e^{i theta / 2}: fold diag(h) into U and U^H
        half = torch.exp(0.5j * theta)
        difference = theta.unsqueeze(-1) - theta.unsqueeze(-2)
        sinc = torch.sinc(difference / (2.0 * math.pi)).to(U.dtype)
        inner = (U.mH @ grad.to(U.dtype) @ U) * sinc
        result = ((U * half.unsqueeze(-2)) @ inner @ (half.unsqueeze(-1) * U.mH)).real.to(grad.dtype)
        return (result, *([None] * (len(ctx.needs_input_grad) - 1)))


class Rotation(nn.Module):
    """One task's adapter: z -> R z on the first ``size`` channels, R = base expm(L - L^T).

    ``weight`` is the unconstrained parameter (its strict lower triangle L is used); ``base`` is a
    fixed rotation (buffer). The forward pass uses R as a constant, cached with the eigendecomposition
    it comes from until ``weight`` or ``base`` change; :meth:`matrix` gives R with its graph for the
    rotation loss, reusing that decomposition (one eigendecomposition per rotation and step).
    """

    def __init__(self, size: int, base: Tensor | None = None) -> None:
        super().__init__()
        self.size = size
        self.weight = nn.Parameter(torch.zeros(size, size))
        self.register_buffer("base", torch.eye(size) if base is None else base.detach().clone())
        self._cache: tuple[tuple[Any, ...], tuple[Tensor, Tensor, Tensor], Tensor] | None = None

    def _skew(self) -> Tensor:
        lower = torch.tril(self.weight, diagonal=-1)
        return lower - lower.transpose(0, 1)

    def _decomposition(self) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor]:
        key = (
            self.weight._version,
            self.base._version,
            self.weight.data_ptr(),
            self.base.data_ptr(),
            torch.is_inference_mode_enabled(),
        )
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                decomposition = skew_decomposition(self._skew())
                self._cache = (key, decomposition, self.base @ decomposition[2])
        return self._cache[1], self._cache[2]

    def matrix(self) -> Tensor:
        """R = base expm(L - L^T), differentiable in ``weight`` (:class:`SkewExpm`)."""
        decomposition, constant = self._decomposition()
        if not torch.is_grad_enabled() or not self.weight.requires_grad:
            return constant.clone()
        return self.base @ SkewExpm.apply(self._skew(), *decomposition)

    def constant_matrix(self) -> Tensor:
        return self._decomposition()[1]

    def forward(self, features: Tensor) -> Tensor:
        return rotate(features, self.constant_matrix().to(features.dtype))

    def extra_repr(self) -> str:
        return f"size={self.size}"


@register_method
class RotoGrad(Method):
    """Rotations R_k aligning task gradients + scaling to a common norm C (Javaloy & Valera 2022)."""

    name = "rotograd"
    title = "RotoGrad"
    citation = "Javaloy & Valera, RotoGrad: Gradient Homogenization in Multitask Learning, ICLR 2022"
    kind = MethodKind.MODEL
    head_gradient = HeadGradient.OWN
    hyperparameters = (
        Hyperparameter(
            "lr_scale",
            0.1,
            "learning rate of the rotations = main lr x lr_scale (000's code default 0.1)",
            low=0.0,
            low_inclusive=False,
        ),
        Hyperparameter(
            "rotation_size",
            None,
            "number of leading representation channels rotated, capped at the representation size (default: all)",
            kind="int",
            low=1,
        ),
        Hyperparameter(
            "burn_in_period",
            20,
            "step at which the initial gradient norms (and losses) are measured again (reference: 20)",
            kind="int",
            low=0,
        ),
        Hyperparameter(
            "normalize_losses",
            False,
            "backpropagate L_k / L_k^0 instead of L_k (reference default: false)",
            kind="bool",
        ),
        Hyperparameter(
            "rotation_loss",
            "mean",
            "batch reduction of the rotation loss: mean over the batch, or sum (rotograd 0.1.6, which 000 ran, "
            "on 2-D (B, m) features; it averages over the batch on image features)",
            kind="str",
            choices=("mean", "sum"),
        ),
        Hyperparameter(
            "rotation_lr_floor",
            0.0,
            "lower bound of the rotations' lr (000 on QM9: 1e-5, the min_lr its plateau scheduler applies to the "
            "rotation parameter group on its own)",
            low=0.0,
        ),
        Hyperparameter(
            "initial_rotation",
            "random",
            "initial R_k: Haar-random (geotorch, as the reference ran) or the identity",
            kind="str",
            choices=("random", "identity"),
        ),
    )
    grids: ClassVar[Mapping[str, Mapping[str, Sequence[Any]]]] = {
        "multi_mnist": {"lr_scale": LR_SCALE_GRID, "rotation_size": (50,)},
        "cityscapes": {"lr_scale": LR_SCALE_GRID, "rotation_size": (512,)},
        "qm9": {"lr_scale": LR_SCALE_GRID, "rotation_size": (64,)},
        "default": {"lr_scale": LR_SCALE_GRID},
    }
    stateless = False
    needs_context = True

    def __init__(self, n_tasks: int, **kwargs: Any) -> None:
        super().__init__(n_tasks, **kwargs)
        self.adapters: nn.ModuleDict | None = None
        self.rotation_optimizer: torch.optim.Optimizer | None = None
        self.context: TrainingContext | None = None
        self._model: tuple[MultiTaskModel, ...] = ()
        self.step = 0
        self.initial_norms: Tensor | None = None
        self.initial_losses: Tensor | None = None

    # --- set-up --------------------------------------------------------------------------------
    def wrap_model(self, model: MultiTaskModel) -> MultiTaskModel:
        """Install one :class:`Rotation` per task in ``model.adapters`` (and their own Adam)."""
        if model.adapters is not None and model.adapters is self.adapters:
            return model  # already wrapped by this method
        if model.adapters is not None:
            raise UserInputError("rotograd: the model already has adapters (of another method); wrap it only once")
        if len(model.task_names) != self.n_tasks:
            raise UserInputError(
                f"rotograd: the model has {len(model.task_names)} heads; the method was made for {self.n_tasks} tasks"
            )
        requested, available = self.hparams["rotation_size"], model.representation_size
        if requested is None and available is None:
            raise UserInputError(
                "rotograd: rotation_size is needed, the model does not declare its representation_size"
            )
        size = min(s for s in (requested, available) if s is not None)
        identity = self.hparams["initial_rotation"] == "identity"
        adapters = nn.ModuleDict(
            {
                name: Rotation(size, None if identity else haar_rotation(size, self.generator))
                for name in model.task_names
            }
        )
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        model.adapters = adapters.to(device)
        self.adapters = model.adapters
        self.rotation_optimizer = torch.optim.Adam(self.adapters.parameters(), lr=0.0)
        self._model = (model,)
        return model

    def attach(self, context: TrainingContext) -> None:
        self.context = context

    @property
    def rotation_size(self) -> int:
        if self.adapters is None:
            raise UserInputError("rotograd: call wrap_model(model) before training")
        return next(iter(self.adapters.values())).size

    def rotations(self) -> list[Tensor]:
        """The current rotation matrices R_k (detached), in task order."""
        if self.adapters is None:
            raise UserInputError("rotograd: call wrap_model(model) before training")
        return [adapter.matrix().detach() for adapter in self.adapters.values()]

    def _rotation_lr(self) -> float:
        if self.context is None:
            raise UserInputError("rotograd needs the trainer's context (attach) for the main learning rate")
        scaled = float(self.context.optimizer.param_groups[0]["lr"]) * self.hparams["lr_scale"]
        return max(scaled, self.hparams["rotation_lr_floor"])

    # --- the step ------------------------------------------------------------------------------
    def backward(
        self,
        losses: Tensor,
        shared_parameters: Iterable[Tensor],
        *,
        features: Tensor | None = None,
        task_parameters: Sequence[Iterable[Tensor]] | None = None,
    ) -> StepResult:
        if self.adapters is None or self.rotation_optimizer is None:
            raise UserInputError("rotograd: call wrap_model(model) before training")
        if features is None:
            raise UserInputError("rotograd needs the shared representation (features=...)")
        rotation_lr = self._rotation_lr()
        if task_parameters is None:
            task_parameters = self._model[0].task_parameters() if self._model else [[] for _ in range(self.n_tasks)]
        heads = [list(params) for params in task_parameters]

        restart = self.step == 0 or self.step == self.hparams["burn_in_period"]
        if restart:
            self.initial_losses = losses.detach().clone()
        # per-task gradients of the stacked losses themselves (each backward then runs through its own head
        # only), divided by L_k^0 afterwards when normalising: the gradients of L_k / L_k^0
        rows, head_gradients = per_task_gradients(losses, [features], heads, retain_graph=True)
        if self.hparams["normalize_losses"]:
            inverse = (1.0 / self.initial_losses).to(rows.dtype)
            rows = rows * inverse.unsqueeze(1)
            head_gradients = [
                [None if g is None else g * inverse[k] for g in grads] for k, grads in enumerate(head_gradients or [])
            ]
        gradients = rows.view(self.n_tasks, *features.shape).to(features.dtype)

        norms = gradients.flatten(1).norm(dim=1).clamp_min(NORM_FLOOR)
        if restart or self.initial_norms is None:
            self.initial_norms = norms.detach().clone()
        self.step += 1

        # rotation loss and step: align R_k^T r_k (task k's gradient at z) with v
        mean_gradient = gradients.mean(dim=0)
        target = (gradients * (mean_gradient.norm() / norms).view(-1, *[1] * features.ndim)).mean(dim=0)
        rotation_losses = []
        for k, adapter in enumerate(self.adapters.values()):
            rotation = adapter.matrix().to(features.dtype)
            rotated_gradient = rotate(gradients[k], rotation.detach())  # r_k = R_k g_k
            difference = rotate(target, rotation) - rotated_gradient
            per_example = difference.pow(2).flatten(1).sum(dim=1)
            rotation_losses.append(per_example.sum() if self.hparams["rotation_loss"] == "sum" else per_example.mean())
        rotation_loss = torch.stack(rotation_losses).sum()
        parameters = list(self.adapters.parameters())
        for p, g in zip(parameters, torch.autograd.grad(rotation_loss, parameters), strict=True):
            p.grad = g
        for group in self.rotation_optimizer.param_groups:
            group["lr"] = rotation_lr
        self.rotation_optimizer.step()
        for p in parameters:
            p.grad = None  # a main optimizer holding the adapters skips them

        # magnitude: every task scaled to the norm C set by the least converged task
        ratios = norms / self.initial_norms
        alphas = ratios / ratios.sum().clamp_min(NORM_FLOOR)
        magnitude = (alphas * norms).sum()
        coefficients = magnitude / norms
        direction = (coefficients.view(-1, *[1] * features.ndim) * gradients).sum(dim=0)
        features.backward(direction.detach())
        for params, grads in zip(heads, head_gradients or [], strict=True):
            accumulate_grad(params, grads)
        return StepResult(
            coefficients.detach(),
            {"rotation_loss": float(rotation_loss.detach()), "magnitude": float(magnitude.detach())},
        )

    # --- checkpoints ---------------------------------------------------------------------------
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.adapters is None and state.get("modules", {}).get("adapters") is not None:
            raise UserInputError("rotograd: call wrap_model(model) before loading its state")
        super().load_state_dict(state)

    def extra_state(self) -> dict[str, Any]:
        return {"step": self.step, "initial_norms": self.initial_norms, "initial_losses": self.initial_losses}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        device = self.device if self.adapters is None else next(self.adapters.parameters()).device
        self.step = int(state.get("step", 0))
        norms, losses = state.get("initial_norms"), state.get("initial_losses")
        self.initial_norms = None if norms is None else norms.to(device)
        self.initial_losses = None if losses is None else losses.to(device)
