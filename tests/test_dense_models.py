"""The dense models of 001's study: SegNet split, SegNet-MTAN, DeepLabV3+ (LibMTL) and the v3+ decoder."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mtlbench.data import scenes
from mtlbench.errors import UserInputError
from mtlbench.methods import create
from mtlbench.methods.gradients import reaches_only_through
from mtlbench.models.architectures import MODELS, build
from mtlbench.models.base import check_method
from mtlbench.problems import create_problem
from mtlbench.sweeps.plan import SweepPlan
from mtlbench.sweeps.spec import load_spec
from mtlbench.training.config import RunConfig
from mtlbench.training.trainer import Trainer

NYU = {"S": 13, "D": 1, "N": 3}
CITY = {"S": 7, "D": 1}


@pytest.fixture(autouse=True)
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MTLBENCH_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions on a shared machine: one thread is several times faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------- parameter counts of the references


def _conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def _conv_layer(cin: int, cout: int) -> int:  # MTAN's conv_layer: 3x3 conv (bias) + BN
    return _conv(cin, cout, 3) + 2 * cout


def _att_layer(a: int, b: int, c: int) -> int:  # MTAN's att_layer: 1x1 conv-BN, 1x1 conv-BN
    return _conv(a, b, 1) + 2 * b + _conv(b, c, 1) + 2 * c


def mtan_segnet_trunk(f: tuple[int, ...] = (64, 128, 256, 512, 512)) -> int:
    """The shared layers of model_segnet_split.py (type standard), counted layer by layer from the code."""
    n = _conv_layer(3, f[0]) + _conv_layer(f[0], f[0])  # encoder_block[0], decoder_block[0]
    n += sum(_conv_layer(f[i], f[i + 1]) + _conv_layer(f[i + 1], f[i]) for i in range(4))
    n += 2 * _conv_layer(f[0], f[0])  # conv_block_enc[0], conv_block_dec[0]
    n += _conv_layer(f[1], f[1]) + _conv_layer(f[0], f[0])  # i = 0
    n += sum(2 * _conv_layer(f[i + 1], f[i + 1]) + 2 * _conv_layer(f[i], f[i]) for i in range(1, 4))
    return n


def mtan_head(outputs: int, c: int = 64) -> int:  # pred_task: 3x3 conv c->c, 1x1 conv c->outputs
    return _conv(c, c, 3) + _conv(c, outputs, 1)


def mtan_attention(tasks: int, f: tuple[int, ...] = (64, 128, 256, 512, 512)) -> int:
    """encoder_att/decoder_att (per task) and encoder_block_att/decoder_block_att (shared) of model_segnet_mtan.py."""
    per_task = _att_layer(f[0], f[0], f[0]) + _att_layer(2 * f[0], f[0], f[0])
    per_task += sum(
        _att_layer(2 * f[i + 1], f[i + 1], f[i + 1]) + _att_layer(f[i + 1] + f[i], f[i], f[i]) for i in range(4)
    )
    shared = _conv_layer(f[0], f[1]) + _conv_layer(f[0], f[0])
    shared += sum(_conv_layer(f[i + 1], f[i + 2]) + _conv_layer(f[i + 1], f[i]) for i in range(3))
    shared += 2 * _conv_layer(f[4], f[4])
    return tasks * per_task + shared


def libmtl_deeplab_head(outputs: int, cin: int = 2048, c: int = 256) -> int:
    """LibMTL's DeepLabHead: ASPP (1x1, three dilated 3x3, pooling 1x1, projection), 3x3 conv-BN, 1x1 classifier."""
    one_by_one, dilated = _conv(cin, c, 1, False) + 2 * c, _conv(cin, c, 3, False) + 2 * c
    aspp = 2 * one_by_one + 3 * dilated + _conv(5 * c, c, 1, False) + 2 * c  # 1x1 and pooling branches
    return aspp + _conv(c, c, 3, False) + 2 * c + _conv(c, outputs, 1)


#: torchvision's resnet50 has 25,557,032 parameters, 2,049,000 of them in fc
RESNET50_WITHOUT_FC = 25_557_032 - 2_049_000


