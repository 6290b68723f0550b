"""Where a sweep's runs train: in this process, in a local process pool, or as Ray tasks.

* :class:`InProcessExecutor` -- one run at a time in the calling process (``--workers 1``).
* :class:`LocalExecutor` -- a pool of ``spawn``-ed worker processes; each trains with
  ``Trainer(config, store=ResultsStore(path), checkpoint_root=...)`` (the store is safe for concurrent
  writers), so a killed sweep resumes its unfinished runs from their checkpoints.
* :class:`RayExecutor` -- Ray tasks on ``ray.init()`` locally or a cluster (``address``). A worker needs no
  shared disk: it trains against a :class:`RecordingStore` (the driver's references in, the trainer's
  writes recorded) and sends the record back; the driver writes it with the store API, so the stored
  rows are exactly those a local run writes.

Every executor keeps the results store the single source of truth: selection reads it, not the outcomes.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import multiprocessing
import socket
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlbench.errors import MissingDataError, MtlbenchError, UserInputError
from mtlbench.store.results import ResultsStore, RunInProgressError, config_hash, dumps, loads
from mtlbench.sweeps.plan import MULTI_TASK, SweepPlan, Trial, cpu_count
from mtlbench.training.config import RunConfig

EXECUTORS = ("local", "ray")
#: object store of a local Ray instance started by a sweep (the runs send back only small records)
RAY_OBJECT_STORE_BYTES = 100 * 1024**2
RAY_CONNECT_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class RunOutcome:
    """How one launched run ended (the store has the full record)."""

    status: str
    run_id: int | None = None
    error: str | None = None
    val_delta_m: float | None = None
    test_delta_m: float | None = None
    seconds: float = 0.0


# ------------------------------------------------------------------------------------ worker side
def limit_threads(threads: int | None) -> contextlib.AbstractContextManager:
    """Limit the BLAS / OpenMP pools of numpy and scipy (the methods' solvers) to the run's thread count.

    The trainer sets torch's threads; without this, a solver's BLAS would use every core in one
    executor and one thread in another (Ray sets OMP_NUM_THREADS=1), and results could differ in the
    last bits. Needs ``threadpoolctl``; without it this does nothing.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads) if threads else contextlib.nullcontext()


_STORES: dict[str, ResultsStore] = {}


def _store_at(path: str | Path) -> ResultsStore:
    key = str(path)
    if key not in _STORES:
        _STORES[key] = ResultsStore(key)
    return _STORES[key]


def _record_failure(store: ResultsStore, config: RunConfig, message: str) -> int | None:
    """Mark the run of ``config`` failed with ``message`` (creating its row if the trainer never did)."""
    from mtlbench.training import provenance
    from mtlbench.training.config import resolve_device

    resolved = config.resolved()
    data = resolved.to_dict()
    frame = store.runs(config_hash=config_hash(data))
    if len(frame):
        run_id, status = int(frame["id"].iloc[0]), str(frame["status"].iloc[0])
        if status == "completed":
            return run_id
    else:
        run_id = store.start_run(
            data, kind=resolved.kind, provenance=provenance.collect(resolve_device(resolved.device), {})
        )
    store.fail_run(run_id, message)
    return run_id


def train_into_store(
    config: dict[str, Any], store: ResultsStore | str, checkpoint_root: str | None, prune: bool = True
) -> RunOutcome:
    """Train one run into the results store (a worker process opens it by path).

    A failure the trainer does not record itself (an unexpected exception) is recorded here so that the
    sweep goes on; missing data or references (:class:`MissingDataError`) and a run that another live process
    trains (:class:`RunInProgressError`, whose row is left alone) stop the sweep. ``prune``
    removes the run's ``last.pt`` once it completed (it only serves to resume; ``best.pt`` stays).
    """
    from mtlbench.training.trainer import Trainer

    store = _store_at(store) if isinstance(store, str | Path) else store
    run_config = RunConfig.from_dict(config)
    done = store.completed_run(config)
    if done is not None:  # finished meanwhile (another sweep on the same store)
        return RunOutcome("completed", done)
    try:
        trainer = Trainer(run_config, store=store, checkpoint_root=checkpoint_root)
        with limit_threads(run_config.threads):
            result = trainer.run()
    except (MissingDataError, RunInProgressError):
        raise
    except Exception as error:
        message = f"{type(error).__name__}: {error}"
        return RunOutcome("failed", _record_failure(store, run_config, message), message)
    if result.status == "completed" and prune and trainer.checkpoint_dir is not None:
        (trainer.checkpoint_dir / "last.pt").unlink(missing_ok=True)
    return RunOutcome(
        result.status, result.run_id, result.error, result.val_delta_m, result.test_delta_m, result.seconds
    )


