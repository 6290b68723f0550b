"""Encoder initialisation: checkpoint files, 002's named weight sources, resampling to the run's size, freezing.

- :func:`read_state_dict` reads a torchvision/timm ``.pth`` (or any ``torch.save``'d state dict, also one
  wrapped in ``{"state_dict": ...}``/``{"model": ...}`` or prefixed ``module.``), a ``.safetensors`` file, or
  SAM's original checkpoint (``image_encoder.*``, renamed as timm's ``checkpoint_filter_fn`` does).
- :func:`load_into` drops the classifier entries an encoder does not have (:data:`IGNORED`), resamples
  ``pos_embed`` (timm ``resample_abs_pos_embed``: bicubic, antialiased, prefix tokens kept) and SAM's
  ``rel_pos`` tables (linearly, as timm's ``get_rel_pos`` does for a table of another length) to the
  encoder's grid, and loads strictly: a missing or unexpected name or another shape is a one-line error.
- :data:`SOURCES` are the named weights of 002 (Table VIII; REFERENCE-DATA section 6) and the ImageNet
  weights of its ResNet/HRNet setups: ``timm:NAME`` downloads ``model.safetensors`` from the Hugging Face
  hub repository ``timm/NAME`` (``$HF_ENDPOINT`` as huggingface_hub reads it) into
  ``$MTLBENCH_DATA/weights`` once, with a short time-out; each source sets its encoder's normalisation.
- :func:`freeze` makes an encoder fixed (002's frozen setting): no gradients, batch norm in eval mode.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mtlbench.errors import UserInputError

#: normalisation -> (mean, std) of RGB in [0, 1] (timm's IMAGENET_DEFAULT, IMAGENET_INCEPTION, OPENAI_CLIP)
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]] | None] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "none": None,
}

#: state-dict prefixes of the public checkpoints that the encoders do not have (classifiers)
IGNORED: dict[str, tuple[str, ...]] = {
    "resnet": ("fc.",),
    "hrnet": ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier."),
    "vit": ("head.", "fc_norm.", "attn_pool."),
    "sam": ("head.",),
}


@dataclass(frozen=True)
class Source:
    """A named public checkpoint: the encoder it fits, the normalisation it was trained with, its origin."""

    encoder: str
    normalization: str
    origin: str


#: ``timm:NAME`` sources (timm ``pretrained_cfg`` of each tag: mean/std and where the weights came from)
SOURCES: dict[str, Source] = {
    "resnet18.tv_in1k": Source("resnet18", "imagenet", "torchvision resnet18 IMAGENET1K_V1"),
    "resnet50.tv_in1k": Source("resnet50", "imagenet", "torchvision resnet50 IMAGENET1K_V1"),
    "hrnet_w18.ms_aug_in1k": Source("hrnet_w18", "imagenet", "HRNet-Image-Classification W18 (timm's default tag)"),
    "hrnet_w18_small_v2.ms_in1k": Source(
        "hrnet_w18_small_v2", "imagenet", "HRNet-Image-Classification hrnet_w18_small_model_v2.pth (MTI-Net's)"
    ),
    "vit_tiny_patch16_384.augreg_in21k_ft_in1k": Source("vit_t16", "inception", "AugReg ViT-Ti/16 in21k->in1k, 384"),
    "vit_base_patch16_384.augreg_in1k": Source("vit_b16", "inception", "AugReg ViT-B/16 in1k, 384 (002: ViT IN-1k)"),
    "vit_base_patch16_224.augreg_in21k": Source("vit_b16", "inception", "AugReg ViT-B/16 in21k (002: IN-21k)"),
    "vit_base_patch16_384.augreg_in21k_ft_in1k": Source("vit_b16", "inception", "AugReg ViT-B/16 in21k->in1k, 384"),
    "vit_base_patch16_clip_384.laion2b_ft_in12k_in1k": Source(
        "vit_b16_clip", "clip", "CLIP ViT-B/16 (timm default tag)"
    ),
    "samvit_base_patch16.sa1b": Source("samvit_b16", "imagenet", "SAM ViT-B sam_vit_b_01ec64.pth, 1024"),
    "vit_base_patch16_224.dino": Source("vit_b16", "imagenet", "DINO dino_vitbase16_pretrain.pth"),
    "vit_base_patch14_reg4_dinov2.lvd142m": Source(
        "vit_b14_reg4", "imagenet", "DINOv2 dinov2_vitb14_reg4_pretrain.pth"
    ),
}
#: 002 Table VIII's untagged names -> timm's default tag
ALIASES = {
    "vit_base_patch16_clip_384": "vit_base_patch16_clip_384.laion2b_ft_in12k_in1k",
    "samvit_base_patch16": "samvit_base_patch16.sa1b",
    "vit_base_patch14_reg4_dinov2": "vit_base_patch14_reg4_dinov2.lvd142m",
    "resnet18": "resnet18.tv_in1k",
    "resnet50": "resnet50.tv_in1k",
    "hrnet_w18": "hrnet_w18.ms_aug_in1k",
    "hrnet_w18_small_v2": "hrnet_w18_small_v2.ms_in1k",  # MTI-Net's file (timm's default tag is gluon_in1k)
}
HUB_ENDPOINT = "https://huggingface.co"
DOWNLOAD_TIMEOUT = 10.0


# ------------------------------------------------------------------------------------------- resampling


def resample_pos_embed(
    posemb: Tensor, new_grid: tuple[int, int], *, num_prefix_tokens: int, old_grid: tuple[int, int] | None = None
) -> Tensor:
    """(1, prefix + h*w, D) -> (1, prefix + H*W, D): the grid part bicubically resampled (antialiased, as timm's
    ``resample_abs_pos_embed``), the prefix tokens' embeddings kept; ``old_grid`` defaults to a square."""
    grid_tokens = posemb.shape[1] - num_prefix_tokens
    if old_grid is None:
        side = round(grid_tokens**0.5)
        old_grid = (side, side)
    if old_grid[0] * old_grid[1] != grid_tokens:
        raise UserInputError(f"pos_embed of {grid_tokens} grid tokens is not the grid {old_grid[0]}x{old_grid[1]}")
    if tuple(old_grid) == tuple(new_grid):
        return posemb
    prefix, grid = posemb[:, :num_prefix_tokens], posemb[:, num_prefix_tokens:]
    dim = posemb.shape[-1]
    grid = grid.float().reshape(1, *old_grid, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", antialias=True, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(posemb.dtype)
    return torch.cat([prefix, grid], 1)


def resample_pos_embed_nhwc(posemb: Tensor, new_grid: tuple[int, int]) -> Tensor:
    """SAM's (1, h, w, D) position embedding resampled to (1, H, W, D) (timm ``resample_abs_pos_embed_nhwc``)."""
    if tuple(posemb.shape[1:3]) == tuple(new_grid):
        return posemb
    grid = posemb.float().permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", antialias=True, align_corners=False)
    return grid.permute(0, 2, 3, 1).to(posemb.dtype)


def resize_rel_pos(table: Tensor, length: int) -> Tensor:
    """A (L, C) relative-position table linearly resampled to (``length``, C) (timm/SAM ``get_rel_pos``)."""
    if table.shape[0] == length:
        return table
    resized = F.interpolate(table.float().t().unsqueeze(0), size=length, mode="linear", align_corners=False)
    return resized[0].t().to(table.dtype).contiguous()


# ------------------------------------------------------------------------------------------------ files


def _unwrap(state: Any) -> Any:
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    return state


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a ``.safetensors`` file or a ``torch.save``'d state dict, with timm's renames."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserInputError(f"encoder weights {path} do not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as error:
            raise UserInputError(f"encoder weights {path} are not a safetensors file: {error}") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # unpickling errors come in many types
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserInputError(f"encoder weights {path} are not a torch state dict: {first}") from None
    state = _unwrap(state)
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UserInputError(f"encoder weights {path} hold a {type(state).__name__}, not a state dict of tensors")
    out = {key.removeprefix("module."): value for key, value in state.items()}
    if "image_encoder.patch_embed.proj.weight" in out:  # SAM's own checkpoint (timm's checkpoint_filter_fn)
        out = {
            key.removeprefix("image_encoder.").replace("mlp.lin", "mlp.fc"): value
            for key, value in out.items()
            if key.startswith("image_encoder.")
        }
    return out


def family(encoder: nn.Module) -> str:
    from mtlbench.models.hrnet import HRNet
    from mtlbench.models.sam_vit import SamViT
    from mtlbench.models.vit import VisionTransformer

    if isinstance(encoder, HRNet):
        return "hrnet"
    if isinstance(encoder, SamViT):
        return "sam"
    if isinstance(encoder, VisionTransformer):
        return "vit"
    return "resnet"


def adapt(encoder: nn.Module, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``state`` without the ignored classifier entries, with position tables resampled to ``encoder``'s grid."""
    kind = family(encoder)
    out = {key: value for key, value in state.items() if not key.startswith(IGNORED[kind])}
    own = encoder.state_dict()
    if kind == "vit" and "pos_embed" in out and out["pos_embed"].shape != own["pos_embed"].shape:
        prefix = 0 if encoder.config.no_embed_class else encoder.num_prefix_tokens  # type: ignore[union-attr]
        out["pos_embed"] = resample_pos_embed(out["pos_embed"], encoder.grid, num_prefix_tokens=prefix)  # type: ignore[arg-type]
    if kind == "sam":
        if "pos_embed" in out and out["pos_embed"].dim() == 4:
            out["pos_embed"] = resample_pos_embed_nhwc(out["pos_embed"], encoder.grid)  # type: ignore[arg-type]
        for key, value in list(out.items()):
            if key.endswith((".rel_pos_h", ".rel_pos_w")) and key in own and value.dim() == 2:
                out[key] = resize_rel_pos(value, own[key].shape[0])
    return out


def load_into(encoder: nn.Module, source: str | Path | Mapping[str, Tensor], *, label: str | None = None) -> None:
    """Load ``source`` (a path or a state dict) into ``encoder``; one-line errors for anything that does not fit."""
    state = dict(source) if isinstance(source, Mapping) else read_state_dict(source)
    label = label or (str(source) if not isinstance(source, Mapping) else "state dict")
    state = adapt(encoder, state)
    own = encoder.state_dict()
    missing = [key for key in own if key not in state]
    extra = [key for key in state if key not in own]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})")
        if extra:
            parts.append(f"unexpected {len(extra)} ({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''})")
        raise UserInputError(f"encoder weights {label} do not fit the encoder: {'; '.join(parts)}")
    for key, value in own.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise UserInputError(
                f"encoder weights {label}: {key} has shape {tuple(state[key].shape)}, the encoder needs "
                f"{tuple(value.shape)} (public weights need width=64 and the full depth)"
            )
    encoder.load_state_dict(state, strict=True)


