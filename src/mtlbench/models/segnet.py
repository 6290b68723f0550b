"""SegNet "split" (Badrinarayanan et al. 2017) as MTAN's code builds it (Liu et al. 2019, lorenmt/mtan
``im2im_pred/model_segnet_split.py``, type ``standard``; the same class in AvivNavon/nash-mtl and
Cranial-XIX/CAGrad ``experiments/nyuv2/models.py``).

Shared encoder-decoder, filters f = (w, 2w, 4w, 8w, 8w) (w = 64 in the reference):

- encoder stage i (i = 0..4): ``encoder_block[i]`` (3x3 conv-BN-ReLU f_{i-1} -> f_i, f_{-1} = 3) then
  ``conv_block_enc[i]`` (one 3x3 conv-BN-ReLU for i <= 1, two for i >= 2), then 2x2 max pooling that
  keeps its indices;
- decoder stage j (j = 0..4, deepest first): max unpooling with the indices of encoder stage 4 - j,
  ``decoder_block[4 - j]`` (f_{4-j} -> f_{3-j}, the last one f_0 -> f_0), ``conv_block_dec[4 - j]``.

Every convolution has a bias (followed by batch norm, as the reference). The shared representation z
is the last decoder output (B, w, H, W); one head per task: 3x3 conv (w -> w, bias) then 1x1 conv to
the task's channels, no normalisation or activation between them (MTAN's ``pred_task``). Outputs are
raw (the reference's log-softmax + NLL is cross-entropy on logits); surface normals ("N") are divided
by their L2 norm over the channels (floored at 1e-12), as MTAN's network does. Initialisation: Xavier-normal convolution
weights, zero biases, batch norm weight 1 and bias 0 (the reference's loop over modules).
The trunk's parameter and buffer names follow the reference (``encoder_block.0.0.weight``, ...).
The input height and width must be multiples of 32 (five poolings).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn
from torch.nn import functional as F

from mtlbench.errors import UserInputError
from mtlbench.models.base import MultiTaskModel

#: tasks whose output is a unit vector field (MTAN normalises it inside the network)
UNIT_VECTOR_TASKS = ("N",)


def filters(width: int) -> tuple[int, int, int, int, int]:
    """The five filter counts of MTAN's standard SegNet scaled to base width ``width`` (64 = the reference)."""
    if width < 1:
        raise UserInputError(f"SegNet width {width} must be a positive number of channels")
    return (width, 2 * width, 4 * width, 8 * width, 8 * width)


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution (with bias) - batch norm - ReLU (MTAN's ``conv_layer``)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def initialise(module: nn.Module) -> None:
    """MTAN's initialisation: Xavier-normal conv weights, zero biases; batch norm weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class SegNetTrunk(nn.Module):
    """The shared SegNet encoder-decoder; :meth:`stages` also returns the intermediate maps MTAN reads."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        f = filters(width)
        self.filters = f
        self.out_channels = f[0]
        self.encoder_block = nn.ModuleList([conv_block(3, f[0])] + [conv_block(f[i], f[i + 1]) for i in range(4)])
        self.decoder_block = nn.ModuleList([conv_block(f[0], f[0])] + [conv_block(f[i + 1], f[i]) for i in range(4)])
        enc: list[nn.Module] = [conv_block(f[0], f[0]), conv_block(f[1], f[1])]
        dec: list[nn.Module] = [conv_block(f[0], f[0]), conv_block(f[0], f[0])]
        for i in range(1, 4):
            enc.append(nn.Sequential(conv_block(f[i + 1], f[i + 1]), conv_block(f[i + 1], f[i + 1])))
            dec.append(nn.Sequential(conv_block(f[i], f[i]), conv_block(f[i], f[i])))
        self.conv_block_enc = nn.ModuleList(enc)
        self.conv_block_dec = nn.ModuleList(dec)
        self.down_sampling = nn.MaxPool2d(kernel_size=2, stride=2, return_indices=True)
        self.up_sampling = nn.MaxUnpool2d(kernel_size=2, stride=2)

    def stages(self, x: Tensor) -> dict[str, list[Tensor]]:
        """``encoder_in[i]``/``encoder_out[i]`` (MTAN's g_encoder[i][0]/[1]), ``unpooled[j]`` and
        ``decoder_out[j]`` (g_upsampl[j], g_decoder[j][1]; j = 0 is the deepest decoder stage)."""
        encoder_in, encoder_out, indices = [], [], []
        h = x
        for i in range(5):
            a = self.encoder_block[i](h)
            b = self.conv_block_enc[i](a)
            h, index = self.down_sampling(b)
            encoder_in.append(a)
            encoder_out.append(b)
            indices.append(index)
        unpooled, decoder_out = [], []
        for j in range(5):
            u = self.up_sampling(h, indices[4 - j])
            h = self.conv_block_dec[4 - j](self.decoder_block[4 - j](u))
            unpooled.append(u)
            decoder_out.append(h)
        return {"encoder_in": encoder_in, "encoder_out": encoder_out, "unpooled": unpooled, "decoder_out": decoder_out}

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(x)["decoder_out"][-1]


class SegNetHead(nn.Module):
    """MTAN's ``pred_task``: 3x3 conv (c -> c) then 1x1 conv (c -> outputs); unit vectors if ``normalise``."""

    def __init__(self, in_channels: int, out_channels: int, *, normalise: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.classifier = nn.Conv2d(in_channels, out_channels, 1)
        self.normalise = normalise

    def forward(self, features: Tensor) -> Tensor:
        out = self.classifier(self.conv(features))
        if self.normalise:
            out = F.normalize(out, dim=1)  # MTAN divides by the norm; the 1e-12 floor keeps 0 from NaN
        return out


def make_heads(outputs: Mapping[str, int], channels: int) -> dict[str, SegNetHead]:
    return {name: SegNetHead(channels, n, normalise=name in UNIT_VECTOR_TASKS) for name, n in outputs.items()}


def segnet(outputs: Mapping[str, int], *, width: int = 64) -> MultiTaskModel:
    """SegNet split: the shared trunk, z = its last decoder map (B, width, H, W), one ``pred`` head per task."""
    trunk = SegNetTrunk(width)
    model = MultiTaskModel(
        trunk,
        make_heads(outputs, trunk.out_channels),
        last_shared_layer=trunk.conv_block_dec[0],
        representation_size=trunk.out_channels,
    )
    model.architecture = "segnet"
    initialise(model)
    return model
