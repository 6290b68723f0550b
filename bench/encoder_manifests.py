"""Write the key manifests of mtlbench's encoders (src/mtlbench/models/manifests/*.json) from timm's definitions.

Run once, outside the project's environment (timm is not a dependency; torchvision cannot be imported here,
so it is stubbed out: timm's model definitions never call it):

    python -m pip install --no-deps --target /tmp/timm_pkgs timm==1.0.31 huggingface_hub==0.36.0
    .venv/bin/python bench/encoder_manifests.py --timm-path /tmp/timm_pkgs

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

#: manifest file stem -> (timm model name, input size of its checkpoints)
MODELS = {
    "resnet18": ("resnet18", 224),
    "resnet50": ("resnet50", 224),
    "hrnet_w18": ("hrnet_w18", 224),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timm-path", default="/tmp/timm_pkgs", help="folder timm was installed into (--target)")
    args = parser.parse_args()
    sys.meta_path.insert(0, _StubFinder())
    sys.path.insert(0, args.timm_path)
    import timm

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