def _count(parameters) -> int:
    return sum(p.numel() for p in parameters)


def test_full_size_parameter_counts_match_the_references() -> None:
    with torch.device("meta"):
        models = {name: build(name, NYU, (288, 384), encoder="resnet50", width=64) for name in MODELS[1:]}
        city = {name: build(name, CITY, (128, 256), encoder="resnet50", width=64) for name in MODELS[1:4]}
    # MTAN prints count / 24,981,069: one single-task SegNet (trunk + the 13-class head)
    assert mtan_segnet_trunk() + mtan_head(13) == 24_981_069
    heads = mtan_head(13) + mtan_head(1) + mtan_head(3)
    assert _count(models["segnet"].parameters()) == mtan_segnet_trunk() + heads == 25_055_185
    assert _count(models["segnet"].shared_parameters()) == 24_943_296
    mtan = mtan_segnet_trunk() + mtan_attention(3) + heads
    assert _count(models["segnet_mtan"].parameters()) == mtan == 44_229_073
    assert round(mtan / 24_981_069, 2) == 1.77  # MTAN paper's relative size of SegNet-MTAN
    # nash-mtl/CAGrad/FAMO: everything but the pred heads is shared
    assert _count(models["segnet_mtan"].shared_parameters()) == mtan - heads
    lib = RESNET50_WITHOUT_FC + sum(libmtl_deeplab_head(n) for n in NYU.values())
    assert _count(models["deeplabv3plus"].parameters()) == lib == 71_888_721
    assert _count(models["deeplabv3plus"].shared_parameters()) == RESNET50_WITHOUT_FC
    # 001's point: both share about as much, DeepLabV3+ has far more task-specific parameters
    share_segnet = 24_943_296 / 25_055_185
    share_deeplab = RESNET50_WITHOUT_FC / lib
    assert share_segnet > 0.99 and share_deeplab < 0.33
    assert _count(city["segnet"].parameters()) == mtan_segnet_trunk() + mtan_head(7) + mtan_head(1)
    assert _count(city["segnet_mtan"].parameters()) == (
        mtan_segnet_trunk() + mtan_attention(2) + mtan_head(7) + mtan_head(1)
    )
    assert _count(city["deeplabv3plus"].parameters()) == RESNET50_WITHOUT_FC + libmtl_deeplab_head(7) + (
        libmtl_deeplab_head(1)
    )
    # v3+ decoder head: ASPP (rates 6/12/18) + 1x1 256->48 reduction + two 3x3 convs (304->256, 256->256)
    decoder = models["deeplabv3plus_decoder"]
    extra = _conv(256, 48, 1, False) + 96 + _conv(304, 256, 3, False) + 512 + _conv(256, 256, 3, False) + 512
    assert _count(decoder.heads["S"].parameters()) == libmtl_deeplab_head(13) - (_conv(256, 256, 3, False) + 512) + (
        extra
    )


def test_segnet_trunk_keeps_mtan_names() -> None:
    model = build("segnet", CITY, (32, 32), encoder="resnet18", width=2)
    keys = set(model.encoder.state_dict())
    for key in ("encoder_block.0.0.weight", "encoder_block.4.1.running_var", "conv_block_enc.1.0.bias"):
        assert key in keys
    assert "conv_block_enc.2.1.0.weight" in keys and "conv_block_dec.4.1.1.weight" in keys
    assert model.encoder.conv_block_enc[2][1][0].weight.shape == (8, 8, 3, 3)


