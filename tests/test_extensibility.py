"""Users register their own methods and problems (decorator or entry point) and train them like built-ins."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from mtlbench.methods import METHODS, LossWeightingMethod, register_method
from mtlbench.registry import Registry
from mtlbench.training import RunConfig, Trainer


def test_a_user_method_registered_with_the_decorator_trains_like_a_builtin():
    if "user_half" not in METHODS:

        @register_method
        class UserHalf(LossWeightingMethod):
            """Weights (0.5, 1.5): a user's own loss weighting."""

            name = "user_half"
            title = "User half"
            citation = "a user"

            def loss_weights(self, losses):
                return torch.tensor([0.5, 1.5])

    config = RunConfig(problem="synthetic", tasks="T0_T1", method="user_half", epochs=1, threads=1)
    result = Trainer(config, require_reference=False).run()
    assert result.status == "completed"
    assert result.history[0]["weights"] == pytest.approx({"T0": 0.5, "T1": 1.5})


def test_entry_points_are_discovered(tmp_path, monkeypatch):
    package = tmp_path / "site"
    (package / "user_methods_pkg-0.1.dist-info").mkdir(parents=True)
    (package / "user_methods_pkg-0.1.dist-info" / "METADATA").write_text("Name: user-methods-pkg\nVersion: 0.1\n")
    (package / "user_methods_pkg-0.1.dist-info" / "entry_points.txt").write_text(
        "[mtlbench.test_methods]\nthird = user_methods_module:ThirdParty\n"
    )
    (package / "user_methods_module.py").write_text(
        textwrap.dedent(
            """
            class ThirdParty:
                name = "third_party"
            """
        )
    )
    monkeypatch.syspath_prepend(str(package))
    registry = Registry("method", "mtlbench.test_methods")
    assert "third_party" in registry
    assert registry["third_party"].__name__ == "ThirdParty"
    sys.modules.pop("user_methods_module", None)
