"""Installed skills: install (review) → approve (grant) → start; enable, disable, revoke, remove.

Each skill's code lives in its own folder, ``skills_dir/<name>``, put there by
``pip install --target`` so nothing reaches the node's own environment; its record (manifest,
granted permissions, enabled) is a sealed vault record of kind "skill". The node never imports
a skill and never runs any of its code unconfined: its manifest is read by a confined runner
(``skills.boot`` … ``--manifest``), a project folder is built by pip inside the same sandbox
(its ``setup.py`` runs there, or nowhere), and a wheel or a package from the index is only
unpacked (``--only-binary :all:``: pip never builds a source distribution for a skill).
"""

from __future__ import annotations

import builtins
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from skills import boot
from skills.broker import Broker
from skills.host import SkillError, SkillProcess
from skills.manifest import NAME, Manifest, ManifestError, check_permission
from skills.sandbox import Confinement, Limits
from skills.sdk import ENTRY_POINT_GROUP
from skills.tool_pins import Pins, ToolListRefused, checked_listing
from skills.tool_pins import spec as tool_spec
from store.records import Records

KIND = "skill"
# Skills that ship with the node: `flurry skills install builtin:NAME`. They are declared the way
# any skill is, as entry points in group `flurry.skills` (pyproject.toml), of this distribution.
BUILTIN_PREFIX = "builtin:"
DISTRIBUTION = "flurry-node"
BUILD_TIMEOUT = 300
MCP_LIST_TIMEOUT = 10.0  # an MCP server registered by command must list its tools this fast


class SkillInstallError(SkillError):
    """Installing, approving or starting a skill failed; the message says what to do."""


class UnknownSkill(SkillInstallError):
    """No skill by that name is installed."""


@dataclass(frozen=True)
class SkillInfo:
    name: str
    managed: bool  # False: an arbitrary MCP server, not sandboxed, brokered by nobody
    approved: bool
    enabled: bool
    granted: tuple[str, ...]
    manifest: Manifest | None  # None for an unmanaged MCP server
    entry_point: str | None = None
    target: str | None = None
    argv: tuple[str, ...] = ()
    # An unmanaged server's tools as it listed them at install: [{name, description, input_schema}].
    tools: tuple[dict, ...] = ()
    # Where a shared skill came from (node.skill_install): {container, manifest_url, peer,
    # author_did, version, manifest_sha256}; None for a wheel, folder or package installed here.
    origin: dict | None = None
    # The tools pinned at approval and those waiting for review (skills.tool_pins); None for a
    # skill not approved yet, or approved before pins existed (see ``approved_pins``).
    pins: Pins | None = None

    @property
    def requested(self) -> tuple[str, ...]:
        return self.manifest.permissions if self.manifest else ()

    @classmethod
    def from_record(cls, r: dict) -> SkillInfo:
        return cls(
            name=r["name"],
            managed=r["managed"],
            approved=r["approved"],
            enabled=r["enabled"],
            granted=tuple(r["granted"]),
            manifest=Manifest.from_dict(r["manifest"]) if r.get("manifest") else None,
            entry_point=r.get("entry_point"),
            target=r.get("target"),
            argv=tuple(r.get("argv", ())),
            tools=tuple(r.get("tools", ())),
            origin=r.get("origin"),
            pins=Pins.from_record(r),
        )

    def to_record(self) -> dict:
        return {
            "name": self.name,
            "managed": self.managed,
            "approved": self.approved,
            "enabled": self.enabled,
            "granted": list(self.granted),
            "manifest": self.manifest.to_dict() if self.manifest else None,
            "entry_point": self.entry_point,
            "target": self.target,
            "argv": list(self.argv),
            "tools": list(self.tools),
            "origin": self.origin,
            **(self.pins.to_record() if self.pins else {}),
        }

    def approved_tools(self) -> list[dict]:
        """The tools the owner reviewed at approval: the manifest's, or those an unmanaged
        server listed when it was registered."""
        if self.manifest:
            return [tool_spec(t.name, t.description, t.parameters) for t in self.manifest.tools]
        return [tool_spec(t["name"], t["description"], t["input_schema"]) for t in self.tools]

    def approved_pins(self) -> Pins | None:
        """The pins, or for a skill approved before pins existed, the tools it was approved
        with (None: an old record holding none, pinned to what it lists when it next starts)."""
        if self.pins is not None or not self.approved:
            return self.pins
        approved = self.approved_tools()
        return Pins.of(approved) if approved else None