# --------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", MODELS[1:])
def test_output_and_representation_shapes(name: str) -> None:
    torch.manual_seed(0)
    model = build(name, NYU, (32, 64), encoder="resnet50", width=4)
    x = torch.randn(2, 3, 32, 64)
    outputs = model(x)
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "S": (2, 13, 32, 64),
        "D": (2, 1, 32, 64),
        "N": (2, 3, 32, 64),
    }
    z = model.encode(x)
    expected = {
        "segnet": ((2, 4, 32, 64), "single"),
        "segnet_mtan": ((0,), "none"),
        "deeplabv3plus": ((2, 128, 4, 8), "single"),
        # layer4 (128 channels at stride 16) + layer1 (16 channels at stride 4) unshuffled 4x4
        "deeplabv3plus_decoder": ((2, 128 + 16 * 16, 2, 4), "packed"),
    }[name]
    assert (tuple(z.shape), model.representation) == expected
    if name == "segnet_mtan":  # per-task maps, outside any shared tensor
        assert [tuple(f.shape) for f in z.per_task] == [(2, 4, 32, 64)] * 3
    if name.startswith("segnet"):  # MTAN normalises the normals inside the network
        norms = outputs["N"].norm(dim=1)
        assert bool(((norms - 1).abs() < 1e-5).logical_or(norms == 0).all())  # zero where the output is 0


def test_mtan_attention_masks_and_task_paths() -> None:
    torch.manual_seed(0)
    model = build("segnet_mtan", CITY, (64, 96), encoder="resnet18", width=4)  # training mode: batch statistics
    x = torch.randn(2, 3, 64, 96)
    features, masks = model.encoder.attend(x)
    f = (4, 8, 16, 32, 32)
    for task in ("S", "D"):
        shapes = [tuple(m.shape) for m in masks[task]]
        encoder = [(2, f[j], 64 >> j, 96 >> j) for j in range(5)]
        decoder = [(2, f[3 - j] if j < 4 else f[0], 64 >> (4 - j), 96 >> (4 - j)) for j in range(5)]
        assert shapes == encoder + decoder
        assert all(bool(((m > 0) & (m < 1)).all()) for m in masks[task])
        assert features[task].shape == (2, 4, 64, 96)
    # each task has its own path: different masks and features, and task S never reaches D's attention
    assert not torch.allclose(masks["S"][0], masks["D"][0]) and not torch.allclose(
        features["S"], features["D"], rtol=1e-3, atol=0
    )
    loss = model(x)["S"].sum()
    d_attention = list(model.encoder.encoder_att["D"].parameters()) + list(model.encoder.decoder_att["D"].parameters())
    grads = torch.autograd.grad(
        loss, d_attention + list(model.encoder.encoder_att["S"].parameters()), allow_unused=True
    )
    assert all(g is None for g in grads[: len(d_attention)])  # not even zeros: S's backward skips D's path
    assert any(g is not None and bool(g.abs().sum() > 0) for g in grads[len(d_attention) :])
    # the shared attention blocks are read by every task's path
    shared = list(model.encoder.encoder_block_att.parameters())
    for task in ("S", "D"):
        g = torch.autograd.grad(model(x)[task].sum(), shared[0])[0]
        assert bool(g.abs().sum() > 0)


