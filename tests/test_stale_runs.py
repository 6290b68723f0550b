"""Stale runs: a SIGKILLed `mtlbench train` shows as interrupted and resumes from last.pt to the numbers of an
uninterrupted run; a live run shows as running and is not trained twice; another host's run is judged by its
heartbeat; the heartbeat thread; a sweep resumes an interrupted run and stops at a live one."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from mtlbench.cli.main import main
from mtlbench.store import RunInProgressError
from mtlbench.store import results as results_module
from mtlbench.store.heartbeat import Heartbeat, heartbeat
from mtlbench.store.results import ResultsStore
from mtlbench.sweeps import Sweep, load_spec

TRAIN = ["train", "--problem", "synthetic", "--tasks", "T0_T1", "--epochs", "3", "--batch-size", "64", "--lr", "0.01"]
TRAIN += ["--threads", "1", "--device", "cpu", "--no-reference", "--no-progress"]

# The child trains with the CLI and, once epoch 2 of 3 is checkpointed in last.pt, says so and hangs (so that the
# kill lands at a known point).
CHILD = """
import sys, time
from pathlib import Path
from mtlbench.training import trainer as trainer_module

original = trainer_module.Trainer._save_last

def save_then_hang(self, state, *args):
    original(self, state, *args)
    if state["epoch"] == 2:
        Path(sys.argv[1]).write_text("saved")
        time.sleep(600)

