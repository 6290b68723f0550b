"""Every user mistake on every command is one line on stderr and exit status 2, never a traceback.

The cases run in-process through :func:`mtlbench.cli.main.main` (fast); a few run the real ``mtlbench``
script in a subprocess. Internal errors are one line with exit status 1, and ``--debug`` or
``MTLBENCH_DEBUG=1`` prints their traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtlbench.cli import main as cli_main
from mtlbench.cli.main import main

#: placeholders filled per test: {file} an existing plain file, {under} a path below it, {db} an empty
#: results store, {dir} an existing folder
P, T = ["--problem", "multi_mnist"], ["--tasks", "CL_RR"]
SYN = ["--problem", "synthetic", "--tasks", "T0_T1"]

MISSING = [
    ("train", ["train", *T], "Missing option '--problem'"),
    ("train", ["train", *P], "Missing option '--tasks'"),
    ("reference", ["reference", *P], "Missing option '--tasks'"),
    ("evaluate", ["evaluate"], "Missing argument 'CHECKPOINT'"),
    ("export", ["export"], "Missing argument 'OUT_DIR'"),
    ("report", ["report", *T], "Missing option '--problem'"),
    ("analysis", ["analysis", "comparison", *P], "Missing option '--tasks'"),
    ("fixed-weights", ["fixed-weights", *P, *T], "Missing option '--from'"),
    ("data fetch", ["data", "fetch"], "Missing argument 'NAME'"),
    ("data prepare", ["data", "prepare"], "Missing argument 'DATASET'"),
    ("data prepare", ["data", "prepare", "cityscapes"], "needs --raw PATH"),
    ("sweep", ["sweep"], "name a sweep file or a built-in spec"),
    ("study", ["study"], "name a study"),
]

UNKNOWN = [
    (name, [*args, "--no-such-flag"], "No such option: --no-such-flag")
    for name, args in [
        ("(global)", []),
        ("train", ["train", *SYN]),
        ("reference", ["reference", *SYN]),
        ("evaluate", ["evaluate", "{file}"]),
        ("sweep", ["sweep", "mnist_cl_rr"]),
        ("results", ["results"]),
        ("export", ["export", "{dir}"]),
        ("report", ["report", *P, *T]),
        ("analysis", ["analysis", "comparison", *P, *T]),
        ("fixed-weights", ["fixed-weights", "--from", "cagrad", *P, *T]),
        ("toy", ["toy"]),
        ("demo", ["demo"]),
        ("study", ["study", "000-mnist"]),
        ("methods", ["methods"]),
        ("problems", ["problems"]),
        ("data fetch", ["data", "fetch", "mnist"]),
        ("data info", ["data", "info"]),
        ("data prepare", ["data", "prepare", "cityscapes"]),
    ]
] + [
    ("(global)", ["nosuch"], "No such command 'nosuch'"),
    ("data", ["data", "nosuch"], "No such command 'nosuch'"),
    ("analysis", ["analysis", "nosuch"], "No such command 'nosuch'"),
    ("methods", ["methods", "cagrad", "extra"], "unexpected extra argument"),
]

MALFORMED = [
    ("train", ["train", *SYN, "--epochs", "abc"], ("integer", "'abc'")),
    ("train", ["train", *SYN, "--lr", "fast"], ("number", "'fast'")),
    ("train", ["train", *SYN, "--lr", "-1", "--results", "{db}"], "lr=-1.0 must be > 0"),
    ("train", ["train", *SYN, "--set", "c", "--results", "{db}"], "--set 'c' is not of the form name=value"),
    ("train", ["train", "--problem", "nosuch", "--tasks", "a", "--results", "{db}"], "unknown problem 'nosuch'"),
    ("train", ["train", *SYN, "--progress", "x"], "unexpected extra argument"),
    ("reference", ["reference", *SYN, "--seeds", "many"], ("integer", "'many'")),
    ("reference", ["reference", *SYN, "--seeds", "0", "--results", "{db}"], "--seeds=0 must be >= 1"),
    ("sweep", ["sweep", "mnist_cl_rr", "--workers", "two"], ("integer", "'two'")),
    ("sweep", ["sweep", "mnist_cl_rr", "--workers", "0", "--results", "{db}"], "--workers=0 must be >= 1"),
    ("sweep", ["sweep", "mnist_cl_rr", "--executor", "slurm", "--results", "{db}"], "unknown executor 'slurm'"),
    ("sweep", ["sweep", "nosuch_spec", "--results", "{db}"], "nosuch_spec"),
    ("results", ["results", "--format", "xml", "--results", "{db}"], "unknown format 'xml'"),
    ("export", ["export", "{dir}", "--format", "xml", "--results", "{db}"], "unknown format 'xml'"),
    ("study", ["study", "000-mnist", "--workers", "two"], ("integer", "'two'")),
    ("study", ["study", "000-mnist", "--scale", "huge", "--results", "{db}"], "unknown scale 'huge'"),
    ("study", ["study", "nosuch", "--results", "{db}"], "nosuch"),
    ("toy", ["toy", "--steps", "many"], ("integer", "'many'")),
    ("toy", ["toy", "--optimizer", "lbfgs", "--steps", "1"], "optimizer 'lbfgs' is unknown"),
    ("demo", ["demo", "--epochs", "x"], ("integer", "'x'")),
    ("demo", ["demo", "--methods", "nosuch", "--results", "{db}"], "unknown method 'nosuch'"),
    ("methods", ["methods", "nosuch"], "unknown method 'nosuch'; choose one of:"),
    ("data fetch", ["data", "fetch", "nosuch"], "unknown dataset 'nosuch'"),
    ("data info", ["data", "info", "nosuch"], "unknown dataset 'nosuch'"),
    ("data prepare", ["data", "prepare", "nosuch"], "cannot prepare 'nosuch'"),
    ("fixed-weights", ["fixed-weights", "--from", "nosuch", *P, *T], "unknown method 'nosuch'"),
    ("fixed-weights", ["fixed-weights", "--from", "cagrad", *P, *T, "--seeds", "x"], ("integer", "'x'")),
    ("analysis", ["analysis", "comparison", *P, *T, "--results", "{db}", "-o", "x"], "is not of the form"),
]

BAD_PATH = [
    ("train", ["train", *SYN, "--results", "{under}"], "is a file, not a folder"),
    ("train", ["train", *SYN, "--results", "{dir}"], "is a folder; give a file path"),
    ("reference", ["reference", *SYN, "--results", "{under}"], "is a file, not a folder"),
    ("sweep", ["sweep", "mnist_cl_rr", "--results", "{under}"], "is a file, not a folder"),
    ("sweep", ["sweep", "{dir}/missing.toml", "--results", "{db}"], "missing.toml"),
    ("sweep", ["sweep", "mnist_cl_rr", "--results", "{db}", "--report", "{under}"], "is a file, not a folder"),
    ("results", ["results", "--results", "{under}"], "{under}"),
    ("results", ["results", "--results", "{dir}/missing.db"], "missing.db"),
    ("export", ["export", "{under}", "--results", "{db}"], "{under}"),
    ("evaluate", ["evaluate", "{file}"], "is not an mtlbench checkpoint"),
    ("evaluate", ["evaluate", "{dir}"], "is a folder; give its best.pt or last.pt"),
    ("evaluate", ["evaluate", "{dir}/missing.pt"], "does not exist"),
    ("report", [*["report", *P, *T], "--results", "{db}", "--out", "{under}"], "is a file, not a folder"),
    ("analysis", ["analysis", "runs", *P, *T, "--results", "{under}"], "is a file, not a folder"),
    ("fixed-weights", ["fixed-weights", "--from", "cagrad", *P, *T, "--results", "{under}"], "is a file, not a folder"),
    ("toy", ["toy", "--plot", "{under}"], "is a file, not a folder"),
    ("demo", ["demo", "--results", "{under}"], "is a file, not a folder"),
    ("study", ["study", "000-mnist", "--scale", "test", "--results", "{under}"], "is a file, not a folder"),
    ("data fetch", ["data", "fetch", "mnist", "--source", "{dir}/missing"], "does not exist"),
    ("data prepare", ["data", "prepare", "cityscapes", "--raw", "{dir}/missing"], "missing"),
]

CASES = [
    pytest.param(args, message, id=f"{kind}:{name}:{i}")
    for kind, cases in (("missing", MISSING), ("unknown", UNKNOWN), ("malformed", MALFORMED), ("path", BAD_PATH))
    for i, (name, args, message) in enumerate(cases)
]


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    from mtlbench.store.results import ResultsStore

    monkeypatch.setenv("MTLBENCH_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("MTLBENCH_RESULTS", str(tmp_path / "default" / "results.db"))
    monkeypatch.delenv("MTLBENCH_DEBUG", raising=False)
    file = tmp_path / "notes.txt"
    file.write_text("not a checkpoint, not a folder\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    db = tmp_path / "store" / "results.db"
    ResultsStore(db)
    return {"file": str(file), "under": str(file / "x.db"), "dir": str(folder), "db": str(db)}


def fill(args: list[str], places: dict[str, str]) -> list[str]:
    return [arg.format(**places) for arg in args]


def assert_one_line(code: int, err: str, expected: int = 2) -> None:
    lines = err.strip().splitlines()
    assert code == expected, err
    assert "Traceback" not in err
    assert len(lines) == 1, err


def test_there_are_forty_and_more_cases():
    assert len(CASES) >= 40
    names = {name for _, cases in [(0, MISSING), (0, UNKNOWN), (0, MALFORMED), (0, BAD_PATH)] for name, *_ in cases}
    assert {"train", "reference", "evaluate", "sweep", "results", "export", "report", "analysis"} <= names
    assert {"fixed-weights", "toy", "demo", "methods", "problems", "data fetch", "data info", "data prepare"} <= names


@pytest.mark.parametrize(("args", "message"), CASES)
def test_a_user_mistake_is_one_line_and_exit_2(args, message, places, capsys):
    code = main(fill(args, places))
    err = capsys.readouterr().err
    assert_one_line(code, err)
    assert err.startswith("error: ")
    for part in (message,) if isinstance(message, str) else message:  # the bad value and what is allowed
        assert part.format(**places).lower() in err.lower()  # click's capitalisation varies between versions


def test_an_unknown_option_lists_the_allowed_ones(places, capsys):
    code = main(["results", "--frmat", "csv"])
    err = capsys.readouterr().err
    assert_one_line(code, err)
    assert "--format" in err and "--problem" in err and "mtlbench results --help" in err


def test_an_unwritable_folder_is_one_line(places, capsys, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as root every folder is writable
    code = main(["train", *SYN, "--results", str(Path(places["dir"]) / "r.db")])
    err = capsys.readouterr().err
    assert_one_line(code, err)
    assert f"the folder {places['dir']} is not writable" in err


def _fail(*args, **kwargs):
    raise RuntimeError("boom\nsecond line")


def test_an_internal_error_is_one_line_exit_1_and_debug_shows_the_traceback(places, capsys, monkeypatch):
    monkeypatch.setattr(cli_main, "app", _fail)
    code = main(["methods"])
    err = capsys.readouterr().err
    assert_one_line(code, err, expected=1)
    assert err.startswith("internal error: RuntimeError: boom second line") and "--debug" in err
    for argv in (["--debug", "methods"], ["methods", "--debug"]):  # a global option, also after the command
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 1 and "Traceback" in err and "RuntimeError: boom" in err
    monkeypatch.setenv("MTLBENCH_DEBUG", "1")
    code = main(["methods"])
    assert code == 1 and "Traceback" in capsys.readouterr().err


def _click_modules() -> list:
    """Both the click typer vendors (typer >= 0.23: typer._click) and the real click, where installed."""
    import importlib

    found = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            continue
    return found


@pytest.mark.parametrize("module", _click_modules(), ids=lambda m: m.__name__)
def test_usage_errors_of_either_click_are_one_line(module, places, capsys, monkeypatch):
    errors = (module.UsageError("bad"), module.BadParameter("'x'"), module.NoSuchOption("--zz"), module.FileError("f"))
    for error in errors:

        def raise_it(*args, error=error, **kwargs):
            raise error

        monkeypatch.setattr(cli_main, "app", raise_it)
        code = main(["methods"])
        err = capsys.readouterr().err
        assert_one_line(code, err)
        assert err.startswith("error: ")


def test_no_arguments_prints_the_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "Usage" in out and "train" in out and "--debug" in out


def _script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("mtlbench")
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["reference", "--problem", "nosuch"], "Missing option '--tasks'"),
        (["train", "--problem", "synthetic", "--tasks", "T0", "--epochs", "abc"], ("integer", "'abc'")),
        (["results", "--no-such-flag"], "No such option: --no-such-flag"),
    ],
)
def test_the_installed_script_prints_one_line(args, message, tmp_path):
    done = _script(*args, env={"MTLBENCH_RESULTS": str(tmp_path / "r.db")})
    assert_one_line(done.returncode, done.stderr)
    assert all(part in done.stderr for part in ((message,) if isinstance(message, str) else message))
    assert done.stdout == ""


def test_the_installed_script_rejects_a_checkpoint_that_is_not_one(tmp_path):
    bogus = tmp_path / "best.pt"
    bogus.write_bytes(b"\x80\x04not a pickle at all")
    done = _script("evaluate", str(bogus), "--results", str(tmp_path / "r.db"))
    assert_one_line(done.returncode, done.stderr)
    assert "is not an mtlbench checkpoint" in done.stderr and "UnpicklingError" in done.stderr