# ---------------------------------------------------------------------------------------- named sources


def parse_source(value: str) -> tuple[str, Source] | None:
    """``timm:NAME`` -> (tag, Source); None for a path; a one-line error for an unknown name."""
    if not value.startswith("timm:"):
        return None
    name = ALIASES.get(value[5:], value[5:])
    if name not in SOURCES:
        known = ", ".join(f"timm:{n}" for n in [*SOURCES, *ALIASES])
        raise UserInputError(f"unknown encoder weights {value!r}; named sources: {known}")
    return name, SOURCES[name]


def weights_dir() -> Path:
    from mtlbench.data.cache import data_root

    return data_root() / "weights"


def hub_url(name: str) -> str:
    endpoint = os.environ.get("HF_ENDPOINT", HUB_ENDPOINT).rstrip("/")
    return f"{endpoint}/timm/{name}/resolve/main/model.safetensors"


def fetch(value: str, *, timeout: float = DOWNLOAD_TIMEOUT) -> Path:
    """The local file of named source ``value`` (``timm:NAME``), downloaded from the hub once."""
    parsed = parse_source(value)
    if parsed is None:
        raise UserInputError(f"{value!r} is not a named source (timm:NAME)")
    name, _ = parsed
    path = weights_dir() / f"{name}.safetensors"
    if path.is_file():
        return path
    url = hub_url(name)
    from mtlbench.data.cache import atomic_write

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # https, or $HF_ENDPOINT
            atomic_write(path, lambda out: _copy(response, out))
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        reason = getattr(error, "reason", error)
        raise UserInputError(
            f"could not download encoder weights {value} from {url} ({reason}); without internet, download "
            f"model.safetensors of hub repository timm/{name} elsewhere and pass encoder_weights=PATH"
        ) from None
    return path


def _copy(response: Any, out: Any) -> None:
    while chunk := response.read(1 << 20):
        out.write(chunk)


def resolve(value: str) -> tuple[Path, Source | None]:
    """``encoder_weights`` -> (a local file, the named source or None for a path)."""
    parsed = parse_source(value)
    if parsed is None:
        return Path(value).expanduser(), None
    return fetch(value), parsed[1]


# -------------------------------------------------------------------------------------------- manifests


@cache
def manifest(stem: str) -> dict[str, Any]:
    """The key manifest ``models/manifests/STEM.json`` (timm's names and shapes; bench/encoder_manifests.py)."""
    text = resources.files("mtlbench.models").joinpath("manifests", f"{stem}.json").read_text()
    return json.loads(text)


# ---------------------------------------------------------------------------------------------- freezing


def _stay_in_eval(module: nn.Module, _inputs: Any) -> None:
    if module.training:
        module.eval()


def freeze(encoder: nn.Module) -> None:
    """No gradients for ``encoder`` and batch norm in eval mode (running statistics fixed) in every forward."""
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    encoder.eval()
    encoder.register_forward_pre_hook(_stay_in_eval)