def test_packed_representation_is_exact_for_the_decoder_model() -> None:
    """dL/dtheta = (dz/dtheta)^T dL/dz: the v3+ decoder's packed z carries every path to the heads."""
    torch.manual_seed(0)
    model = build("deeplabv3plus_decoder", CITY, (32, 64), encoder="resnet18", width=4)
    model.eval()
    x = torch.randn(2, 3, 32, 64)
    z = model.encode(x)
    outputs = model.decode(z)
    losses = torch.stack([outputs["S"].square().mean(), outputs["D"].abs().mean()])
    shared = model.shared_parameters()
    assert reaches_only_through(losses, z, shared)
    for i in range(2):
        direct = torch.autograd.grad(losses[i], shared, retain_graph=True)
        dz = torch.autograd.grad(losses[i], z, retain_graph=True)[0]
        through = torch.autograd.grad(z, shared, dz, retain_graph=True)
        for a, b in zip(direct, through, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    low = torch.randn(2, 16, 8, 16)
    assert torch.equal(torch.nn.functional.pixel_shuffle(torch.nn.functional.pixel_unshuffle(low, 4), 4), low)


@pytest.mark.parametrize(
    ("name", "method", "error"),
    [
        ("segnet_mtan", "imtl", "model segnet_mtan has no shared representation"),
        ("segnet_mtan", "mgda_ub", "model segnet_mtan has no shared representation"),
        ("segnet_mtan", "rotograd", "model segnet_mtan has no shared representation; method rotograd"),
        ("deeplabv3plus_decoder", "rotograd", "packed from several layers; method rotograd"),
        ("segnet_mtan", "cagrad", None),
        ("segnet_mtan", "mgda_ub:space=parameters", None),
        ("deeplabv3plus_decoder", "imtl", None),
        ("segnet", "rotograd", None),
        ("deeplabv3plus", "rotograd", None),
    ],
)
def test_methods_that_need_a_shared_representation(name: str, method: str, error: str | None) -> None:
    model = build(name, CITY, (32, 32), encoder="resnet18", width=2)
    method_name, _, option = method.partition(":")
    params = dict([option.split("=")]) if option else {}
    created = create(method_name, n_tasks=2, **params)
    if error is None:
        check_method(model, created)
    else:
        with pytest.raises(UserInputError, match=error):
            check_method(model, created)


# ------------------------------------------------------------------------------- problem options


def test_model_option_of_the_dense_problems() -> None:
    problem = create_problem("synthetic_scenes", preset="R18", model="deeplabv3plus", width=4)
    assert problem.option_values["encoder"] == "resnet50"  # 001's backbone before the preset's
    assert problem.build_model().architecture == "deeplabv3plus"
    explicit = create_problem("synthetic_scenes", preset="R18", model="deeplabv3plus", encoder="resnet18", width=4)
    assert explicit.option_values["encoder"] == "resnet18"
    assert "model" not in create_problem("synthetic_scenes", preset="R18").reference_config()
    assert create_problem("synthetic_scenes", preset="R18", model="segnet").reference_config()["model"] == "segnet"
    with pytest.raises(UserInputError, match="choose one of: aspp, segnet, segnet_mtan"):
        create_problem("synthetic_scenes", model="unet")
    with pytest.raises(UserInputError, match="multiples of 32; got 80x48"):
        create_problem("synthetic_scenes", model="segnet", resolution="80x48")
    with pytest.raises(UserInputError, match="multiples of 16; got 72x40"):
        create_problem("cityscapes", model="deeplabv3plus_decoder", resolution="72x40")
    with pytest.raises(UserInputError, match="encoder_weights is for ResNet encoders, not model segnet_mtan"):
        create_problem("synthetic_scenes", model="segnet_mtan", encoder_weights="r50.pth")
    nyu = create_problem("nyuv2", model="segnet_mtan", width=2)
    model = nyu.build_model()
    assert model.architecture == "segnet_mtan" and list(model.heads) == ["S", "D", "N"]
    assert model.heads["S"].classifier.out_channels == 13


# --------------------------------------------------------------------------------- end to end

#: one method per family: loss weighting, parameter-level, representation-level, model-changing
FAMILIES = ("uw", "cagrad", "imtl", "rotograd")
REFUSED = {("segnet_mtan", "imtl"), ("segnet_mtan", "rotograd"), ("deeplabv3plus_decoder", "rotograd")}
TINY = {"width": 4, "n_images": 10, "resolution": "64x32"}


@pytest.mark.parametrize("preset", ["R18", "NYUv2"])
@pytest.mark.parametrize("name", MODELS[1:])
@pytest.mark.parametrize("method", FAMILIES)
def test_every_model_trains_on_the_scenes(preset: str, name: str, method: str) -> None:
    options = {"preset": preset, "model": name, **TINY}
    if preset == "NYUv2":
        options["resolution"] = "64x64"
    config = RunConfig(
        problem="synthetic_scenes",
        tasks={"R18": "S_D", "NYUv2": "S_D_N"}[preset],
        method=method,
        problem_options=options,
        epochs=1,
        batch_size=3,
        threads=1,
        device="cpu",
    )
    if (name, method) in REFUSED:
        with pytest.raises(UserInputError, match=f"model {name} has"):
            Trainer(config, require_reference=False).run()
        return
    result = Trainer(config, require_reference=False).run()
    assert result.status == "completed", result.error
    tasks = {"R18": {"S", "D"}, "NYUv2": {"S", "D", "N"}}[preset]
    assert set(result.test_metrics) == tasks
    assert all(math.isfinite(v) for v in result.history[0]["train_losses"].values())


# ---------------------------------------------------------------------------------- city_001, scale_crop

LR_001 = [0.5, 0.1, 0.05, 0.01, 0.005, 0.001, 0.0005, 0.0001, 0.00005, 0.00001]


@pytest.mark.parametrize("scale", ["paper", "cpu", "smoke"])
def test_city_001_spec_is_001s_setup(scale: str) -> None:
    plan = SweepPlan(load_spec("city_001", scale), threads=1)
    lrs = set()
    for group in plan.method_groups:
        for trial in group.search_trials():
            config = trial.config
            lrs.add(config.lr)
            assert (config.optimizer, config.weight_decay, config.objective) == ("adam", 1e-5, "sum")
            assert (config.scheduler, config.step_size, config.scheduler_gamma) == ("step", 100, 0.5)
            assert config.selection == "delta_m_metrics"
            options = config.problem_options
            assert (options["model"], options["classes"], options["augmentation"]) == ("segnet", 7, "scale_crop")
            if group.name == "imtl":
                assert config.method_params["space"] == "parameters"  # LibMTL's rep_grad is off by default
    assert plan.tasks == ["S", "D"]
    if scale == "paper":
        config = plan.method_groups[0].search_trials()[0].config
        assert (config.problem, config.problem_options["resolution"]) == ("cityscapes", "256x128")
        assert (config.epochs, config.batch_size) == (300, 64)
        assert sorted(lrs, reverse=True) == LR_001
        assert sum(len(g.search_trials()) for g in plan.method_groups) == 180  # 6 methods x 10 lrs x 3 seeds
    else:
        assert plan.method_groups[0].search_trials()[0].config.problem == "synthetic_scenes"


@pytest.mark.parametrize("name", ["city_001", "nyuv2_001"])
def test_the_001_specs_select_each_model(name: str) -> None:
    for model in MODELS:
        plan = SweepPlan(load_spec(name, "smoke", model=model), threads=1)
        assert {g.search_trials()[0].config.problem_options["model"] for g in plan.method_groups} == {model}
    with pytest.raises(UserInputError, match="model: must be an architecture name"):
        load_spec(name, "smoke", model="")


@pytest.mark.parametrize("model", ["segnet", "deeplabv3plus"])
def test_city_001_smoke_runs_train_on_the_scenes(model: str) -> None:
    """A run of each family from the smoke plan (the whole sweep is 23 runs: too slow for the suite)."""
    plan = SweepPlan(load_spec("city_001", "smoke", model=model), threads=1)
    for group in plan.method_groups:
        if group.name in ("uw", "cagrad", "imtl"):
            result = Trainer(group.search_trials()[0].config, require_reference=False).run()
            assert result.status == "completed", result.error
            assert set(result.test_metrics) == {"S", "D"}


def test_scale_crop_augmentation_keeps_targets_consistent() -> None:
    problem = create_problem(
        "synthetic_scenes", "S_D", preset="R18", resolution="64x32", n_images=12, augmentation="scale_crop"
    )
    plain = problem.make_batch("train", np.arange(8))
    augmented = problem.make_batch("train", np.arange(8), augment_with=torch.Generator().manual_seed(3))
    scales = set()
    for b in range(8):
        label, disparity = augmented.targets["S"][b], augmented.targets["D"][b, 0]
        assert torch.equal(disparity > 0, label != scenes.to_categories(np.array([scenes.SKY]))[0].item())
        original = set(plain.targets["D"][b].unique().tolist())
        values = disparity.unique().tolist()
        # nearest resampling then / s: every value is an original disparity divided by one scale
        fits = [
            s
            for s in (1.0, 1.2, 1.5)
            if all(any(abs(v * s - o) < 1e-4 * max(1.0, o) for o in original) for v in values)
        ]
        assert fits
        scales.add(fits[-1])
    assert len(scales) > 1  # several scales were drawn
    with pytest.raises(UserInputError, match="scale_crop is for tasks S and D"):
        create_problem("synthetic_scenes", "S_D_I", augmentation="scale_crop")
