"""Write the key manifests of mtlbench's encoders (src/mtlbench/models/manifests/*.json) from timm's definitions.

Run once, outside the project's environment (timm is not a dependency; torchvision cannot be imported here,
so it is stubbed out: timm's model definitions never call it):

    python -m pip install --no-deps --target /tmp/timm_pkgs timm==1.0.31 huggingface_hub==0.36.0
    .venv/bin/python bench/encoder_manifests.py --timm-path /tmp/timm_pkgs

``--check`` (also needs timm) loads the same random weights into timm's model and mtlbench's encoder
(3 blocks; HRNet whole) at a checkpoint size and runs both on a smaller input (64x96, DINOv2 56x84): the
dense features must agree (ViTs: the final-normalised patch tokens; SAM: the neck, timm resampling its
position table and relative positions on the fly while mtlbench resampled them on load; HRNet: the four
branches upsampled and concatenated). It prints the largest absolute difference of each.

Each manifest holds the state-dict names and shapes of one timm model at its pretrained input size (the
size its public checkpoints have); tests/test_encoders.py checks that mtlbench's modules have exactly these
names and shapes (less the classifier entries each encoder ignores). ResNet names are torchvision's:
timm's ``resnet18``/``resnet50`` use the same names (their ``tv_in1k`` weights are torchvision's).
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import json
import sys
import types
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

#: manifest file stem -> (timm model name, input size of its checkpoints)
MODELS = {
    "resnet18": ("resnet18", 224),
    "resnet50": ("resnet50", 224),
    "hrnet_w18": ("hrnet_w18", 224),
    "hrnet_w18_small_v2": ("hrnet_w18_small_v2", 224),
    "vit_t16_224": ("vit_tiny_patch16_224", 224),
    "vit_t16_384": ("vit_tiny_patch16_384", 384),
    "vit_b16_224": ("vit_base_patch16_224", 224),
    "vit_b16_384": ("vit_base_patch16_384", 384),
    "vit_b16_clip_384": ("vit_base_patch16_clip_384", 384),
    "vit_b14_reg4_518": ("vit_base_patch14_reg4_dinov2", 518),
    "samvit_b16_1024": ("samvit_base_patch16", 1024),
}
OUT = Path(__file__).resolve().parents[1] / "src" / "mtlbench" / "models" / "manifests"


class _StubMeta(type):
    def __getattr__(cls, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return _StubMeta(name, (), {})

    def __hash__(cls) -> int:
        return id(cls)


class _StubModule(types.ModuleType):
    __path__: tuple[str, ...] = ()  # a package without files
    __version__ = "0.0"

    def __getattr__(self, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return _StubMeta(name, (), {"__init__": lambda self, *a, **k: None})


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers every ``torchvision`` import with an empty module whose attributes are placeholder classes."""

    def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        return _StubModule(spec.name)

    def exec_module(self, module):  # type: ignore[no-untyped-def]
        return None


def _randomise(model: torch.nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                noise = torch.randn(value.shape, generator=generator) * 0.05
                value.copy_(noise.abs() + 0.5 if key.endswith("running_var") else noise)


def check(timm: Any) -> None:
    """mtlbench's encoders against timm's models with the same random weights (module docstring)."""
    from mtlbench.models.checkpoints import load_into
    from mtlbench.models.encoders import build_encoder

    torch.manual_seed(0)
    cases = [
        ("vit_t16", "vit_tiny_patch16_384", (64, 96)),
        ("vit_b16", "vit_base_patch16_224", (64, 96)),
        ("vit_b16_clip", "vit_base_patch16_clip_384", (64, 96)),
        ("vit_b14_reg4", "vit_base_patch14_reg4_dinov2", (56, 84)),
        ("samvit_b16", "samvit_base_patch16", (64, 96)),
    ]
    for ours, name, size in cases:
        reference = timm.create_model(name, pretrained=False, depth=3, num_classes=0).eval()
        _randomise(reference)
        encoder = build_encoder(ours, size, depth=3).eval()
        load_into(encoder, reference.state_dict())
        x = torch.randn(2, 3, *size)
        with torch.no_grad():
            if ours == "samvit_b16":
                reference.patch_embed.strict_img_size = False
                expected = reference.forward_features(x)
            else:
                reference.set_input_size(img_size=size)
                tokens = reference.forward_features(x)[:, reference.num_prefix_tokens :]
                grid = (size[0] // encoder.stride, size[1] // encoder.stride)
                expected = tokens.transpose(1, 2).reshape(2, -1, *grid)
            got = encoder(x)
        print(f"{ours} vs timm {name}: {tuple(got.shape)}, max |difference| {float((got - expected).abs().max()):.2e}")
    from mtlbench.models.hrnet import HRNet

    reference = timm.create_model("hrnet_w18", pretrained=False).eval()
    _randomise(reference)
    encoder = HRNet("hrnet_w18", fusion="nearest").eval()  # timm's fusion (mtlbench's default: bilinear)
    load_into(encoder, reference.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        stem = reference.act2(reference.bn2(reference.conv2(reference.act1(reference.bn1(reference.conv1(x))))))
        branches = reference.stages(stem)
        size = branches[0].shape[-2:]
        expected = torch.cat(
            [branches[0]] + [F.interpolate(b, size=size, mode="bilinear", align_corners=False) for b in branches[1:]], 1
        )
        got = encoder(x)
    print(
        f"hrnet_w18 vs timm hrnet_w18: {tuple(got.shape)}, max |difference| {float((got - expected).abs().max()):.2e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timm-path", default="/tmp/timm_pkgs", help="folder timm was installed into (--target)")
    parser.add_argument("--check", action="store_true", help="compare the encoders' outputs with timm's instead")
    args = parser.parse_args()
    sys.meta_path.insert(0, _StubFinder())
    sys.path.insert(0, args.timm_path)
    import timm

    if args.check:
        check(timm)
        return

    command = (
        "python -m pip install --no-deps --target /tmp/timm_pkgs timm==1.0.31 huggingface_hub==0.36.0; "
        ".venv/bin/python bench/encoder_manifests.py --timm-path /tmp/timm_pkgs"
    )
    OUT.mkdir(parents=True, exist_ok=True)
    for stem, (name, size) in MODELS.items():
        model = timm.create_model(name, pretrained=False)
        keys = {key: list(value.shape) for key, value in model.state_dict().items()}
        manifest = {"timm_model": name, "timm_version": timm.__version__, "img_size": size, "command": command}
        manifest["keys"] = keys
        path = OUT / f"{stem}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(manifest, indent=0) + "\n")
        tmp.replace(path)
        print(f"{path.name}: {name} ({len(keys)} entries)")


if __name__ == "__main__":
    main()
