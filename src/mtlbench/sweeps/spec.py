"""Sweep files: the protocol of 000 section 3 written down as data (TOML; YAML when pyyaml is installed).

A sweep file names a problem, its tasks and options, the methods, the grids and the seed counts::

    name = "mnist_cl_rr"
    problem = "multi_mnist"
    tasks = "CL_RR"
    methods = ["unit_scal", "cagrad"]
    search_seeds = 5          # runs per grid configuration (000: five on Multi-MNIST, one elsewhere)
    final_seeds = 10          # seeds 1..final_seeds of the selected configuration are reported

    [problem_options]         # options of the problem (``mtlbench problems``)
    [settings]                # fixed RunConfig fields: epochs, batch_size, optimizer, device, threads, ...
    [grid]                    # lr / dropout / weight_decay lists (default: the problem's defaults.grids)
    [method_grids.cagrad]     # a method's own grid (default: the method registry's grid for the problem)
    c = [0.2, 0.5, 0.8]
    [method_params.famo]      # fixed hyperparameters of a method
    [method_settings.nash_mtl]  # fixed RunConfig fields of one method's runs, over [settings]
    objective = "sum"         # (a method not in ``methods`` may appear: specs extending this one)
    [references]              # single-task references: enabled, search_seeds, final_seeds, grid
    [ray]                     # cpus_per_run, gpus_per_run
    model = "segnet"          # (top level) a dense problem's architecture: sets problem_options.model
    [scales.smoke]            # any of the keys above, merged over the file by ``--scale smoke``

``extends = "other_spec"`` (a built-in name or a path relative to the file) starts from another spec.
Scale ``paper`` is the file itself (plus its ``[scales.paper]`` table if it has one).
"""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from mtlbench.errors import UserInputError

