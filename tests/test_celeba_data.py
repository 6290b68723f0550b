"""CelebA preparation on generated trees in the official layouts: every attribute, split and pixel checked."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mtlbench.data import DATASETS, celeba
from mtlbench.data.cache import CorruptDataError
from mtlbench.errors import MissingDataError, UserInputError
from mtlbench.problems import create_problem

#: image -> split, interleaved as the real list is not (the split must come from the file, not the order)
PARTITION = {f"{i:06d}.jpg": split for i, split in enumerate([0, 1, 2, 0, 0, 2, 1, 0, 2, 0, 1, 0], start=1)}
WIDTH, HEIGHT = 178, 218  # the aligned images


def make_tree(root: Path, *, variant: str = "png", layout: str = "official", seed: int = 0) -> dict:
    """A CelebA release with 12 random images; returns the truth (RGB pixels, +-1 attributes, splits)."""
    rng = np.random.default_rng(seed)
    names = list(PARTITION)
    values = rng.choice([-1, 1], size=(len(names), 40))
    folder_name = celeba.IMAGE_FOLDERS[variant]
    if layout == "official":
        images, anno, evaluation = root / "Img" / folder_name, root / "Anno", root / "Eval"
    else:  # torchvision's flat celeba/ folder
        images, anno, evaluation = root / "celeba" / folder_name, root / "celeba", root / "celeba"
    for folder in (images, anno, evaluation):
        folder.mkdir(parents=True, exist_ok=True)
    pixels = {}
    for name in names:
        rgb = rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
        path = images / (Path(name).stem + ".png" if variant == "png" else name)
        Image.fromarray(rgb).save(path)
        with Image.open(path) as saved:  # JPG is lossy: the truth is what a decoder reads back
            pixels[name] = np.asarray(saved.convert("RGB"))
    lines = [str(len(names)), " ".join(celeba.ATTRIBUTES)]
    lines += [
        name + "".join(f"{v:>3d}" if k % 2 else f"  {v:d}" for k, v in enumerate(row))
        for name, row in zip(names, values, strict=True)
    ]
    (anno / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (evaluation / "list_eval_partition.txt").write_text("".join(f"{n} {s}\n" for n, s in PARTITION.items()))
    return {"names": names, "values": values, "pixels": pixels}


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("MTLBENCH_DATA", str(root))
    return root


def _expected_image(rgb: np.ndarray) -> np.ndarray:
    """003's transform written independently: PIL's NEAREST resize to 64x64, then RGB -> BGR, CHW."""
    small = np.asarray(Image.fromarray(rgb).resize((64, 64), resample=Image.Resampling.NEAREST))
    return small[:, :, ::-1].transpose(2, 0, 1)


@pytest.mark.parametrize(("variant", "layout"), [("png", "official"), ("jpg", "torchvision")])
def test_every_split_attribute_and_pixel_is_exact(data_root: Path, tmp_path: Path, variant: str, layout: str) -> None:
    truth = make_tree(tmp_path / "raw", variant=variant, layout=layout)
    summary = celeba.prepare(tmp_path / "raw", workers=1)
    assert "12" in summary and variant.upper() in summary
    data = celeba.load_celeba()
    assert data.meta["variant"] == variant and data.meta["counts"] == {"train": 6, "val": 3, "test": 3}
    codes = {"train": 0, "val": 1, "test": 2}
    for split, part in data.splits.items():
        names = [n.decode() for n in part.names]
        assert names == [n for n in truth["names"] if PARTITION[n] == codes[split]]  # file order kept
        for k, name in enumerate(names):
            row = truth["names"].index(name)
            assert part.attributes[k].tolist() == [(v + 1) // 2 for v in truth["values"][row]]
            np.testing.assert_array_equal(part.images[k], _expected_image(truth["pixels"][name]))
        assert part.images.dtype == np.uint8 and part.attributes.dtype == np.int8
    assert set(data.checksums) == {f"celeba/{f}" for f in celeba.CACHE_FILES}
    assert "already prepared" in celeba.prepare(tmp_path / "raw", workers=1)


def test_normalisation_is_003s_mean_subtraction_over_255() -> None:
    image = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    image[0, :, 0, 1] = torch.tensor([100, 200, 0], dtype=torch.uint8)  # B, G, R
    out = celeba.normalize(image)
    assert out.dtype == torch.float32
    assert out[0, :, 0, 1].tolist() == pytest.approx(
        [(100 - 73.15835921) / 255, (200 - 82.90891754) / 255, -72.39239876 / 255]
    )
    assert out[0, 2, 1, 1].item() == pytest.approx(-72.39239876 / 255)


def test_problem_batches_and_tasks_by_official_name(data_root: Path, tmp_path: Path) -> None:
    truth = make_tree(tmp_path / "raw")
    celeba.prepare(tmp_path / "raw", workers=1)
    problem = create_problem("celeba", ["Young", "5_o_Clock_Shadow"], width=2)
    assert problem.task_names == ["Young", "5_o_Clock_Shadow"] and problem.num_examples("val") == 3
    assert len(create_problem("celeba", "all").task_names) == 40
    generator = torch.Generator().manual_seed(3)
    batches = list(problem.batches("train", 4, shuffle=True, generator=generator))
    seen = []
    for batch in batches:
        for k in range(batch.size):
            # find the image through its pixels: the shuffled batch must keep images and labels together
            image = (batch.inputs[k] * 255 + torch.tensor(celeba.MEAN_BGR).view(3, 1, 1)).round().to(torch.uint8)
            name = next(n for n in truth["names"] if np.array_equal(_expected_image(truth["pixels"][n]), image.numpy()))
            row = truth["names"].index(name)
            assert batch.targets["Young"][k].item() == (truth["values"][row][39] + 1) // 2
            assert batch.targets["5_o_Clock_Shadow"][k].item() == (truth["values"][row][0] + 1) // 2
            seen.append(name)
    assert sorted(seen) == sorted(n for n in truth["names"] if PARTITION[n] == 0)
    model = problem.build_model()
    with torch.no_grad():
        outputs = model(batches[0].inputs)
    assert model.representation_size == 8 * 2 * 4 and outputs["Young"].shape == (4, 2)
    assert torch.allclose(outputs["Young"].exp().sum(dim=1), torch.ones(4))  # log-softmax heads
    losses = [task.loss(outputs[task.name], batches[0].targets[task.name]) for task in problem.tasks]
    assert all(math.isfinite(loss.item()) for loss in losses)
    with pytest.raises(UserInputError, match="dropout_layout"):
        problem.build_model(dropout=0.1)


def test_missing_and_partial_trees_fail_in_one_line(data_root: Path, tmp_path: Path) -> None:
    with pytest.raises(MissingDataError, match="data prepare celeba --raw PATH"):
        create_problem("celeba").prepare()
    raw = tmp_path / "raw"
    make_tree(raw)
    (raw / "Eval" / "list_eval_partition.txt").rename(raw / "Eval" / "moved.txt")
    with pytest.raises(UserInputError, match=r"Eval/list_eval_partition.txt not found"):
        celeba.prepare(raw, workers=1)
    (raw / "Eval" / "moved.txt").rename(raw / "Eval" / "list_eval_partition.txt")
    (raw / "Img" / "img_align_celeba_png" / "000005.png").unlink()
    (raw / "Img" / "img_align_celeba_png" / "000009.png").unlink()
    with pytest.raises(UserInputError, match=r"000005\.png is missing"):
        celeba.prepare(raw, workers=1)
    assert not (data_root / "celeba" / "manifest.json").exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda lines: ["13", *lines[1:]], "announces 13 images but lists 12"),
        (lambda lines: [lines[0], lines[1].replace("Bald", "bald"), *lines[2:]], "attribute 5 is 'bald'"),
        (
            lambda lines: [
                *lines[:4],
                lines[4].replace(" 1", " 0", 1) if " 1" in lines[4] else lines[4].replace("-1", "0", 1),
                *lines[5:],
            ],
            "line 5 has the value '0'",
        ),
        (lambda lines: [*lines[:3], lines[3].rsplit(maxsplit=1)[0], *lines[4:]], "line 4 has 39 values"),
    ],
)
def test_bad_attribute_files_name_the_line(data_root: Path, tmp_path: Path, edit, message: str) -> None:
    raw = tmp_path / "raw"
    make_tree(raw)
    path = raw / "Anno" / "list_attr_celeba.txt"
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")
    with pytest.raises(UserInputError, match=message):
        celeba.prepare(raw, workers=1)


def test_bad_partition_and_corruption(data_root: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    make_tree(raw)
    partition = raw / "Eval" / "list_eval_partition.txt"
    good = partition.read_text()
    partition.write_text(good.replace("000002.jpg 1", "000002.jpg 3"))
    with pytest.raises(UserInputError, match=r"line 2 is '000002.jpg 3'"):
        celeba.prepare(raw, workers=1)
    partition.write_text(good.replace("000012.jpg 0\n", ""))
    with pytest.raises(UserInputError, match=r"000012\.jpg has attributes but no split"):
        celeba.prepare(raw, workers=1)
    partition.write_text(good)
    celeba.prepare(raw, workers=1)
    with open(data_root / "celeba" / "val_attributes.npy", "r+b") as handle:
        handle.seek(-1, 2)
        handle.write(b"\x07")
    with pytest.raises(CorruptDataError, match=r"val_attributes\.npy corrupted"):
        create_problem("celeba").prepare()


def test_cli_prepare_and_info(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mtlbench.cli.main import main

    make_tree(tmp_path / "raw", variant="jpg")
    assert main(["data", "prepare", "celeba", "--raw", str(tmp_path / "raw"), "--workers", "2", "--limit", "2"]) == 0
    assert DATASETS["celeba"].info()["counts"] == {"train": 2, "val": 2, "test": 2}
    assert main(["data", "prepare", "celeba"]) == 2
    assert "needs --raw PATH" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("unit_scal", {}),  # loss weighting
        ("famo", {"head": "sigmoid"}),  # FAMO's own CelebA head
        ("pcgrad", {"dropout_layout": "none"}),  # parameter level
        ("mgda_ub", {}),  # representation level
        ("rotograd", {}),  # model-changing
    ],
)
def test_celeba_trains_at_forty_tasks(data_root: Path, tmp_path: Path, method: str, options: dict) -> None:
    from mtlbench.training import RunConfig, Trainer

    make_tree(tmp_path / "raw")
    celeba.prepare(tmp_path / "raw", workers=1)
    config = RunConfig(
        problem="celeba",
        tasks="all",
        method=method,
        problem_options={"width": 2, **options},
        epochs=1,
        batch_size=3,
        threads=1,
        device="cpu",
    )
    result = Trainer(config, require_reference=False).run()
    assert result.status == "completed", result.error
    assert list(result.history[0]["train_losses"]) == list(celeba.ATTRIBUTES)
    assert all(math.isfinite(v) for v in result.history[0]["train_losses"].values())
    # three test images: every accuracy is a multiple of 1/3
    for metrics in result.test_metrics.values():
        assert round(metrics["acc"] * 3, 9) in (0, 1, 2, 3)


def test_the_celeba_spec_is_003s_protocol_at_every_scale() -> None:
    from mtlbench.sweeps import load_spec

    kurin = ["unit_scal", "mgda_ub", "imtl", "pcgrad", "graddrop", "rlw_dirichlet", "rlw_normal"]
    for scale in ("smoke", "cpu", "paper"):
        spec = load_spec("celeba", scale)
        assert spec.problem == "celeba" and spec.tasks == "all"
        assert spec.methods[:7] == kurin and {"cagrad", "nash_mtl", "famo", "edm", "cdtt"} <= set(spec.methods)
        assert spec.settings["selection"] == "mean_metric:acc" and spec.settings["objective"] == "sum"
        assert spec.method_grids["mgda_ub"]["lr"] == [0.0005] and spec.method_grids["imtl"]["lr"] == [0.0005]
    paper = load_spec("celeba", "paper")
    assert paper.grid["weight_decay"] == [0.0, 0.0001, 0.001] and paper.grid["lr"] == [0.001]
    assert paper.settings["batch_size"] == 128 and paper.settings["epochs"] == 50
    assert paper.settings["scheduler"] == "exponential" and paper.settings["scheduler_gamma"] == 0.95
    assert paper.problem_options["dropout_layout"] == "kurin" and not paper.references.enabled


def test_stored_reference_runs_keep_task_names_with_underscores() -> None:
    """The sweep's store lookup finds a reference run's selected values for 5_o_Clock_Shadow (not '5', 'o', ...)."""
    import pandas as pd

    from mtlbench.sweeps.plan import lookup

    prefix = "summary.selected."
    frame = pd.DataFrame(
        [
            {
                "id": 1,
                "config_hash": "a",
                "status": "completed",
                "tasks": "5_o_Clock_Shadow",
                f"{prefix}5_o_Clock_Shadow.acc.val": 0.75,
                f"{prefix}Bald.acc.val": float("nan"),
            },
            {
                "id": 2,
                "config_hash": "b",
                "status": "completed",
                "tasks": "Bald",
                f"{prefix}5_o_Clock_Shadow.acc.val": float("nan"),
                f"{prefix}Bald.acc.val": 0.5,
            },
        ]
    )

    class Store:
        def runs(self, config_hash):
            return frame[frame["config_hash"].isin(config_hash)]

    found = lookup(Store(), ["a", "b"])
    assert found["a"].selected == {"5_o_Clock_Shadow": {"acc": {"val": 0.75}}}
    assert found["b"].selected == {"Bald": {"acc": {"val": 0.5}}}
