"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""

from __future__ import annotations

from collections.abc import Iterable


class MtlbenchError(Exception):
    """Base class of every error mtlbench reports to a user as a one-line message."""


class UserInputError(MtlbenchError, ValueError):
    """A bad value given by the user: names the value and what is allowed."""


class MissingDataError(MtlbenchError, FileNotFoundError):
    """Data or references that must be created first: the message names the command that does it."""


class RunFailedError(MtlbenchError, RuntimeError):
    """A training run that cannot continue (NaN or infinite loss, numerical overflow)."""


def unknown(kind: str, value: object, allowed: Iterable[str]) -> UserInputError:
    """``unknown method 'foo'; choose one of: a, b, c``."""
    options = ", ".join(sorted(allowed))
    return UserInputError(f"unknown {kind} {value!r}; choose one of: {options}")
