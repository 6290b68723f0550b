"""Encoder initialisation: every checkpoint format loads (torchvision/timm .pth, wrapped and ``module.``-prefixed
dicts, .safetensors, SAM's own checkpoint), position tables are resampled on load, bad checkpoints and
unreachable named sources are one-line errors, named sources set encoder and normalisation, and a frozen
encoder keeps its parameters and batch-norm statistics through a training step while the heads change."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mtlbench.data.cache import ENV_VAR
from mtlbench.errors import UserInputError
from mtlbench.models.checkpoints import (
    NORMALIZATIONS,
    SOURCES,
    fetch,
    load_into,
    read_state_dict,
    resample_pos_embed,
    resize_rel_pos,
)
from mtlbench.models.encoders import build_encoder
from mtlbench.models.resnet import resnet_encoder
from mtlbench.problems import create_problem
from mtlbench.training import RunConfig
from mtlbench.training.trainer import Session


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions on a shared machine: one thread is several times faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _random_state(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in module.state_dict().items():
        if value.dtype.is_floating_point:
            state[key] = torch.rand(value.shape, generator=generator) + (0.5 if key.endswith("running_var") else 0.0)
        else:
            state[key] = value.clone() + 3
    return state


def _same(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(value, state[key]) for key, value in module.state_dict().items())


@pytest.mark.parametrize("fmt", ["pth", "wrapped", "safetensors"])
@pytest.mark.parametrize("encoder", ["resnet18", "hrnet_w18", "vit_b16", "samvit_b16"])
def test_each_format_loads_exactly(tmp_path: Path, encoder: str, fmt: str) -> None:
    module = (
        resnet_encoder(encoder, width=4)
        if encoder == "resnet18"
        else build_encoder(encoder, (32, 32), width=4, depth=1)
    )
    state = _random_state(module, 1)
    on_disk = dict(state)
    classifier = {"resnet18": "fc.weight", "hrnet_w18": "classifier.weight", "vit_b16": "head.weight"}.get(encoder)
    if classifier:  # the public checkpoints' classifiers are ignored
        on_disk[classifier] = torch.zeros(10, 3)
    if fmt == "pth":
        path = tmp_path / "weights.pth"
        torch.save(on_disk, path)
    elif fmt == "wrapped":  # a training checkpoint of a DataParallel model
        path = tmp_path / "checkpoint.pth.tar"
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in on_disk.items()}}, path)
    else:
        path = tmp_path / "weights.safetensors"
        save_file({k: v.contiguous() for k, v in on_disk.items()}, str(path))
    load_into(module, path)
    assert _same(module, state)


def test_vit_checkpoint_of_another_size_is_resampled(tmp_path: Path) -> None:
    source = build_encoder("vit_b16", (64, 64), width=4, depth=1)  # a 4x4 grid checkpoint
    target = build_encoder("vit_b16", (32, 48), width=4, depth=1)  # the run's 2x3 grid
    state = _random_state(source, 2)
    torch.save(state, tmp_path / "w.pth")
    load_into(target, tmp_path / "w.pth")
    expected = resample_pos_embed(state["pos_embed"], (2, 3), num_prefix_tokens=1)
    assert target.pos_embed.shape == (1, 1 + 6, 48)
    assert torch.equal(target.pos_embed.data, expected)
    assert torch.equal(target.pos_embed.data[:, 0], state["pos_embed"][:, 0])  # the class token's
    assert torch.equal(target.blocks[0].attn.qkv.weight.data, state["blocks.0.attn.qkv.weight"])


def test_dinov2_positions_have_no_class_entry(tmp_path: Path) -> None:
    source = build_encoder("vit_b14_reg4", (56, 56), width=4, depth=1)
    target = build_encoder("vit_b14_reg4", (28, 42), width=4, depth=1)
    state = _random_state(source, 3)
    assert state["pos_embed"].shape[1] == 16 and state["reg_token"].shape[1] == 4
    load_into(target, state)
    assert torch.equal(target.pos_embed.data, resample_pos_embed(state["pos_embed"], (2, 3), num_prefix_tokens=0))


def test_sam_original_checkpoint_is_renamed_and_its_tables_resized(tmp_path: Path) -> None:
    source = build_encoder("samvit_b16", (64, 64), width=4, depth=3)  # block 2 attends globally: grid 4
    target = build_encoder("samvit_b16", (32, 48), width=4, depth=3)  # grid 2x3
    state = _random_state(source, 4)
    sam = {f"image_encoder.{k}".replace("mlp.fc", "mlp.lin"): v for k, v in state.items()}
    sam["prompt_encoder.point_embeddings.0.weight"] = torch.zeros(1, 256)  # the rest of SAM: dropped
    torch.save(sam, tmp_path / "sam_vit_b_01ec64.pth")
    assert set(read_state_dict(tmp_path / "sam_vit_b_01ec64.pth")) == set(state)
    load_into(target, tmp_path / "sam_vit_b_01ec64.pth")
    attn = target.blocks[2].attn
    assert attn.rel_pos_h.shape == (3, 4) and attn.rel_pos_w.shape == (5, 4)  # 12 heads of 48 / 12
    assert torch.equal(attn.rel_pos_h.data, resize_rel_pos(state["blocks.2.attn.rel_pos_h"], 3))
    windowed = target.blocks[0].attn  # a 14x14 window: tables unchanged
    assert torch.equal(windowed.rel_pos_w.data, state["blocks.0.attn.rel_pos_w"])
    assert target.pos_embed.shape == (1, 2, 3, 48)


def test_bad_checkpoints_are_one_line_errors(tmp_path: Path) -> None:
    module = build_encoder("vit_t16", (32, 32), width=4, depth=1)
    state = _random_state(module, 5)
    missing = {k: v for k, v in state.items() if not k.startswith("blocks.0.attn")}
    with pytest.raises(UserInputError, match=r"missing 4 \(blocks\.0\.attn\.qkv\.weight, ") as error:
        load_into(module, missing)
    assert "\n" not in str(error.value)
    extra = {**state, "blocks.7.norm1.weight": torch.zeros(12), "dist_token": torch.zeros(1, 1, 12)}
    with pytest.raises(UserInputError, match=r"unexpected 2 \(blocks\.7\.norm1\.weight, dist_token\)"):
        load_into(module, extra)
    wrong = {**state, "norm.weight": torch.zeros(192)}
    with pytest.raises(UserInputError, match=r"norm\.weight has shape \(192,\), the encoder needs \(12,\)"):
        load_into(module, wrong)
    with pytest.raises(UserInputError, match="do not exist"):
        load_into(module, tmp_path / "nothing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(UserInputError, match="not a torch state dict") as error:
        load_into(module, tmp_path / "junk.pth")
    assert "\n" not in str(error.value)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(UserInputError, match="not a safetensors file"):
        load_into(module, tmp_path / "junk.safetensors")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(UserInputError, match="not a state dict"):
        load_into(module, tmp_path / "list.pth")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_named_source_without_internet_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(
        UserInputError, match=r"could not download encoder weights timm:vit_base_patch16_224\.dino"
    ) as e:
        fetch("timm:vit_base_patch16_224.dino", timeout=2.0)
    message = str(e.value)
    assert "\n" not in message and "/timm/vit_base_patch16_224.dino/resolve/main/model.safetensors" in message
    assert "encoder_weights=PATH" in message
    assert not list(tmp_path.rglob("*.safetensors"))  # nothing half-written
    problem = create_problem("nyud", source="synthetic", encoder_weights="timm:samvit_base_patch16", width=4)
    with pytest.raises(UserInputError, match=r"timm/samvit_base_patch16\.sa1b"):
        problem.build_model()


def test_named_source_already_downloaded_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    cached = tmp_path / "weights" / "vit_base_patch14_reg4_dinov2.lvd142m.safetensors"
    cached.parent.mkdir()
    save_file({"x": torch.zeros(1)}, str(cached))
    assert fetch("timm:vit_base_patch14_reg4_dinov2") == cached
    with pytest.raises(UserInputError, match="unknown encoder weights 'timm:vit_huge'; named sources: timm:resnet18"):
        fetch("timm:vit_huge")


def test_named_sources_set_encoder_and_normalization() -> None:
    expected = {
        "timm:vit_base_patch16_384.augreg_in1k": ("vit_b16", "inception"),
        "timm:vit_base_patch16_224.augreg_in21k": ("vit_b16", "inception"),
        "timm:vit_base_patch16_clip_384": ("vit_b16_clip", "clip"),
        "timm:samvit_base_patch16": ("samvit_b16", "imagenet"),
        "timm:vit_base_patch16_224.dino": ("vit_b16", "imagenet"),
        "timm:vit_base_patch14_reg4_dinov2": ("vit_b14_reg4", "imagenet"),
        "timm:resnet50": ("resnet50", "imagenet"),
        "timm:hrnet_w18": ("hrnet_w18", "imagenet"),
        "timm:hrnet_w18_small_v2": ("hrnet_w18_small_v2", "imagenet"),
    }
    for source, (encoder, normalization) in expected.items():
        values = create_problem("nyud", source="synthetic", encoder_weights=source).option_values
        assert (values["encoder"], values["normalization"]) == (encoder, normalization), source
    assert {s.normalization for s in SOURCES.values()} <= set(NORMALIZATIONS)
    given = create_problem("nyud", encoder_weights="timm:vit_base_patch16_clip_384", normalization="none")
    assert given.option_values["normalization"] == "none"
    with pytest.raises(UserInputError, match="are weights of encoder vit_b16_clip, not vit_b16"):
        create_problem("nyud", encoder="vit_b16", encoder_weights="timm:vit_base_patch16_clip_384")


def test_normalization_maps_the_same_pixels() -> None:
    batches = {}
    for name in ("imagenet", "clip", "none"):
        problem = create_problem(
            "pascal_context",
            source="synthetic",
            resolution="32x32",
            synthetic_size=32,
            n_images=8,
            transform="mtinet",
            normalization=name,
        )
        batches[name] = problem.make_batch("test", [0, 1]).inputs
    raw = batches["none"] / 255.0
    assert float(batches["none"].max()) > 1.0  # 0..255 values
    for name in ("imagenet", "clip"):
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALIZATIONS[name])  # type: ignore[misc]
        assert torch.allclose(batches[name] * std + mean, raw, atol=1e-5)


def test_normalization_in_the_invpt_training_transform() -> None:
    """Augmented training batches (scale, crop, flip, colour, padding) with the same draws: the same pixels."""
    batches = {}
    for name in ("imagenet", "clip"):
        problem = create_problem(
            "nyud", source="synthetic", resolution="48x40", synthetic_size=32, n_images=8, normalization=name
        )
        batches[name] = problem.make_batch("train", [0, 1, 2], augment_with=torch.Generator().manual_seed(5)).inputs
    padded = (batches["imagenet"] == 0).all(1, keepdim=True)  # padding is 0 after normalisation
    assert bool(padded.any()) and torch.equal(padded, (batches["clip"] == 0).all(1, keepdim=True))
    raw = {}
    for name in ("imagenet", "clip"):
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALIZATIONS[name])  # type: ignore[misc]
        raw[name] = torch.where(padded, 0.0, batches[name] * std + mean)
    assert torch.allclose(raw["imagenet"], raw["clip"], atol=1e-5)


@pytest.mark.parametrize("encoder", ["resnet18", "hrnet_w18", "vit_t16"])
def test_frozen_encoder_keeps_parameters_and_batch_norm_statistics(tmp_path: Path, encoder: str) -> None:
    options = {"source": "synthetic", "resolution": "32x32", "width": 4, "n_images": 8, "synthetic_size": 32}
    if encoder != "resnet18":
        options["encoder_depth"] = 1
    unfrozen = create_problem("nyud", encoder=encoder, **options).build_model()
    torch.save(_random_state(unfrozen.encoder, 6), tmp_path / "enc.pth")
    options.update(encoder=encoder, encoder_weights=str(tmp_path / "enc.pth"), freeze_encoder="true")
    config = RunConfig(
        problem="nyud", tasks="all", method="unit_scal", problem_options=options, batch_size=3, device="cpu"
    ).resolved()
    problem = create_problem("nyud", **options)
    session = Session(config, problem, torch.device("cpu"), torch.Generator().manual_seed(0))
    model = session.model
    model.train()
    encoder_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    heads_before = {k: v.clone() for k, v in model.heads.state_dict().items()}
    assert not model.shared_parameters()
    batch = next(problem.batches("train", 3, shuffle=True, generator=torch.Generator().manual_seed(0)))
    session.step(batch)
    assert all(torch.equal(v, encoder_before[k]) for k, v in model.encoder.state_dict().items())
    changed = [k for k, v in model.heads.state_dict().items() if not torch.equal(v, heads_before[k])]
    assert any(k.endswith("weight") for k in changed) and any(k.endswith("running_mean") for k in changed)
    assert not model.encoder.training and model.training  # batch norm of the encoder in eval mode
    refused = RunConfig(problem="nyud", tasks="all", method="pcgrad", problem_options=options, device="cpu")
    with pytest.raises(UserInputError, match=r"frozen encoder .* method pcgrad acts on shared gradients"):
        Session(refused.resolved(), problem, torch.device("cpu"), torch.Generator().manual_seed(0))
    with pytest.raises(UserInputError, match="freeze_encoder=true needs encoder_weights"):
        create_problem("nyud", freeze_encoder="true")


def test_freeze_keeps_names_for_the_checkpoint(tmp_path: Path) -> None:
    """A frozen encoder still has the checkpoint's names (nothing wrapped)."""
    module = build_encoder("vit_t16", (32, 32), width=4, depth=1)
    names = list(module.state_dict())
    from mtlbench.models.checkpoints import freeze

    freeze(module)
    assert list(module.state_dict()) == names
    assert not any(p.requires_grad for p in module.parameters())
