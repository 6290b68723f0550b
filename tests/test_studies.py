"""The studies: registry, declarations, the generated docs page, and every study at its ``test`` scale."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mtlbench.analysis.claims import HOLDS, VERDICTS
from mtlbench.cli.main import main
from mtlbench.studies import STUDIES
from mtlbench.studies.base import SCALES, Published, StudyContext, write_outcome
from mtlbench.studies.docs import DOC, render

ISSUE_20 = {
    "000-mnist",
    "000-similar-tasks",
    "000-ladder",
    "000-city19c",
    "000-qm9",
    "001-toy",
    "001-uw-optimal",
}


def test_registry_has_the_studies() -> None:
    assert set(STUDIES.names()) >= ISSUE_20


@pytest.mark.parametrize("name", STUDIES.names())
def test_declarations(name: str) -> None:
    study = STUDIES[name]()
    assert study.paper and study.targets and study.title
    assert set(SCALES) <= set(study.scales), f"{name} lacks a scale"
    keys = [cell.key for cell in study.cells()]
    assert len(keys) == len(set(keys)), f"{name}: duplicate cell keys"
    for cell in study.cells():
        published = cell.published
        assert isinstance(published, Published)
        # a number with its source, direction and units, or an explicit "no number" / printed text
        if published.value is None:
            assert published.text or "no number" in published.note or "figure" in published.note, cell.key
        else:
            assert math.isfinite(published.value) and published.source and published.direction in ("higher", "lower")
    for claim in study.claims():
        assert claim.kind in ("difference", "no_difference", "qualitative")
        if claim.kind == "no_difference":
            assert claim.margin, f"{name}: a no-difference claim states its margin"


def test_docs_page_is_generated_from_the_registry() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), "run `python -m mtlbench.studies.docs --write`"


def test_study_list_and_unknown_study(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ISSUE_20:
        assert name in out
    assert main(["study", "no-such-study", "--scale", "test"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-study" in err[0] and "001-toy" in err[0]
    assert main(["study", "001-toy", "--scale", "huge"]) == 2
    assert "huge" in capsys.readouterr().err


@pytest.mark.parametrize("name", STUDIES.names())
def test_every_study_runs_at_test_scale(name: str, fake_mnist, tmp_path: Path) -> None:
    study = STUDIES[name]()
    context = StudyContext("test", tmp_path / "results" / "results.db", tmp_path / "out", workers=1, threads=1)
    outcome = study.execute(context)
    assert outcome.scale == "test" and outcome.study == name
    declared = {cell.key for cell in study.cells()}
    shown = {result.cell.key for result in outcome.cells}
    assert declared <= shown, f"cells missing from the outcome: {sorted(declared - shown)[:5]}"
    assert any(result.ours is not None for result in outcome.cells), "the test scale computed no cell"
    assert {r.claim.key for r in outcome.claims} == {c.key for c in study.claims()}
    for result in outcome.claims:
        assert result.verdict in VERDICTS and result.detail
    paths = write_outcome(outcome, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert data["study"] == name and len(data["cells"]) == len(outcome.cells)
    assert "| claim |" in paths["markdown"].read_text() or not outcome.claims


def test_toy_reproduces_table_1_at_lr_10(tmp_path: Path) -> None:
    """001 Table 1 prints 26 (EW + Adam) and 27 (CAGrad + Adam) iterations at lr 10; the toy is deterministic."""
    outcome = STUDIES["001-toy"]().execute(StudyContext("test", tmp_path / "r.db", tmp_path / "out"))
    assert outcome.cell("adam/ew/lr=10").ours == 26
    assert outcome.cell("adam/cagrad/lr=10").ours == 27
    assert outcome.claim("ew_adam_high_lr").verdict == HOLDS


def test_uw_optimal_is_invariant_and_sgd_is_not(tmp_path: Path) -> None:
    outcome = STUDIES["001-uw-optimal"]().execute(StudyContext("test", tmp_path / "r.db", tmp_path / "out"))
    assert outcome.claim("uwo_invariant").verdict == HOLDS
    assert outcome.claim("sgd_never").verdict == HOLDS
    assert outcome.cell("uwo_sgd/learnable/backbone").ours < 1e-9
    assert outcome.cell("ew_sgd/frozen/head1").ours > 0.5