class Skills:
    def __init__(self, records: Records, skills_dir: Path) -> None:
        self._records = records
        self.dir = Path(skills_dir)

    # --- install and review ------------------------------------------------------------

    def install(self, source: str | Path, *, origin: dict | None = None) -> Manifest:
        """Install a wheel, a project folder or a pip requirement; return its manifest for the
        owner to review. The skill can't run until ``approve``. Installing a name already
        installed fails.

        A path installs offline with the skill's own files only. A requirement ("some-skill==1.2")
        is fetched, with its dependencies, from the package index pip is configured with: the
        one case where installing talks to the network, because the owner named a package."""
        if str(source).startswith(BUILTIN_PREFIX):
            return self.install_builtin(str(source).removeprefix(BUILTIN_PREFIX))
        path = Path(str(source)).expanduser()
        self.dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".installing-", dir=self.dir))
        try:
            if path.is_dir():
                _build_confined(path.resolve(), staging)
                entry_point = _entry_point(staging)
                manifest = _read_manifest(staging, entry_point)
            else:
                entry_point, manifest = unpack(self._pip_source(source), staging, source)
            target = self.dir / manifest.name
            if self._records.get_record(KIND, manifest.name) is not None or target.exists():
                raise SkillInstallError(
                    f"a skill named {manifest.name!r} is installed; remove it first"
                )
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._put(
            SkillInfo(
                manifest.name,
                True,
                False,
                False,
                (),
                manifest,
                entry_point,
                str(target),
                origin=origin,
            )
        )
        return manifest

    def replace_code(
        self, name: str, wheel: Path, check: Callable[[Manifest], None], **changes: Any
    ) -> SkillInfo:
        """Put the skill in ``wheel`` in place of installed skill ``name`` (an update): unpacked
        only, its manifest read by the confined runner and passed to ``check`` (which raises to
        refuse) before anything installed is touched; then the folders are swapped and the
        record gets the new manifest and entry point, and ``changes`` (granted, approved, origin…).
        Every other field of the record (the owner's pins among them) is kept. On any failure
        the installed skill stays as it was and no new folder is left."""
        info = self.info(name)
        staging = Path(tempfile.mkdtemp(prefix=".installing-", dir=self.dir))
        old = self.dir / f".replaced-{name}-{os.getpid()}"
        target = self.dir / name
        try:
            entry_point, manifest = unpack(self._pip_source(wheel), staging, wheel)
            if manifest.name != name:
                raise SkillInstallError(f"{wheel} holds skill {manifest.name!r}, not {name!r}")
            check(manifest)
            had = target.exists()
            if had:
                target.rename(old)
            try:
                staging.rename(target)
                return self._put(
                    replace(
                        info,
                        manifest=manifest,
                        entry_point=entry_point,
                        target=str(target),
                        **changes,
                    )
                )
            except BaseException:
                if had:
                    shutil.rmtree(target, ignore_errors=True)
                    old.rename(target)
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)

    def install_builtin(self, name: str) -> Manifest:
        """Install one of the skills that ship with the node (``builtin_skills``). They are
        ordinary skills: reviewed and approved like any other, run in their own process, and they
        reach the node only through the broker."""
        builtin = builtin_skills()
        if not builtin:
            raise SkillInstallError(
                f"the installed metadata of {DISTRIBUTION} declares no '{ENTRY_POINT_GROUP}' entry points; "
                "where flurry runs from a source checkout, refresh it: pip install -e CHECKOUT --no-deps"
            )
        if name not in builtin:
            raise SkillInstallError(
                f"no built-in skill {name!r}; built in: {', '.join(sorted(builtin))}"
            )
        manifest = _read_manifest(None, builtin[name])
        if self._records.get_record(KIND, manifest.name) is not None:
            raise SkillInstallError(
                f"a skill named {manifest.name!r} is installed; remove it first"
            )
        self._put(SkillInfo(manifest.name, True, False, False, (), manifest, builtin[name], None))
        return manifest

    @staticmethod
    def _pip_source(source: str | Path) -> list[str]:
        path = Path(source).expanduser()
        if path.is_file() and path.suffix == ".whl":
            return ["--no-deps", "--no-index", str(path.resolve())]  # nothing is fetched
        if path.exists():
            raise SkillInstallError(
                f"{source}: give a wheel (.whl) or a project folder; a source archive would be built "
                "by its own setup code, which the node runs only inside the sandbox, from a folder"
            )
        try:
            requirement = Requirement(str(source))
        except InvalidRequirement:
            raise SkillInstallError(
                f"{source} is neither a file or folder here nor a pip requirement; give a wheel (.whl), "
                "a project folder, or a requirement such as some-skill==1.0"
            ) from None
        if requirement.url:
            raise SkillInstallError(
                "a requirement with a URL is refused: download it and install the file"
            )
        return [str(requirement)]

    def approve(self, name: str, permissions: list[str] | tuple[str, ...]) -> SkillInfo:
        """Grant ``permissions`` (some or all of those the manifest asks for) and enable the skill."""
        info = self.info(name)
        for p in permissions:
            check_permission(p)
            if p not in info.requested:
                raise SkillInstallError(
                    f"{name} did not ask for {p!r}; it asks for {list(info.requested)}"
                )
        # The first approval pins the tools shown for it; later ones (new permissions) keep the
        # pins: a changed tool is accepted only by a review (skills.tool_pins).
        pins = info.approved_pins() or Pins.of(info.approved_tools())
        return self._put(
            replace(
                info,
                approved=True,
                enabled=True,
                granted=tuple(dict.fromkeys(permissions)),
                pins=pins,
            )
        )

    def install_mcp(
        self, name: str, argv: list[str], timeout: float = MCP_LIST_TIMEOUT
    ) -> SkillInfo:
        """Register any stdio MCP server, for review: it is started once and must list its tools
        within ``timeout`` seconds; they are kept with it for the owner to read before approving
        (``approve(name, [])``). Unmanaged: no manifest, no sandbox, no granted permissions."""
        if not NAME.match(name):
            raise ManifestError(
                f"name {name!r}: use a lowercase slug (a-z, 0-9, '-'), starting with a letter"
            )
        if not argv:
            raise SkillInstallError("argv must name the server's command")
        if self._records.get_record(KIND, name) is not None:
            raise SkillInstallError(f"a skill named {name!r} is installed; remove it first")
        process = SkillProcess(name, list(argv), managed=False, start_timeout=timeout)
        try:
            process.start()  # initialize, then list_tools
        except SkillError as e:
            raise SkillInstallError(
                f"{name} was not registered: the server must answer initialize and list_tools within {timeout:g} s "
                f"({e})"
            ) from None
        finally:
            process.stop()
        try:
            tools = checked_listing(
                (tool_spec(t.name, t.description, t.input_schema) for t in process.tools.values()),
                name,
            )
        except ToolListRefused as e:
            raise SkillInstallError(f"{name} was not registered: {e}") from None
        if not tools:
            raise SkillInstallError(f"{name} was not registered: the server lists no tools")
        return self._put(
            SkillInfo(name, False, False, False, (), None, argv=tuple(argv), tools=tools)
        )

    # --- the owner's view and controls -------------------------------------------------

    def list(self) -> list[SkillInfo]:
        return [SkillInfo.from_record(r) for _, r in self._records.records(KIND)]

    def info(self, name: str) -> SkillInfo:
        record = self._records.get_record(KIND, name)
        if record is None:
            raise UnknownSkill(f"no skill named {name!r} is installed")
        return SkillInfo.from_record(record)

    def enable(self, name: str) -> SkillInfo:
        info = self.info(name)
        if not info.approved:
            raise SkillInstallError(
                f"{name} is not approved yet; review its manifest and approve it"
            )
        return self._put(replace(info, enabled=True))

    def disable(self, name: str) -> SkillInfo:
        return self._put(replace(self.info(name), enabled=False))

    def revoke(self, name: str, permission: str) -> SkillInfo:
        info = self.info(name)
        return self._put(replace(info, granted=tuple(p for p in info.granted if p != permission)))

    def remove(self, name: str) -> None:
        info = self.info(name)
        if info.target:
            shutil.rmtree(info.target, ignore_errors=True)
        self._records.delete_record(KIND, name)

    # --- running -----------------------------------------------------------------------

    def start(self, name: str, broker: Broker | None = None) -> SkillProcess:
        """A started SkillProcess for an approved, enabled skill; the caller stops it. A managed
        skill reaches the node only through ``broker`` (without one, it reaches nothing)."""
        info = self.info(name)
        if not (info.approved and info.enabled):
            raise SkillInstallError(f"{name} is {'disabled' if info.approved else 'not approved'}")
        if info.managed:
            if info.entry_point is None:  # a managed skill's is found at install, never None
                raise SkillInstallError(f"{name} has no entry point recorded; reinstall it")
            limits = Limits().within(info.manifest.limits if info.manifest else None)
            env = {
                **boot.environment(info.target, limits.to_json()),
                **(broker.environment(name) if broker else {}),
            }
            process = SkillProcess(
                name, boot.command([info.entry_point]), env=env, max_processes=limits.processes
            )
        else:
            process = SkillProcess(name, list(info.argv), managed=False)
        # Each time it starts (again), what it lists is held against the pins.
        process.check_tools = lambda listed: self.check_listed(name, listed)
        process.start()
        return process

    # --- pinned tools (skills.tool_pins) -------------------------------------------------

    def check_listed(self, name: str, listed: builtins.list[dict]) -> dict[str, str]:
        """Hold the tools a started process lists (specs) against the skill's pins, keep what
        waits for review in its record, and return each disabled tool → why."""
        info = self.info(name)
        pins = info.approved_pins() or Pins.first_use(listed)
        checked = pins.check(listed)
        if checked != info.pins:
            self._put(replace(info, pins=checked))
        return checked.disabled(name, listed)

    def check_tools(self, name: str) -> SkillInfo:
        """Start the skill once to list its tools now (after an update, say), stop it, and
        return its record with what waits for review."""
        self.start(name).stop()
        return self.info(name)

    def review_tools(self, name: str, accept: builtins.list[str] | None) -> SkillInfo:
        """Pin the new versions of the tools ``accept`` names (None: all waiting), which the
        owner reviewed; they run again from the skill's next start."""
        info = self.info(name)
        pins = info.approved_pins()
        if pins is None:
            raise SkillInstallError(f"{name} is not approved yet; review it and approve it first")
        accepted = pins.accept(accept)
        tools = info.tools if info.managed else tuple(accepted.specs.values())
        return self._put(replace(info, pins=accepted, tools=tools))

    def sandbox(self, name: str) -> str:
        """One line for the owner: how this skill would be confined on this machine, now."""
        info = self.info(name)
        if not info.managed:
            return "not sandboxed (unmanaged: it runs with your permissions)"
        return sandbox_check(
            info.target, Limits().within(info.manifest.limits if info.manifest else None)
        ).summary()

    def _put(self, info: SkillInfo) -> SkillInfo:
        self._records.put_record(KIND, info.name, info.to_record())
        return info


