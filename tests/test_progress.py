"""Progress in a log: at most one plain line per interval with an ETA (driven by a fake clock), tables at
their natural width off a terminal, and ``val Δm -`` (no percent sign) where there is no Δm."""

from __future__ import annotations

import io
import itertools
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
from rich.console import Console
from rich.table import Table

from mtlbench.cli.common import EpochProgress, pct, print_table
from mtlbench.progress import PlainProgress, Throttle, duration, eta
from mtlbench.sweeps.progress import RichSweepReporter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def log_console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=300, force_terminal=False), buffer


def test_duration_and_eta():
    assert duration(3725.4) == "1:02:05" and duration(None) == "?" and duration(-1) == "?"
    assert eta(10.0, 25, 100) == 30.0  # 25 done in 10 s: 75 more take 30 s
    assert eta(10.0, 0, 100) is None


def test_throttle_says_yes_at_most_once_per_interval():
    clock = FakeClock()
    throttle = Throttle(5.0, clock)
    answers = []
    for _ in range(21):  # t = 0, 0.5, ..., 10
        answers.append((clock.now - 1000.0, throttle.ready()))
        clock.now += 0.5
    assert [t for t, yes in answers if yes] == [0.0, 5.0, 10.0]
    assert throttle.ready(force=True)


def test_plain_progress_prints_one_line_per_interval_with_the_eta():
    clock, lines = FakeClock(), []
    progress = PlainProgress("featurising QM9", 1000, unit="molecules", interval_s=5.0, clock=clock, write=lines.append)
    for _ in range(100):  # 10 molecules every 0.25 s: 40 per second, 25 s in all
        clock.now += 0.25
        progress.advance(10)
    progress.close()
    assert lines[0] == "featurising QM9: 0/1,000 molecules (0%), 0:00:00 elapsed, ETA ?"
    # t = 5 s: 200 done at 40/s, 800 left take 20 s
    assert lines[1] == "featurising QM9: 200/1,000 molecules (20%), 0:00:05 elapsed, ETA 0:00:20"
    assert lines[-1] == "featurising QM9: 1,000/1,000 molecules (100%) in 0:00:25"
    assert len(lines) == 6  # t = 0, 5, 10, 15, 20 (at t = 25 the work is done: only the closing line)


def test_a_resumed_job_estimates_from_the_work_done_in_this_session():
    clock, lines = FakeClock(), []
    progress = PlainProgress("job", 100, completed=60, interval_s=5.0, clock=clock, write=lines.append)
    clock.now += 10.0
    progress.advance(20)  # 20 in 10 s (the 60 from before are not counted): 20 left take 10 s
    assert lines[-1] == "job: 80/100 (80%), 0:00:10 elapsed, ETA 0:00:10"


def epoch_events(epochs: int, steps: int, clock: FakeClock, seconds_per_step: float, delta_m=None):
    for epoch in range(epochs):
        yield {"event": "epoch_start", "epoch": epoch, "epochs": epochs, "steps": steps}
        for step in range(1, steps + 1):
            clock.now += seconds_per_step
            yield {"event": "step", "step": step, "steps": steps}
        yield {
            "event": "epoch_end",
            "epoch": epoch,
            "epochs": epochs,
            "train_losses": {"T0": 0.5},
            "val_delta_m": delta_m,
            "seconds": steps * seconds_per_step,
        }


def test_epoch_progress_in_a_log_keeps_to_the_interval_and_gives_the_eta():
    clock = FakeClock()
    out, buffer = log_console()
    progress = EpochProgress("cagrad", False, clock=clock, interval_s=5.0, out=out)
    stamps = []
    for event in epoch_events(epochs=10, steps=10, clock=clock, seconds_per_step=0.2, delta_m=1.234):
        before = buffer.getvalue().count("\n")
        progress(event)
        stamps += [clock.now - 1000.0] * (buffer.getvalue().count("\n") - before)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == len(stamps) == 5  # 20 s of work: t = 0.2, 5.2, 10.2, 15.2 and the last epoch at t = 20
    assert all(b - a >= 5.0 - 1e-9 for a, b in itertools.pairwise(stamps[:-1]))  # the last epoch's line is extra
    assert lines[0] == "cagrad epoch 1/10 step 1/10, ETA 0:00:20"  # 1 of 100 steps in 0.2 s
    assert lines[1] == "cagrad epoch 3/10 step 6/10, ETA 0:00:15"  # 26 of 100 steps in 5.2 s
    assert lines[-1] == "cagrad epoch 10/10: loss T0=0.5 | val Δm 1.23% | 2.0s"


