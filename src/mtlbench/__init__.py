"""mtlbench: specialized multi-task optimizers, faithful and fast, and the protocol to test them.

The uniform loss (Unit. Scal.) is the baseline every method is measured against.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mtlbench")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
