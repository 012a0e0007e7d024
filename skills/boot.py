"""The first code a skill's process runs: ``python -I -S <this file> RUNNER-ARGS…`` (stdlib only).

A skill's process must run nothing of the skill's before it is confined, so the interpreter
starts isolated: ``-I`` ignores PYTHON* variables, the user site and the current folder, and
``-S`` skips ``site``, so no ``sitecustomize``, ``usercustomize`` or ``.pth`` file anywhere
runs. The import path is then exactly: the standard library, the node's site-packages (named
by the host in ``FLURRY_SKILL_SITE``, added as plain folders, their ``.pth`` files unread, for
the runner's libraries: mcp, anyio, jsonschema…), and the runner's own modules, served one by
one from a fixed list (``RUNNER_MODULES``) by the finder below: the SDK, the runner and what they
import, and the built-in skills. The node's source folder is never on the path, so the rest of
the repository (``node``, ``store``, ``agent``, ``tui``, ``skills.registry``, ``skills.host``…)
is not importable, and once confined it is not even readable (the sandbox lets the process read
the listed files only). The two ``identity`` modules the manifest's signature check uses are the
runner's alone: ``close()`` forgets them before the skill loads. The skill's own folder
(``FLURRY_SKILL_PATH``) joins the path only after ``confine()``: see ``skills.runner``.
"""

from __future__ import annotations

import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Module → file (relative to ROOT) for everything a skill's process may import of the node's
# source: the SDK and the runner, the modules they import, and the skills that ship with the node.
RUNNER_MODULES = {
    "skills": "skills/__init__.py",
    "skills.boot": "skills/boot.py",
    "skills.broker": "skills/broker.py",
    "skills.cgroup": "skills/cgroup.py",
    "skills.errors": "skills/errors.py",
    "skills.landlock": "skills/landlock.py",
    "skills.manifest": "skills/manifest.py",
    "skills.runner": "skills/runner.py",
    "skills.sandbox": "skills/sandbox.py",
    "skills.sdk": "skills/sdk.py",
    "skills.builtin": "skills/builtin/__init__.py",
}
BUILTIN_SKILLS = (
    "skills/builtin"  # its modules are ordinary skills: only skills.sdk, like any other
)
# Imported by skills.manifest (signature checks) while the runner starts, then forgotten: a skill
# has no business with the node's identity code.
RUNNER_ONLY = {
    "identity": "identity/__init__.py",
    "identity.did_key": "identity/did_key.py",
    "identity.jws": "identity/jws.py",
    "identity.errors": "identity/errors.py",
}
# The node's own packages: of these, a skill's process gets only the modules served above. The
# rest are refused by name even where they would be found (a plain install puts them in the
# site-packages the runner's libraries come from).
NODE_PACKAGES = ("node", "store", "agent", "tui", "identity", "skills")
SITE_ENV = "FLURRY_SKILL_SITE"
SKILL_PATH_ENV = "FLURRY_SKILL_PATH"
LIMITS_ENV = "FLURRY_SKILL_LIMITS"


class RunnerPackages:
    """Serves the runner's modules (``RUNNER_MODULES``), each from its own file in the node's source
    folder, without putting that folder on sys.path; refuses every other module of the node's."""

    closed = False  # set by close(): from then on the runner-only modules are refused too

    @classmethod
    def find_spec(cls, name: str, path=None, target=None):
        served = RUNNER_MODULES if cls.closed else {**RUNNER_MODULES, **RUNNER_ONLY}
        if name in served:
            file = os.path.join(ROOT, served[name])
            if not file.endswith("__init__.py"):
                return importlib.util.spec_from_file_location(name, file)
            # A package: its modules are served from here one by one, so it has no folder to
            # search, but for the built-in skills', whose every module is a skill.
            search = [os.path.join(ROOT, BUILTIN_SKILLS)] if name == "skills.builtin" else []
            return importlib.util.spec_from_file_location(
                name, file, submodule_search_locations=search
            )
        if name.startswith("skills.builtin."):
            return None  # found by the path machinery in skills/builtin
        if name.partition(".")[0] in NODE_PACKAGES:
            raise ModuleNotFoundError(
                f"{name} belongs to the node; a skill reaches it only through skills.sdk", name=name
            )
        return None


def close() -> None:
    """Called by the runner once its own modules are loaded, before anything of the skill's: the
    modules only the runner needed are dropped from sys.modules and refused from now on (the
    functions that use them keep them)."""
    RunnerPackages.closed = True
    for name in [m for m in sys.modules if m == "identity" or m.startswith("identity.")]:
        del sys.modules[name]


def runner_files() -> list[str]:
    """The files the runner's code is read from, for the sandbox's read-only list (the runner-only
    modules are loaded before it confines itself, and then forgotten)."""
    return [
        *(os.path.join(ROOT, f) for f in RUNNER_MODULES.values()),
        os.path.join(ROOT, BUILTIN_SKILLS),
    ]


def site_folders() -> list[str]:
    """In the node: its site-packages, for the runner's dependencies (mcp, anyio, jsonschema…).
    In a skill's process: the same, as the host passed them."""
    if SITE_ENV in os.environ:
        return [p for p in os.environ[SITE_ENV].split(os.pathsep) if p]
    import site

    found = [
        *site.getsitepackages(),
        *([site.getusersitepackages()] if site.ENABLE_USER_SITE else []),
    ]
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
    # This file is skills.boot in this process too: one module, so the finder close() closes is
    # the one on sys.meta_path (imported again by name, it would be a second, unused copy).
    sys.modules["skills.boot"] = sys.modules[__name__]
    sys.path.extend(site_folders())
    from skills import runner

    # What the runner needs of boot is handed to it, not imported back (that would be a cycle).
    runner.main(
        sys.argv[1:],
        runner.Boot(
            skill_folder=os.environ.get(SKILL_PATH_ENV) or None,
            limits_json=os.environ.get(LIMITS_ENV),
            site_folders=site_folders(),  # as the host named them, before the runner drops them
            runner_files=runner_files(),
            close=close,
        ),
    )


if __name__ == "__main__":
    main()
