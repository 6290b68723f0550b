"""The SQLite results store: schema and migrations, round trips, NaN/inf, resume, references, concurrency,
crash safety (a writer SIGKILLed mid-transaction), export, and the ``results`` / ``export`` commands."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from mtlbench.cli.main import main
from mtlbench.errors import MtlbenchError, UserInputError
from mtlbench.store import SCHEMA_VERSION, ResultsStore, SchemaVersionError, config_hash, default_results_path
from mtlbench.store import results as results_module

NAN, INF = float("nan"), float("inf")


def make_config(seed: int = 1, method: str = "cagrad", **extra: object) -> dict:
    config = {
        "problem": "multi_mnist",
        "tasks": ["CL", "RR"],
        "method": method,
        "method_params": {"c": 0.2},
        "lr": 1e-3,
        "dropout": 0.1,
        "weight_decay": 0.0,
        "epochs": 3,
        "batch_size": 256,
        "optimizer": "adam",
        "scheduler": "exponential",
        "seed": seed,
        "threads": 1,
        "device": "cpu",
    }
    config.update(extra)
    return config


def make_record(epoch: int, scale: float = 1.0) -> dict:
    return {
        "train_losses": {"CL": scale / (epoch + 1), "RR": 2 * scale / (epoch + 1)},
        "val_metrics": {"CL": {"accuracy": 0.5 + 0.1 * epoch}, "RR": {"mse": 1.0 / (epoch + 1)}},
        "val_delta_m": -1.5 + epoch,
        "weights": {"CL": 0.75, "RR": 1.25},
        "lr": 1e-3 * 0.95**epoch,
        "seconds": 1.5,
        "extra": {"cosine": 0.7, "counts": [epoch, epoch + 1]},
    }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResultsStore]:
    with ResultsStore(tmp_path / "nested" / "results.db") as opened:
        yield opened


def raw(path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# --------------------------------------------------------------------------------------- schema
def test_default_path_honours_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MTLBENCH_RESULTS", raising=False)
    assert default_results_path() == Path("mtlbench-results") / "results.db"
    monkeypatch.setenv("MTLBENCH_RESULTS", str(tmp_path / "x.db"))
    assert default_results_path() == tmp_path / "x.db"
    assert ResultsStore().path == tmp_path / "x.db"
    assert (tmp_path / "x.db").is_file()


def test_schema_is_created_versioned_and_in_wal_mode(store: ResultsStore) -> None:
    assert store.path.is_file()  # parent folders were created
    tables = {row[0] for row in raw(store.path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"schema_version", "runs", "epochs", "test_metrics", "refs"} <= tables
    assert store.schema_version == SCHEMA_VERSION
    assert raw(store.path, "PRAGMA journal_mode")[0][0] == "wal"  # persistent in the file
    conn = store._connect()
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    store.close()
    ResultsStore(store.path).close()  # reopening does not re-apply migrations
    assert raw(store.path, "SELECT version FROM schema_version") == [(v,) for v in range(1, SCHEMA_VERSION + 1)]


def test_migration_hook_upgrades_and_newer_schema_is_refused(
    store: ResultsStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = store.start_run(make_config(), kind="multi_task", provenance={})
    store.close()

    def add_note_column(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE runs ADD COLUMN note TEXT DEFAULT 'migrated'")

    monkeypatch.setattr(results_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(results_module.MIGRATIONS, SCHEMA_VERSION, add_note_column)
    upgraded = ResultsStore(store.path)
    assert upgraded.schema_version == SCHEMA_VERSION + 1
    assert upgraded.run(run_id)["note"] == "migrated"  # existing rows survive the migration
    upgraded.close()

    def half_then_crash(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x INTEGER)")
        conn.execute("UPDATE runs SET note = 'half'")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(results_module, "SCHEMA_VERSION", SCHEMA_VERSION + 2)
    monkeypatch.setitem(results_module.MIGRATIONS, SCHEMA_VERSION + 1, half_then_crash)
    with pytest.raises(RuntimeError, match="migration bug"):
        ResultsStore(store.path)
    assert raw(store.path, "SELECT MAX(version) FROM schema_version") == [(SCHEMA_VERSION + 1,)]
    assert raw(store.path, "SELECT name FROM sqlite_master WHERE name = 'half'") == []  # all or nothing
    assert raw(store.path, "SELECT note FROM runs") == [("migrated",)]

    monkeypatch.setattr(results_module, "SCHEMA_VERSION", SCHEMA_VERSION)
    with pytest.raises(SchemaVersionError, match="upgrade mtlbench"):
        ResultsStore(store.path)


def test_initial_schema_creation_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    create_schema = results_module.MIGRATIONS[0]

    def create_then_crash(conn: sqlite3.Connection) -> None:
        create_schema(conn)
        raise RuntimeError("crash after the tables")

    monkeypatch.setitem(results_module.MIGRATIONS, 0, create_then_crash)
    path = tmp_path / "results.db"
    with pytest.raises(RuntimeError, match="crash after"):
        ResultsStore(path)
    assert raw(path, "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'schema_version'") == []
    monkeypatch.setitem(results_module.MIGRATIONS, 0, create_schema)
    assert ResultsStore(path).schema_version == SCHEMA_VERSION  # a later open builds it cleanly


def test_config_hash_is_canonical() -> None:
    config = make_config()
    digest = config_hash(config)
    assert len(digest) == 16 and int(digest, 16) >= 0
    assert config_hash(dict(reversed(list(config.items())))) == digest  # key order does not matter
    assert config_hash({**config, "method_params": {"c": 0.5}}) != digest
    assert config_hash({**config, "tasks": ("CL", "RR")}) == digest  # tuples and lists are one JSON array


# ------------------------------------------------------------------------------------ round trips
def test_run_epochs_and_test_metrics_round_trip(store: ResultsStore) -> None:
    config, provenance = make_config(), {"git": "abc123", "torch": "2.13.0", "data": {"mnist": "f11b"}}
    run_id = store.start_run(config, kind="multi_task", provenance=provenance)
    records = [make_record(epoch) for epoch in range(3)]
    for epoch, record in enumerate(records):
        store.add_epoch(run_id, epoch, record)
    tests = {"CL": {"accuracy": 0.97}, "RR": {"mse": 0.012}}
    summary = {"best_epoch": 2, "val_delta_m": 0.5, "test_delta_m": -0.25, "seconds": 4.5, "steps": 120}
    store.finish_run(run_id, test_metrics=tests, summary=summary)

    run = store.run(run_id)
    assert run["config"] == config and run["provenance"] == provenance and run["summary"] == summary
    assert (run["problem"], run["tasks"], run["method"], run["seed"]) == ("multi_mnist", "CL_RR", "cagrad", 1)
    assert (run["kind"], run["status"], run["best_epoch"], run["error"]) == ("multi_task", "completed", 2, None)
    assert run["test_metrics"] == tests
    assert run["epochs"] == [{"epoch": epoch, **record} for epoch, record in enumerate(records)]
    assert run["finished_at"] >= run["started_at"]

    frame = store.runs(problem="multi_mnist", tasks="CL,RR", method="cagrad", status="completed")
    assert frame["id"].tolist() == [run_id]
    assert frame.loc[0, "test_delta_m"] == -0.25 and frame.loc[0, "config.method_params.c"] == 0.2
    assert store.runs(method="pcgrad").empty and store.runs(tasks=["CL", "CR"]).empty
    assert store.runs(tasks=["CL", "RR"])["id"].tolist() == [run_id]

    epochs = store.epochs(run_id)
    assert epochs["epoch"].tolist() == [0, 1, 2]
    for epoch, record in enumerate(records):
        row = epochs.iloc[epoch]
        assert row["train_loss.RR"] == record["train_losses"]["RR"]
        assert row["val.CL.accuracy"] == record["val_metrics"]["CL"]["accuracy"]
        assert row["weight.CL"] + row["weight.RR"] == 2.0  # weights sum to T
        assert row["lr"] == record["lr"] and row["val_delta_m"] == record["val_delta_m"]
        assert json.loads(row["extra.counts"]) == record["extra"]["counts"]
    assert store.epochs(method="cagrad").shape == epochs.shape and store.epochs(method="x").empty

    long = store.test_metrics(problem="multi_mnist")
    assert sorted(zip(long["task"], long["metric"], long["value"], strict=True)) == [
        ("CL", "accuracy", 0.97),
        ("RR", "mse", 0.012),
    ]
    assert set(long["selected_epoch"]) == {2} and set(long["method"]) == {"cagrad"}


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    path.write_text("hello, not sqlite" * 100)
    with pytest.raises(MtlbenchError, match="not a usable results database"):
        ResultsStore(path)


def test_fail_run_and_bad_input(store: ResultsStore) -> None:
    run_id = store.start_run(make_config(), kind="reference", provenance={})
    store.fail_run(run_id, "RunFailedError: loss is NaN")
    run = store.run(run_id)
    assert (run["status"], run["error"]) == ("failed", "RunFailedError: loss is NaN") and run["finished_at"]
    with pytest.raises(UserInputError, match="kind"):
        store.start_run(make_config(seed=9), kind="single", provenance={})
    with pytest.raises(UserInputError, match="no run with id 999"):
        store.add_epoch(999, 0, make_record(0))
    with pytest.raises(UserInputError, match="filter"):
        store.runs(colour="red")
    assert raw(store.path, "SELECT COUNT(*) FROM epochs") == [(0,)]


def test_nan_and_infinities_round_trip(store: ResultsStore) -> None:
    config = make_config(threshold=INF)
    run_id = store.start_run(config, kind="multi_task", provenance={"loss_scale": -INF})
    record = make_record(0)
    record["train_losses"]["RR"] = NAN
    record["val_metrics"]["CL"]["accuracy"] = -INF
    record["val_delta_m"] = NAN
    store.add_epoch(run_id, 0, record)
    store.finish_run(
        run_id,
        test_metrics={"CL": {"accuracy": NAN}, "RR": {"mse": INF}},
        summary={"best_epoch": 0, "val_delta_m": NAN, "test_delta_m": -INF, "seconds": 1.0},
    )
    store.put_reference({"problem": "p"}, split="test", task="RR", metric="mse", value=NAN, n_seeds=1, run_ids=[1])

    # every stored JSON document is strict JSON (no bare NaN / Infinity tokens)
    def strict(text: str) -> object:
        return json.loads(text, parse_constant=lambda token: pytest.fail(f"non-strict JSON token {token}"))

    for (text,) in raw(store.path, "SELECT config FROM runs UNION ALL SELECT record FROM epochs"):
        strict(text)

    run = store.run(run_id)
    assert run["config"]["threshold"] == INF and run["provenance"]["loss_scale"] == -INF
    assert config_hash(run["config"]) == config_hash(config)
    epoch = run["epochs"][0]
    assert math.isnan(epoch["train_losses"]["RR"]) and epoch["val_metrics"]["CL"]["accuracy"] == -INF
    assert math.isnan(epoch["val_delta_m"])
    assert math.isnan(run["test_metrics"]["CL"]["accuracy"]) and run["test_metrics"]["RR"]["mse"] == INF
    assert math.isnan(run["val_delta_m"]) and run["test_delta_m"] == -INF
    assert math.isnan(store.reference({"problem": "p"}, ["RR"], "test")["RR"]["mse"])
    frame = store.epochs(run_id)
    assert math.isnan(frame.loc[0, "train_loss.RR"]) and frame.loc[0, "val.CL.accuracy"] == -INF
    assert store.runs().loc[0, "test_delta_m"] == -INF


# ----------------------------------------------------------------------------------------- resume
def test_start_run_resumes_unfinished_and_refuses_completed(store: ResultsStore) -> None:
    config = make_config()
    run_id = store.start_run(config, kind="multi_task", provenance={"attempt": 1})
    store.add_epoch(run_id, 0, make_record(0))
    store.add_epoch(run_id, 1, make_record(1))
    store.fail_run(run_id, "killed")
    assert store.completed_run(config) is None

    resumed = store.start_run(dict(reversed(list(config.items()))), kind="multi_task", provenance={"attempt": 2})
    assert resumed == run_id
    run = store.run(run_id)
    assert (run["status"], run["error"], run["finished_at"], run["attempts"]) == ("running", None, None, 2)
    assert run["provenance"] == {"attempt": 2}
    assert store.start_run(config, kind="multi_task", provenance={}) == run_id  # still running: resume again

    store.add_epoch(run_id, 1, make_record(1, scale=10.0))  # a resumed run rewrites its epochs
    epochs = store.epochs(run_id)
    assert len(epochs) == 2 and epochs.loc[1, "train_loss.CL"] == 10.0 / 2

    other = store.start_run(make_config(seed=2), kind="multi_task", provenance={})
    assert other != run_id
    store.finish_run(run_id, test_metrics={"CL": {"accuracy": 0.9}}, summary={"best_epoch": 1})
    assert store.completed_run(config) == run_id and store.completed_run(make_config(seed=2)) is None
    with pytest.raises(ValueError, match="already completed"):
        store.start_run(config, kind="multi_task", provenance={})
    assert store.run(run_id)["status"] == "completed"  # the refused start changed nothing
    assert len(store.runs()) == 2


# ------------------------------------------------------------------------------------- references
def test_references_upsert_and_lookup(store: ResultsStore) -> None:
    key = {"problem": "multi_mnist", "train_size": 1000}
    store.put_reference(key, split="test", task="CL", metric="accuracy", value=0.95, n_seeds=3, run_ids=[1, 2, 3])
    assert store.reference(key, ["CL"], "test") == {"CL": {"accuracy": 0.95}}
    assert store.reference(key, ["CL", "RR"], "test") is None  # RR missing
    assert store.reference(key, ["CL"], "val") is None
    assert store.reference({"problem": "multi_mnist", "train_size": 2000}, ["CL"], "test") is None
    assert store.reference(dict(reversed(list(key.items()))), ["CL"], "test") is not None  # key order irrelevant

    store.put_reference(key, split="test", task="RR", metric="mse", value=0.02, n_seeds=3, run_ids=[4, 5, 6])
    store.put_reference(key, split="test", task="CL", metric="accuracy", value=0.96, n_seeds=5, run_ids=[1, 2])
    assert store.reference(key, ["RR", "CL"], "test") == {"RR": {"mse": 0.02}, "CL": {"accuracy": 0.96}}
    frame = store.references()
    assert len(frame) == 2  # upsert replaced, did not duplicate
    row = frame[frame["task"] == "CL"].iloc[0]
    assert (row["n_seeds"], json.loads(row["run_ids"]), row["key.train_size"]) == (5, [1, 2], 1000)


# ------------------------------------------------------------------------------- several processes
def _writer(path: str, worker: int, n_runs: int, n_epochs: int, go: mp.synchronize.Event) -> None:
    go.wait(30)
    store = ResultsStore(path)  # all four create the fresh database at once
    for i in range(n_runs):
        seed = 1000 * worker + i
        run_id = store.start_run(make_config(seed=seed, method=f"m{worker}"), kind="multi_task", provenance={})
        for epoch in range(n_epochs):
            record = make_record(epoch, scale=seed)
            record["extra"] = {"seed": seed}
            store.add_epoch(run_id, epoch, record)
        store.finish_run(run_id, test_metrics={"CL": {"accuracy": float(seed)}}, summary={"best_epoch": n_epochs - 1})
    store.close()


def test_concurrent_writer_processes(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    context = mp.get_context("spawn")
    go = context.Event()
    workers = [context.Process(target=_writer, args=(str(path), w, 20, 3, go)) for w in range(4)]
    for process in workers:
        process.start()
    go.set()
    for process in workers:
        process.join(120)
    assert [process.exitcode for process in workers] == [0, 0, 0, 0]

    store = ResultsStore(path)
    runs = store.runs()
    assert len(runs) == 80 and set(runs["status"]) == {"completed"}
    assert sorted(runs["seed"]) == sorted(1000 * w + i for w in range(4) for i in range(20))
    assert (runs["method"] == "m" + (runs["seed"] // 1000).astype(str)).all()
    epochs = store.epochs()
    assert len(epochs) == 240
    merged = epochs.merge(runs[["id", "seed"]], left_on="run_id", right_on="id", suffixes=("", "_run"))
    assert (merged["extra.seed"] == merged["seed_run"]).all()  # each epoch belongs to its own run
    assert (merged["train_loss.CL"] == merged["seed_run"] / (merged["epoch"] + 1)).all()
    tests = store.test_metrics().merge(runs[["id", "seed"]], left_on="run_id", right_on="id", suffixes=("", "_r"))
    assert len(tests) == 80 and (tests["value"] == tests["seed_r"]).all()
    assert raw(path, "PRAGMA integrity_check") == [("ok",)]
    versions = [(v,) for v in range(1, SCHEMA_VERSION + 1)]
    assert raw(path, "SELECT version FROM schema_version") == versions  # each migration applied exactly once


def _doomed_writer(path: str, inside: mp.synchronize.Event) -> None:
    store = ResultsStore(path)
    kept = store.start_run(make_config(seed=1), kind="multi_task", provenance={})
    store.add_epoch(kept, 0, make_record(0))
    with store.transaction():
        doomed = store.start_run(make_config(seed=2), kind="multi_task", provenance={})
        for epoch in range(1_000_000):
            store.add_epoch(doomed, epoch, make_record(epoch))
            if epoch == 50:
                inside.set()  # the parent kills us while we keep writing inside the transaction
    time.sleep(60)


def test_writer_killed_mid_transaction_leaves_no_partial_rows(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    context = mp.get_context("spawn")
    inside = context.Event()
    child = context.Process(target=_doomed_writer, args=(str(path), inside))
    child.start()
    assert inside.wait(60), "the writer never entered its transaction"
    os.kill(child.pid, signal.SIGKILL)
    child.join(30)
    assert child.exitcode == -signal.SIGKILL

    assert raw(path, "PRAGMA integrity_check") == [("ok",)]
    store = ResultsStore(path)
    runs = store.runs()
    assert runs["seed"].tolist() == [1]  # the committed run survives, the doomed one left nothing
    assert store.epochs()["run_id"].tolist() == runs["id"].tolist()
    assert store.completed_run(make_config(seed=2)) is None
    started = time.monotonic()
    run_id = store.start_run(make_config(seed=2), kind="multi_task", provenance={})  # the lock was released
    store.add_epoch(run_id, 0, make_record(0))
    assert time.monotonic() - started < 5
    assert len(store.runs()) == 2 and len(store.epochs()) == 2


# ---------------------------------------------------------------------------------------- export
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_writes_one_file_per_table(store: ResultsStore, tmp_path: Path, fmt: str) -> None:
    ids = []
    for seed in (1, 2):
        params = {"c": 0.2} if seed == 1 else {"c": "auto"}  # a column of mixed types (parquet needs one type)
        run_id = store.start_run(
            make_config(seed=seed, method_params=params), kind="multi_task", provenance={"seed": seed}
        )
        for epoch in range(2):
            store.add_epoch(run_id, epoch, make_record(epoch, scale=seed))
        store.finish_run(run_id, test_metrics={"CL": {"accuracy": 0.9 + seed / 100}}, summary={"best_epoch": 1})
        ids.append(run_id)
    store.put_reference({"problem": "p"}, split="test", task="CL", metric="accuracy", value=0.9, n_seeds=2, run_ids=ids)

    paths = store.export(tmp_path / "out", fmt)
    assert [p.name for p in paths] == [f"{name}.{fmt}" for name in ("runs", "epochs", "test_metrics", "references")]
    read = pd.read_csv if fmt == "csv" else pd.read_parquet
    tables = {p.stem: read(p) for p in paths}
    assert tables["runs"]["id"].tolist() == ids
    assert [json.loads(text)["seed"] for text in tables["runs"]["provenance_json"]] == [1, 2]
    assert [str(value) for value in tables["runs"]["config.method_params.c"]] == ["0.2", "auto"]
    assert len(tables["epochs"]) == 4
    expected = store.epochs()["train_loss.RR"].tolist()
    assert tables["epochs"]["train_loss.RR"].tolist() == pytest.approx(expected)
    assert tables["test_metrics"]["value"].tolist() == pytest.approx([0.91, 0.92])
    assert tables["references"]["value"].tolist() == [0.9]
    with pytest.raises(UserInputError, match="xlsx"):
        store.export(tmp_path / "out", "xlsx")


# ------------------------------------------------------------------------------------------- CLI
def test_cli_results_json_table_and_filters(store: ResultsStore, capsys: pytest.CaptureFixture[str]) -> None:
    done = store.start_run(make_config(seed=1), kind="multi_task", provenance={})
    store.finish_run(
        done, test_metrics={"CL": {"accuracy": 0.9}}, summary={"best_epoch": 4, "val_delta_m": NAN, "test_delta_m": 1.5}
    )
    failed = store.start_run(make_config(seed=2, method="pcgrad"), kind="multi_task", provenance={})
    store.fail_run(failed, "RunFailedError: loss is inf")

    assert main(["results", "--results", str(store.path), "--format", "json", "--status", "completed"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in records] == [done]
    assert (records[0]["method"], records[0]["best_epoch"], records[0]["test_delta_m"]) == ("cagrad", 4, 1.5)
    assert records[0]["val_delta_m"] is None  # NaN is null in JSON

    assert main(["results", "--results", str(store.path), "--format", "json", "--tasks", "CL_RR"]) == 0
    assert {r["status"] for r in json.loads(capsys.readouterr().out)} == {"completed", "failed"}

    assert main(["results", "--results", str(store.path), "--method", "pcgrad"]) == 0
    table = capsys.readouterr().out
    assert "pcgrad" in table and "RunFailedError: loss is inf" in table and "cagrad" not in table

    assert main(["results", "--results", str(store.path), "--format", "xml"]) == 2
    assert "unknown format 'xml'" in capsys.readouterr().err


def test_cli_missing_database_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere" / "results.db"
    assert main(["results", "--results", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no runs were stored yet at") and str(missing) in err and "\n" not in err
    assert main(["export", str(tmp_path / "out"), "--results", str(missing)]) == 2
    assert "no runs were stored yet" in capsys.readouterr().err
    assert not missing.exists() and not missing.parent.exists()  # reading never creates a database


def test_cli_export(store: ResultsStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = store.start_run(make_config(), kind="reference", provenance={})
    store.add_epoch(run_id, 0, make_record(0))
    out = tmp_path / "exported"
    assert main(["export", str(out), "--format", "parquet", "--results", str(store.path)]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(Path(p).name for p in printed) == sorted(p.name for p in out.iterdir())
    assert pd.read_parquet(out / "epochs.parquet")["run_id"].tolist() == [run_id]
