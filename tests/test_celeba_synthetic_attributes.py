"""The generated stand-in ``synthetic_attributes``: its labels have the designed structure."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mtlbench.errors import UserInputError
from mtlbench.problems import create_problem
from mtlbench.problems import synthetic_attributes as sa


@pytest.fixture(scope="module")
def large():
    problem = create_problem("synthetic_attributes", "all", train_size=4000, eval_size=2000)
    problem.prepare()
    return problem


def test_correlations_have_the_designed_signs(large) -> None:
    attributes = large.all_attributes("train").float()
    corr = torch.corrcoef(attributes.T)
    for i in range(40):
        for j in range(i + 1, 40):
            if sa.GROUP[i] == sa.GROUP[j]:
                # same group: a = z XOR f, so E[a | z] = q + (1 - 2q) z and, the flips independent,
                # corr = sign_i sign_j (1 - 2q)^2 p (1 - p) / (r (1 - r)) with r = p (1 - q) + (1 - p) q
                p, q = sa.BASE_RATES[sa.GROUP[i]], sa.FLIP
                r = p * (1 - q) + (1 - p) * q
                expected = sa.SIGN[i] * sa.SIGN[j] * (1 - 2 * q) ** 2 * p * (1 - p) / (r * (1 - r))
                assert abs(corr[i, j] - expected) < 0.05, (i, j, float(corr[i, j]), expected)
                assert sa.SIGN[i] * sa.SIGN[j] * corr[i, j] > 0.35
            else:
                assert abs(corr[i, j]) < 0.08, (i, j, float(corr[i, j]))  # independent groups
    # base rates: a_j = z XOR f (rate p(1-q) + (1-p)q), negated for sign -1
    for j in range(40):
        p, q = sa.BASE_RATES[sa.GROUP[j]], sa.FLIP
        rate = p * (1 - q) + (1 - p) * q
        expected = rate if sa.SIGN[j] > 0 else 1 - rate
        assert abs(float(attributes[:, j].mean()) - expected) < 0.035, j


def test_hard_attributes_are_harder_for_a_linear_probe(large) -> None:
    def features(split: str) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(large._split(split)[0], 8).flatten(1)
        return torch.cat([pooled, torch.ones(len(pooled), 1)], dim=1)

    labels_train, labels_test = large.all_attributes("train").float(), large.all_attributes("test")
    weights = torch.linalg.lstsq(features("train"), 2 * labels_train - 1).solution
    accuracy = ((features("test") @ weights > 0).long() == labels_test).float().mean(dim=0)
    easy, hard = accuracy[list(sa.EASY)], accuracy[list(sa.HARD)]
    assert easy.min() > 0.97
    assert hard.max() < 0.93 and easy.mean() - hard.mean() > 0.08
    majority = torch.maximum(labels_test.float().mean(0), 1 - labels_test.float().mean(0))
    assert (hard > majority[list(sa.HARD)] + 0.05).all()  # hard, not impossible


def test_generation_is_deterministic_and_independent_of_the_chosen_tasks() -> None:
    one = create_problem("synthetic_attributes", ["A3", "A17"], train_size=32, eval_size=16)
    two = create_problem("synthetic_attributes", "all", train_size=32, eval_size=16)
    batch_one = next(one.batches("val", 16))
    batch_two = next(two.batches("val", 16))
    assert torch.equal(batch_one.inputs, batch_two.inputs)
    assert torch.equal(batch_one.targets["A17"], batch_two.targets["A17"])
    other = create_problem("synthetic_attributes", "all", train_size=32, eval_size=16, data_seed=1)
    assert not torch.equal(next(other.batches("val", 16)).inputs, batch_two.inputs)
    assert batch_two.inputs.shape == (16, 3, 32, 32) and len(batch_two.targets) == 40
    assert float(two._split("train")[0].std()) == pytest.approx(1.0, abs=0.15)


def test_model_heads_and_options() -> None:
    problem = create_problem("synthetic_attributes", "A0_A1", width=4, image_size=64, head="sigmoid")
    model = problem.build_model()
    assert model.representation_size == 8 * 4 * 4 and tuple(model.heads["A0"](torch.zeros(2, 128)).shape) == (2, 1)
    batch = next(problem.batches("train", 5))
    outputs = model(batch.inputs)
    loss = problem.tasks[0].loss(outputs["A0"], batch.targets["A0"])
    expected = F.binary_cross_entropy(torch.sigmoid(outputs["A0"].reshape(-1)), batch.targets["A0"].float())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(UserInputError, match="multiple of 32"):
        create_problem("synthetic_attributes", image_size=48)
    with pytest.raises(UserInputError, match="head"):
        create_problem("synthetic_attributes", head="softmax")