class RecordingStore:
    """Stands in for :class:`ResultsStore` on a worker without one: it serves the single-task references the
    driver sent and records what the trainer writes (start, epochs, finish or failure)."""

    def __init__(self, references: dict[str, Any] | None = None) -> None:
        self._references = references or {}
        self.record: dict[str, Any] = {"config": None, "epochs": [], "status": "running"}

    def reference(self, key: Any, tasks: list[str], split: str) -> dict[str, dict[str, float]] | None:
        found = self._references.get(split)
        if not found or any(task not in found for task in tasks):
            return None
        return {task: found[task] for task in tasks}

    def start_run(self, config: dict[str, Any], *, kind: str, provenance: dict[str, Any]) -> int:
        self.record.update(config=dict(config), kind=kind, provenance=dict(provenance))
        return 0

    def add_epoch(self, run_id: int, epoch: int, record: dict[str, Any]) -> None:
        self.record["epochs"].append([int(epoch), record])

    def finish_run(self, run_id: int, *, test_metrics: dict[str, Any], summary: dict[str, Any]) -> None:
        self.record.update(status="completed", test_metrics=test_metrics, summary=summary)

    def fail_run(self, run_id: int, error: str) -> None:
        self.record.update(status="failed", error=str(error))


def train_detached(config: dict[str, Any], references: dict[str, Any] | None) -> str:
    """Train one run without a store (a Ray worker); return the record as the store's JSON."""
    from mtlbench.training.trainer import Trainer

    recorder = RecordingStore(references)
    run_config = RunConfig.from_dict(config)
    try:
        with limit_threads(run_config.threads):
            Trainer(run_config, store=recorder, checkpoint_root=None).run()
    except MissingDataError as error:
        return dumps({"abort": str(error)})
    except Exception as error:
        recorder.fail_run(0, f"{type(error).__name__}: {error}")
    return dumps(recorder.record)


def replay(store: ResultsStore, trial: Trial, record: dict[str, Any]) -> RunOutcome:
    """Write a worker's record into the store with the store API (one transaction)."""
    from mtlbench.training import provenance
    from mtlbench.training.config import resolve_device

    config = record.get("config") or trial.config.to_dict()
    done = store.completed_run(config)
    if done is not None:
        return RunOutcome("completed", done)
    summary = record.get("summary") or {}
    with store.transaction():
        if record.get("config") is None:  # failed before the trainer started the run
            meta = provenance.collect(resolve_device("cpu"), {})
            run_id = store.start_run(config, kind=trial.config.kind, provenance=meta)
        else:
            run_id = store.start_run(config, kind=record["kind"], provenance=record["provenance"])
        for epoch, epoch_record in record["epochs"]:
            store.add_epoch(run_id, epoch, epoch_record)
        if record["status"] == "completed":
            store.finish_run(run_id, test_metrics=record["test_metrics"], summary=summary)
        else:
            store.fail_run(run_id, record.get("error") or "the run did not finish")
    return RunOutcome(
        record["status"],
        run_id,
        record.get("error"),
        summary.get("val_delta_m"),
        summary.get("test_delta_m"),
        summary.get("seconds") or 0.0,
    )


# ---------------------------------------------------------------------------------- executors
class Executor(ABC):
    """Runs trials: ``start`` once, ``submit`` up to ``capacity`` at a time, ``wait`` for finished ones."""

    name = "executor"
    capacity = 1

    def start(self, plan: SweepPlan) -> None:  # noqa: B027 (optional hook)
        """Called once before the first run (prepares data, starts workers)."""

    @abstractmethod
    def submit(self, trial: Trial) -> None: ...

    @abstractmethod
    def wait(self) -> list[tuple[Trial, RunOutcome]]:
        """Block until at least one submitted run finished; return the finished ones."""

    def close(self, abort: bool = False) -> None:  # noqa: B027 (optional hook)
        """Release the workers (``abort``: stop unfinished runs; they resume on the next sweep)."""

    def describe(self) -> str:
        return self.name


