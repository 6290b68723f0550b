"""Sweeps: spec parsing and one-line errors, grid expansion from the registries, dry-run counts,
selection (best mean val Delta_m, failed configurations ignored and counted), resume."""

from __future__ import annotations

import itertools
import math
import textwrap
from pathlib import Path

import pytest

from mtlbench.errors import UserInputError
from mtlbench.methods import get as get_method
from mtlbench.problems import PROBLEMS
from mtlbench.store.results import ResultsStore
from mtlbench.sweeps import Sweep, SweepReporter, builtin_specs, load_spec
from mtlbench.sweeps.plan import Candidate, StoredRun, SweepPlan, expand, select

TINY = """
name = "tiny"
problem = "synthetic"
tasks = "T0_T1"
methods = ["unit_scal", "cagrad"]
search_seeds = 2
final_seeds = 3

[problem_options]
train_size = 64
eval_size = 32

[settings]
epochs = 1
batch_size = 32
threads = 1

[grid]
lr = [0.01, 0.001]

[method_grids.cagrad]
c = [0.2, 0.5]

[references]
search_seeds = 1
final_seeds = 2
"""


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def store(tmp_path):
    return ResultsStore(tmp_path / "results.db")


def numbers(store: ResultsStore) -> dict:
    """(config hash, task, metric) -> test value, for every stored run."""
    runs = store.runs()
    hashes = dict(zip(runs["id"], runs["config_hash"], strict=True))
    return {(hashes[r.run_id], r.task, r.metric): r.value for r in store.test_metrics().itertuples()}


class Counting(SweepReporter):
    def __init__(self, stop_after: int | None = None) -> None:
        self.finished_runs: list = []
        self.stop_after = stop_after

    def finished(self, trial, outcome):
        self.finished_runs.append((trial, outcome))
        if self.stop_after is not None and len(self.finished_runs) >= self.stop_after:
            raise KeyboardInterrupt


# -------------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("problem = 'synthetic'\ntasks = [", "not valid TOML"),
        ("colour = 'red'\n" + TINY, "colour: unknown key; allowed: name, extends, scales"),
        (TINY.replace('methods = ["unit_scal", "cagrad"]', 'methods = "cagrad"'), "methods: must be a list"),
        (TINY.replace("epochs = 1", 'epochs = "ten"'), "settings.epochs: must be an integer"),
        (TINY.replace("threads = 1", "threads = 1\nmomentun = 0.5"), "settings.momentun: unknown key; allowed:"),
        (TINY.replace("[grid]", "[grid]\nbatch_size = [1]"), "grid.batch_size: unknown key; allowed: lr, dropout"),
        (TINY.replace("c = [0.2, 0.5]", "c = 0.2"), "method_grids.cagrad.c: must be a non-empty list"),
        (TINY + "\n[method_grids.pcgrad]\nx = [1]", "method_grids.pcgrad: not in methods; allowed: unit_scal, cagrad"),
        (TINY.replace("search_seeds = 2", "search_seeds = 0"), "search_seeds: must be a positive integer"),
        (TINY.replace('problem = "synthetic"\n', ""), "problem: missing"),
    ],
)
def test_malformed_sweep_files_give_one_line_naming_the_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(UserInputError) as caught:
        load_spec(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_unknown_scale_lists_the_defined_ones(tmp_path):
    path = write(tmp_path, TINY + "\n[scales.smoke]\nsearch_seeds = 1\n")
    assert load_spec(path, "smoke").search_seeds == 1
    with pytest.raises(UserInputError, match=r"scale 'huge' is not defined; choose one of: paper, smoke"):
        load_spec(path, "huge")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('"unit_scal", "cagrad"', '"unit_scl", "cagrad"', "methods: unknown method 'unit_scl'"),
        ("c = [0.2, 0.5]", "cc = [0.2]", "method_grids.cagrad.cc: unknown hyperparameter of cagrad; allowed:"),
        ("c = [0.2, 0.5]", "c = [0.2, 1.5]", "cagrad: c=1.5 is out of range"),
        ("eval_size = 32", "eval_size = 32\ncolour = 1", "unknown option of problem synthetic 'colour'"),
        ("lr = [0.01, 0.001]", "lr = [0.01, -1.0]", "lr=-1.0 must be > 0"),
        ('tasks = "T0_T1"', 'tasks = "T0_Q"', "unknown task of synthetic 'Q'"),
        ('"unit_scal", "cagrad"', '"unit_scal", "cagrad", "fixed_weights"', "fixed_weights"),
    ],
)
def test_bad_methods_hyperparameters_and_options_are_caught_before_anything_runs(tmp_path, store, old, new, message):
    text = TINY.replace(old, new)
    if "fixed_weights" in new:
        text += "\n[method_params.fixed_weights]\nweights = [1.0, -1.0]\n"
    path = write(tmp_path, text)
    with pytest.raises(UserInputError) as caught:
        Sweep(load_spec(path), store, workers=1).run()
    assert message in str(caught.value) and str(path) in str(caught.value)
    assert len(store.runs()) == 0


