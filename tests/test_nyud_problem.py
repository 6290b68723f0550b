"""The nyud problem: losses by hand, transforms, batches from a prepared fake tree, the generated NYUD and
PASCAL stand-ins' targets, and tiny end-to-end training with one method of each family."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mtlbench.data import nyud as nyud_data
from mtlbench.data import scenes_002
from mtlbench.data.cache import ENV_VAR
from mtlbench.errors import MissingDataError, UserInputError
from mtlbench.problems import create_problem
from mtlbench.problems.edge_eval import thin
from mtlbench.problems.nyud import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    depth_loss,
    edge_loss,
    invpt_train_transform,
    normals_loss,
    saliency_loss,
    segmentation_loss,
)
from mtlbench.training import RunConfig, Trainer
from tests.test_nyud_data import SPLITS, make_nyud_tree


def test_losses_by_hand() -> None:
    logits = torch.tensor([[[[0.0, 2.0]], [[0.0, 0.0]]]])  # (1, 2 classes, 1, 2)
    target = torch.tensor([[[1, 255]]])
    assert float(segmentation_loss(logits, target)) == pytest.approx(math.log(2))
    assert float(segmentation_loss(logits, torch.full((1, 1, 2), 255))) == 0.0  # no valid pixel: 0, not NaN
    assert float(depth_loss(torch.tensor([[[[1.0, 5.0, 2.0]]]]), torch.tensor([[[[2.0, 0.0, 4.0]]]]))) == 1.5
    output = torch.tensor([[[[2.0, 0.0]], [[0.0, 3.0]], [[0.0, 4.0]]]])  # pixels (2,0,0) and (0,3,4)
    target = torch.tensor([[[[0.0, 0.0]], [[1.0, 0.0]], [[0.0, 0.0]]]])  # (0,1,0) and invalid
    assert float(normals_loss(output, target)) == pytest.approx(2.0)  # |1-0| + |0-1| + 0
    z = torch.tensor([[[[0.0, 1.0, 3.0]]]])
    y = torch.tensor([[[[1.0, 0.0, 255.0]]]])
    sp = torch.nn.functional.softplus
    expected = (0.95 * math.log(2) + 0.05 * float(sp(torch.tensor(1.0)))) / 2
    assert float(edge_loss(z, y)) == pytest.approx(expected)
    # saliency: 1 positive, 2 negatives -> w = 2/3 on positives, 1/3 on negatives, / 3 valid pixels
    y = torch.tensor([[[[1.0, 0.0, 0.0, 255.0]]]])
    z = torch.tensor([[[[0.0, 1.0, -1.0, 9.0]]]])
    expected = (2 / 3 * math.log(2) + 1 / 3 * (float(sp(torch.tensor(1.0))) + float(sp(torch.tensor(-1.0))))) / 3
    assert float(saliency_loss(z, y)) == pytest.approx(expected)


def test_invpt_train_transform_scales_depth_flips_normals_and_pads() -> None:
    h, w = 20, 30
    sample = {
        "image": np.full((h, w, 3), 100.0, np.float32),
        "semseg": np.tile(np.arange(w, dtype=np.float32) % 3, (h, 1)),
        "depth": np.full((h, w), 2.0, np.float32),
        "normals": np.tile(np.array([0.6, 0.0, 0.8], np.float32), (h, w, 1)),
    }
    for seed in range(6):
        generator = torch.Generator().manual_seed(seed)
        scale = 0.5 + 1.5 * float(torch.rand((), generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
        out = invpt_train_transform({k: v.copy() for k, v in sample.items()}, 24, 32, generator)
        assert out["image"].shape == (24, 32, 3) and out["depth"].shape == (24, 32)
        inside = out["semseg"] != 255
        assert inside.sum() == min(int(h * scale), 24) * min(int(w * scale), 32)
        assert np.allclose(out["depth"][inside], 2.0 / scale) and (out["depth"][~inside] == 0).all()
        x = out["normals"][..., 0][inside]
        assert np.allclose(np.abs(x), 0.6) and len(np.unique(x)) == 1  # flipped as a whole or not at all
        assert (out["normals"][~inside] == 0).all()


def _logits(p: float) -> float:
    return math.log(p / (1 - p))


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(ENV_VAR, str(root))
    return root


def test_real_batches_from_a_prepared_tree(tmp_path: Path, data_root: Path) -> None:
    with pytest.raises(MissingDataError, match="data prepare nyud"):
        create_problem("nyud", resolution="32x24").prepare()
    written = make_nyud_tree(tmp_path / "raw", "NYUD_MT")
    nyud_data.prepare(tmp_path / "raw")
    problem = create_problem("nyud", resolution="32x24", width=8, edge_thresholds=3)
    assert problem.num_examples("train") == 3 and problem.num_examples("val") == problem.num_examples("test") == 2
    batch = next(problem.batches("test", 2))
    assert batch.inputs.shape == (2, 3, 24, 32)
    raw = written[SPLITS["val"][0]]  # 12x16, centred in 24x32 at rows 6..17, columns 8..23
    window = (slice(6, 18), slice(8, 24))
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1) * 255
    image = batch.inputs[0][:, window[0], window[1]] * std + mean
    assert torch.allclose(image, torch.from_numpy(raw["image"]).permute(2, 0, 1).float(), atol=1e-3)
    semseg = batch.targets["S"][0]
    expected = torch.from_numpy(raw["semseg"].astype(np.int64) - 1)
    expected[expected < 0] = 255
    assert torch.equal(semseg[window], expected) and (semseg[:6] == 255).all()
    assert torch.equal(batch.targets["D"][0, 0][window], torch.from_numpy(raw["depth"]))
    assert torch.equal(
        batch.targets["N"][0][:, window[0], window[1]], torch.from_numpy(raw["normals"]).permute(2, 0, 1)
    )
    assert torch.equal(batch.targets["E"][0, 0][window], torch.from_numpy(raw["edge"]).float())
    assert (batch.targets["E"][0, 0][:6] == 255).all()
    subset = create_problem("nyud", resolution="32x24", width=8, train_size=2)
    assert subset.num_examples("train") == 2 and subset._split("train").ids == SPLITS["train"][:2]
    batch = subset.make_batch("train", [1])
    assert torch.equal(batch.targets["D"][0, 0][window], torch.from_numpy(written[SPLITS["train"][1]]["depth"]))
    resized = create_problem("nyud", resolution="32x24", width=8, transform="mtinet")
    assert next(resized.batches("test", 2)).targets["S"].shape == (2, 24, 32)
    assert (next(resized.batches("test", 2)).targets["S"] != 255).any()


def test_bad_options_are_one_line_errors() -> None:
    with pytest.raises(UserInputError, match="resolution"):
        create_problem("nyud", resolution="30x20")
    with pytest.raises(UserInputError, match="edge_thresholds"):
        create_problem("nyud", edge_thresholds=0)
    with pytest.raises(UserInputError, match="transform"):
        create_problem("nyud", transform="resize")


@pytest.mark.parametrize("preset", ["NYUD", "PASCAL"])
def test_stand_in_targets(preset: str) -> None:
    splits = scenes_002.generate_splits(preset, n_images=12, width=32, seed=3, images_per_scene=4)
    train, test = splits["train"], splits["test"]
    assert len(train) == 9 and len(test) == 3
    assert train.scenes.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2] and test.scenes.tolist() == [2, 2, 2]
    a = train.arrays
    assert a["image"].shape == (9, 24 if preset == "NYUD" else 32, 32, 3)
    semseg = a["semseg"]
    assert semseg.max() < (40 if preset == "NYUD" else 21)
    for k in range(len(train)):  # edges are the thinned boundaries of the labels
        label = semseg[k].astype(float)
        x = np.pad(label, 1, mode="reflect")
        lap = x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:] - 4 * label
        assert np.array_equal(a["edge"][k], thin(lap != 0).astype(np.uint8))
    norms = np.linalg.norm(a["normals"], axis=-1)
    sky = norms == 0
    assert sky.any() and np.allclose(norms[~sky], 1.0)
    if preset == "NYUD":
        assert np.array_equal(a["depth"] == 0, sky)
        far = (a["depth"] > scenes_002.FAR * scenes_002.DEPTH_SCALE["NYUD"]) | sky
        assert np.array_equal(semseg % 2, far.astype(np.uint8))
    else:
        assert set(np.unique(a["sal"])) == {0, 1}
        assert (semseg[a["sal"] == 0] != 15).all()  # people are things, things are salient
        people = [k for k in range(len(train)) if (a["parts"][k] != 255).any()]
        assert people and all((a["parts"][k] == 255).all() for k in range(len(train)) if k not in people)
        for k in people:
            on_person = a["parts"][k] > 0
            assert (semseg[k][on_person] == 15).all() and (a["sal"][k][on_person] == 1).all()
            assert set(np.unique(a["parts"][k][on_person])) <= {1, 2, 3, 4, 5, 6}
    again = scenes_002.generate_splits(preset, n_images=12, width=32, seed=3, images_per_scene=4)
    assert again["train"].digest() == train.digest()


@pytest.mark.parametrize("method", ["uw", "pcgrad", "mgda_ub", "rotograd"])
def test_trains_end_to_end_on_the_stand_in(method: str) -> None:
    config = RunConfig(
        problem="nyud",
        tasks="all",
        method=method,
        problem_options={
            "source": "synthetic",
            "resolution": "32x24",
            "width": 4,
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
    metrics = result.test_metrics
    assert 0 <= metrics["S"]["miou"] <= 100 and 0 <= metrics["E"]["odsf"] <= 100
    assert math.isfinite(metrics["D"]["rmse"]) and 0 <= metrics["N"]["merr"] <= 180


def test_hsv_round_trip_and_nearest_resize() -> None:
    from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

    from mtlbench.problems.nyud import _hsv_to_rgb, _rgb_to_hsv, resize_sample

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 7, 3)).astype(np.float64)
    rgb[0, 0] = 0.0
    assert np.allclose(_rgb_to_hsv(rgb), rgb_to_hsv(rgb / 255.0))
    hsv = rng.random((6, 7, 3))
    assert np.allclose(_hsv_to_rgb(hsv), hsv_to_rgb(hsv) * 255.0)
    labels = np.arange(12, dtype=np.float32).reshape(3, 4)
    out = resize_sample({"image": np.zeros((3, 4, 3), np.float32), "semseg": labels}, 6, 2)
    # rows floor(i * 3 / 6) = 0 0 1 1 2 2, columns floor(j * 4 / 2) = 0 2
    assert out["semseg"].tolist() == [[0, 2], [0, 2], [4, 6], [4, 6], [8, 10], [8, 10]]


def test_validation_batches_for_training_are_refused() -> None:
    problem = create_problem("nyud", source="synthetic", n_images=8, synthetic_size=32, resolution="32x24", width=4)
    assert next(problem.batches("val", 2)).size == 2  # evaluation on val (= test) is fine
    with pytest.raises(UserInputError, match="no validation split"):
        next(problem.batches("val", 2, shuffle=True))


def test_best_test_reuses_the_validation_evaluation(monkeypatch: pytest.MonkeyPatch) -> None:
    from mtlbench.training import trainer as trainer_module

    seen: list[str] = []
    original = trainer_module.evaluate

    def counting(model, problem, split, **kwargs):
        seen.append(split)
        return original(model, problem, split, **kwargs)

    monkeypatch.setattr(trainer_module, "evaluate", counting)
    options = {"source": "synthetic", "resolution": "32x24", "width": 4, "n_images": 8, "synthetic_size": 32}
    config = RunConfig(
        problem="nyud",
        tasks="S_D",
        problem_options={**options, "edge_thresholds": 2},
        epochs=2,
        batch_size=3,
        threads=1,
        device="cpu",
        selection="best_test:val_loss",
    )
    result = Trainer(config, require_reference=False).run()
    assert result.status == "completed", result.error
    assert result.test_selected
    assert seen == ["val", "val"]  # val is test: no second pass over the same images
    assert all(record["test_metrics"] == record["val_metrics"] for record in result.history)
    plain = Trainer(
        RunConfig(
            problem="nyud", tasks="S_D", problem_options=options, epochs=1, batch_size=3, threads=1, device="cpu"
        ),
        require_reference=False,
    ).run()
    assert plain.status == "completed" and plain.test_selected  # any rule on val = test saw test
