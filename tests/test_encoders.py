"""002's encoders: timm/torchvision names and shapes (the shipped manifests), the resampling rules of position
tables, SAM's windows and relative positions by hand, and every encoder training end to end on the generated
NYUD and PASCAL stand-ins with one method of each family."""

from __future__ import annotations

import math

import pytest
import torch

from mtlbench.errors import UserInputError
from mtlbench.models.checkpoints import (
    IGNORED,
    family,
    manifest,
    resample_pos_embed,
    resample_pos_embed_nhwc,
    resize_rel_pos,
)
from mtlbench.models.encoders import ENCODERS, MANIFESTS, RESNETS, build_encoder
from mtlbench.models.resnet import resnet_encoder
from mtlbench.models.sam_vit import rel_pos_bias, window_partition, window_unpartition
from mtlbench.problems import create_problem
from mtlbench.training import RunConfig, Trainer


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions on a shared machine: one thread is several times faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


CHECKPOINTS = [(encoder, stem, size) for encoder, items in MANIFESTS.items() for stem, size in items]


@pytest.mark.parametrize(("encoder", "stem", "size"), CHECKPOINTS)
def test_state_dict_names_and_shapes_match_the_timm_manifest(encoder: str, stem: str, size: int) -> None:
    with torch.device("meta"):
        module = resnet_encoder(encoder) if encoder in RESNETS else build_encoder(encoder, (size, size))
    data = manifest(stem)
    assert data["img_size"] == size and data["timm_version"] and "pip install" in data["command"]
    expected = {k: tuple(v) for k, v in data["keys"].items() if not k.startswith(IGNORED[family(module)])}
    own = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert own == expected
    assert len(expected) > 100


def test_every_encoder_has_a_manifest() -> None:
    assert set(MANIFESTS) == set(ENCODERS)


def test_output_strides_and_channels() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 96)
    shapes = {}
    for name in ENCODERS:
        if name in RESNETS:
            continue
        size = (56, 84) if name == "vit_b14_reg4" else (64, 96)
        module = build_encoder(name, size, width=8, depth=1).eval()
        shapes[name] = tuple(module(x[..., : size[0], : size[1]]).shape)
    assert shapes["hrnet_w18"] == shapes["hrnet_w18_small_v2"] == (2, 2 + 4 + 8 + 16, 16, 24)  # 18 * 8 / 64 -> 2
    assert shapes["vit_t16"] == (2, 24, 4, 6)  # 192 * 8 / 64
    assert shapes["vit_b16"] == shapes["vit_b16_clip"] == (2, 96, 4, 6)
    assert shapes["vit_b14_reg4"] == (2, 96, 4, 6)
    assert shapes["samvit_b16"] == (2, 32, 4, 6)  # the neck: 256 * 8 / 64


def test_resize_rel_pos_is_linear_interpolation_by_hand() -> None:
    table = torch.tensor([[0.0], [3.0], [6.0], [12.0], [24.0]])
    # 5 -> 3 rows, half-pixel centres: sources 1/3, 2, 11/3
    expected = torch.tensor([[2 / 3 * 0 + 1 / 3 * 3], [6.0], [1 / 3 * 12 + 2 / 3 * 24]])
    assert torch.allclose(resize_rel_pos(table, 3), expected)
    assert resize_rel_pos(table, 5) is table


def test_resample_pos_embed_keeps_prefix_and_constants() -> None:
    torch.manual_seed(0)
    prefix = torch.randn(1, 5, 8)
    grid = torch.full((1, 16, 8), 0.25)
    out = resample_pos_embed(torch.cat([prefix, grid], 1), (6, 3), num_prefix_tokens=5)
    assert out.shape == (1, 5 + 18, 8)
    assert torch.equal(out[:, :5], prefix)
    assert torch.allclose(out[:, 5:], torch.full((1, 18, 8), 0.25), atol=1e-6)
    rows = torch.arange(4.0).view(1, 4, 1, 1).expand(1, 4, 4, 3).reshape(1, 16, 3)  # constant along each row
    wide = resample_pos_embed(rows, (4, 7), num_prefix_tokens=0).reshape(1, 4, 7, 3)
    assert torch.allclose(wide, torch.arange(4.0).view(1, 4, 1, 1).expand(1, 4, 7, 3), atol=1e-5)
    same = torch.randn(1, 10, 2)
    assert resample_pos_embed(same, (3, 3), num_prefix_tokens=1) is same
    with pytest.raises(UserInputError, match="grid"):
        resample_pos_embed(torch.randn(1, 11, 2), (3, 3), num_prefix_tokens=1, old_grid=(2, 2))


def test_resample_nhwc_agrees_with_the_token_form() -> None:
    torch.manual_seed(1)
    nhwc = torch.randn(1, 4, 4, 6)
    tokens = resample_pos_embed(nhwc.reshape(1, 16, 6), (8, 2), num_prefix_tokens=0)
    assert torch.allclose(resample_pos_embed_nhwc(nhwc, (8, 2)).reshape(1, 16, 6), tokens)