def test_extends_merges_tables_and_scales_overlay_the_file(tmp_path):
    write(tmp_path, TINY + "\n[scales.smoke]\nsettings = { epochs = 2 }\ngrid = { lr = [0.1] }\n", "base.toml")
    child = write(tmp_path, 'extends = "base.toml"\nname = "child"\n[settings]\nbatch_size = 16\n', "child.toml")
    spec = load_spec(child, "smoke")
    assert spec.name == "child" and spec.problem == "synthetic"
    assert spec.settings == {"epochs": 2, "batch_size": 16, "threads": 1}
    assert spec.grid == {"lr": [0.1]}
    assert load_spec(child).settings["epochs"] == 1


def test_yaml_and_toml_give_the_same_spec(tmp_path):
    import tomllib

    import yaml  # the dev extra installs pyyaml (YAML sweep files are optional for users)

    data = tomllib.loads(TINY)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    toml_spec = load_spec(write(tmp_path, TINY))
    yaml_spec = load_spec(path)
    for field in ("problem", "tasks", "methods", "settings", "grid", "method_grids", "references"):
        assert getattr(yaml_spec, field) == getattr(toml_spec, field)


# ------------------------------------------------------------------------------------- the grids
def test_grids_come_from_the_problem_defaults_and_the_method_registry():
    spec = load_spec("mnist_cl_rr")
    plan = SweepPlan(spec, threads=1)
    defaults = PROBLEMS["multi_mnist"].defaults.grids
    for group in plan.method_groups:
        own = get_method(group.name).grid("multi_mnist")
        grid = {**{k: defaults[k] for k in ("lr", "dropout", "weight_decay")}, **own}
        expected = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
        assert [dict(c.values) for c in group.candidates] == expected
        trial = group.trial(group.candidates[-1], 1)
        values = group.candidates[-1].values
        assert (trial.config.lr, trial.config.dropout) == (values["lr"], values["dropout"])
        assert all(trial.config.method_params[k] == values[k] for k in own)
    assert spec.search_seeds == 5 and spec.final_seeds == 10  # 000 section 3.1
    for group in plan.reference_groups:  # single-task references: the same lr x dropout grid, per task
        assert len(group.candidates) == len(defaults["lr"]) * len(defaults["dropout"])
        assert group.base.method == "unit_scal" and group.base.tasks == [group.task]


