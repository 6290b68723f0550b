"""mtlbench.store: the SQLite results store of every training run (see :mod:`mtlbench.store.results`)."""

from mtlbench.store.results import (
    ENV_VAR,
    SCHEMA_VERSION,
    ResultsStore,
    RunInProgressError,
    SchemaVersionError,
    config_hash,
    default_results_path,
)

__all__ = [
    "ENV_VAR",
    "SCHEMA_VERSION",
    "ResultsStore",
    "RunInProgressError",
    "SchemaVersionError",
    "config_hash",
    "default_results_path",
]
