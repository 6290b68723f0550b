"""SAM's image encoder, ViT-B/16 with windowed attention (Kirillov et al. 2023), with timm's names (002 Table IV).

timm ``vision_transformer_sam.py`` (``samvit_base_patch16``, the ``sam_vit_b_01ec64.pth`` weights): patch
embedding 16x16 to 768 channels kept as an (H, W) grid, an absolute position embedding (1, H/16, W/16, 768),
12 pre-norm blocks with 12 heads of which blocks 2, 5, 8 and 11 attend globally and the others inside
14x14 windows (the grid zero-padded to a multiple of 14), decomposed relative position biases on every
block (``rel_pos_h``/``rel_pos_w`` of length 2 * size - 1, size the window or the grid, added to the
attention logits as q . R with the unscaled query), then the neck: 1x1 conv to 256, LayerNorm2d, 3x3 conv,
LayerNorm2d. The dense feature is the neck's (B, 256, H/16, W/16).

The tables and ``pos_embed`` are built for the run's grid; a checkpoint's (1024 px: grid 64, global tables
127 long) are resampled on load by :mod:`mtlbench.models.checkpoints` (``rel_pos`` linearly, as timm's
``get_rel_pos`` does when the table and the grid differ; ``pos_embed`` bicubic, antialiased).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtlbench.errors import UserInputError
from mtlbench.models.vit import Mlp, PatchEmbed, scaled

PATCH = 16
DIM, DEPTH, HEADS, WINDOW, NECK = 768, 12, 12, 14, 256
GLOBAL_BLOCKS = (2, 5, 8, 11)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def rel_pos_bias(q: Tensor, rel_pos_h: Tensor, rel_pos_w: Tensor, size: tuple[int, int]) -> Tensor:
    """(B*heads, h*w, h*w) bias of SAM's decomposed relative positions for queries ``q`` on an (h, w) grid.

    Table row (i - j) + (n - 1) holds the embedding of offset i - j along an axis of length n.
    """
    h, w = size
    if rel_pos_h.shape[0] != 2 * h - 1 or rel_pos_w.shape[0] != 2 * w - 1:  # another grid: timm's get_rel_pos
        from mtlbench.models.checkpoints import resize_rel_pos

        rel_pos_h, rel_pos_w = resize_rel_pos(rel_pos_h, 2 * h - 1), resize_rel_pos(rel_pos_w, 2 * w - 1)
    index_h = torch.arange(h, device=q.device)[:, None] - torch.arange(h, device=q.device)[None, :] + (h - 1)
    index_w = torch.arange(w, device=q.device)[:, None] - torch.arange(w, device=q.device)[None, :] + (w - 1)
    r_h, r_w = rel_pos_h[index_h], rel_pos_w[index_w]  # (h, h, C), (w, w, C)
    b = q.shape[0]
    r_q = q.reshape(b, h, w, -1)
    along_h = torch.einsum("bhwc,hkc->bhwk", r_q, r_h)
    along_w = torch.einsum("bhwc,wkc->bhwk", r_q, r_w)
    return (along_h[:, :, :, :, None] + along_w[:, :, :, None, :]).reshape(b, h * w, h * w)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        head_dim = dim // heads
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * size[0] - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * size[1] - 1, head_dim))

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, d = x.shape
        n = h * w
        qkv = self.qkv(x.reshape(b, n, d)).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, b * self.heads, n, -1).unbind(0)
        bias = rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, (h, w))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = out.view(b, self.heads, n, -1).transpose(1, 2).reshape(b, n, d)
        return self.proj(out).view(b, h, w, d)


def window_partition(x: Tensor, window: int) -> tuple[Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * windows, window, window, C), zero-padding H and W to multiples of ``window``."""
    b, h, w, c = x.shape
    pad_h, pad_w = (-h) % window, (-w) % window
    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window, window, c), (hp, wp)


def window_unpartition(windows: Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]) -> Tensor:
    hp, wp = padded
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, hp, wp, -1)[:, : size[0], : size[1]].contiguous()


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, grid: tuple[int, int], window: int) -> None:
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, (window, window) if window else grid)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[1], x.shape[2]
        y = self.norm1(x)
        if self.window:
            windows, padded = window_partition(y, self.window)
            y = window_unpartition(self.attn(windows), self.window, padded, (h, w))
        else:
            y = self.attn(y)
        x = x + y
        return x + self.mlp(self.norm2(x))


class SamViT(nn.Module):
    """SAM ViT-B/16 encoder for input ``size`` = (H, W) (multiples of 16); ``width``/``depth`` shrink it."""

    def __init__(self, size: tuple[int, int], *, width: int = 64, depth: int = 0) -> None:
        super().__init__()
        if size[0] % PATCH or size[1] % PATCH:
            raise UserInputError(
                f"encoder samvit_b16 needs a resolution whose width and height are multiples of {PATCH}; "
                f"got {size[1]}x{size[0]}"
            )
        dim, heads = scaled(DIM, HEADS, width)
        neck = NECK if width == 64 else max(1, round(NECK * width / 64))
        self.grid = (size[0] // PATCH, size[1] // PATCH)
        self.out_channels = neck
        self.stride = PATCH
        self.patch_embed = PatchEmbed(PATCH, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, *self.grid, dim))
        blocks = depth or DEPTH
        self.blocks = nn.Sequential(
            *(Block(dim, heads, self.grid, 0 if i in GLOBAL_BLOCKS else WINDOW) for i in range(blocks))
        )
        self.neck = nn.Sequential(
            nn.Conv2d(dim, neck, 1, bias=False),
            LayerNorm2d(neck, eps=1e-6),
            nn.Conv2d(neck, neck, 3, padding=1, bias=False),
            LayerNorm2d(neck, eps=1e-6),
        )
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.patch_embed(x).permute(0, 2, 3, 1)  # (B, H, W, D)
        pos_embed = self.pos_embed
        if tuple(x.shape[1:3]) != self.grid:  # another input size: resampled as timm's forward does
            from mtlbench.models.checkpoints import resample_pos_embed_nhwc

            pos_embed = resample_pos_embed_nhwc(pos_embed, (x.shape[1], x.shape[2]))
        x = x + pos_embed
        x = self.blocks(x)
        return self.neck(x.permute(0, 3, 1, 2))
