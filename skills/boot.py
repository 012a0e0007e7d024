"""The first code a skill's process runs: ``python -I -S <this file> RUNNER-ARGS…`` (stdlib only).

A skill's process must run nothing of the skill's before it is confined, so the interpreter
starts isolated: ``-I`` ignores PYTHON* variables, the user site and the current folder, and
``-S`` skips ``site``, so no ``sitecustomize``, ``usercustomize`` or ``.pth`` file anywhere
runs. The import path is then exactly: the standard library, the node's site-packages (named
by the host in ``FLURRY_SKILL_SITE``, added as plain folders, their ``.pth`` files unread), and
two packages of the node's own: ``skills`` (the runner and the SDK) and ``identity`` (which the
manifest's signature check uses). The node's other packages are not the skill's to import.
The skill's own folder (``FLURRY_SKILL_PATH``) joins the path only after ``confine()``: see
``skills.runner``.
"""

from __future__ import annotations

import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER_PACKAGES = ("skills", "identity")
RUNNER_MODULES = ("flurry_errors",)  # the root of every part's errors, a module beside the packages
# The node's own packages: importable in the node, refused in a skill's process (where they
# could only fail anyway, confined, but a skill has no business with them).
NODE_PACKAGES = ("node", "store", "agent", "tui")
SITE_ENV = "FLURRY_SKILL_SITE"
SKILL_PATH_ENV = "FLURRY_SKILL_PATH"
LIMITS_ENV = "FLURRY_SKILL_LIMITS"


class RunnerPackages:
    """Finds ``skills`` and ``identity`` in the node's source folder without putting that folder
    (which also holds ``node``, ``store``, ``agent``) on sys.path, and refuses the node's others."""

    @staticmethod
    def find_spec(name: str, path=None, target=None):
        if name in NODE_PACKAGES:
            raise ModuleNotFoundError(f"{name} belongs to the node; a skill reaches it only through skills.sdk", name=name)
        if name in RUNNER_PACKAGES:
            folder = os.path.join(ROOT, name)
            return importlib.util.spec_from_file_location(
                name, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder]
            )
        if name in RUNNER_MODULES:
            return importlib.util.spec_from_file_location(name, os.path.join(ROOT, name + ".py"))
        return None


def runner_folders() -> list[str]:
    """The folders (and single-file modules) the runner's own code is read from (for the sandbox's read-only list)."""
    return [os.path.join(ROOT, name) for name in RUNNER_PACKAGES] + [os.path.join(ROOT, name + ".py") for name in RUNNER_MODULES]


def site_folders() -> list[str]:
    """In the node: its site-packages, for the runner's dependencies (mcp, anyio, jsonschema…).
    In a skill's process: the same, as the host passed them."""
    if SITE_ENV in os.environ:
        return [p for p in os.environ[SITE_ENV].split(os.pathsep) if p]
    import site

    found = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
    return [p for p in found if os.path.isdir(p)]


def command(args: list[str]) -> list[str]:
    """How the host starts a runner: this file, by path, in an isolated interpreter."""
    return [sys.executable, "-I", "-S", os.path.abspath(__file__), *args]


def environment(skill_folder: str | None, limits_json: str | None = None) -> dict[str, str]:
    """What the runner is started with, besides the broker's address (all removed before the
    skill runs)."""
    env = {SITE_ENV: os.pathsep.join(site_folders())}
    if skill_folder:
        env[SKILL_PATH_ENV] = skill_folder
    if limits_json:
        env[LIMITS_ENV] = limits_json
    return env


def main() -> None:
    # Whatever happens next, a skill's process must not outlive the node that started it.
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    sys.meta_path.insert(0, RunnerPackages)
    sys.path.extend(site_folders())
    from skills import runner

    runner.main(sys.argv[1:])


if __name__ == "__main__":
    main()
