"""Entry point of the ``mtlbench`` command: every mistake is one line on stderr, never a traceback.

Exit statuses: 0 success; 1 a failed run or an internal error (one line; ``--debug``, anywhere on the
command line, or ``MTLBENCH_DEBUG=1`` prints the traceback); 2 a user mistake (an unknown, missing or
malformed option, a bad value, a path that cannot be used); 130 interrupted; 141 stdout closed early.
Command-line parsing errors are recognised by class name, so they are caught whether typer vendors
click (``typer._click``, typer >= 0.23) or uses the real one.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from typing import Any

from mtlbench.cli.app import app, load_commands
from mtlbench.errors import MtlbenchError

DEBUG_VARIABLE = "MTLBENCH_DEBUG"
USAGE = 2


def _class_names(error: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(error).__mro__}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _debug(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def _allowed_options(error: Any) -> str:
    """The options the command of a click context accepts, for an unknown-option message."""
    command = getattr(getattr(error, "ctx", None), "command", None)
    names = sorted(
        {opt for param in getattr(command, "params", []) for opt in getattr(param, "opts", []) if opt.startswith("--")}
    )
    return f"; options of `{error.ctx.command_path}`: {', '.join(names)}" if names else ""


def _given_value(error: Any, argv: list[str]) -> str | None:
    """The text given on the command line for the option a BadParameter error is about (the last one)."""
    opts = set(getattr(getattr(error, "param", None), "opts", None) or [])
    found = None
    for index, arg in enumerate(argv):
        name, sep, value = arg.partition("=")
        if sep and name in opts:
            found = value
        elif arg in opts and index + 1 < len(argv):
            found = argv[index + 1]
    return found


def _usage_message(error: Any, argv: list[str]) -> str:
    """click's message, on one line, naming the bad value and what is allowed where click does not."""
    message = _one_line(error.format_message())
    names = _class_names(error)
    if "BadParameter" in names and "MissingParameter" not in names:
        value = _given_value(error, argv)
        if value is not None and repr(value) not in message:
            message = f"{message.rstrip('.')} (got {value!r})"
    if "NoSuchOption" in names and "Did you mean" not in message:
        message = message.rstrip(".") + _allowed_options(error)
    if "NoSuchOption" in names or "MissingParameter" in names:
        ctx = getattr(error, "ctx", None)
        if ctx is not None:
            message = message.rstrip(".") + f" (see `{ctx.command_path} --help`)"
    return message


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit status (the ``mtlbench`` console script exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug(argv)
    if debug:  # a global option, accepted after the command name too
        argv = ["--debug", *(arg for arg in argv if arg != "--debug")]
    try:
        load_commands()
        result = app(args=argv, standalone_mode=False, prog_name="mtlbench")
    except MtlbenchError as error:
        if debug:
            traceback.print_exc()
        print(f"error: {_one_line(str(error))}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BrokenPipeError:  # `mtlbench methods | head`: the reader left; say nothing more
        with contextlib.suppress(Exception):  # Python's final flush would fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as error:
        if debug:
            traceback.print_exc()
        where = f": {error.filename}" if error.filename else ""
        print(f"error: {error.strerror or _one_line(str(error))}{where}", file=sys.stderr)
        return USAGE
    except Exception as error:
        names = _class_names(error)
        if "NoArgsIsHelpError" in names:
            text = error.format_message()  # type: ignore[attr-defined]
            if text.strip():  # typer's rich help printed itself while the error was made
                print(text)
            return 0
        if "ClickException" in names:  # UsageError, BadParameter, MissingParameter, NoSuchOption, FileError
            print(f"error: {_usage_message(error, argv)}", file=sys.stderr)
            return USAGE
        if "Abort" in names:
            print("aborted", file=sys.stderr)
            return 1
        if debug:
            traceback.print_exc()
        hint = "" if debug else f" (run with --debug or {DEBUG_VARIABLE}=1 for the traceback)"
        print(f"internal error: {type(error).__name__}: {_one_line(str(error))}{hint}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