def test_settings_fix_a_key_out_of_the_grid_and_method_grids_override(tmp_path):
    text = TINY.replace("[grid]\nlr = [0.01, 0.001]", "").replace("threads = 1", "threads = 1\nlr = 0.005")
    text = text.replace("c = [0.2, 0.5]", "c = [0.3]\nlr = [0.02, 0.03]")
    plan = SweepPlan(load_spec(write(tmp_path, text)), threads=1)
    unit, cagrad = plan.method_groups
    assert [dict(c.values) for c in unit.candidates] == [{"dropout": 0.0, "weight_decay": 0.0}]
    assert unit.trial(unit.candidates[0], 1).config.lr == 0.005
    assert [c.values["lr"] for c in cagrad.candidates] == [0.02, 0.03]
    assert [c.values["c"] for c in cagrad.candidates] == [0.3, 0.3]


def test_grid_problem_borrows_another_problems_method_grids():
    spec = load_spec("scenes_19c")
    plan = SweepPlan(spec, threads=1)
    cagrad = plan.group("cagrad", "multi_task")
    assert sorted({c.values["c"] for c in cagrad.candidates}) == sorted(get_method("cagrad").grid("cityscapes")["c"])
    assert plan.tasks == ["S", "D", "I"]  # the preset's tasks, not every task of the problem


@pytest.mark.parametrize("name", sorted(builtin_specs()))
def test_every_builtin_spec_validates_at_its_small_scales(name):
    for scale in ("smoke", "cpu"):
        plan = SweepPlan(load_spec(name, scale), threads=1)
        assert plan.method_groups and all(g.candidates for g in plan.groups)


