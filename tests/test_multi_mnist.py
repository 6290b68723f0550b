"""Multi-MNIST: construction geometry, reproducible partners, splits, batches, LeNet, problem options."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mtlbench.cli.main import main
from mtlbench.data import multi_mnist as mm
from mtlbench.data.cache import CorruptDataError, atomic_save_npy, update_manifest
from mtlbench.errors import UserInputError
from mtlbench.models.lenet import LeNetEncoder
from mtlbench.problems import create_problem
from tests.conftest import FakeMnist

# PIL's NEAREST resize 36 -> 28 samples source pixel floor((i + 0.5) * 36 / 28):
PIL_ROWS = [0, 1, 3, 4, 5, 7, 8, 9, 10, 12, 13, 14, 16, 17, 18, 19, 21, 22, 23, 25, 26, 27, 28, 30, 31, 32, 34, 35]


def single_pixel(row: int, col: int, value: int) -> torch.Tensor:
    image = torch.zeros(1, 28, 28, dtype=torch.uint8)
    image[0, row, col] = value
    return image


# ----------------------------------------------------------------------------------------- geometry


def test_sampling_rows_follow_the_pil_formula() -> None:
    assert [int(np.floor((i + 0.5) * 36 / 28)) for i in range(28)] == PIL_ROWS


def test_left_digit_at_origin_right_digit_shifted_by_six() -> None:
    empty = torch.zeros(1, 28, 28, dtype=torch.uint8)
    # left (27, 27) -> canvas 27 = PIL_ROWS[21]; right (1, 2) -> canvas (7, 8) = PIL_ROWS[5], PIL_ROWS[6]
    out = mm.compose(single_pixel(27, 27, 200), empty)
    assert out.nonzero().tolist() == [[0, 21, 21]] and out[0, 21, 21] == 200
    out = mm.compose(empty, single_pixel(1, 2, 90))
    assert out.nonzero().tolist() == [[0, 5, 6]] and out[0, 5, 6] == 90
    # canvas row 6 is not sampled: the right digit's first row disappears in the resize
    assert mm.compose(empty, single_pixel(0, 3, 90)).count_nonzero() == 0


def test_overlap_is_the_pixelwise_maximum() -> None:
    # left (10, 10) and right (4, 4) both land on canvas (10, 10) = PIL_ROWS[8]
    for left_value, right_value in [(100, 180), (180, 100)]:
        out = mm.compose(single_pixel(10, 10, left_value), single_pixel(4, 4, right_value))
        assert out.nonzero().tolist() == [[0, 8, 8]] and out[0, 8, 8] == 180


def test_compose_equals_canvas_max_then_sampling() -> None:
    rng = np.random.default_rng(1)
    left = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    right = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    canvas = np.zeros((7, 36, 36), dtype=np.uint8)
    canvas[:, 0:28, 0:28] = left
    canvas[:, 6:34, 6:34] = np.maximum(canvas[:, 6:34, 6:34], right)
    expected = canvas[:, PIL_ROWS][:, :, PIL_ROWS]
    out = mm.compose(left, right)
    assert out.dtype == torch.uint8
    np.testing.assert_array_equal(out.numpy(), expected)


def test_compose_matches_the_reference_pil_pipeline() -> None:
    from PIL import Image as image_module
    rng = np.random.default_rng(2)
    left = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    right = rng.integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    out = mm.compose(left, right).numpy()
    for i in range(3):
        canvas = np.zeros((36, 36))
        canvas[0:28, 0:28] = left[i]
        canvas[6:34, 6:34] = right[i]
        canvas[6:28, 6:28] = np.maximum(left[i, 6:28, 6:28], right[i, 0:22, 0:22])
        reference = np.array(image_module.fromarray(canvas).resize((28, 28), resample=image_module.NEAREST))
        np.testing.assert_array_equal(out[i], reference)


def test_normalisation_constants() -> None:
    values = mm.normalize(torch.tensor([0, 255], dtype=torch.uint8))
    torch.testing.assert_close(values, torch.tensor([-0.1307 / 0.3081, (1 - 0.1307) / 0.3081]))
    assert values.dtype == torch.float32


# ------------------------------------------------------------------------------------ splits, cache


def test_split_sizes_and_indices(fake_mnist: FakeMnist) -> None:
    data = mm.load_multi_mnist(0)
    x, y = fake_mnist.arrays.x_train, fake_mnist.arrays.y_train
    ranges = {"train": (0, 250), "val": (250, 300), "test": (0, 60)}
    for split, (start, stop) in ranges.items():
        part = data.splits[split]
        assert len(part) == stop - start
        assert part.left_index.tolist() == list(range(start, stop))
        assert part.right_index.min() >= start and part.right_index.max() < stop
    val = data.splits["val"]
    np.testing.assert_array_equal(val.labels_left.numpy(), y[250:300])
    np.testing.assert_array_equal(val.labels_right.numpy(), y[val.right_index.numpy()])
    expected = mm.compose(x[250:300], x[val.right_index.numpy()])
    assert torch.equal(val.images, expected)
    test = data.splits["test"]
    np.testing.assert_array_equal(test.labels_left.numpy(), fake_mnist.arrays.y_test)


def test_partners_reproducible_and_independent_of_order(fake_mnist: FakeMnist) -> None:
    first = {split: part.right_index.clone() for split, part in mm.load_multi_mnist(0).splits.items()}
    shutil.rmtree(fake_mnist.root / "multi_mnist")
    second = mm.load_multi_mnist(0).splits
    for split in mm.SPLITS:
        assert torch.equal(first[split], second[split].right_index)
    # drawing one split alone gives the same partners as the full build (no shared generator state)
    assert np.array_equal(mm.draw_partners("val", 250, 300, 0), first["val"].numpy())
    assert np.array_equal(mm.draw_partners("test", 0, 60, 0), first["test"].numpy())
    assert not np.array_equal(mm.draw_partners("val", 250, 300, 1), first["val"].numpy())
    other = mm.load_multi_mnist(1).splits
    assert not torch.equal(other["train"].right_index, first["train"])


def test_saved_partners_are_the_source_of_truth(fake_mnist: FakeMnist) -> None:
    folder = mm.load_multi_mnist(0).folder
    custom = np.arange(299, 249, -1, dtype=np.int64)  # val partners: reversed order
    atomic_save_npy(folder / "partners_val.npy", custom)
    update_manifest(folder, ["partners_val.npy"])
    val = mm.load_multi_mnist(0).splits["val"]  # images are stale: rebuilt from the saved partners
    assert val.right_index.tolist() == custom.tolist()
    x = fake_mnist.arrays.x_train
    assert torch.equal(val.images, mm.compose(x[250:300], x[custom]))
    np.testing.assert_array_equal(val.labels_right.numpy(), fake_mnist.arrays.y_train[custom])


def test_corrupted_images_rebuilt_corrupted_partners_reported(fake_mnist: FakeMnist) -> None:
    data = mm.load_multi_mnist(0)
    images = data.splits["train"].images.clone()
    (data.folder / "images_train.npy").write_bytes(b"junk")
    assert torch.equal(mm.load_multi_mnist(0).splits["train"].images, images)
    partners = data.folder / "partners_test.npy"
    partners.write_bytes(partners.read_bytes()[:-8] + b"\x00" * 8)
    with pytest.raises(CorruptDataError, match=r"partners_test\.npy.*multi_mnist --force"):
        mm.load_multi_mnist(0)
    assert main(["data", "fetch", "multi_mnist", "--force"]) == 0  # redraws them
    assert torch.equal(mm.load_multi_mnist(0).splits["test"].right_index, data.splits["test"].right_index)


# ------------------------------------------------------------------------------------------ problem


def epoch_indices(problem, split: str, generator: torch.Generator | None) -> torch.Tensor:
    """Recover which example each batch row is by matching its pixels against the unshuffled split."""

    def pixel_rows(batches) -> list[bytes]:
        inputs = torch.cat([b.inputs for b in batches]).flatten(1)
        return [row.numpy().tobytes() for row in ((inputs * mm.STD + mm.MEAN) * 255).round().to(torch.uint8)]

    reference = pixel_rows(problem.batches(split, 1000))
    position = {row: i for i, row in enumerate(reference)}
    assert len(position) == len(reference)  # generated images are all distinct
    rows = pixel_rows(problem.batches(split, 64, shuffle=True, generator=generator))
    return torch.tensor([position[row] for row in rows])


def test_batches_cover_each_example_once_per_epoch(fake_mnist: FakeMnist) -> None:
    problem = create_problem("multi_mnist", "CL_CR_RL_RR")
    assert [problem.num_examples(s) for s in ("train", "val", "test")] == [250, 50, 60]
    order = epoch_indices(problem, "train", torch.Generator().manual_seed(3))
    assert sorted(order.tolist()) == list(range(250)) and order.tolist() != list(range(250))
    again = epoch_indices(problem, "train", torch.Generator().manual_seed(3))
    assert torch.equal(order, again)
    sizes = [b.size for b in problem.batches("train", 64, shuffle=True, generator=torch.Generator().manual_seed(0))]
    assert sizes == [64, 64, 64, 58]


def test_batch_targets_and_normalisation(fake_mnist: FakeMnist) -> None:
    problem = create_problem("multi_mnist", "CR_RL")
    data = mm.load_multi_mnist(0).splits["val"]
    batch = next(problem.batches("val", 20))
    assert batch.inputs.shape == (20, 1, 28, 28) and batch.inputs.dtype == torch.float32
    assert set(batch.targets) == {"CR", "RL"}
    torch.testing.assert_close(batch.inputs[:, 0], (data.images[:20].float() / 255 - 0.1307) / 0.3081)
    left = torch.from_numpy(fake_mnist.arrays.x_train[250:270]).float()
    torch.testing.assert_close(batch.targets["RL"], (left / 255 - 0.1307) / 0.3081)
    assert torch.equal(batch.targets["CR"], data.labels_right[:20])


def test_train_size_restricts_to_the_first_examples(fake_mnist: FakeMnist) -> None:
    problem = create_problem("multi_mnist", "CL", train_size="100")
    assert problem.num_examples("train") == 100 and problem.num_examples("val") == 50
    order = epoch_indices(problem, "train", torch.Generator().manual_seed(1))
    assert sorted(order.tolist()) == list(range(100))
    labels = torch.cat([b.targets["CL"] for b in problem.batches("train", 64)])
    np.testing.assert_array_equal(labels.numpy(), fake_mnist.arrays.y_train[:100])
    assert create_problem("multi_mnist", "CL", train_size="none").option_values["train_size"] is None
    with pytest.raises(UserInputError, match="exceeds the 250 training examples"):
        create_problem("multi_mnist", "CL", train_size=251).prepare()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"train_size": 0}, "train_size=0"),
        ({"train_size": "ten"}, "train_size='ten'"),
        ({"partner_seed": -1}, "partner_seed=-1"),
        ({"size": 3}, "unknown option of problem multi_mnist 'size'"),
    ],
)
def test_bad_options(options: dict, message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        create_problem("multi_mnist", "CL_RR", **options)


def test_unknown_task_and_split(fake_mnist: FakeMnist) -> None:
    with pytest.raises(UserInputError, match="choose one of: CL, CR, RL, RR"):
        create_problem("multi_mnist", "CL_XX")
    with pytest.raises(UserInputError, match="unknown split 'dev'"):
        create_problem("multi_mnist", "CL").num_examples("dev")


def test_data_checksums_name_every_file(fake_mnist: FakeMnist) -> None:
    sums = create_problem("multi_mnist", "CL_RR").data_checksums()
    expected = {f"mnist/{k}.npy" for k in ("x_train", "y_train", "x_test", "y_test")}
    expected |= {f"multi_mnist/seed0/{p}_{s}.npy" for p in ("partners", "images") for s in mm.SPLITS}
    assert set(sums) == expected
    assert all(len(value) == 64 for value in sums.values())


# -------------------------------------------------------------------------------------------- model


def test_lenet_shapes_representation_and_parameter_split() -> None:
    torch.manual_seed(0)
    problem = create_problem("multi_mnist", "CL_RR")  # no data needed to build the model
    model = problem.build_model(dropout=0.3)
    x = torch.randn(5, 1, 28, 28)
    z = model.encode(x)
    assert z.shape == (5, 50) and (z >= 0).all()  # after the final ReLU
    assert model.representation_size == 50
    outputs = model.decode(z)
    assert outputs["CL"].shape == (5, 10) and outputs["RR"].shape == (5, 28, 28)
    assert model.last_shared_layer is model.encoder.fc
    assert model.encoder.fc.weight.shape == (50, 320)
    # closed-form parameter counts: encoder 260 + 5020 + 16050, classifier 3060, reconstructor 214544
    assert sum(p.numel() for p in model.shared_parameters()) == 21330
    assert [sum(p.numel() for p in ps) for ps in model.task_parameters()] == [3060, 214544]
    dropouts = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts == [0.3, 0.3, 0.3]
    model.eval()
    assert torch.equal(model(x)["CL"], model(x)["CL"])


def test_encoder_layer_order_matches_the_reference() -> None:
    torch.manual_seed(1)
    encoder = LeNetEncoder().eval()
    x = torch.randn(2, 1, 28, 28)
    h = F.relu(F.max_pool2d(encoder.conv1(x), 2))
    h = F.relu(F.max_pool2d(encoder.conv2(h), 2))
    assert h.shape == (2, 20, 4, 4)
    torch.testing.assert_close(encoder(x), F.relu(encoder.fc(h.reshape(2, 320))))


def test_losses_metrics_and_one_training_step(fake_mnist: FakeMnist) -> None:
    torch.manual_seed(0)
    problem = create_problem("multi_mnist", "CL_RR")
    tasks = {task.name: task for task in problem.tasks}
    assert tasks["CL"].loss_type == "cross_entropy" and tasks["RR"].loss_type == "mse"
    assert tasks["CL"].metric("acc").higher_is_better and not tasks["RR"].metric("mse").higher_is_better
    model = problem.build_model()
    batches = list(problem.batches("val", 30))
    accumulators = {name: task.make_accumulator() for name, task in tasks.items()}
    correct, squared = 0, 0.0
    with torch.no_grad():
        for batch in batches:
            out = model(batch.inputs)
            for name in tasks:
                accumulators[name].update(out[name], batch.targets[name])
            correct += int((out["CL"].argmax(1) == batch.targets["CL"]).sum())
            squared += float(F.mse_loss(out["RR"], batch.targets["RR"], reduction="sum"))
            nll = F.nll_loss(F.log_softmax(out["CL"], 1), batch.targets["CL"])
            torch.testing.assert_close(tasks["CL"].loss(out["CL"], batch.targets["CL"]), nll)
    assert accumulators["CL"].compute()["acc"] == pytest.approx(correct / 50)
    assert accumulators["RR"].compute()["mse"] == pytest.approx(squared / (50 * 784), rel=1e-5)

    batch = batches[0]
    out = model(batch.inputs)
    loss = sum(task.loss(out[name], batch.targets[name]) for name, task in tasks.items())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_cli_fetch_multi_mnist(fake_mnist: FakeMnist, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "fetch", "multi_mnist"]) == 0
    assert "train 250, val 50, test 60" in capsys.readouterr().out
    assert main(["data", "fetch", "multi_mnist", "--source", "x"]) == 2
    assert "takes no --source" in capsys.readouterr().err
    assert main(["data", "info", "multi_mnist"]) == 0
    assert "seed0" in capsys.readouterr().out
