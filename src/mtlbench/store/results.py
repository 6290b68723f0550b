"""The results store: one SQLite database holding every training run, its epochs and its test metrics.

Layout (schema version :data:`SCHEMA_VERSION`):

* ``schema_version(version, applied_at)`` -- one row per applied migration; the current version is the maximum.
* ``runs`` -- one row per configuration (``config_hash`` is unique): the JSON config and provenance, indexed
  columns (problem, tasks joined by ``_``, method, seed, kind, status), the summary of a completed run
  (best epoch, validation/test Delta_m, seconds, JSON summary) or the error of a failed one; since schema
  version 2 also the ``host``, ``pid`` and ``process_start`` of the process training it and its
  ``heartbeat_at`` (see *Liveness*); since schema version 3 the per-metric Delta_m variant
  (``val_delta_m_metrics``, ``test_delta_m_metrics``: the mean over all metrics, 001's and nash-mtl's
  aggregation), the run's ``selection`` rule and ``test_selected`` (1 when the rule saw the test split:
  ``last_test_epochs``, ``best_test``; see :mod:`mtlbench.training.selection`).
* ``epochs`` -- one row per (run, epoch): lr, seconds, validation Delta_m (and, since version 3, its
  per-metric variant ``val_delta_m_metrics``) and the whole JSON record.
* ``test_metrics`` -- long table (run_id, task, metric, value, selected_epoch).
* ``refs`` -- single-task reference metrics, keyed by the problem's ``reference_config()`` (hashed),
  split, task and metric, with the number of seeds averaged and the run ids they came from.

Safety: WAL journal, ``busy_timeout``, foreign keys on; every write is one ``BEGIN IMMEDIATE`` transaction
(several worker processes may write at once; a process killed mid-transaction leaves nothing behind).
:meth:`ResultsStore.transaction` groups several calls into one transaction. WAL needs a local file
system (not NFS). NaN and infinities round-trip: JSON holds them as ``{"$float": "nan" | "inf" | "-inf"}``;
SQLite stores a NaN REAL as NULL, so a NULL metric value reads back as NaN.

Liveness: a run's process writes a heartbeat every :data:`HEARTBEAT_SECONDS` (30 s, from a background thread
of the trainer) and at each epoch end. The stored status of an unfinished run is ``running``; reads report it
as ``interrupted`` when its process is gone: on the same host when its pid no longer exists, is a zombie, or
belongs to another process (the process start time and boot id differ: a reused pid); on another host (or
for rows without a host, written before schema version 2) when the last heartbeat is older than
:data:`STALE_SECONDS` (5 minutes, which also absorbs clock skew between hosts). ``mtlbench train`` and
``mtlbench sweep`` resume an interrupted run from its ``last.pt``; a run live in another process is refused
(:class:`RunInProgressError`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtlbench.errors import MissingDataError, MtlbenchError, UserInputError, unknown

if TYPE_CHECKING:
    import pandas as pd

ENV_VAR = "MTLBENCH_RESULTS"
SCHEMA_VERSION = 3
RUN_KINDS = ("multi_task", "reference")
#: statuses stored in the ``runs`` table
STORED_STATUSES = ("running", "completed", "failed")
#: statuses reads report: ``interrupted`` is a stored ``running`` run whose process is gone (module docstring)
RUN_STATUSES = ("running", "interrupted", "completed", "failed")
#: a running run's process writes its heartbeat this often (and at each epoch end)
HEARTBEAT_SECONDS = 30.0
#: a run of another host whose heartbeat is older than this is interrupted
STALE_SECONDS = 300.0
EXPORT_FORMATS = ("csv", "parquet")
BUSY_TIMEOUT_MS = 60_000
RUN_FILTERS = ("problem", "tasks", "method", "kind", "status", "seed", "config_hash")
_FLOAT_TAG = "$float"


class SchemaVersionError(MtlbenchError):
    """The database was written by a newer mtlbench (its schema version is unknown here)."""


class RunInProgressError(MtlbenchError):
    """The run is being trained by another live process (resuming it here would clobber its checkpoints)."""


def default_results_path() -> Path:
    """``$MTLBENCH_RESULTS`` if set, else ``./mtlbench-results/results.db``."""
    value = os.environ.get(ENV_VAR)
    return Path(value).expanduser() if value else Path("mtlbench-results") / "results.db"


# ----------------------------------------------------------------------------------------------- JSON
def _jsonable(obj: Any) -> Any:
    """Plain JSON data: mappings -> dicts with str keys, sequences -> lists, NaN/inf -> tagged dicts."""
    if obj is None or isinstance(obj, bool | str | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {_FLOAT_TAG: "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")}
    if isinstance(obj, Mapping):
        return {str(key): _jsonable(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(value) for value in obj]
    if isinstance(obj, set | frozenset):
        return sorted((_jsonable(value) for value in obj), key=repr)
    if isinstance(obj, Enum):
        return _jsonable(obj.value)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # numpy scalars and arrays, torch tensors
        return _jsonable(obj.tolist())
    return str(obj)  # torch.device, dtypes: their str is their identity


def _restore_floats(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and _FLOAT_TAG in obj:
        return float(obj[_FLOAT_TAG])
    return obj


def dumps(obj: Any, *, canonical: bool = False) -> str:
    """Strict JSON (NaN and infinities tagged); ``canonical`` sorts keys and drops spaces."""
    if canonical:
        return json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return json.dumps(_jsonable(obj), allow_nan=False)


def loads(text: str | None) -> Any:
    """Inverse of :func:`dumps` (tagged floats become NaN / inf again)."""
    return None if text is None else json.loads(text, object_hook=_restore_floats)


def config_hash(config: Mapping[str, Any]) -> str:
    """First 16 hex characters of the sha256 of the canonical JSON of ``config`` (sorted keys)."""
    return hashlib.sha256(dumps(config, canonical=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------ migrations
def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    """Run ``;``-separated statements inside the current transaction (``executescript`` would commit first)."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _migrate_0_to_1(conn: sqlite3.Connection) -> None:
    _execute_script(
        conn,
        """
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
            value REAL,  -- NULL is NaN (SQLite stores a NaN REAL as NULL)
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
            value REAL,  -- NULL is NaN
            n_seeds INTEGER NOT NULL,
            run_ids TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (key_hash, split, task, metric)
        );
        """,
    )


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Liveness columns: the process training a run and its heartbeat. Runs left ``running`` by schema 1 have
    no host: their heartbeat starts as their last update, so they read as interrupted once it is stale."""
    _execute_script(
        conn,
        """
        ALTER TABLE runs ADD COLUMN host TEXT;
        ALTER TABLE runs ADD COLUMN pid INTEGER;
        ALTER TABLE runs ADD COLUMN process_start TEXT;
        ALTER TABLE runs ADD COLUMN heartbeat_at TEXT;
        UPDATE runs SET heartbeat_at = updated_at WHERE status = 'running'
        """,
    )


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """Protocol settings: the per-metric Delta_m variant (runs and epochs), the selection rule and the
    test-selected flag. Runs completed before version 3 were selected by 000's rules (validation Delta_m;
    references per metric), never on test; their per-metric variant was not computed (NULL)."""
    _execute_script(
        conn,
        """
        ALTER TABLE runs ADD COLUMN val_delta_m_metrics REAL;
        ALTER TABLE runs ADD COLUMN test_delta_m_metrics REAL;
        ALTER TABLE runs ADD COLUMN selection TEXT;
        ALTER TABLE runs ADD COLUMN test_selected INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE epochs ADD COLUMN val_delta_m_metrics REAL;
        UPDATE runs SET selection = CASE kind WHEN 'reference' THEN 'per_metric' ELSE 'delta_m' END
            WHERE status = 'completed'
        """,
    )


#: ``MIGRATIONS[v]`` upgrades a database at schema version ``v`` to ``v + 1`` (inside one transaction).
#: A new schema version appends a function here and bumps :data:`SCHEMA_VERSION`.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    0: _migrate_0_to_1,
    1: _migrate_1_to_2,
    2: _migrate_2_to_3,
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# -------------------------------------------------------------------------------------------- liveness
def host_name() -> str:
    """This machine's name as runs record it."""
    return socket.gethostname()


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state first), or None (no such process, no
    procfs)."""
    try:
        text = Path(f"/proc/{int(pid)}/stat").read_text()
    except (OSError, ValueError):
        return None
    return text[text.rfind(")") + 2 :].split()


def process_start(pid: int) -> str | None:
    """Identity of process ``pid`` beyond its number: ``<boot id>:<start time in clock ticks>`` (Linux), else None.

    A pid reused by a later process (or after a reboot) has another start time or boot id."""
    fields = _proc_stat(pid)
    if fields is None or len(fields) < 20:
        return None
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return f"{boot}:{fields[19]}"


def process_alive(pid: int, start: str | None = None) -> bool:
    """Whether process ``pid`` of this host exists, is not a zombie and (if ``start`` is known) is the same
    process that recorded ``start`` (see :func:`process_start`)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    except (OSError, OverflowError, ValueError):
        return False
    fields = _proc_stat(pid)
    if fields is not None and fields[0] in ("Z", "X"):  # killed, not reaped yet
        return False
    if start is None:
        return True
    return process_start(pid) == start