def test_expand_is_the_cartesian_product_first_key_slowest():
    assert expand({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]
    assert expand({}) == [{}]


# ------------------------------------------------------------------------------------- selection
def _run(status: str, value: float | None) -> StoredRun:
    return StoredRun(id=0, status=status, val_delta_m=value)


def test_selection_takes_the_best_mean_and_ignores_and_counts_failed_configurations():
    candidates = [Candidate(i, {"lr": lr}) for i, lr in enumerate([1e-2, 1e-3, 1e-4, 1e-5, 1e-6])]
    runs = {
        0: [_run("completed", -2.0), _run("completed", 0.0)],  # mean -1
        1: [_run("completed", 1.5), _run("completed", -0.5)],  # mean 0.5: the best usable one
        2: [_run("completed", 9.0), _run("failed", None)],  # one failed run: ignored
        3: [_run("completed", math.nan), _run("completed", 8.0)],  # non-finite score: ignored
        4: [_run("failed", None), _run("failed", None)],
    }
    selection = select("m", candidates, runs, lambda run: run.val_delta_m)
    assert selection.best is candidates[1] and selection.score == pytest.approx(0.5)
    assert selection.failed_configs == 3 and selection.failed_runs == 1 + 1 + 2
    lower = select("m", candidates[:2], runs, lambda run: run.val_delta_m, higher_is_better=False)
    assert lower.best is candidates[0]
    tie = select(
        "m", candidates[:2], {0: [_run("completed", 1.0)], 1: [_run("completed", 1.0)]}, lambda r: r.val_delta_m
    )
    assert tie.best is candidates[0]
    none = select("m", candidates[4:], runs, lambda run: run.val_delta_m)
    assert none.best is None and none.failed_configs == 1


# ---------------------------------------------------------------------------------- running sweeps
def test_dry_run_counts_then_a_run_stores_the_protocol_and_a_rerun_launches_nothing(tmp_path, store):
    spec = load_spec(write(tmp_path, TINY))
    sweep = Sweep(spec, store, workers=1, checkpoint_root=tmp_path / "ckpt")
    counts = {c.phase: c for c in sweep.dry_run().counts}
    assert counts["reference-search"].to_run == 2 * 2 * 1  # tasks x lr x reference search seeds
    assert counts["search"].to_run == (2 + 2 * 2) * 2  # (unit_scal + cagrad c) x lr x search seeds
    assert counts["final"].pending_groups == 2 and counts["final"].pending_runs == 2 * (3 - 2)
    assert counts["reference-final"].pending_runs == 2 * 1 * (2 - 1)

    report = sweep.run()
    # the references: mean over the final seeds 1..2 of the selected configuration, per metric
    for ref in report.references:
        runs = [store.run(run_id) for run_id in ref.value["run_ids"]]
        assert [r["seed"] for r in runs] == [1, 2] and ref.value["n_seeds"] == 2
        assert {r["config"]["lr"] for r in runs} == {ref.selection.best.values["lr"]}
        mean = sum(r["summary"]["selected"][ref.task][ref.metric]["test"] for r in runs) / 2
        stored = store.reference(sweep.plan.reference_key, [ref.task], "test")[ref.task][ref.metric]
        assert stored == pytest.approx(mean)
    # the methods: best mean val Delta_m over the search seeds, then seeds 1..3 of it
    for method in report.methods:
        scored = [s for s in method.selection.scores if s.score is not None]
        assert method.selection.score == max(s.score for s in scored)
        assert [f.seed for f in method.final] == [1, 2, 3]
        assert all(f.run.status == "completed" and set(f.test_metrics) == {"T0", "T1"} for f in method.final)
    assert report.launched == 4 + 2 + 12 + 2 == len(store.runs())

    again = Counting()
    rerun = Sweep(spec, store, workers=1, checkpoint_root=tmp_path / "ckpt", reporter=again)
    assert rerun.dry_run().to_run == 0
    assert rerun.run().launched == 0 and again.finished_runs == []
    assert not list((tmp_path / "ckpt").glob("*/last.pt"))  # pruned: completed runs never resume


def test_a_killed_sweep_resumes_with_the_rest_and_the_same_numbers(tmp_path, store):
    spec = load_spec(write(tmp_path, TINY))
    clean = ResultsStore(tmp_path / "clean.db")
    total = Sweep(spec, clean, workers=1).run().launched

    with pytest.raises(KeyboardInterrupt):
        Sweep(spec, store, workers=1, checkpoint_root=tmp_path / "ckpt", reporter=Counting(stop_after=7)).run()
    assert (store.runs()["status"] == "completed").sum() == 7
    resumed = Sweep(spec, store, workers=1, checkpoint_root=tmp_path / "ckpt").run()
    assert resumed.launched == total - 7
    assert numbers(store) == numbers(clean)


def test_failed_configurations_are_recorded_skipped_by_selection_and_not_relaunched(tmp_path, store):
    text = TINY.replace("lr = [0.01, 0.001]", "lr = [0.01, 1e30]").replace("search_seeds = 2", "search_seeds = 1")
    spec = load_spec(write(tmp_path, text))
    report = Sweep(spec, store, workers=1).run()
    failed = store.runs(status="failed")
    assert report.launched_failed == len(failed) > 0
    assert all("non-finite" in error for error in failed["error"])
    for method in report.methods:
        assert method.selection.best.values["lr"] == 0.01
        assert method.selection.failed_configs == len(method.selection.scores) // 2
    for ref in report.references:
        assert ref.selection.failed_configs == 1 and ref.value is not None
    assert Sweep(spec, store, workers=1).run().launched == 0
    assert Sweep(spec, store, workers=1, retry_failed=True).run().launched == len(failed)


def test_without_reference_stage_the_stored_references_are_required_before_any_run(tmp_path, store):
    from mtlbench.errors import MissingDataError
    from mtlbench.training import RunConfig
    from mtlbench.training.references import train_references

    spec = load_spec(write(tmp_path, TINY.replace("[references]", "[references]\nenabled = false")))
    with pytest.raises(MissingDataError, match=r"no single-task reference for T0 .*enable \[references\]"):
        Sweep(spec, store, workers=1).run()
    assert len(store.runs()) == 0
    base = RunConfig(problem="synthetic", tasks="T0_T1", problem_options=spec.problem_options, epochs=1, threads=1)
    train_references(base, [1], store=store)
    report = Sweep(spec, store, workers=1).run()
    assert report.references == [] and report.launched == 12 + 2