def test_sam_relative_position_bias_by_hand() -> None:
    torch.manual_seed(2)
    h, w, c = 2, 3, 4
    q = torch.randn(1, h * w, c)
    table_h, table_w = torch.randn(2 * h - 1, c), torch.randn(2 * w - 1, c)
    bias = rel_pos_bias(q, table_h, table_w, (h, w))
    for i in range(h * w):
        for j in range(h * w):
            (qi, qj), (ki, kj) = divmod(i, w), divmod(j, w)
            expected = q[0, i] @ table_h[qi - ki + h - 1] + q[0, i] @ table_w[qj - kj + w - 1]
            assert math.isclose(float(bias[0, i, j]), float(expected), rel_tol=1e-5, abs_tol=1e-6)
    # a table of another length is resampled first, as timm's get_rel_pos does
    longer = torch.randn(9, c)
    assert torch.allclose(
        rel_pos_bias(q, longer, table_w, (h, w)), rel_pos_bias(q, resize_rel_pos(longer, 3), table_w, (h, w))
    )


def test_window_partition_round_trip_pads_with_zeros() -> None:
    x = torch.randn(2, 5, 7, 3)
    windows, padded = window_partition(x, 4)
    assert windows.shape == (2 * 2 * 2, 4, 4, 3) and padded == (8, 8)
    assert torch.equal(window_unpartition(windows, 4, padded, (5, 7)), x)
    assert float(windows[1, :, 3:].abs().sum()) == 0.0  # the first image's top-right window: columns 7.. padded


def test_vit_takes_another_input_size_by_resampling() -> None:
    torch.manual_seed(3)
    module = build_encoder("vit_b16", (32, 32), width=4, depth=1).eval()
    bigger = module(torch.randn(1, 3, 48, 64))
    assert bigger.shape == (1, 48, 3, 4)


def test_patch_size_and_depth_errors_are_one_line() -> None:
    with pytest.raises(UserInputError, match="multiples of its patch size 14"):
        build_encoder("vit_b14_reg4", (32, 32))
    with pytest.raises(UserInputError, match="multiples of 32"):
        create_problem("nyud", source="synthetic", encoder="hrnet_w18", resolution="48x48")
    with pytest.raises(UserInputError, match="encoder_depth=-1"):
        create_problem("nyud", source="synthetic", encoder="vit_t16", encoder_depth=-1, resolution="32x32")
    problem = create_problem("nyud", source="synthetic", encoder="resnet18", encoder_depth=2, resolution="32x32")
    with pytest.raises(UserInputError, match="encoder_depth is for HRNet and ViT"):
        problem.build_model()


FAMILIES = ["uw", "pcgrad", "mgda_ub", "rotograd"]  # loss-, gradient-, representation-level, model-changing


def _run(problem: str, encoder: str, method: str) -> dict:
    size = "28x28" if encoder == "vit_b14_reg4" else "32x32"
    config = RunConfig(
        problem=problem,
        tasks="all",
        method=method,
        problem_options={
            "source": "synthetic",
            "resolution": size,
            "encoder": encoder,
            "width": 4,
            "encoder_depth": 0 if encoder in RESNETS else 1,
            "n_images": 8,
            "synthetic_size": 32,
            "edge_thresholds": 2,
        },
        epochs=1,
        batch_size=3,
        threads=1,
        device="cpu",
    )
    result = Trainer(config, require_reference=False).run()
    assert result.status == "completed", result.error
    return result.test_metrics


@pytest.mark.parametrize("encoder", [e for e in ENCODERS if e not in RESNETS])
@pytest.mark.parametrize("method", FAMILIES)
def test_every_encoder_trains_on_the_nyud_stand_in(encoder: str, method: str) -> None:
    metrics = _run("nyud", encoder, method)
    assert 0 <= metrics["S"]["miou"] <= 100 and 0 <= metrics["E"]["odsf"] <= 100
    assert math.isfinite(metrics["D"]["rmse"]) and 0 <= metrics["N"]["merr"] <= 180


@pytest.mark.parametrize("encoder", ["hrnet_w18", "vit_b16_clip", "samvit_b16"])
def test_pascal_stand_in_trains_on_the_new_encoders(encoder: str) -> None:
    metrics = _run("pascal_context", encoder, "pcgrad")
    assert set(metrics) == {"S", "P", "Sal", "N", "E"}
    assert 0 <= metrics["Sal"]["maxf"] <= 100


@pytest.mark.parametrize("dataset", ["nyud", "pascal"])
def test_table_ix_presets(dataset: str) -> None:
    from mtlbench.sweeps.spec import load_spec

    hrnet = load_spec(f"{dataset}_002_hrnet")
    vit = load_spec(f"{dataset}_002_vit")
    resnet = load_spec(f"{dataset}_002")
    assert hrnet.problem_options["encoder"] == "hrnet_w18_small_v2" and vit.problem_options["encoder"] == "vit_b16"
    assert vit.problem_options["encoder_weights"] == "timm:vit_base_patch16_384.augreg_in1k"  # 002 Table VIII
    for spec, optimizer, lr, wd, batch, clip in (
        (hrnet, "adam", 1e-4, 1e-4, 6, 0.0),
        (vit, "adamw", 2e-5, 1e-6, 4, 10.0),
    ):
        settings = spec.settings
        assert (settings["optimizer"], settings["batch_size"], settings["grad_clip"]) == (optimizer, batch, clip)
        assert (settings["iterations"], settings["eval_every"], settings["scheduler"]) == (40000, 1000, "poly")
        assert spec.grid["lr"] == [lr] and spec.grid["weight_decay"] == [wd]
        assert spec.settings["selection"] == resnet.settings["selection"] == "best_test:delta_m"
        assert spec.methods == resnet.methods and spec.method_params == resnet.method_params
        small = load_spec(spec.name, "smoke")
        assert small.problem_options["encoder_weights"] == "" and small.problem_options["source"] == "synthetic"