trainer_module.Trainer._save_last = save_then_hang
from mtlbench.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def stamp(seconds_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat(timespec="milliseconds")


def listed(db: Path, capsys: pytest.CaptureFixture) -> list[dict]:
    capsys.readouterr()
    assert main(["results", "--results", str(db), "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def numbers(run: dict) -> list:
    keys = ("train_losses", "val_metrics", "val_losses", "weights", "lr", "val_delta_m")
    return [{key: epoch.get(key) for key in keys} for epoch in run["epochs"]]


def test_a_sigkilled_train_is_interrupted_then_resumes_to_the_same_numbers(tmp_path, capsys):
    db, marker = tmp_path / "results.db", tmp_path / "saved"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(marker), *TRAIN, "--results", str(db)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, "the training child exited early"
            assert time.monotonic() < deadline, "the training child did not reach epoch 2"
            time.sleep(0.05)
        [live] = listed(db, capsys)
        assert (live["status"], live["pid"], live["host"]) == ("running", child.pid, results_module.host_name())
        # a second `train` of the same run while the first lives: one line, the run is left alone
        assert main([*TRAIN, "--results", str(db)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"pid {child.pid}" in err and "being trained by another process" in err
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    killed_at = results_module._now()
    [dead] = listed(db, capsys)
    assert (dead["status"], dead["attempts"]) == ("interrupted", 1)
    assert main(["results", "--results", str(db), "--status", "interrupted"]) == 0
    assert "interrupted" in capsys.readouterr().out

    assert main([*TRAIN, "--results", str(db)]) == 0  # resumes from last.pt
    clean_db = tmp_path / "clean" / "results.db"  # own checkpoints folder
    assert main([*TRAIN, "--results", str(clean_db)]) == 0  # the same run, never interrupted
    store, clean = ResultsStore(db), ResultsStore(clean_db)
    resumed, uninterrupted = store.run(dead["id"]), clean.run(1)
    assert (resumed["status"], resumed["attempts"]) == ("completed", 2)
    assert numbers(resumed) == numbers(uninterrupted) and len(numbers(resumed)) == 3
    assert resumed["test_metrics"] == uninterrupted["test_metrics"]
    assert resumed["best_epoch"] == uninterrupted["best_epoch"]
    conn = sqlite3.connect(db)
    written = [row[0] for row in conn.execute("SELECT written_at FROM epochs ORDER BY epoch")]
    conn.close()
    assert written[0] < written[1] < killed_at < written[2]  # epochs 0 and 1 were not trained again


def test_another_hosts_run_is_judged_by_its_heartbeat(tmp_path, capsys):
    db = tmp_path / "results.db"
    store = ResultsStore(db)
    run_id = store.start_run({"problem": "synthetic", "seed": 0}, kind="multi_task", provenance={})
    limit = results_module.STALE_SECONDS

    def owned_by(heartbeat_age: float) -> None:
        conn = sqlite3.connect(db)
        conn.execute(
            "UPDATE runs SET host = 'gpu-node-7', pid = 4242, heartbeat_at = ?, updated_at = ? WHERE id = ?",
            (stamp(heartbeat_age), stamp(3 * limit), run_id),
        )
        conn.commit()
        conn.close()

    owned_by(limit - 30)
    [run] = listed(db, capsys)
    assert (run["status"], run["host"], run["pid"]) == ("running", "gpu-node-7", 4242)
    owned_by(limit + 30)
    assert listed(db, capsys)[0]["status"] == "interrupted"
    assert main(["results", "--results", str(db)]) == 0
    assert "interrupted" in capsys.readouterr().out
    assert main(["results", "--results", str(db), "--status", "stale"]) == 2
    assert "interrupted" in capsys.readouterr().err  # the allowed statuses are named
    store.close()


def test_the_heartbeat_thread_beats_until_the_run_ends(tmp_path):
    store = ResultsStore(tmp_path / "results.db")
    run_id = store.start_run({"seed": 0}, kind="multi_task", provenance={})
    first = store.run(run_id)["heartbeat_at"]
    with Heartbeat(store, run_id, interval=0.02) as beat:
        deadline = time.monotonic() + 10
        while beat.beats < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert beat.beats >= 3 and not beat._thread.is_alive()
    last = store.run(run_id)["heartbeat_at"]
    assert last > first
    time.sleep(0.05)
    assert store.run(run_id)["heartbeat_at"] == last  # stopped with the block
    assert results_module.HEARTBEAT_SECONDS * 5 <= results_module.STALE_SECONDS  # several missed beats to go stale

    class Recording:  # a Ray worker's store records the run and has no heartbeat
        pass

    with heartbeat(Recording(), 0) as nothing:
        assert nothing is None
    store.close()


SPEC = """
name = "stale"
problem = "synthetic"
tasks = "T0_T1"
methods = ["unit_scal"]
search_seeds = 1
final_seeds = 1

[problem_options]
train_size = 64
eval_size = 32

[settings]
epochs = 1
batch_size = 32
threads = 1

[grid]
lr = [0.01]

[references]
search_seeds = 1
final_seeds = 1
"""


def test_a_sweep_resumes_an_interrupted_run_and_stops_at_a_live_one(tmp_path):
    (tmp_path / "sweep.toml").write_text(textwrap.dedent(SPEC))
    spec = load_spec(tmp_path / "sweep.toml")
    clean = ResultsStore(tmp_path / "clean.db")
    Sweep(spec, clean, workers=1).run()
    store = ResultsStore(tmp_path / "results.db")
    sweep = Sweep(spec, store, workers=1, checkpoint_root=tmp_path / "ckpt")
    trial = sweep.plan.reference_groups[0].search_trials()[0]
    run_id = store.start_run(trial.config.to_dict(), kind=trial.config.kind, provenance={})
    conn = sqlite3.connect(store.path)
    conn.execute("UPDATE runs SET host = 'gpu-node-7', pid = 4242, heartbeat_at = ? WHERE id = ?", (stamp(0), run_id))
    conn.commit()

    counts = {c.phase: c for c in sweep.dry_run().counts}
    assert (counts["reference-search"].elsewhere, counts["reference-search"].resuming) == (1, 0)
    with pytest.raises(RunInProgressError, match=f"run\\(s\\) {run_id} of this sweep"):
        sweep.run()
    assert store.run(run_id)["status"] == "running"  # left alone

    old = stamp(results_module.STALE_SECONDS + 1)
    conn.execute("UPDATE runs SET heartbeat_at = ?, updated_at = ? WHERE id = ?", (old, old, run_id))
    conn.commit()
    conn.close()
    counts = {c.phase: c for c in sweep.dry_run().counts}
    assert (counts["reference-search"].elsewhere, counts["reference-search"].resuming) == (0, 1)
    Sweep(spec, store, workers=1, checkpoint_root=tmp_path / "ckpt").run()
    resumed = store.run(run_id)
    assert (resumed["status"], resumed["attempts"], resumed["pid"]) == ("completed", 2, os.getpid())
    key = ["config_hash", "status", "val_delta_m", "test_delta_m"]
    pd.testing.assert_frame_equal(store.runs()[key], clean.runs()[key])
    pd.testing.assert_series_equal(store.test_metrics()["value"], clean.test_metrics()["value"])