def prepare_data(plan: SweepPlan) -> None:
    """Build the problem's data caches once in this process, before workers race to do it."""
    plan.problem.prepare()


class InProcessExecutor(Executor):
    """One run at a time, in this process."""

    name = "local"
    capacity = 1

    def __init__(self, store: ResultsStore, checkpoint_root: Path | None, prune: bool = True) -> None:
        self.store, self.checkpoint_root, self.prune = store, checkpoint_root, prune
        self._queue: collections.deque[Trial] = collections.deque()

    def start(self, plan: SweepPlan) -> None:
        prepare_data(plan)

    def submit(self, trial: Trial) -> None:
        self._queue.append(trial)

    def wait(self) -> list[tuple[Trial, RunOutcome]]:
        trial = self._queue.popleft()
        root = None if self.checkpoint_root is None else str(self.checkpoint_root)
        return [(trial, train_into_store(trial.config.to_dict(), self.store, root, self.prune))]

    def describe(self) -> str:
        return "local, 1 worker (in this process)"


def _init_worker() -> None:
    import torch

    with contextlib.suppress(RuntimeError):  # already set
        torch.set_num_interop_threads(1)


class LocalExecutor(Executor):
    """A pool of ``workers`` spawned processes on this machine, each writing to the store itself."""

    name = "local"

    def __init__(self, store: ResultsStore, workers: int, checkpoint_root: Path | None, prune: bool = True) -> None:
        self.store, self.capacity, self.checkpoint_root, self.prune = store, workers, checkpoint_root, prune
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._futures: dict[concurrent.futures.Future, Trial] = {}

    def start(self, plan: SweepPlan) -> None:
        prepare_data(plan)
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=self.capacity, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker
        )

    def submit(self, trial: Trial) -> None:
        assert self._pool is not None, "start() first"
        root = None if self.checkpoint_root is None else str(self.checkpoint_root)
        future = self._pool.submit(train_into_store, trial.config.to_dict(), str(self.store.path), root, self.prune)
        self._futures[future] = trial

    def wait(self) -> list[tuple[Trial, RunOutcome]]:
        done, _ = concurrent.futures.wait(self._futures, return_when=concurrent.futures.FIRST_COMPLETED)
        finished = []
        for future in done:
            trial = self._futures.pop(future)
            try:
                finished.append((trial, future.result()))
            except concurrent.futures.process.BrokenProcessPool:
                raise MtlbenchError(
                    f"a worker process died (out of memory?) while training {trial.describe()}; "
                    "run the sweep again to resume"
                ) from None
        return finished

    def close(self, abort: bool = False) -> None:
        if self._pool is None:
            return
        if abort:
            for future in self._futures:
                future.cancel()
            processes = list(getattr(self._pool, "_processes", {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                if process.is_alive():
                    process.terminate()
            for process in processes:
                process.join(timeout=5)
        else:
            self._pool.shutdown(wait=True)
        self._pool = None
        self._futures.clear()

    def describe(self) -> str:
        return f"local, {self.capacity} worker processes"


def check_ray_address(address: str, timeout: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Fail fast (one line) when a Ray address does not answer, instead of Ray's long retries."""
    if address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        raise UserInputError(f"Ray address {address!r} is not HOST:PORT, ray://HOST:PORT or auto")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UserInputError(
            f"Ray address {address!r} does not answer ({reason}); start a cluster with `ray start --head` "
            "or leave out --address to start Ray on this machine"
        ) from None


def require_ray(address: str | None = None) -> None:
    """One-line errors, before anything runs, when Ray is not installed or ``address`` does not answer."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UserInputError("--executor ray needs Ray: pip install 'mtlbench[ray]'") from None
    if address:
        check_ray_address(address)


class RayExecutor(Executor):
    """Runs as Ray tasks (``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs each); the driver writes the store."""

    name = "ray"

    def __init__(
        self,
        store: ResultsStore,
        *,
        address: str | None = None,
        workers: int | None = None,
        cpus_per_run: int = 1,
        gpus_per_run: float = 0.0,
        init_options: dict[str, Any] | None = None,
    ) -> None:
        self.store, self.address, self.workers = store, address, workers
        self.cpus_per_run, self.gpus_per_run = cpus_per_run, gpus_per_run
        self.init_options = dict(init_options or {})
        self._owns = False
        self._pending: dict[Any, Trial] = {}
        self._references: dict[str, Any] = {}
        self._ray: Any = None

    def start(self, plan: SweepPlan) -> None:
        require_ray()
        import ray

        self._ray = ray
        self._plan = plan
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
            if self.address:
                check_ray_address(self.address)
                options["address"] = self.address
            else:
                prepare_data(plan)
                options["num_cpus"] = (self.workers or default_workers(self.cpus_per_run)) * self.cpus_per_run
                options["object_store_memory"] = RAY_OBJECT_STORE_BYTES
            options.update(self.init_options)
            try:
                ray.init(**options)
            except Exception as error:  # ConnectionError, RuntimeError, ... from Ray
                raise UserInputError(f"cannot start or reach Ray ({type(error).__name__}: {error})") from None
            self._owns = True
        resources = ray.cluster_resources()
        slots = int(resources.get("CPU", 1) // self.cpus_per_run)
        if self.gpus_per_run:
            slots = min(slots, int(resources.get("GPU", 0) // self.gpus_per_run))
            if slots < 1:
                raise UserInputError(f"the Ray cluster has no GPU for gpus_per_run={self.gpus_per_run:g}")
        self.capacity = max(1, slots if self.workers is None or self.address else min(slots, self.workers))
        self._remote = ray.remote(train_detached)

    def _references_for(self, trial: Trial) -> dict[str, Any] | None:
        if trial.config.kind != MULTI_TASK:
            return None
        key = dumps(self._plan.reference_key, canonical=True)
        if key not in self._references or self._references[key]["val"] is None:
            self._references[key] = {
                split: self.store.reference(self._plan.reference_key, self._plan.tasks, split)
                for split in ("val", "test")
            }
        return self._references[key]

    def submit(self, trial: Trial) -> None:
        task = self._remote.options(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run, max_retries=0)
        self._pending[task.remote(trial.config.to_dict(), self._references_for(trial))] = trial

    def wait(self) -> list[tuple[Trial, RunOutcome]]:
        ray = self._ray
        ready, _ = ray.wait(list(self._pending), num_returns=1)
        finished = []
        for ref in ready:
            trial = self._pending.pop(ref)
            try:
                record = loads(ray.get(ref))
            except ray.exceptions.RayError as error:  # the worker died
                message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                record = {"config": None, "epochs": [], "status": "failed", "error": message}
            if "abort" in record:
                raise MissingDataError(record["abort"])
            finished.append((trial, replay(self.store, trial, record)))
        return finished

    def close(self, abort: bool = False) -> None:
        ray = self._ray
        if ray is None:
            return
        if abort:
            for ref in self._pending:
                with contextlib.suppress(Exception):  # already finished
                    ray.cancel(ref, force=True)
        self._pending.clear()
        if self._owns and ray.is_initialized():
            ray.shutdown()
        self._owns = False

    def describe(self) -> str:
        where = self.address or "a local Ray instance"
        return (
            f"ray on {where}, {self.capacity} runs at a time ({self.cpus_per_run} CPU, {self.gpus_per_run:g} GPU each)"
        )


def default_workers(threads: int | None = None) -> int:
    """Worker processes for this machine: its cores divided by the threads of each run."""
    return max(1, cpu_count() // max(1, threads or 1))


__all__ = [
    "EXECUTORS",
    "Executor",
    "InProcessExecutor",
    "LocalExecutor",
    "RayExecutor",
    "RecordingStore",
    "RunOutcome",
    "check_ray_address",
    "default_workers",
    "replay",
    "require_ray",
    "train_detached",
    "train_into_store",
]