def _run_confined(
    args: list[str],
    skill_folder: str | None,
    timeout: float,
    cwd: str | None = None,
    limits: Limits | None = None,
) -> subprocess.CompletedProcess:
    """A runner started as a skill's would be (isolated, confined and limited before anything of
    the skill's loads), in ``cwd`` or else a private folder that goes when it ends."""
    if cwd is None:
        with tempfile.TemporaryDirectory(prefix="flurry-skill-") as private:
            return _run_confined(args, skill_folder, timeout, private, limits)
    return subprocess.run(
        boot.command(args),
        env={
            "PATH": os.environ.get("PATH", ""),
            "TMPDIR": cwd,
            **boot.environment(skill_folder, (limits or Limits()).to_json()),
        },
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def sandbox_check(target: str | None, limits: Limits | None = None) -> Confinement:
    """What the runner manages to enforce here, asked of a runner started as the skill's would be."""
    try:
        run = _run_confined(["--sandbox-check"], target, 30, limits=limits)
    except subprocess.TimeoutExpired:
        return Confinement(missing=["the sandbox check did not answer in 30 s"])
    try:
        return Confinement.from_dict(json.loads(run.stdout.strip().splitlines()[-1]))
    except (IndexError, ValueError):
        return Confinement(
            missing=[f"the sandbox check failed: {run.stderr.strip()[-500:] or run.returncode}"]
        )


def unpack(pip_args: list[str], staging: Path, source: str | Path) -> tuple[str, Manifest]:
    """Unpack a wheel (never built) into ``staging``: its one entry point, and its manifest as
    the confined runner reads it."""
    _pip_unpack(pip_args, staging, source)
    entry_point = _entry_point(staging)
    return entry_point, _read_manifest(staging, entry_point)


def _pip_unpack(pip_args: list[str], staging: Path, source: str | Path) -> None:
    """pip, in the node, for what needs no building: ``--only-binary :all:`` makes pip refuse
    any source distribution (whose setup code it would run here, unconfined) rather than build it."""
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--only-binary",
            ":all:",
            "--target",
            str(staging),
            *pip_args,
        ],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    if pip.returncode != 0:
        raise SkillInstallError(f"pip could not install {source}: {pip.stderr.strip()[-1500:]}")


