"""Sweep executors: a 2-worker process pool and Ray store the same numbers as one worker; the CLI."""

from __future__ import annotations

import json
import time

import pytest

from mtlbench.cli.main import main
from mtlbench.errors import UserInputError
from mtlbench.store.results import ResultsStore
from mtlbench.sweeps import Sweep, load_spec
from mtlbench.sweeps.executors import RecordingStore, check_ray_address
from tests.test_sweep import TINY, numbers, write

# one reference seed and one search seed keep the pool/Ray tests short; the protocol is the same
SMALL = TINY.replace("search_seeds = 2\nfinal_seeds = 3", "search_seeds = 1\nfinal_seeds = 2")


#: the numbers of an epoch record (timings and memory differ from run to run)
NUMBERS = ("epoch", "train_losses", "val_metrics", "val_losses", "val_delta_m", "weights", "lr", "extra")


def _records(store: ResultsStore) -> dict:
    """config hash -> (status, per-epoch numbers, summary numbers) of every run."""
    runs = store.runs()
    found = {}
    for run_id, digest in zip(runs["id"], runs["config_hash"], strict=True):
        run = store.run(int(run_id))
        epochs = [{k: e.get(k) for k in NUMBERS} for e in run["epochs"]]
        found[digest] = (run["status"], epochs, run["val_delta_m"], run["test_delta_m"], run["best_epoch"])
    return found


@pytest.fixture
def in_process(tmp_path):
    """The sweep trained one run at a time in this process: what every executor must reproduce."""
    store = ResultsStore(tmp_path / "one.db")
    Sweep(load_spec(write(tmp_path, SMALL)), store, workers=1).run()
    return store


def test_a_pool_of_two_workers_stores_the_same_numbers_as_one(tmp_path, in_process):
    store = ResultsStore(tmp_path / "two.db")
    report = Sweep(load_spec(write(tmp_path, SMALL)), store, workers=2, checkpoint_root=tmp_path / "ckpt").run()
    assert report.launched == len(in_process.runs()) > 0
    assert numbers(store) == numbers(in_process)
    assert _records(store) == _records(in_process)
    assert set(store.runs()["config.threads"]) == {1}


def test_ray_stores_the_same_runs_as_the_local_executor(tmp_path, in_process):
    import ray
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024**2, log_to_driver=False)
    try:
        store = ResultsStore(tmp_path / "ray.db")
        report = Sweep(load_spec(write(tmp_path, SMALL)), store, executor="ray").run()
    finally:
        ray.shutdown()
    assert report.launched == len(in_process.runs())
    assert numbers(store) == numbers(in_process)
    assert _records(store) == _records(in_process)
    # the driver wrote the references from the workers' records, as the local sweep did
    assert store.references()["value"].tolist() == in_process.references()["value"].tolist()


def test_the_recording_store_serves_references_and_records_the_trainers_writes():
    recorder = RecordingStore({"val": {"T0": {"mae": 1.0}}, "test": None})
    assert recorder.reference({}, ["T0"], "val") == {"T0": {"mae": 1.0}}
    assert recorder.reference({}, ["T0", "T1"], "val") is None and recorder.reference({}, ["T0"], "test") is None
    run_id = recorder.start_run({"seed": 1}, kind="multi_task", provenance={"threads": 1})
    recorder.add_epoch(run_id, 0, {"lr": 0.1})
    recorder.finish_run(run_id, test_metrics={"T0": {"mae": 2.0}}, summary={"best_epoch": 0})
    assert recorder.record["status"] == "completed" and recorder.record["epochs"] == [[0, {"lr": 0.1}]]


def test_a_ray_address_that_does_not_answer_fails_fast_in_one_line():
    started = time.perf_counter()
    with pytest.raises(UserInputError, match=r"Ray address '127.0.0.1:1' does not answer"):
        check_ray_address("127.0.0.1:1")
    with pytest.raises(UserInputError, match="is not HOST:PORT"):
        check_ray_address("nowhere")
    assert time.perf_counter() - started < 10


# -------------------------------------------------------------------------------------------- CLI
def run(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_cli_list_dry_run_run_and_rerun(tmp_path, capsys):
    code, out = run(capsys, "sweep", "--list")
    assert code == 0 and all(name in out for name in ("mnist_cl_rr", "qm9", "city_19c", "scenes_r50"))
    spec, db = str(write(tmp_path, SMALL)), str(tmp_path / "r.db")
    code, out = run(capsys, "sweep", spec, "--dry-run", "--results", db)
    assert code == 0 and "runs it would launch now: 10" in out and "search seed 1" not in out
    code, out = run(capsys, "sweep", spec, "--workers", "1", "--results", db, "--no-progress", "--report", f"{db}.json")
    assert code == 0 and "unit_scal" in out and "test Δm" in out
    report = json.loads((tmp_path / "r.db.json").read_text())
    assert [len(m["final"]) for m in report["methods"]] == [2, 2]
    code, out = run(capsys, "sweep", spec, "--workers", "1", "--results", db, "--no-progress")
    assert code == 0 and "0 completed, 0 failed, 14 already in the store" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope-spec"], "sweep spec 'nope-spec' is neither a file nor a built-in spec"),
        (["mnist_cl_rr", "--scale", "huge"], "scale 'huge' is not defined; choose one of: paper, cpu, smoke"),
        (["mnist_cl_rr", "--executor", "dask"], "unknown executor 'dask'"),
        (["mnist_cl_rr", "--address", "h:1"], "--address is for --executor ray"),
        (["mnist_cl_rr", "--workers", "0"], "--workers=0 must be >= 1"),
        (["SMALL", "--executor", "ray", "--address", "127.0.0.1:1"], "error: "),
        ([], "name a sweep file or a built-in spec"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path, capsys, args, message):
    args = [str(write(tmp_path, SMALL)) if a == "SMALL" else a for a in args]
    code, out = run(capsys, "sweep", *args, "--results", str(tmp_path / "r.db"))
    assert code == 2 and message in out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1
