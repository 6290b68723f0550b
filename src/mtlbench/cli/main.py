"""Entry point of the ``mtlbench`` command: imports every command module, prints user errors as one line."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import mtlbench.cli as cli_package
from mtlbench.cli.app import app
from mtlbench.errors import MtlbenchError

_NOT_COMMANDS = {"app", "main", "common"}


def _load_commands() -> None:
    for module in pkgutil.iter_modules(cli_package.__path__):
        if module.name not in _NOT_COMMANDS and not module.name.startswith("_"):
            importlib.import_module(f"{cli_package.__name__}.{module.name}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a :class:`MtlbenchError` becomes ``error: <message>`` and exit status 2."""
    _load_commands()
    try:
        app(args=argv, standalone_mode=False)
    except MtlbenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as exit_:
        return int(exit_.code or 0)
    except Exception as error:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(error, click.exceptions.ClickException):
            error.show()
            return error.exit_code
        if isinstance(error, click.exceptions.Abort):
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