def _build_confined(folder: Path, staging: Path) -> None:
    """Build and install a project folder with pip inside the sandbox: its setup.py (or any build
    backend) runs confined, reads only the folder and the node's Python, writes only a private
    folder, with no network; the result is then moved into ``staging``."""
    with tempfile.TemporaryDirectory(prefix=".building-", dir=staging.parent) as work:
        built = confined_build("--build", folder, Path(work), "build")
        # The build ran the project's own code, which could write anything in its folder: take
        # only a real folder inside it, with no symbolic link anywhere (one could point the
        # node at the owner's files when it moves the result).
        links = [
            os.path.join(r, n)
            for r, dirs, files in os.walk(built)
            for n in dirs + files
            if os.path.islink(os.path.join(r, n))
        ]
        if links:
            raise SkillInstallError(
                f"building {folder} left something other than plain files; refused ({links[0]})"
            )
        for entry in built.iterdir():
            entry.rename(staging / entry.name)


def confined_build(mode: str, folder: Path, work: Path, what: str) -> Path:
    """Run pip on the project ``folder`` in the sandbox (the runner's ``mode``: "--build" installs
    it, "--build-wheel" builds its wheel) writing only under ``work``; the folder it built into,
    checked to be a real folder inside ``work`` (the project's own code ran: it could have left a
    link pointing anywhere). SkillInstallError, saying ``what`` failed, otherwise."""
    try:
        run = _run_confined([mode], str(folder), BUILD_TIMEOUT, cwd=str(work))
    except subprocess.TimeoutExpired:
        raise SkillInstallError(f"building {folder} took longer than {BUILD_TIMEOUT} s") from None
    if run.returncode != 0:
        raise SkillInstallError(
            f"pip could not {what} {folder} (in the sandbox): {run.stderr.strip()[-1500:]}"
        )
    lines = run.stdout.strip().splitlines()
    built = Path(lines[-1]) if lines else work
    inside = work.resolve() in built.resolve().parents
    if built.is_symlink() or not built.is_dir() or not inside:
        raise SkillInstallError(
            f"building {folder} left something other than plain files; refused ({built})"
        )
    return built