def test_each_run_of_a_shared_progress_has_its_own_eta():
    clock = FakeClock()
    out, buffer = log_console()
    progress = EpochProgress("reference", False, clock=clock, interval_s=0.0, out=out)
    for event in epoch_events(epochs=2, steps=2, clock=clock, seconds_per_step=1.0):  # task 1: 4 s
        progress(event)
    clock.now += 100.0  # evaluation, the next task's set-up
    for event in epoch_events(epochs=2, steps=2, clock=clock, seconds_per_step=1.0):  # task 2: the same 4 s
        progress(event)
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 12 and lines[:6] == lines[6:]  # the 100 s between the runs count in neither ETA
    assert lines[0] == "reference epoch 1/2 step 1/2, ETA 0:00:03"


def test_a_reference_epoch_has_no_percent_sign():
    clock = FakeClock()
    out, buffer = log_console()
    progress = EpochProgress("reference", True, clock=clock, interval_s=5.0, out=out)
    for event in epoch_events(epochs=2, steps=3, clock=clock, seconds_per_step=1.0):
        progress(event)
    lines = [line for line in buffer.getvalue().splitlines() if "epoch" in line and "loss" in line]
    assert lines == [
        "reference epoch 1/2: loss T0=0.5 | val Δm - | 3.0s | ETA 0:00:03",  # a terminal: every epoch's line
        "reference epoch 2/2: loss T0=0.5 | val Δm - | 3.0s",
    ]
    assert pct(None) == "-" and pct(-0.5) == "-0.50%"


def test_a_sweep_in_a_log_prints_one_summary_line_per_interval_and_every_failure():
    clock = FakeClock()
    out, buffer = log_console()
    reporter = RichSweepReporter(out, live=False, clock=clock, interval_s=5.0)
    reporter.planned("grid search", "cagrad", to_run=20, skipped=0)
    for i in range(20):
        clock.now += 1.0
        trial = SimpleNamespace(config=SimpleNamespace(kind="multi_task"), describe=lambda i=i: f"cagrad c=0.{i}")
        reporter.started(trial)
        failed = i == 7
        outcome = SimpleNamespace(
            status="failed" if failed else "completed", val_delta_m=1.5, run_id=i, seconds=1.0, error="NaN loss"
        )
        reporter.finished(trial, outcome)
    lines = buffer.getvalue().splitlines()
    progress = [line for line in lines if "runs:" in line]
    # t = 1 (first), 6, 11, 16 and the last run at t = 20
    assert [int(re.search(r"run (\d+)", line).group(1)) for line in progress] == [0, 5, 10, 15, 19]
    assert progress[1].startswith("  [6/20] runs: 6 completed, 0 failed, 0 running, ETA 0:00:14;")  # 6 in 6 s
    assert progress[2].startswith("  [11/20] runs: 10 completed, 1 failed, 0 running, ETA 0:00:09;")
    assert [line for line in lines if "failed cagrad" in line] == ["  failed cagrad c=0.7 (run 7): NaN loss"]


def test_tables_off_a_terminal_keep_every_name_whole():
    names = ["auto_lambda_with_a_long_configuration", "rlw_dirichlet_alpha=1.0", "configuration lr=0.001 d=0.1"]
    table = Table(title="methods")
    for column in ("method", "best configuration", "test Δm %"):
        table.add_column(column)
    for name in names:
        table.add_row(name, name * 2, "+1.000 ± 0.100")
    buffer = io.StringIO()
    print_table(table, Console(file=buffer, width=40, force_terminal=False))  # an 80-column log would cut them
    text = buffer.getvalue()
    assert "…" not in text
    assert all(name * 2 in text for name in names)


def test_sweep_list_in_a_log_keeps_names_and_descriptions_whole(capsys):
    from mtlbench.cli.main import main
    from mtlbench.sweeps.spec import builtin_specs, load_spec

    assert main(["sweep", "--list"]) == 0
    text = capsys.readouterr().err
    assert "…" not in text
    for name in builtin_specs():
        assert name in text and load_spec(name).description in text


def test_qm9_featurisation_in_a_log_prints_progress_lines(tmp_path: Path, monkeypatch, capsys):
    from mtlbench.data import qm9 as qm9_data
    from mtlbench.data.qm9_featurize import featurize_all

    monkeypatch.setenv("MTLBENCH_PROGRESS_INTERVAL", "0")  # a line per chunk
    sample = qm9_data.molecules_from_frame(pd.read_csv(Path(__file__).parent / "data" / "qm9_sample.csv"))
    featurize_all(sample.z, sample.pos, sample.atom_ptr, tmp_path / "chunks", chunk_size=8, workers=1, progress=True)
    lines = capsys.readouterr().err.splitlines()
    n = len(sample.atom_ptr) - 1
    assert lines[0].startswith(f"featurising QM9: 0/{n} molecules (0%)")
    assert any(line.startswith(f"featurising QM9: 8/{n} molecules") and "ETA" in line for line in lines)
    assert lines[-1].startswith(f"featurising QM9: {n}/{n} molecules (100%) in ")
