"""The rules that hold themselves: lint, format, types and the import contracts.

Each tool runs as its own process over this checkout, configured in pyproject.toml, so the
README's one test command (which .ci/run calls) enforces them with the rest. A failure
prints the tool's own findings. To see or fix them directly:

    ruff check .            ruff check --fix .      (lint)
    ruff format --check .   ruff format .           (format)
    mypy                                            (types: strict on identity/ and store/)
    lint-imports                                    (layers, the TUI as a client, no cycles)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    # This checkout's packages first: the project may be installed (editable) from elsewhere,
    # and lint-imports and mypy must read the code under test, not that copy.
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=800,
    )


def _assert_clean(result: subprocess.CompletedProcess[str], what: str) -> None:
    assert result.returncode == 0, f"{what} found problems:\n{result.stdout}\n{result.stderr}"


def test_lint() -> None:
    _assert_clean(_run("-m", "ruff", "check", "--output-format", "concise", "."), "ruff check")


def test_format() -> None:
    # --diff: the failure shows what the formatter would change, not only which files.
    _assert_clean(_run("-m", "ruff", "format", "--check", "--diff", "."), "ruff format --check")


def test_types() -> None:
    # The files and the per-part strictness are in pyproject.toml's [tool.mypy].
    _assert_clean(_run("-m", "mypy"), "mypy")


def test_import_contracts() -> None:
    # import-linter installs no `python -m` entry; this is what its lint-imports script runs.
    result = _run("-c", "from importlinter.cli import lint_imports_command; lint_imports_command()")
    _assert_clean(result, "lint-imports")
