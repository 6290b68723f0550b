"""SegNet-MTAN (Liu et al. 2019, "End-to-End Multi-Task Learning with Attention"), as MTAN's code
(lorenmt/mtan ``im2im_pred/model_segnet_mtan.py``; the same network in AvivNavon/nash-mtl and
Cranial-XIX/CAGrad ``experiments/nyuv2/models.py`` as ``SegNetMtan``, FAMO's default model).

The shared SegNet trunk of :mod:`mtlbench.models.segnet` plus, per task, one soft-attention path that
reads the trunk at every stage (filters f = (w, 2w, 4w, 8w, 8w)):

- attention module (``att_layer``): 1x1 conv-BN-ReLU, 1x1 conv-BN-sigmoid, giving a mask in (0, 1);
- encoder stage j: mask_j = att_enc[t][j](encoder_in[j]) for j = 0, else of cat(encoder_in[j], a_{j-1});
  a_j = maxpool2(``encoder_block_att[j]``(mask_j * encoder_out[j]));
- decoder stage j (deepest first): u = ``decoder_block_att[4-j]``(bilinear x2 upsampling of the previous
  attended map, align_corners=True); mask = att_dec[t][4-j](cat(unpooled[j], u));
  attended = mask * decoder_out[j].

The attention modules are per task; ``encoder_block_att``/``decoder_block_att`` (3x3 conv-BN-ReLU) are
shared by the tasks' paths, as in the reference. Head t (MTAN's ``pred_task``) reads task t's last
attended map. Parameters are split as nash-mtl, CAGrad and FAMO split them: everything but the heads is
shared (the attention modules included), so parameter-level methods combine gradients over all of it.

There is no shared representation: each head reads its own task's features, and the model declares
``representation = "none"``, so representation-level methods and RotoGrad refuse it with a one-line
error. ``encode`` returns an empty tensor carrying the per-task features as ``.per_task`` (a list):
stacking them into one tensor would make each task's backward run through every task's attention
path (with zero gradients), T times the attention's backward cost. (LibMTL's ``rep_grad`` on its MTAN stacks each
task's gradient w.r.t. its own attended features as if they lived in one space; mtlbench does not.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtlbench.errors import UserInputError
from mtlbench.models.base import MultiTaskModel
from mtlbench.models.segnet import SegNetTrunk, conv_block, initialise, make_heads


def attention_layer(in_channels: int, mid_channels: int, out_channels: int) -> nn.Sequential:
    """MTAN's ``att_layer``: 1x1 conv-BN-ReLU then 1x1 conv-BN-sigmoid."""
    return nn.Sequential(
        nn.Conv2d(in_channels, mid_channels, 1),
        nn.BatchNorm2d(mid_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(mid_channels, out_channels, 1),
        nn.BatchNorm2d(out_channels),
        nn.Sigmoid(),
    )


class SegNetMTANEncoder(nn.Module):
    """Shared trunk, per-task attention paths and the shared attention blocks; returns (B, T, w, H, W)."""

    def __init__(self, tasks: Sequence[str], width: int = 64) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.trunk = SegNetTrunk(width)
        f = self.trunk.filters
        self.out_channels = f[0]

        def encoder_attention() -> nn.ModuleList:
            first = attention_layer(f[0], f[0], f[0])
            return nn.ModuleList([first] + [attention_layer(2 * f[i + 1], f[i + 1], f[i + 1]) for i in range(4)])

        def decoder_attention() -> nn.ModuleList:
            first = attention_layer(2 * f[0], f[0], f[0])
            return nn.ModuleList([first] + [attention_layer(f[i + 1] + f[i], f[i], f[i]) for i in range(4)])

        self.encoder_att = nn.ModuleDict({task: encoder_attention() for task in self.tasks})
        self.decoder_att = nn.ModuleDict({task: decoder_attention() for task in self.tasks})
        self.encoder_block_att = nn.ModuleList(
            [conv_block(f[0], f[1])] + [conv_block(f[i + 1], f[min(i + 2, 4)]) for i in range(4)]
        )
        self.decoder_block_att = nn.ModuleList(
            [conv_block(f[0], f[0])] + [conv_block(f[i + 1], f[i] if i < 3 else f[4]) for i in range(4)]
        )

    def attend(self, x: Tensor) -> tuple[dict[str, Tensor], dict[str, list[Tensor]]]:
        """Each task's last attended map and its ten attention masks (five encoder, five decoder)."""
        s = self.trunk.stages(x)
        features: dict[str, Tensor] = {}
        masks: dict[str, list[Tensor]] = {}
        for task in self.tasks:
            own: list[Tensor] = []
            previous: Tensor | None = None
            for j in range(5):
                source = s["encoder_in"][j] if previous is None else torch.cat((s["encoder_in"][j], previous), 1)
                mask = self.encoder_att[task][j](source)
                own.append(mask)
                previous = F.max_pool2d(self.encoder_block_att[j](mask * s["encoder_out"][j]), kernel_size=2, stride=2)
            for j in range(5):
                up = F.interpolate(previous, scale_factor=2, mode="bilinear", align_corners=True)
                up = self.decoder_block_att[4 - j](up)
                mask = self.decoder_att[task][4 - j](torch.cat((s["unpooled"][j], up), 1))
                own.append(mask)
                previous = mask * s["decoder_out"][j]
            features[task] = previous
            masks[task] = own
        return features, masks

    def forward(self, x: Tensor) -> list[Tensor]:
        features, _ = self.attend(x)
        return [features[task] for task in self.tasks]


class PerTaskFeaturesModel(MultiTaskModel):
    """A model whose encoder returns one feature map per task; head t reads map t.

    ``encode`` returns an empty tensor (outside the graph) with the maps as ``.per_task``, so that the
    trainer's protocol (``decode(encode(x))``, ``features=`` for methods) holds without a shared z.
    """

    representation = "none"

    def encode(self, inputs: Tensor) -> Tensor:
        per_task = self.encoder(inputs)
        token = per_task[0].new_zeros(0)
        token.per_task = per_task  # type: ignore[attr-defined]
        return token

    def decode(self, features: Tensor) -> dict[str, Tensor]:
        per_task = getattr(features, "per_task", None)
        if per_task is None:
            raise UserInputError(f"model {self.architecture}: decode takes what encode returned (per-task features)")
        return {name: head(per_task[i]) for i, (name, head) in enumerate(self.heads.items())}


def segnet_mtan(outputs: Mapping[str, int], *, width: int = 64) -> PerTaskFeaturesModel:
    """SegNet-MTAN for the tasks (name -> output channels) of ``outputs``."""
    encoder = SegNetMTANEncoder(list(outputs), width)
    model = PerTaskFeaturesModel(
        encoder,
        make_heads(outputs, encoder.out_channels),
        last_shared_layer=encoder.decoder_block_att[0],
        representation_size=None,
    )
    model.architecture = "segnet_mtan"
    initialise(model)
    return model
