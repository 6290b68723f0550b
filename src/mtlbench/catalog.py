"""What the registries declare, readable without importing torch: the catalog behind the CLI's listings.

``mtlbench methods``, ``mtlbench problems``, ``mtlbench --help`` and the ``mtlbench analysis`` commands
must start in a fraction of a second, but the methods, problems and analyses are classes and functions
in modules that import torch, pandas or matplotlib. Their metadata (names, kinds, head rule,
hyperparameters with ranges, citations, 000's grids; problems' tasks, metrics, options, defaults;
the analyses' titles) is therefore written to ``catalog.json`` next to this module by::

    python -m mtlbench.catalog --write

and read from there. Each section records a fingerprint of the sources it was built from
(``methods/*.py``, ``problems/*.py``, ``analysis/analyses.py``): when they change and the file was not
regenerated, that section is described from the live classes instead (slower, never wrong), and
``tests/test_startup.py`` fails with the command above. Entry-point plugins are not in the file: their
names are listed without importing them (:func:`plugin_names`), and they are imported only when their
metadata is shown. A process that has already imported the live registries (for instance after a
``@register_method`` of its own) gets the live description too.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import math
import sys
from collections.abc import Mapping, Sequence
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent
CATALOG_PATH = PACKAGE / "catalog.json"
REGENERATE = "python -m mtlbench.catalog --write"
#: the sources of each section (their fingerprint says whether the section is current)
SOURCES = {"methods": ("methods/*.py",), "problems": ("problems/*.py",), "analyses": ("analysis/analyses.py",)}
METHOD_GROUP = "mtlbench.methods"
PROBLEM_GROUP = "mtlbench.problems"


def fingerprint(section: str) -> str:
    """SHA-256 over a section's source files (relative path and bytes), in a fixed order."""
    digest = hashlib.sha256()
    for path in sorted({p for pattern in SOURCES[section] for p in PACKAGE.glob(pattern)}):
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _plain(value: Any) -> Any:
    """JSON-ready: tuples -> lists, mappings -> dicts, non-finite floats and other objects -> text."""
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [_plain(v) for v in value]
    return repr(value)


def _doc(obj: Any) -> str:
    return inspect.cleandoc(obj.__doc__) if obj.__doc__ else ""


def describe_method(cls: Any) -> dict[str, Any]:
    """The catalog entry of a :class:`~mtlbench.methods.Method` class."""
    return {
        "name": cls.name,
        "title": cls.title,
        "citation": cls.citation,
        "kind": str(cls.kind.value),
        "head_gradient": str(cls.head_gradient.value),
        "stateless": bool(cls.stateless),
        "randomized": bool(cls.randomized),
        "min_tasks": int(getattr(cls, "min_tasks", 1)),
        "hyperparameters": [
            {
                "name": h.name,
                "kind": h.kind,
                "default": repr(h.default),
                "allowed": h.allowed(),
                "low": _plain(h.low),
                "high": _plain(h.high),
                "low_inclusive": h.low_inclusive,
                "high_inclusive": h.high_inclusive,
                "choices": None if h.choices is None else _plain(h.choices),
                "doc": h.doc,
            }
            for h in cls.hyperparameters
        ],
        "grids": {problem: _plain(dict(grid)) for problem, grid in cls.grids.items()},
        "doc": _doc(cls),
        "module": cls.__module__,
    }


def describe_problem(cls: Any) -> dict[str, Any]:
    """The catalog entry of a :class:`~mtlbench.problems.Problem` class."""
    d = cls.defaults
    return {
        "name": cls.name,
        "description": cls.description,
        "tasks": {
            name: {
                "metrics": [{"name": m.name, "higher_is_better": bool(m.higher_is_better)} for m in task.metrics],
                "loss_type": task.loss_type,
                "description": task.description,
            }
            for name, task in cls.available_tasks().items()
        },
        "options": [
            {
                "name": o.name,
                "default": repr(o.default),
                "doc": o.doc,
                "choices": None if o.choices is None else [repr(c) for c in o.choices],
            }
            for o in cls.options
        ],
        "defaults": {
            "optimizer": d.optimizer,
            "lr": d.lr,
            "batch_size": d.batch_size,
            "epochs": d.epochs,
            "scheduler": d.scheduler,
            "scheduler_gamma": d.scheduler_gamma,
            "dropout": d.dropout,
            "weight_decay": d.weight_decay,
            "grids": _plain(dict(d.grids)),
        },
        "splits": list(cls.splits),
        "module": cls.__module__,
    }


def _build_methods() -> dict[str, Any]:
    from mtlbench.methods import METHODS

    return {n: describe_method(c) for n, c in METHODS.items() if c.__module__.startswith(_BUILTIN)}


