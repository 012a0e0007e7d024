"""A skill's wheel, for publishing it: built from a project folder, and its manifest read.

Both go through what install uses (skills.registry): a project folder is built by pip inside the
sandbox (``--build-wheel``: its ``setup.py`` or build backend runs confined, or nowhere), and a
wheel's manifest is read by unpacking it with pip (``--only-binary``, ``--no-index``: nothing is
built, nothing fetched) and asking a confined runner for it. The node never imports the skill.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from skills.manifest import Manifest
from skills.registry import (
    SkillInstallError,
    _entry_point,
    _pip_unpack,
    _read_manifest,
    confined_build,
)


def build_wheel(folder: Path, into: Path) -> Path:
    """Build the project ``folder`` into one wheel, in the sandbox; the wheel is moved into the
    folder ``into`` and its path returned. SkillInstallError when the build fails or leaves
    anything but one plain ``.whl`` file."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise SkillInstallError(f"{folder} is not a folder")
    with tempfile.TemporaryDirectory(prefix=".building-", dir=into) as work:
        out = confined_build("--build-wheel", folder, Path(work), "build a wheel of")
        # The build ran the project's own code, which could leave anything in its folder: take
        # one plain file ending in .whl from the folder the runner built into, and nothing else.
        wheels = sorted(out.glob("*.whl"))
        if len(wheels) != 1 or wheels[0].is_symlink() or not wheels[0].is_file():
            raise SkillInstallError(
                f"building {folder} left {len(wheels)} wheels, not one plain .whl file; refused"
            )
        target = Path(into) / wheels[0].name
        os.replace(wheels[0], target)
        return target


def wheel_manifest(wheel: Path) -> Manifest:
    """The manifest of the skill in ``wheel``, as install reads it: the wheel unpacked by pip into
    a private folder (gone afterwards), its one ``flurry.skills`` entry point found from metadata,
    and the manifest printed by a confined runner."""
    staging = Path(tempfile.mkdtemp(prefix="flurry-wheel-"))
    try:
        _pip_unpack(["--no-deps", "--no-index", str(Path(wheel).resolve())], staging, wheel)
        return _read_manifest(staging, _entry_point(staging))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
