"""Schema migration 1 -> 2 on a database written with schema version 1's DDL (as mtlbench 0.1.0 wrote it),
and the liveness rules of the reported run status (host, pid and process start; heartbeat age)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from mtlbench.errors import UserInputError
from mtlbench.store import ResultsStore, RunInProgressError
from mtlbench.store import results as results_module

# Schema version 1 exactly as the store created it before the liveness columns (no ``host``, ``pid``,
# ``process_start``, ``heartbeat_at``); written here so that the test does not depend on MIGRATIONS[0].
V1_DDL = """
CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    config_hash TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('multi_task', 'reference')),
    problem TEXT,
    tasks TEXT,
    method TEXT,
    seed INTEGER,
    status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    config TEXT NOT NULL,
    provenance TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    finished_at TEXT,
    best_epoch INTEGER,
    val_delta_m REAL,
    test_delta_m REAL,
    seconds REAL,
    summary TEXT,
    error TEXT
);
CREATE INDEX runs_by_problem ON runs (problem, tasks, method, kind, status);
CREATE INDEX runs_by_status ON runs (status);
CREATE TABLE epochs (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    lr REAL,
    seconds REAL,
    val_delta_m REAL,
    record TEXT NOT NULL,
    written_at TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE test_metrics (
    run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL,
    selected_epoch INTEGER,
    PRIMARY KEY (run_id, task, metric)
);
CREATE TABLE refs (
    key_hash TEXT NOT NULL,
    key TEXT NOT NULL,
    problem TEXT,
    split TEXT NOT NULL,
    task TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL,
    n_seeds INTEGER NOT NULL,
    run_ids TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (key_hash, split, task, metric)
);
"""


def stamp(seconds_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat(timespec="milliseconds")


def config(seed: int, method: str = "unit_scal") -> dict:
    return {"problem": "multi_mnist", "tasks": ["CL", "RR"], "method": method, "seed": seed, "epochs": 2}


def write_v1(path: Path) -> None:
    """A schema-1 database: one completed run (epochs, test metrics, a reference), one failed, one running run
    last updated an hour ago (its process is long gone) and one updated a second ago."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(V1_DDL)
    conn.execute("INSERT INTO schema_version VALUES (1, ?)", (stamp(7200),))
    rows = [
        (1, "completed", stamp(4000), 1, -1.25, -2.5, 12.0, '{"best_epoch": 1}', None),
        (2, "failed", stamp(3900), None, None, None, None, None, "RunFailedError: loss is nan"),
        (3, "running", stamp(3600), None, None, None, None, None, None),
        (4, "running", stamp(1), None, None, None, None, None, None),
    ]
    for seed, status, updated, best, val, test, seconds, summary, error in rows:
        conn.execute(
            "INSERT INTO runs (config_hash, kind, problem, tasks, method, seed, status, config, provenance, started_at,"
            " updated_at, finished_at, best_epoch, val_delta_m, test_delta_m, seconds, summary, error)"
            " VALUES (?, 'multi_task', 'multi_mnist', 'CL_RR', 'unit_scal', ?, ?, ?, '{}', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                results_module.config_hash(config(seed)),
                seed,
                status,
                results_module.dumps(config(seed)),
                stamp(7000),
                updated,
                updated if status != "running" else None,
                best,
                val,
                test,
                seconds,
                summary,
                error,
            ),
        )
    for epoch in range(2):
        conn.execute(
            "INSERT INTO epochs VALUES (1, ?, 0.001, 1.5, ?, ?, ?)",
            (epoch, -2.0 + epoch, results_module.dumps({"val_delta_m": -2.0 + epoch, "lr": 0.001}), stamp(4000)),
        )
    conn.execute("INSERT INTO test_metrics VALUES (1, 'CL', 'accuracy', 0.875, 1)")
    conn.execute("INSERT INTO test_metrics VALUES (1, 'RR', 'mse', NULL, 1)")  # NaN
    key = {"problem": "multi_mnist", "epochs": 2}
    conn.execute(
        "INSERT INTO refs VALUES (?, ?, 'multi_mnist', 'val', 'CL', 'accuracy', 0.9, 3, '[1, 2, 3]', ?)",
        (results_module.config_hash(key), results_module.dumps(key, canonical=True), stamp(5000)),
    )
    conn.commit()
    conn.close()


