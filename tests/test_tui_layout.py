"""The terminal app's files reach an installed node, not only this checkout: every package
under tui/ is listed in pyproject.toml, and every style sheet the app reads is package data
(a missing one makes `flurry tui` fail at start on an installed node, and nowhere else)."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path

from tui.app import FlurryApp

ROOT = Path(__file__).resolve().parents[1]


def test_the_tui_packages_and_style_sheets_are_installed():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "tui").rglob("__init__.py")
    }
    assert packages - set(setuptools["packages"]) == set()

    sheets = (
        [FlurryApp.CSS_PATH]
        if isinstance(FlurryApp.CSS_PATH, (str, Path))
        else list(FlurryApp.CSS_PATH)
    )
    patterns = setuptools["package-data"]["tui"]  # relative to tui/, as setuptools reads them
    assert sheets
    for sheet in map(str, sheets):
        assert (ROOT / "tui" / sheet).is_file(), sheet
        assert any(fnmatch(sheet, pattern) for pattern in patterns), f"{sheet} is not package data"