def _age_seconds(stamp: str | None, now: datetime) -> float:
    if not stamp:
        return math.inf
    try:
        return (now - datetime.fromisoformat(stamp)).total_seconds()
    except ValueError:
        return math.inf


def run_status(row: Mapping[str, Any], *, now: datetime | None = None) -> str:
    """The status a read reports for a ``runs`` row: its stored status, or ``interrupted`` for a ``running`` run
    whose process is gone (same host: :func:`process_alive`; other hosts or unknown host: heartbeat older than
    :data:`STALE_SECONDS`)."""
    status = str(row["status"])
    if status != "running":
        return status
    host, pid = row.get("host"), row.get("pid")
    if host is not None and pid is not None and host == host_name():
        return "running" if process_alive(int(pid), row.get("process_start")) else "interrupted"
    now = now or datetime.now(UTC)
    beats = [stamp for stamp in (row.get("heartbeat_at"), row.get("updated_at")) if stamp]
    age = min((_age_seconds(stamp, now) for stamp in beats), default=math.inf)
    return "running" if age <= STALE_SECONDS else "interrupted"


def _owner(row: Mapping[str, Any]) -> str:
    """``pid P on host H, heartbeat N s ago`` for messages."""
    age = _age_seconds(row.get("heartbeat_at") or row.get("updated_at"), datetime.now(UTC))
    beat = f"{age:.0f} s ago" if math.isfinite(age) else "never"
    return f"pid {row.get('pid')} on host {row.get('host')}, last heartbeat {beat}"


