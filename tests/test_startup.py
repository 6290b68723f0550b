"""Start-up: listing and help commands import neither torch nor pandas nor matplotlib.

The registries' metadata comes from ``src/mtlbench/catalog.json``; the first test checks that it says
exactly what the live classes declare (regenerate it with ``python -m mtlbench.catalog --write``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mtlbench import catalog
from mtlbench.cli.main import main

STALE = f"src/mtlbench/catalog.json is out of date: run `{catalog.REGENERATE}`"

#: runs each command in one fresh interpreter and prints, after each, the heavy modules imported so far
PROBE = textwrap.dedent(
    """
    import contextlib, io, json, sys
    HEAVY = ("torch", "pandas", "matplotlib")
    import mtlbench.methods, mtlbench.problems, mtlbench.sweeps.spec, mtlbench.methods.hyperparameters
    from mtlbench.cli.main import main
    from mtlbench.cli.app import app, load_commands
    import typer.main

    def heavy():
        return sorted(m for m in HEAVY if m in sys.modules)

    report = [("import mtlbench.methods, .problems, .sweeps.spec", heavy(), 0)]
    load_commands()
    def walk(command, path):
        yield path
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, [*path, name])
    helps = [[*path, "--help"] for path in walk(typer.main.get_command(app), [])]
    for argv in [*helps, ["methods"], ["methods", "cagrad"], ["problems"], ["sweep", "--list"]]:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            code = main(argv)
        report.append((" ".join(argv), heavy(), code))
    print(json.dumps(report))
    """
)


def _section_differences() -> list[str]:
    stored = json.loads(catalog.CATALOG_PATH.read_text(encoding="utf-8"))
    live = json.loads(catalog.dumps(catalog.build()))
    return [key for key in live if stored.get(key) != live[key]]


def test_the_catalog_is_what_the_live_classes_declare():
    differences = _section_differences()
    assert not differences, f"{STALE} (these sections differ: {', '.join(differences)})"


def test_help_listing_commands_import_no_torch_pandas_or_matplotlib():
    env = {**os.environ, "COLUMNS": "100"}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(report) > 20  # every command's --help is in it
    offenders = [(argv, heavy) for argv, heavy, _ in report if heavy]
    hint = "" if not _section_differences() else f"; {STALE}"
    assert not offenders, f"the first command that imported a heavy module: {offenders[0]}{hint}"
    assert all(code == 0 for _, _, code in report), report


def test_the_catalog_answers_the_listing_commands(capsys):
    methods = catalog.methods()
    assert methods["cagrad"]["grids"]["multi_mnist"] == {"c": [0.2, 0.5, 0.8]}  # 000 Appendix A.6
    c = next(h for h in methods["cagrad"]["hyperparameters"] if h["name"] == "c")
    assert (c["low"], c["high"], c["low_inclusive"], c["high_inclusive"], c["allowed"]) == (0, 1, True, False, "[0, 1)")
    assert methods["unit_scal"]["kind"] == "loss"
    problems = catalog.problems()
    assert [m["name"] for m in problems["multi_mnist"]["tasks"]["CL"]["metrics"]] == ["acc"]
    assert problems["multi_mnist"]["defaults"]["batch_size"] == 256
    assert main(["methods", "cagrad"]) == 0
    out = capsys.readouterr().out
    assert "c ∈ {0.2, 0.5, 0.8}" in out and "NeurIPS 2021" in out


def test_a_method_registered_in_this_process_is_listed(monkeypatch, capsys):
    from mtlbench.methods import METHODS, LossWeightingMethod

    class Mine(LossWeightingMethod):
        """A user's own weighting."""

        name = "mine_for_listing"
        title = "Mine"
        citation = "a user, 2026"

        def loss_weights(self, losses):
            return losses.new_ones(len(losses))

    METHODS.names()  # the registry is loaded: the listing then describes the live classes
    monkeypatch.setitem(METHODS._items, Mine.name, Mine)
    assert main(["methods"]) == 0
    assert "mine_for_listing" in capsys.readouterr().out
    assert main(["methods", "mine_for_listing"]) == 0
    assert "a user, 2026" in capsys.readouterr().out


def _plugin_site(tmp_path: Path) -> Path:
    """A fake installed distribution with a method in the ``mtlbench.methods`` entry-point group."""
    site = tmp_path / "site"
    info = site / "startup_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Name: startup-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mtlbench.methods]\nplugged = startup_plugin_module:Plugged\n")
    (site / "startup_plugin_module.py").write_text(
        textwrap.dedent(
            '''
            from mtlbench.methods import LossWeightingMethod

            class Plugged(LossWeightingMethod):
                """A plugin's weighting."""

                name = "plugged"
                title = "Plugged"
                citation = "a plugin author, 2026"

                def loss_weights(self, losses):
                    return losses.new_ones(len(losses))
            '''
        )
    )
    return site


def test_plugin_names_are_listed_without_importing_them(tmp_path, monkeypatch):
    from mtlbench.registry import Registry

    monkeypatch.syspath_prepend(str(_plugin_site(tmp_path)))
    assert "plugged" in catalog.plugin_names(catalog.METHOD_GROUP)
    assert Registry("method", catalog.METHOD_GROUP).entry_point_names() == ["plugged"]
    assert "startup_plugin_module" not in sys.modules


@pytest.mark.slow
def test_a_plugin_is_imported_when_its_metadata_is_shown(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_plugin_site(tmp_path)), os.environ.get("PYTHONPATH", "")])}
    code = "from mtlbench.cli.main import main; raise SystemExit(main(['methods', 'plugged']))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert "plugged — Plugged" in done.stdout and "a plugin author, 2026" in done.stdout
