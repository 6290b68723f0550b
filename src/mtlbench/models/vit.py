"""Plain Vision Transformer encoders (Dosovitskiy et al. 2021) with timm's parameter names (002's ViT setups).

One module covers 002's plain ViTs (002 section IV-B, Table VIII; timm ``vision_transformer.py``):

- ``vit_t16`` ViT-T/16 (192 wide, 12 blocks, 3 heads; 002 Fig. 4's base of InvPT),
- ``vit_b16`` ViT-B/16 (768, 12, 12; AugReg ImageNet-1k/21k and DINO weights),
- ``vit_b16_clip`` ViT-B/16 with a LayerNorm before the blocks (``norm_pre``) and no patch bias (CLIP),
- ``vit_b14_reg4`` ViT-B/14 with 4 register tokens, LayerScale (``ls1``/``ls2``) and position embeddings for
  the patches only (DINOv2 with registers, timm ``no_embed_class``).

The token sequence is [class token, register tokens, patches]; pre-norm blocks (LayerNorm, multi-head
self-attention, LayerScale, residual; LayerNorm, GELU MLP x4, LayerScale, residual); a final LayerNorm.
The dense feature is the final-normalised patch tokens reshaped to (B, D, H/p, W/p) (prefix tokens dropped).

``pos_embed`` is built for the run's resolution; :func:`mtlbench.models.checkpoints.resample_pos_embed`
resamples a checkpoint's grid to it on load (timm ``resample_abs_pos_embed``: bicubic, antialiased).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtlbench.errors import UserInputError


@dataclass(frozen=True)
class ViTConfig:
    patch: int
    dim: int
    depth: int
    heads: int
    reg_tokens: int = 0
    no_embed_class: bool = False
    pre_norm: bool = False
    init_values: float | None = None
    eps: float = 1e-6


#: encoder name -> the real network's configuration (timm's model_args)
CONFIGS = {
    "vit_t16": ViTConfig(patch=16, dim=192, depth=12, heads=3),
    "vit_b16": ViTConfig(patch=16, dim=768, depth=12, heads=12),
    "vit_b16_clip": ViTConfig(patch=16, dim=768, depth=12, heads=12, pre_norm=True, eps=1e-5),
    "vit_b14_reg4": ViTConfig(
        patch=14, dim=768, depth=12, heads=12, reg_tokens=4, no_embed_class=True, init_values=1e-5
    ),
}


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int, *, bias: bool = True) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (timm ``Block``)."""

    def __init__(self, dim: int, heads: int, *, init_values: float | None = None, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, 4 * dim)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


def scaled(dim: int, heads: int, width: int) -> tuple[int, int]:
    """(dim, heads) of a network ``width`` / 64 as wide as the real one (heads kept while the head size is >= 1)."""
    if width == 64:
        return dim, heads
    new_dim = max(heads, round(dim * width / 64 / heads) * heads)
    return new_dim, heads


class VisionTransformer(nn.Module):
    """A ViT encoder for input ``size`` = (H, W), both multiples of the patch size."""

    def __init__(self, name: str, size: tuple[int, int], *, width: int = 64, depth: int = 0) -> None:
        super().__init__()
        if name not in CONFIGS:
            raise UserInputError(f"unknown ViT encoder {name!r}; choose one of: {', '.join(CONFIGS)}")
        config = CONFIGS[name]
        p = config.patch
        if size[0] % p or size[1] % p:
            raise UserInputError(
                f"encoder {name} needs a resolution whose width and height are multiples of its patch size {p}; "
                f"got {size[1]}x{size[0]}"
            )
        dim, heads = scaled(config.dim, config.heads, width)
        self.name = name
        self.config = config
        self.grid = (size[0] // p, size[1] // p)
        self.num_prefix_tokens = 1 + config.reg_tokens
        self.out_channels = dim
        self.stride = p
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.reg_token = nn.Parameter(torch.zeros(1, config.reg_tokens, dim)) if config.reg_tokens else None
        tokens = self.grid[0] * self.grid[1] + (0 if config.no_embed_class else 1)
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.patch_embed = PatchEmbed(p, dim, bias=not config.pre_norm)
        self.norm_pre = nn.LayerNorm(dim, eps=config.eps) if config.pre_norm else nn.Identity()
        blocks = depth or config.depth
        self.blocks = nn.Sequential(
            *(Block(dim, heads, init_values=config.init_values, eps=config.eps) for _ in range(blocks))
        )
        self.norm = nn.LayerNorm(dim, eps=config.eps)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.reg_token is not None:
            nn.init.normal_(self.reg_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        b = x.shape[0]
        x = self.patch_embed(x)
        grid = (x.shape[-2], x.shape[-1])
        x = x.flatten(2).transpose(1, 2)  # (B, N, D)
        pos_embed = self.pos_embed
        if grid != self.grid:  # another input size (a padded test batch): resampled as timm's dynamic_img_size
            from mtlbench.models.checkpoints import resample_pos_embed

            prefix = 0 if self.config.no_embed_class else 1
            pos_embed = resample_pos_embed(pos_embed, grid, num_prefix_tokens=prefix, old_grid=self.grid)
        prefix = [self.cls_token.expand(b, -1, -1)]
        if self.reg_token is not None:
            prefix.append(self.reg_token.expand(b, -1, -1))
        if self.config.no_embed_class:
            x = torch.cat([*prefix, x + pos_embed], 1)
        else:
            x = torch.cat([*prefix, x], 1) + pos_embed
        x = self.norm(self.blocks(self.norm_pre(x)))
        patches = x[:, self.num_prefix_tokens :]
        return patches.transpose(1, 2).reshape(b, -1, *grid)
