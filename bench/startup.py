"""CPU time of starting the ``mtlbench`` command, next to a bare ``python -c pass``.

Each command runs ``--repeats`` times in a fresh interpreter, in turns; the CPU time (user + system)
of each child process is read from ``getrusage(RUSAGE_CHILDREN)``, and the medians are reported.
The target: ``mtlbench --help`` under 0.5 s. ``--src PATH`` runs the ``src/`` of another checkout
(for instance an older commit extracted with ``git archive``) to compare before and after.

    python bench/startup.py --repeats 7
    git archive dd87bba | tar -x -C /tmp/old && python bench/startup.py --src /tmp/old/src
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys

#: the mtlbench command in a fresh interpreter (the console script does the same import and call)
CLI = "import sys; from mtlbench.cli.main import main; sys.exit(main(sys.argv[1:]))"
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "mtlbench --help": ["-c", CLI, "--help"],
    "mtlbench train --help": ["-c", CLI, "train", "--help"],
    "mtlbench methods": ["-c", CLI, "methods"],
    "mtlbench methods cagrad": ["-c", CLI, "methods", "cagrad"],
    "mtlbench problems": ["-c", CLI, "problems"],
    "mtlbench sweep --list": ["-c", CLI, "sweep", "--list"],
    "python -c 'import torch'": ["-c", "import torch"],
}


def cpu_seconds(args: list[str], env: dict[str, str]) -> float:
    """User + system CPU time of one child process running ``python ARGS``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, *args], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command (median reported)")
    parser.add_argument("--src", help="import mtlbench from this src/ folder instead of the installed one")
    args = parser.parse_args()
    env = {**os.environ, "COLUMNS": "120"}
    if args.src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.src, env.get("PYTHONPATH")]))
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for command in COMMANDS.values():  # warm the file cache and the .pyc files
        cpu_seconds(command, env)
    for _ in range(args.repeats):
        for name, command in COMMANDS.items():
            times[name].append(cpu_seconds(command, env))
    base = statistics.median(times["python -c pass"])
    print(f"CPU seconds per start, median of {args.repeats} (min-max); source: {args.src or 'installed mtlbench'}")
    print(f"| {'command':<26} | {'CPU s':>6} | {'min-max':>11} | {'minus python -c pass':>20} |")
    print(f"|{'-' * 28}|{'-' * 8}|{'-' * 13}|{'-' * 22}|")
    for name, values in times.items():
        median = statistics.median(values)
        spread = f"{min(values):.2f}-{max(values):.2f}"
        print(f"| {name:<26} | {median:6.2f} | {spread:>11} | {median - base:20.2f} |")


if __name__ == "__main__":
    main()