PAPER_SCALE = "paper"
GRID_KEYS = ("lr", "dropout", "weight_decay")
#: fixed RunConfig fields a sweep may set, with the types they accept
SETTING_TYPES: dict[str, tuple[type, ...]] = {
    "lr": (float, int),
    "dropout": (float, int),
    "weight_decay": (float, int),
    "epochs": (int,),
    "batch_size": (int,),
    "eval_batch_size": (int,),
    "optimizer": (str,),
    "momentum": (float, int),
    "scheduler": (str,),
    "scheduler_gamma": (float, int),
    "step_size": (int,),
    "plateau_monitor": (str,),
    "objective": (str,),
    "selection": (str,),
    "device": (str,),
    "threads": (int,),
    "grad_metrics_every": (int,),
    "grad_clip": (float, int),
    "iterations": (int,),
    "eval_every": (int,),
    "grad_memory": (float, int),
}
_BODY_KEYS = (
    "description",
    "problem",
    "tasks",
    "problem_options",
    "methods",
    "search_seeds",
    "final_seeds",
    "settings",
    "grid",
    "grid_problem",
    "method_grids",
    "method_params",
    "method_settings",
    "references",
    "ray",
    "model",
)
TOP_KEYS = ("name", "extends", "scales", *_BODY_KEYS)
REFERENCE_KEYS = ("enabled", "search_seeds", "final_seeds", "grid")
RAY_KEYS = ("cpus_per_run", "gpus_per_run")
YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ReferenceSpec:
    """How the single-task references are chosen: a grid per task, selection per metric, final seeds."""

    enabled: bool
    search_seeds: int
    final_seeds: int
    grid: dict[str, list[Any]]


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, scale-applied sweep file (structure checked; values are checked by :mod:`.plan`)."""

    name: str
    source: str
    scale: str
    scales: tuple[str, ...]
    problem: str
    tasks: str | list[str]
    problem_options: dict[str, Any]
    methods: list[str]
    search_seeds: int
    final_seeds: int
    settings: dict[str, Any]
    grid: dict[str, list[Any]]
    grid_problem: str
    method_grids: dict[str, dict[str, list[Any]]]
    method_params: dict[str, dict[str, Any]]
    references: ReferenceSpec
    #: method -> fixed RunConfig fields of its runs (over ``settings``)
    method_settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    cpus_per_run: int | None = None
    gpus_per_run: float = 0.0
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def error(self, key: str, message: str) -> UserInputError:
        return UserInputError(f"{self.source}: {key}: {message}")


# ------------------------------------------------------------------------------------------ built-ins
def _builtin_dir() -> Any:
    return resources.files("mtlbench.sweeps").joinpath("specs")


def builtin_specs() -> dict[str, Any]:
    """Built-in spec name -> resource (the ``*.toml`` files shipped in ``mtlbench/sweeps/specs``)."""
    folder = _builtin_dir()
    if not folder.is_dir():
        return {}
    return {
        entry.name.removesuffix(".toml"): entry
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".toml")
    }


def _parse_text(text: str, source: str, suffix: str) -> dict[str, Any]:
    if suffix in YAML_SUFFIXES:
        try:
            import yaml
        except ImportError:
            raise UserInputError(f"{source}: reading YAML needs pyyaml (pip install pyyaml); or write TOML") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise UserInputError(f"{source}: not valid YAML: {' '.join(str(error).split())}") from None
    else:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise UserInputError(f"{source}: not valid TOML: {error}") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{source}: a sweep file must be a table of keys (problem, tasks, methods, ...)")
    return data


def _read(name_or_path: str | Path, relative_to: Path | None = None) -> tuple[dict[str, Any], str, Path | None]:
    """(raw data, source label, folder for relative ``extends``) of a spec file or built-in name."""
    candidates = [Path(name_or_path)]
    if relative_to is not None and not Path(name_or_path).is_absolute():
        candidates.insert(0, relative_to / name_or_path)
    for path in candidates:
        if path.is_file():
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise UserInputError(f"{path}: cannot read the sweep file: {error}") from None
            return _parse_text(text, str(path), path.suffix.lower()), str(path), path.parent
    builtins = builtin_specs()
    name = str(name_or_path)
    if name in builtins:
        return _parse_text(builtins[name].read_text(encoding="utf-8"), f"{name} (built-in)", ".toml"), name, None
    allowed = ", ".join(builtins) or "(none)"
    raise UserInputError(f"sweep spec {name!r} is neither a file nor a built-in spec; built-in specs: {allowed}")


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``: tables merge key by key, anything else is replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _load_raw(name_or_path: str | Path, relative_to: Path | None, chain: tuple[str, ...]) -> tuple[dict, str]:
    data, source, folder = _read(name_or_path, relative_to)
    if source in chain:
        raise UserInputError(f"{source}: extends: circular ({' -> '.join((*chain, source))})")
    parent = data.get("extends")
    if parent is None:
        return data, source
    if not isinstance(parent, str):
        raise UserInputError(f"{source}: extends: must be a spec name or a path, got {parent!r}")
    base, _ = _load_raw(parent, folder, (*chain, source))
    base.pop("name", None)
    child = {key: value for key, value in data.items() if key != "extends"}
    return deep_merge(base, child), source


def load_raw_spec(name_or_path: str | Path) -> tuple[dict[str, Any], str]:
    """(raw data with ``extends`` resolved, source label) of a spec file or built-in name (for studies)."""
    return _load_raw(name_or_path, None, ())


def _with_model(options: dict[str, Any], data: Mapping[str, Any], model: str | None, source: str) -> dict[str, Any]:
    """``problem_options`` with the spec's top-level ``model`` (or the caller's override) as its ``model``."""
    chosen = model if model is not None else data.get("model")
    if chosen is None:
        return options
    if not isinstance(chosen, str) or not chosen:
        raise UserInputError(f"{source}: model: must be an architecture name, got {chosen!r}")
    return {**options, "model": chosen}


def load_spec(name_or_path: str | Path, scale: str | None = None, *, model: str | None = None) -> SweepSpec:
    """Read a sweep file (or built-in spec name), resolve ``extends``, apply ``scale`` and check its structure;
    ``model`` overrides the spec's architecture (dense problems' ``model`` option)."""
    raw, source = _load_raw(name_or_path, None, ())
    return parse_spec(raw, source=source, scale=scale, model=model)


# ------------------------------------------------------------------------------------------- parsing
def _check_keys(table: Mapping[str, Any], allowed: tuple[str, ...], source: str, prefix: str) -> None:
    for key in table:
        if key not in allowed:
            where = f"{prefix}.{key}" if prefix else str(key)
            raise UserInputError(f"{source}: {where}: unknown key; allowed: {', '.join(allowed)}")


def _table(value: Any, source: str, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UserInputError(f"{source}: {key}: must be a table (key = value pairs), got {value!r}")
    return dict(value)


def _count(value: Any, source: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserInputError(f"{source}: {key}: must be a positive integer, got {value!r}")
    return value


def _values_list(value: Any, source: str, key: str, numeric: bool) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise UserInputError(f"{source}: {key}: must be a non-empty list of values, got {value!r}")
    for item in value:
        scalar = isinstance(item, int | float | str | bool)
        if not scalar or (numeric and (isinstance(item, bool) or not isinstance(item, int | float))):
            kind = "numbers" if numeric else "numbers, strings or booleans"
            raise UserInputError(f"{source}: {key}: must list {kind}, got {item!r}")
    return list(value)


def _grid(value: Any, source: str, key: str) -> dict[str, list[Any]]:
    table = _table(value, source, key)
    _check_keys(table, GRID_KEYS, source, key)
    return {name: _values_list(values, source, f"{key}.{name}", numeric=True) for name, values in table.items()}


def _settings(value: Any, source: str, key: str = "settings") -> dict[str, Any]:
    table = _table(value, source, key)
    _check_keys(table, tuple(SETTING_TYPES), source, key)
    for name, item in table.items():
        types = SETTING_TYPES[name]
        if isinstance(item, bool) or not isinstance(item, types):
            kind = "a number" if float in types else ("an integer" if int in types else "text")
            raise UserInputError(f"{source}: {key}.{name}: must be {kind}, got {item!r}")
    return table


def _tasks(value: Any, source: str) -> str | list[str]:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, list) and value and all(isinstance(item, str) and item for item in value):
        return list(value)
    raise UserInputError(f"{source}: tasks: must be a task list such as 'CL_RR', 'all' or ['CL', 'RR'], got {value!r}")


def parse_spec(
    raw: Mapping[str, Any], *, source: str = "<sweep>", scale: str | None = None, model: str | None = None
) -> SweepSpec:
    """A :class:`SweepSpec` from raw data (``extends`` already resolved); one-line errors name the key."""
    _check_keys(raw, TOP_KEYS, source, "")
    scales = _table(raw.get("scales"), source, "scales")
    for name, overlay in scales.items():
        _check_keys(_table(overlay, source, f"scales.{name}"), _BODY_KEYS, source, f"scales.{name}")
    available = tuple(dict.fromkeys([PAPER_SCALE, *scales]))
    chosen = scale or PAPER_SCALE
    if chosen not in available:
        raise UserInputError(f"{source}: scale {chosen!r} is not defined; choose one of: {', '.join(available)}")
    data = {key: value for key, value in raw.items() if key != "scales"}
    if chosen in scales:
        data = deep_merge(data, scales[chosen])

    for key in ("problem", "tasks", "methods"):
        if key not in data:
            raise UserInputError(f"{source}: {key}: missing (a sweep needs problem, tasks and methods)")
    problem = data["problem"]
    if not isinstance(problem, str) or not problem:
        raise UserInputError(f"{source}: problem: must be a problem name (see `mtlbench problems`), got {problem!r}")
    methods = data["methods"]
    if not isinstance(methods, list) or not all(isinstance(m, str) and m for m in methods):
        raise UserInputError(f"{source}: methods: must be a list of method names, got {methods!r}")
    if len(set(methods)) != len(methods):
        raise UserInputError(f"{source}: methods: names a method twice: {methods!r}")
    search_seeds = _count(data.get("search_seeds", 1), source, "search_seeds")
    final_seeds = _count(data.get("final_seeds", 3), source, "final_seeds")
    grid_problem = data.get("grid_problem", problem)
    if not isinstance(grid_problem, str) or not grid_problem:
        raise UserInputError(f"{source}: grid_problem: must be a problem name, got {grid_problem!r}")

    # a scale that runs fewer methods keeps the file's grids and parameters of the others, unused
    spec_methods = raw.get("methods") if isinstance(raw.get("methods"), list) else methods
    dropped = {m for m in spec_methods if m not in methods}
    method_grids: dict[str, dict[str, list[Any]]] = {}
    for method, table in _table(data.get("method_grids"), source, "method_grids").items():
        if method in dropped:
            continue
        if method not in methods:
            raise UserInputError(f"{source}: method_grids.{method}: not in methods; allowed: {', '.join(methods)}")
        grid = _table(table, source, f"method_grids.{method}")
        method_grids[method] = {
            key: _values_list(values, source, f"method_grids.{method}.{key}", numeric=key in GRID_KEYS)
            for key, values in grid.items()
        }
    method_params: dict[str, dict[str, Any]] = {}
    for method, table in _table(data.get("method_params"), source, "method_params").items():
        if method in dropped:
            continue
        if method not in methods:
            raise UserInputError(f"{source}: method_params.{method}: not in methods; allowed: {', '.join(methods)}")
        method_params[method] = _table(table, source, f"method_params.{method}")
    method_settings: dict[str, dict[str, Any]] = {}
    # a method missing from ``methods`` is allowed (a spec that extends this one may run it); the plan
    # checks that every name is a registered method
    for method, table in _table(data.get("method_settings"), source, "method_settings").items():
        method_settings[method] = _settings(table, source, f"method_settings.{method}")

    grid = _grid(data.get("grid"), source, "grid")
    refs = _table(data.get("references"), source, "references")
    _check_keys(refs, REFERENCE_KEYS, source, "references")
    enabled = refs.get("enabled", True)
    if not isinstance(enabled, bool):
        raise UserInputError(f"{source}: references.enabled: must be true or false, got {enabled!r}")
    references = ReferenceSpec(
        enabled=enabled,
        search_seeds=_count(refs.get("search_seeds", search_seeds), source, "references.search_seeds"),
        final_seeds=_count(refs.get("final_seeds", final_seeds), source, "references.final_seeds"),
        grid=_grid(refs.get("grid"), source, "references.grid"),
    )
    ray = _table(data.get("ray"), source, "ray")
    _check_keys(ray, RAY_KEYS, source, "ray")
    cpus = ray.get("cpus_per_run")
    if cpus is not None:
        cpus = _count(cpus, source, "ray.cpus_per_run")
    gpus = ray.get("gpus_per_run", 0.0)
    if isinstance(gpus, bool) or not isinstance(gpus, int | float) or gpus < 0:
        raise UserInputError(f"{source}: ray.gpus_per_run: must be a number >= 0, got {gpus!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise UserInputError(f"{source}: description: must be text, got {description!r}")
    name = raw.get("name") or Path(source.split(" ")[0]).stem
    if not isinstance(name, str):
        raise UserInputError(f"{source}: name: must be text, got {name!r}")
    return SweepSpec(
        name=name,
        source=source,
        scale=chosen,
        scales=available,
        problem=problem,
        tasks=_tasks(data["tasks"], source),
        problem_options=_with_model(
            _table(data.get("problem_options"), source, "problem_options"), data, model, source
        ),
        methods=list(methods),
        search_seeds=search_seeds,
        final_seeds=final_seeds,
        settings=_settings(data.get("settings"), source),
        grid=grid,
        grid_problem=grid_problem,
        method_grids=method_grids,
        method_params=method_params,
        method_settings=method_settings,
        references=references,
        cpus_per_run=cpus,
        gpus_per_run=float(gpus),
        description=description,
        raw=dict(raw),
    )


__all__ = [
    "GRID_KEYS",
    "PAPER_SCALE",
    "SETTING_TYPES",
    "ReferenceSpec",
    "SweepSpec",
    "builtin_specs",
    "deep_merge",
    "load_spec",
    "parse_spec",
]
