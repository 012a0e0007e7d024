"""The test suite's time, file by file, here against a baseline checkout, in the same run.

    python bench/suite_time.py --baseline /path/to/main-checkout tests/test_cli.py tests/test_crash.py
    python bench/suite_time.py --baseline ../main "tests/test_cli.py::test_a tests/test_cli.py::test_b"

Each argument (a file, or test ids separated by spaces: one row) is run with pytest in the baseline checkout and in this one, alternately, ``--rounds``
times (the order flips every round), so both see the same load on a shared machine. Two
figures per run: wall-clock seconds, and CPU seconds (user + system of pytest and every
process it waited for: `flurry` subprocesses, skill processes). CPU time moves much less than
wall time when other work shares the cores. The ratio after ÷ before is the figure to read;
issue 13 asks for ≤ 0.6 over the suite. Prints a Markdown table; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def run_file(checkout: Path, tests: str, timeout: float) -> tuple[float, float, int]:
    """(wall s, CPU s, pytest's exit status) of one pytest run of ``tests`` in ``checkout``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    try:
        status = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests.split()],
            cwd=checkout,
            env={
                **os.environ,
                "PYTHONPATH": str(checkout),
            },  # the checkout's code, also in `flurry` subprocesses
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            check=False,  # a failed run is reported in the table, not raised
        ).returncode
    except (
        subprocess.TimeoutExpired
    ):  # killed: its figures are a lower bound, and the row says it failed
        status = -1
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--baseline", type=Path, required=True, help="a checkout of the code to compare against"
    )
    parser.add_argument(
        "--after",
        type=Path,
        default=HERE,
        help="the checkout measured against it (default: this one)",
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=590)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()

    print(
        "| file | before wall s | after wall s | after ÷ before | before CPU s | after CPU s | after ÷ before |"
    )
    print("|---|---|---|---|---|---|---|")
    totals = {"before": [0.0, 0.0], "after": [0.0, 0.0]}
    for test_file in args.files:
        runs: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
        for round_ in range(args.rounds):
            order = [("before", args.baseline), ("after", args.after)]
            for which, checkout in order if round_ % 2 == 0 else reversed(order):
                wall, cpu, status = run_file(checkout, test_file, args.timeout)
                if status != 0:
                    print(f"<!-- {test_file} failed ({status}) {which} -->", flush=True)
                runs[which].append((wall, cpu))
        row = {
            which: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r))
            for which, r in runs.items()
        }
        for which in row:
            totals[which][0] += row[which][0]
            totals[which][1] += row[which][1]
        (bw, bc), (aw, ac) = row["before"], row["after"]
        ids = test_file.split()
        label = ids[0] if len(ids) == 1 else f"{ids[0].partition('::')[0]} ({len(ids)} tests)"
        print(
            f"| {label} | {bw:.0f} | {aw:.0f} | {aw / bw:.2f} | {bc:.0f} | {ac:.0f} | {ac / bc:.2f} |",
            flush=True,
        )
    (bw, bc), (aw, ac) = totals["before"], totals["after"]
    print(
        f"| **these files** | {bw:.0f} | {aw:.0f} | {aw / bw:.2f} | {bc:.0f} | {ac:.0f} | {ac / bc:.2f} |"
    )


if __name__ == "__main__":
    main()