def _tasks_key(tasks: Any) -> str | None:
    if tasks is None:
        return None
    if isinstance(tasks, str):
        return "_".join(part.strip() for part in tasks.split(",") if part.strip()) if "," in tasks else tasks
    return "_".join(str(task) for task in tasks)


def _metric_value(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UserInputError(f"metric value {value!r} is not a number") from None


def _nan_if_none(value: float | None) -> float:
    return math.nan if value is None else value


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    """Nested mappings -> dotted columns; lists -> JSON text (so that columns stay hashable)."""
    if isinstance(value, Mapping):
        if not value and prefix:
            return
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    elif isinstance(value, list | tuple):
        out[prefix] = dumps(value)
    else:
        out[prefix] = value


#: REAL columns of ``runs`` that a completed run's summary fills (in this order in :meth:`ResultsStore.finish_run`)
_SUMMARY_REALS = ("val_delta_m", "test_delta_m", "seconds", "val_delta_m_metrics", "test_delta_m_metrics")
_EPOCH_PREFIXES = {"train_losses": "train_loss", "val_metrics": "val", "weights": "weight"}


class ResultsStore:
    """Every training run in one SQLite database (see the module docstring for the layout and guarantees).

    Safe to use from several processes; within one process one connection is shared behind a lock. A store
    pickles as its path (a worker process reopens it).
    """

    def __init__(self, path: str | Path | None = None, *, create: bool = True) -> None:
        self.path = Path(path).expanduser() if path is not None else default_results_path()
        if not create and not self.path.is_file():
            raise MissingDataError(
                f"no runs were stored yet at {self.path} (training commands such as `mtlbench train` create it)"
            )
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._depth = 0
        self._connect()

    # ---------------------------------------------------------------------------------- connection
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r})"

    def close(self) -> None:
        """Close this process's connection (the store reopens it on the next call)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self._set_wal(conn)
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = FULL")
            self._migrate(conn)
        except sqlite3.DatabaseError as error:
            conn.close()
            raise MtlbenchError(f"{self.path} is not a usable results database: {error}") from error
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid, self._depth = conn, os.getpid(), 0
        return conn

    @staticmethod
    def _set_wal(conn: sqlite3.Connection) -> None:
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:  # switching to WAL needs an exclusive lock, which may not wait on the busy handler
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        if str(mode).lower() != "wal":
            raise MtlbenchError(
                f"cannot use WAL journaling (journal_mode={mode}); keep the results database on a local disk"
            )

    def _migrate(self, conn: sqlite3.Connection) -> None:
        current = self._version(conn)
        if current == SCHEMA_VERSION:
            return
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL)"
            )
            current = self._version(conn)  # another process may have migrated meanwhile
            if current > SCHEMA_VERSION:
                raise SchemaVersionError(
                    f"{self.path} has results schema version {current}; this mtlbench reads up to "
                    f"{SCHEMA_VERSION}: upgrade mtlbench"
                )
            for version in range(current, SCHEMA_VERSION):
                MIGRATIONS[version](conn)
                conn.execute("INSERT INTO schema_version VALUES (?, ?)", (version + 1, _now()))

    @staticmethod
    def _version(conn: sqlite3.Connection) -> int:
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
        if not exists:
            return 0
        return int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0])

    @property
    def schema_version(self) -> int:
        """The schema version of the database file."""
        with self._lock:
            return self._version(self._connect())

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` write transaction; store calls made inside it join it (all or nothing)."""
        with self._lock:
            conn = self._connect()
            if self._depth:
                self._depth += 1
                try:
                    yield conn
                finally:
                    self._depth -= 1
                return
            conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield conn
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                self._depth = 0

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Several reads that see one consistent state of the database."""
        with self._lock:
            conn = self._connect()
            if self._depth:
                yield
                return
            conn.execute("BEGIN")
            self._depth = 1
            try:
                yield
            finally:
                self._depth = 0
                conn.rollback()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            conn = self._connect()
            cursor = conn.execute(sql, tuple(params))
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    # -------------------------------------------------------------------------------------- runs
    def start_run(self, config: Mapping[str, Any], *, kind: str, provenance: Mapping[str, Any]) -> int:
        """Record a run as running (in this process: host, pid, heartbeat) and return its id; an unfinished run
        with the same config (interrupted or failed) is resumed.

        Raises ``ValueError`` when a run with the same configuration already completed and
        :class:`RunInProgressError` when another live process is training it.
        """
        if kind not in RUN_KINDS:
            raise unknown("run kind", kind, RUN_KINDS)
        digest = config_hash(config)
        now = _now()
        pid, host = os.getpid(), host_name()
        owner = (host, pid, process_start(pid), now)
        with self.transaction() as conn:
            cursor = conn.execute("SELECT * FROM runs WHERE config_hash = ?", (digest,))
            found = cursor.fetchone()
            if found is not None:
                row = dict(zip([column[0] for column in cursor.description], found, strict=True))
                run_id, status, old_kind = row["id"], row["status"], row["kind"]
                if status == "completed":
                    raise ValueError(f"run {run_id} with config {digest} is already completed in {self.path}")
                if old_kind != kind:
                    raise UserInputError(f"run {run_id} with config {digest} is a {old_kind} run, not {kind}")
                mine = row["host"] == host and row["pid"] == pid  # an earlier attempt in this very process
                if status == "running" and not mine and run_status(row) == "running":
                    raise RunInProgressError(
                        f"run {run_id} is being trained by another process ({_owner(row)}); wait for it to finish"
                        " or stop that process (it then shows as interrupted in `mtlbench results` and resumes here)"
                    )
                conn.execute(
                    "UPDATE runs SET status = 'running', provenance = ?, attempts = attempts + 1, updated_at = ?,"
                    " finished_at = NULL, error = NULL, host = ?, pid = ?, process_start = ?, heartbeat_at = ?"
                    " WHERE id = ?",
                    (dumps(provenance), now, *owner, run_id),
                )
                return int(run_id)
            seed = config.get("seed")
            cursor = conn.execute(
                "INSERT INTO runs (config_hash, kind, problem, tasks, method, seed, status, config, provenance,"
                " started_at, updated_at, host, pid, process_start, heartbeat_at)"
                " VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    digest,
                    kind,
                    None if config.get("problem") is None else str(config.get("problem")),
                    _tasks_key(config.get("tasks")),
                    None if config.get("method") is None else str(config.get("method")),
                    None if seed is None else int(seed),
                    dumps(config),
                    dumps(provenance),
                    now,
                    now,
                    *owner,
                ),
            )
            return int(cursor.lastrowid)  # type: ignore[arg-type]

    def heartbeat(self, run_id: int) -> None:
        """Record that the process training ``run_id`` is alive (the trainer calls this every
        :data:`HEARTBEAT_SECONDS` and at each epoch end). Only a running run is touched."""
        with self.transaction() as conn:
            conn.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ? AND status = 'running'", (_now(), int(run_id)))

    def completed_run(self, config: Mapping[str, Any]) -> int | None:
        """The id of the completed run with this exact configuration, or None."""
        rows = self._query("SELECT id FROM runs WHERE config_hash = ? AND status = 'completed'", (config_hash(config),))
        return int(rows[0]["id"]) if rows else None

    def _require_run(self, conn: sqlite3.Connection, run_id: int) -> str:
        row = conn.execute("SELECT status FROM runs WHERE id = ?", (int(run_id),)).fetchone()
        if row is None:
            raise UserInputError(f"no run with id {run_id} in {self.path}")
        return str(row[0])

    def add_epoch(self, run_id: int, epoch: int, record: Mapping[str, Any]) -> None:
        """Store (or overwrite, for a resumed run) one epoch's record of a run."""
        if not isinstance(record, Mapping):
            raise UserInputError(f"epoch record must be a mapping, got {type(record).__name__}")
        lr, seconds, delta = record.get("lr"), record.get("seconds"), record.get("val_delta_m")
        delta_metrics = record.get("val_delta_m_metrics")
        now = _now()
        with self.transaction() as conn:
            self._require_run(conn, run_id)
            conn.execute(
                "INSERT INTO epochs (run_id, epoch, lr, seconds, val_delta_m, val_delta_m_metrics, record, written_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, epoch) DO UPDATE SET lr = excluded.lr,"
                " seconds = excluded.seconds, val_delta_m = excluded.val_delta_m,"
                " val_delta_m_metrics = excluded.val_delta_m_metrics, record = excluded.record,"
                " written_at = excluded.written_at",
                (
                    int(run_id),
                    int(epoch),
                    None if lr is None else float(lr),
                    None if seconds is None else float(seconds),
                    None if delta is None else float(delta),
                    None if delta_metrics is None else float(delta_metrics),
                    dumps(record),
                    now,
                ),
            )
            conn.execute("UPDATE runs SET updated_at = ?, heartbeat_at = ? WHERE id = ?", (now, now, int(run_id)))

    def finish_run(
        self, run_id: int, *, test_metrics: Mapping[str, Mapping[str, float]], summary: Mapping[str, Any]
    ) -> None:
        """Mark a run completed with its test metrics (at the selected epoch) and summary."""
        best = summary.get("best_epoch")
        rows = [
            (int(run_id), str(task), str(metric), _metric_value(value), None if best is None else int(best))
            for task, metrics in test_metrics.items()
            for metric, value in metrics.items()
        ]
        values = {name: summary.get(name) for name in _SUMMARY_REALS}
        selection = summary.get("selection")
        now = _now()
        with self.transaction() as conn:
            self._require_run(conn, run_id)
            conn.execute("DELETE FROM test_metrics WHERE run_id = ?", (int(run_id),))
            conn.executemany("INSERT INTO test_metrics VALUES (?, ?, ?, ?, ?)", rows)
            conn.execute(
                "UPDATE runs SET status = 'completed', finished_at = ?, updated_at = ?, best_epoch = ?,"
                " val_delta_m = ?, test_delta_m = ?, seconds = ?, val_delta_m_metrics = ?, test_delta_m_metrics = ?,"
                " selection = ?, test_selected = ?, summary = ?, error = NULL WHERE id = ?",
                (
                    now,
                    now,
                    None if best is None else int(best),
                    *(None if value is None else float(value) for value in values.values()),
                    None if selection is None else str(selection),
                    int(bool(summary.get("test_selected", False))),
                    dumps(summary),
                    int(run_id),
                ),
            )

    def fail_run(self, run_id: int, error: str) -> None:
        """Mark a run failed with its error text."""
        now = _now()
        with self.transaction() as conn:
            self._require_run(conn, run_id)
            conn.execute(
                "UPDATE runs SET status = 'failed', error = ?, finished_at = ?, updated_at = ? WHERE id = ?",
                (str(error), now, now, int(run_id)),
            )

    def run(self, run_id: int) -> dict[str, Any]:
        """Everything about one run: its columns, config, provenance, summary, epochs and test metrics."""
        with self._snapshot():
            rows = self._query("SELECT * FROM runs WHERE id = ?", (int(run_id),))
            if not rows:
                raise UserInputError(f"no run with id {run_id} in {self.path}")
            run = rows[0]
            epochs = self._query("SELECT epoch, record FROM epochs WHERE run_id = ? ORDER BY epoch", (int(run_id),))
            tests = self._query("SELECT * FROM test_metrics WHERE run_id = ? ORDER BY task, metric", (int(run_id),))
        run["status"] = run_status(run)
        for name in ("config", "provenance", "summary"):
            run[name] = loads(run[name])
        summary = run["summary"] or {}
        for name in _SUMMARY_REALS:  # the summary keeps NaN, the column does not
            if name in summary:
                run[name] = summary[name]
        run["epochs"] = [{"epoch": row["epoch"], **loads(row["record"])} for row in epochs]
        metrics: dict[str, dict[str, float]] = {}
        for row in tests:
            metrics.setdefault(row["task"], {})[row["metric"]] = _nan_if_none(row["value"])
        run["test_metrics"] = metrics
        return run

    # ------------------------------------------------------------------------------------ queries
    @staticmethod
    def _split_status(filters: Mapping[str, Any]) -> tuple[dict[str, Any], set[str] | None]:
        """The filters with ``status`` as stored (``interrupted`` is stored as ``running``) and the statuses
        wanted after :func:`run_status` (None: all)."""
        value = filters.get("status")
        if value is None:
            return dict(filters), None
        wanted = {value} if isinstance(value, str) else set(value)
        for status in wanted:
            if status not in RUN_STATUSES:
                raise unknown("run status", status, RUN_STATUSES)
        stored = sorted({"running" if status == "interrupted" else status for status in wanted})
        return {**filters, "status": stored}, wanted

    @staticmethod
    def _where(filters: Mapping[str, Any], table: str = "runs") -> tuple[str, list[Any]]:
        clauses, params = [], []
        for name, value in filters.items():
            if name not in RUN_FILTERS:
                raise unknown("filter", name, RUN_FILTERS)
            if value is None:
                continue
            if name == "tasks":  # "CL_RR", "CL,RR" or ["CL", "RR"]: one task set
                values = [_tasks_key(value)]
            elif isinstance(value, str) or not isinstance(value, Sequence | set | frozenset):
                values = [value]
            else:
                values = list(value)
            clauses.append(f"{table}.{name} IN ({', '.join('?' * len(values))})")
            params.extend(values)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def runs(self, **filters: Any) -> pd.DataFrame:
        """One row per run; filters: problem, tasks, method, kind, status, seed, config_hash (value or list).

        Columns: the indexed columns, summary columns, the process (host, pid, heartbeat_at), and the config and
        summary flattened as ``config.*`` and ``summary.*`` (nested keys joined by dots, lists as JSON text).
        ``status`` is one of :data:`RUN_STATUSES` (``interrupted``: see the module docstring).
        """
        return self._runs_frame(filters, raw=False)

    _RUN_COLUMNS = (
        "id",
        "kind",
        "problem",
        "tasks",
        "method",
        "seed",
        "status",
        "best_epoch",
        "val_delta_m",
        "test_delta_m",
        "val_delta_m_metrics",
        "test_delta_m_metrics",
        "selection",
        "test_selected",
        "seconds",
        "error",
        "attempts",
        "started_at",
        "updated_at",
        "finished_at",
        "config_hash",
        "host",
        "pid",
        "heartbeat_at",
    )

    def _runs_frame(self, filters: Mapping[str, Any], *, raw: bool) -> pd.DataFrame:
        import pandas as pd

        filters, wanted = self._split_status(filters)
        where, params = self._where(filters)
        rows = self._query(f"SELECT * FROM runs{where} ORDER BY id", params)
        records = []
        for row in rows:
            row["status"] = run_status(row)
            if wanted is not None and row["status"] not in wanted:
                continue
            record = {name: row[name] for name in self._RUN_COLUMNS}
            summary = loads(row["summary"]) or {}
            for name in _SUMMARY_REALS:
                if isinstance(summary.get(name), float):
                    record[name] = summary[name]
            flat: dict[str, Any] = {}
            _flatten("config", loads(row["config"]), flat)
            _flatten("summary", summary, flat)
            record.update(flat)
            if raw:
                record.update(config_json=row["config"], provenance_json=row["provenance"], summary_json=row["summary"])
            records.append(record)
        frame = pd.DataFrame(records, columns=None if records else list(self._RUN_COLUMNS))
        return frame.astype(dict.fromkeys(_SUMMARY_REALS, float))

    def epochs(self, run_id: int | None = None, **filters: Any) -> pd.DataFrame:
        """One row per (run, epoch) with flattened columns: ``lr``, ``seconds``, ``val_delta_m``,
        ``train_loss.<task>``, ``val.<task>.<metric>``, ``weight.<task>``, ``extra.<key>``; plus the run's
        problem, tasks, method, seed, kind and status. Filters as :meth:`runs`."""
        import pandas as pd

        filters, wanted = self._split_status(filters)
        where, params = self._where(filters, "r")
        if run_id is not None:
            where = (where + " AND" if where else " WHERE") + " e.run_id = ?"
            params.append(int(run_id))
        rows = self._query(
            "SELECT e.run_id, e.epoch, r.problem, r.tasks, r.method, r.seed, r.kind, r.status, e.record, r.host,"
            " r.pid, r.process_start, r.heartbeat_at, r.updated_at"
            f" FROM epochs e JOIN runs r ON r.id = e.run_id{where} ORDER BY e.run_id, e.epoch",
            params,
        )
        base = ["run_id", "epoch", "problem", "tasks", "method", "seed", "kind", "status"]
        records = []
        for row in self._live(rows, wanted):
            record = {name: row[name] for name in base}
            flat: dict[str, Any] = {}
            for key, value in loads(row["record"]).items():
                if value is None and key in _EPOCH_PREFIXES:
                    continue
                _flatten(_EPOCH_PREFIXES.get(key, key), value, flat)
            for name in ("lr", "seconds", "val_delta_m"):
                flat.setdefault(name, None)
            record.update(flat)
            records.append(record)
        frame = pd.DataFrame(records, columns=None if records else [*base, "lr", "seconds", "val_delta_m"])
        return frame.astype({"lr": float, "seconds": float, "val_delta_m": float})

    @staticmethod
    def _live(rows: list[dict[str, Any]], wanted: set[str] | None) -> list[dict[str, Any]]:
        """Rows joined with their run: ``status`` as reads report it, filtered to ``wanted``."""
        statuses: dict[Any, str] = {}
        kept = []
        for row in rows:
            if row["run_id"] not in statuses:
                statuses[row["run_id"]] = run_status(row)
            row["status"] = statuses[row["run_id"]]
            if wanted is None or row["status"] in wanted:
                kept.append(row)
        return kept

    def test_metrics(self, **filters: Any) -> pd.DataFrame:
        """Long format (run_id, task, metric, value, selected_epoch) joined with the run's columns."""
        import pandas as pd

        filters, wanted = self._split_status(filters)
        where, params = self._where(filters, "r")
        rows = self._query(
            "SELECT t.run_id, t.task, t.metric, t.value, t.selected_epoch, r.kind, r.problem, r.tasks, r.method,"
            " r.seed, r.status, r.host, r.pid, r.process_start, r.heartbeat_at, r.updated_at"
            f" FROM test_metrics t JOIN runs r ON r.id = t.run_id{where} ORDER BY t.run_id, t.task, t.metric",
            params,
        )
        columns = ["run_id", "task", "metric", "value", "selected_epoch", "kind", "problem", "tasks", "method"]
        columns += ["seed", "status"]
        frame = pd.DataFrame.from_records(
            [{name: row[name] for name in columns} for row in self._live(rows, wanted)], columns=columns
        )
        return frame.astype({"value": float})

    # --------------------------------------------------------------------------------- references
    def put_reference(
        self,
        key: Mapping[str, Any],
        *,
        split: str,
        task: str,
        metric: str,
        value: float,
        n_seeds: int,
        run_ids: Sequence[int],
    ) -> None:
        """Store (or replace) one single-task reference metric for ``key`` (the problem's reference_config())."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO refs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key_hash, split, task, metric)"
                " DO UPDATE SET value = excluded.value, n_seeds = excluded.n_seeds, run_ids = excluded.run_ids,"
                " updated_at = excluded.updated_at",
                (
                    config_hash(key),
                    dumps(key, canonical=True),
                    None if key.get("problem") is None else str(key.get("problem")),
                    str(split),
                    str(task),
                    str(metric),
                    _metric_value(value),
                    int(n_seeds),
                    dumps([int(run_id) for run_id in run_ids]),
                    _now(),
                ),
            )

    def reference(self, key: Mapping[str, Any], tasks: Sequence[str], split: str) -> dict[str, dict[str, float]] | None:
        """``{task: {metric: value}}`` for ``key`` and ``split`` if every task has a reference, else None."""
        tasks = [tasks] if isinstance(tasks, str) else list(tasks)
        if not tasks:
            return None
        marks = ", ".join("?" * len(tasks))
        rows = self._query(
            f"SELECT task, metric, value FROM refs WHERE key_hash = ? AND split = ? AND task IN ({marks})",
            [config_hash(key), split, *tasks],
        )
        found: dict[str, dict[str, float]] = {}
        for row in rows:
            found.setdefault(row["task"], {})[row["metric"]] = _nan_if_none(row["value"])
        if any(task not in found for task in tasks):
            return None
        return {task: found[task] for task in tasks}

    def references(self) -> pd.DataFrame:
        """Every stored reference: key_hash, problem, split, task, metric, value, n_seeds, run_ids (JSON text),
        updated_at, the key as JSON text and flattened as ``key.*``."""
        import pandas as pd

        rows = self._query("SELECT * FROM refs ORDER BY problem, key_hash, split, task, metric")
        columns = ["key_hash", "problem", "split", "task", "metric", "value", "n_seeds", "run_ids", "updated_at", "key"]
        records = []
        for row in rows:
            record = {name: row[name] for name in columns}
            record["value"] = _nan_if_none(record["value"])
            flat: dict[str, Any] = {}
            _flatten("key", loads(row["key"]), flat)
            record.update(flat)
            records.append(record)
        return pd.DataFrame(records, columns=None if records else columns).astype({"value": float})

    # ------------------------------------------------------------------------------------- export
    def export(self, path: str | Path, fmt: str = "csv") -> list[Path]:
        """Write runs, epochs, test_metrics and references (one file per table) into folder ``path``."""
        if fmt not in EXPORT_FORMATS:
            raise unknown("export format", fmt, EXPORT_FORMATS)
        folder = Path(path).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        with self._snapshot():  # one consistent state of all four tables
            frames = {
                "runs": self._runs_frame({}, raw=True),
                "epochs": self.epochs(),
                "test_metrics": self.test_metrics(),
                "references": self.references(),
            }
        written = []
        for name, frame in frames.items():
            target = folder / f"{name}.{fmt}"
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            if fmt == "csv":
                frame.to_csv(tmp, index=False)
            else:
                _uniform_columns(frame).to_parquet(tmp, index=False)
            os.replace(tmp, target)
            written.append(target)
        return written


def _uniform_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Parquet needs one type per column: object columns mixing types become JSON text."""
    from pandas.api.types import is_object_dtype

    frame = frame.copy()
    for column in [name for name in frame.columns if is_object_dtype(frame[name].dtype)]:
        kinds = {type(value) for value in frame[column] if value is not None and value == value}
        if len(kinds) > 1 or (kinds and not kinds <= {str}):
            frame[column] = [
                None if value is None or value != value else (value if isinstance(value, str) else dumps(value))
                for value in frame[column]
            ]
    return frame