def _build_problems() -> dict[str, Any]:
    from mtlbench.problems import PROBLEMS

    return {n: describe_problem(c) for n, c in PROBLEMS.items() if c.__module__.startswith(_BUILTIN)}


def _build_analyses() -> dict[str, Any]:
    from mtlbench.analysis.analyses import ANALYSES

    return {n: {"name": n, "title": a.title, "description": a.description} for n, a in ANALYSES.items()}


_BUILTIN = PACKAGE.name + "."
_BUILDERS = {"methods": _build_methods, "problems": _build_problems, "analyses": _build_analyses}


def build() -> dict[str, Any]:
    """Describe the live built-in registries (imports torch, pandas, matplotlib): what ``--write`` stores."""
    catalog: dict[str, Any] = {
        "regenerate": REGENERATE,
        "fingerprints": {section: fingerprint(section) for section in _BUILDERS},
    }
    catalog.update({section: builder() for section, builder in _BUILDERS.items()})
    return catalog


def dumps(catalog: Mapping[str, Any]) -> str:
    return json.dumps(catalog, indent=1, ensure_ascii=False, sort_keys=False) + "\n"


def write(path: Path = CATALOG_PATH) -> Path:
    """Regenerate the catalog file atomically."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(dumps(build()), encoding="utf-8")
    tmp.replace(path)
    return path


@cache
def _file() -> dict[str, Any]:
    try:
        return json.loads(CATALOG_PATH.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@cache
def _stored(section: str) -> dict[str, Any] | None:
    """The stored section if its sources have not changed since it was written, else None."""
    stored = _file()
    if section not in stored or stored.get("fingerprints", {}).get(section) != fingerprint(section):
        return None
    return stored[section]


def _live(module: str, attribute: str, known: Mapping[str, Any]) -> Any:
    """The registry ``module.attribute`` if this process already loaded it or registered names the catalog
    lacks (a user's ``@register_method``), else None."""
    registry = getattr(sys.modules.get(module), attribute, None)
    if registry is None:
        return None
    loaded = getattr(registry, "_imported", False)
    return registry if loaded or any(name not in known for name in registry.registered_names()) else None


def load(section: str) -> dict[str, Any]:
    """A built-in section (methods, problems, analyses): stored when current, else from the live classes."""
    stored = _stored(section)
    return stored if stored is not None else json.loads(dumps(_BUILDERS[section]()))


def plugin_names(group: str) -> list[str]:
    """Names of the entry points of ``group`` (nothing is imported)."""
    return sorted({ep.name for ep in entry_points(group=group)})


def _entries(section: str, module: str, attribute: str, group: str, describe: Any) -> dict[str, dict[str, Any]]:
    stored = _stored(section)
    known = {} if stored is None else stored
    live = _live(module, attribute, known)
    if stored is None or live is not None or any(name not in known for name in plugin_names(group)):
        registry = live if live is not None else getattr(importlib.import_module(module), attribute)
        return {name: describe(cls) for name, cls in registry.items()}
    return dict(sorted(known.items()))


def methods() -> dict[str, dict[str, Any]]:
    """Every method by name: the catalog, or the live registry once plugins or stale sources need it."""
    return _entries("methods", "mtlbench.methods", "METHODS", METHOD_GROUP, describe_method)


def problems() -> dict[str, dict[str, Any]]:
    """Every problem by name: the catalog, or the live registry once plugins or stale sources need it."""
    return _entries("problems", "mtlbench.problems", "PROBLEMS", PROBLEM_GROUP, describe_problem)


def method(name: str) -> dict[str, Any]:
    """One method's entry; a one-line error listing the names if it is unknown."""
    from mtlbench.errors import unknown

    known = methods()
    if name not in known:
        raise unknown("method", name, known)
    return known[name]


def analyses() -> dict[str, dict[str, str]]:
    """The analyses (``mtlbench analysis NAME``) by name: title and description."""
    return load("analyses")


def main(argv: list[str] | None = None) -> int:
    """``python -m mtlbench.catalog --write`` regenerates the file; ``--check`` says whether it is current."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--write"]:
        print(f"wrote {write()}")
        return 0
    if args == ["--check"]:
        try:
            current = json.loads(CATALOG_PATH.read_text(encoding="utf-8")) == json.loads(dumps(build()))
        except (OSError, ValueError):
            current = False
        print(f"{CATALOG_PATH} is {'current' if current else f'out of date: run `{REGENERATE}`'}")
        return 0 if current else 1
    print("usage: python -m mtlbench.catalog --write | --check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