def columns(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
    finally:
        conn.close()


def test_schema_1_database_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    write_v1(path)
    assert "heartbeat_at" not in columns(path)
    with ResultsStore(path) as store:
        assert store.schema_version == results_module.SCHEMA_VERSION  # v1 -> 2 -> 3 in place
        assert {"host", "pid", "process_start", "heartbeat_at"} <= set(columns(path))
        runs = store.runs().set_index("seed")
        # the data survive unchanged; old running rows have no host: their last update is their heartbeat
        assert list(runs.index) == [1, 2, 3, 4]
        assert list(runs["status"]) == ["completed", "failed", "interrupted", "running"]
        assert runs.loc[1, "test_delta_m"] == -2.5 and runs.loc[1, "best_epoch"] == 1
        assert runs.loc[2, "error"] == "RunFailedError: loss is nan"
        assert runs["host"].isna().all() and runs["pid"].isna().all()
        assert runs.loc[3, "heartbeat_at"] == runs.loc[3, "updated_at"]
        assert pd.isna(runs.loc[1, "heartbeat_at"])  # only unfinished runs get a heartbeat
        completed = store.run(int(runs.loc[1, "id"]))
        assert [e["val_delta_m"] for e in completed["epochs"]] == [-2.0, -1.0]
        assert completed["test_metrics"]["CL"] == {"accuracy": 0.875}
        assert completed["test_metrics"]["RR"]["mse"] != completed["test_metrics"]["RR"]["mse"]  # NaN
        assert store.reference({"problem": "multi_mnist", "epochs": 2}, ["CL"], "val") == {"CL": {"accuracy": 0.9}}
        assert list(store.runs(status="interrupted")["seed"]) == [3]
        assert list(store.runs(status=["running", "completed"])["seed"]) == [1, 4]
        assert list(store.epochs(status="completed")["epoch"]) == [0, 1]
        assert store.test_metrics(status="interrupted").empty
        # the interrupted run resumes in this process and takes it over
        run_id = store.start_run(config(3), kind="multi_task", provenance={})
        resumed = store.run(run_id)
        assert (resumed["status"], resumed["attempts"], resumed["pid"]) == ("running", 2, os.getpid())
        assert resumed["host"] == results_module.host_name()
    conn = sqlite3.connect(path)
    versions = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert versions == [(v,) for v in range(1, results_module.SCHEMA_VERSION + 1)]
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


def test_unknown_status_filter_names_the_allowed_ones(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "r.db") as store, pytest.raises(UserInputError, match="interrupted"):
        store.runs(status="stale")


def set_owner(path: Path, run_id: int, **values: object) -> None:
    conn = sqlite3.connect(path)
    assignments = ", ".join(f"{name} = ?" for name in values)
    conn.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*values.values(), run_id))
    conn.commit()
    conn.close()


def test_liveness_same_host_by_process_other_host_by_heartbeat(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    store = ResultsStore(path)
    run_id = store.start_run(config(0), kind="multi_task", provenance={})
    me = store.run(run_id)
    assert (me["status"], me["host"], me["pid"]) == ("running", results_module.host_name(), os.getpid())
    assert me["process_start"] == results_module.process_start(os.getpid())  # Linux: boot id and start ticks

    # a process that has exited: its pid is gone (reaped)
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    set_owner(path, run_id, pid=int(child.stdout))
    assert store.run(run_id)["status"] == "interrupted"
    # a live pid that is another process than the one recorded (a reused pid): start time differs
    set_owner(path, run_id, pid=1, process_start=me["process_start"])
    assert store.run(run_id)["status"] == "interrupted"
    set_owner(path, run_id, pid=1, process_start=results_module.process_start(1))
    assert store.run(run_id)["status"] == "running"
    # another host: only the heartbeat counts
    limit = results_module.STALE_SECONDS
    set_owner(path, run_id, host="elsewhere", pid=1, heartbeat_at=stamp(limit + 60), updated_at=stamp(limit + 60))
    assert store.run(run_id)["status"] == "interrupted"
    set_owner(path, run_id, heartbeat_at=stamp(limit - 60))
    assert store.run(run_id)["status"] == "running"
    store.heartbeat(run_id)
    assert store.run(run_id)["heartbeat_at"] > stamp(5)
    # a live run of another process is refused, with its owner in the message
    with pytest.raises(RunInProgressError, match="pid 1 on host elsewhere"):
        store.start_run(config(0), kind="multi_task", provenance={})
    # ... and resumed once stale
    set_owner(path, run_id, heartbeat_at=stamp(limit + 1), updated_at=stamp(limit + 1))
    assert store.start_run(config(0), kind="multi_task", provenance={}) == run_id
    store.finish_run(run_id, test_metrics={"CL": {"accuracy": 1.0}}, summary={})
    store.heartbeat(run_id)  # a finished run keeps its status
    assert store.run(run_id)["status"] == "completed"
    store.close()


def test_zombie_process_counts_as_gone(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = datetime.now(UTC) + timedelta(seconds=20)
    while results_module._proc_stat(child.pid)[0] != "Z" and datetime.now(UTC) < deadline:
        time.sleep(0.01)  # exited but not reaped: os.kill(pid, 0) still succeeds
    start = results_module.process_start(child.pid)
    assert not results_module.process_alive(child.pid, start)
    child.wait()
    assert not results_module.process_alive(child.pid, start)
    assert results_module.process_alive(os.getpid(), results_module.process_start(os.getpid()))