def builtin_skills() -> dict[str, str]:
    """name → entry point of each skill the node's own distribution declares, read from its
    installed metadata as a third-party skill's are (so the metadata must be current: an
    editable install is refreshed with ``pip install -e CHECKOUT --no-deps``)."""
    try:
        ours = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return {}
    return {ep.name: ep.value for ep in _skill_entry_points([ours])}


def _skill_entry_points(distributions) -> list[importlib.metadata.EntryPoint]:
    return [
        ep for dist in distributions for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP
    ]


def _entry_point(target: Path) -> str:
    """The one ``flurry.skills`` entry point installed in ``target``, read from metadata only."""
    found = _skill_entry_points(importlib.metadata.distributions(path=[str(target)]))
    if len(found) != 1:
        raise SkillInstallError(
            f"a skill package needs exactly one '{ENTRY_POINT_GROUP}' entry point, found {len(found)}"
        )
    return found[0].value


def _read_manifest(target: Path | None, entry_point: str) -> Manifest:
    run = _run_confined(["--manifest", entry_point], str(target) if target else None, 30)
    lines = run.stdout.strip().splitlines()
    if run.returncode != 0 or not lines:
        raise SkillInstallError(
            f"could not read the manifest from {entry_point}: {run.stderr.strip()[-1500:]}"
        )
    try:
        return Manifest.from_dict(json.loads(lines[-1]))  # last line: a skill may print on import
    except json.JSONDecodeError:
        raise SkillInstallError(f"{entry_point} printed no manifest") from None
