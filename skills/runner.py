"""Serve one skill's tools as an MCP server on stdio: ``python -I -S skills/boot.py module:callable``.

This is the only place a managed skill's code is imported, always in its own process, started
isolated by ``skills.boot`` (see there: nothing of the skill's is on the import path yet).
``--manifest`` prints the manifest as JSON and exits (how the node reads it at install).
``--sandbox-check`` confines itself as a skill would be and prints what applied, as JSON.
Before the skill's folder joins the import path, the process is confined (``skills.sandbox``)
and limited (``skills.sandbox.Limits``); what applied is written on stderr and sent to the host
in the MCP capabilities, as ``flurry/sandbox``. ``--no-sandbox`` skips confinement, for
measuring what it costs; the node never passes it.

Then the process forks: the child goes on as the skill (the first process of the skill's own
PID namespace, where the kernel allows one), the parent stays behind only to wait for it and,
when it ends or the host stops it, to kill every process the skill left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import anyio.to_thread
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from skills import broker, sdk
from skills.cgroup import CGROUP_ENV, join_cgroup
from skills.sandbox import (
    Confinement,
    Limits,
    confine,
    die_with_parent,
    interpreter_paths,
)
from skills.sdk import Skill, load_skill

# The host already starts us with a scrubbed environment; dropping these again costs nothing
# and keeps a careless host (or a manual run from the owner's shell) from leaking the passphrase.
_SECRET_PREFIXES = ("FLURRY_",)


# What the host learns about our sandbox, in the initialize result's experimental capabilities.
SANDBOX_CAPABILITY = "flurry/sandbox"


@dataclass(frozen=True)
class Boot:
    """What ``skills.boot``, which started this process and then imported the runner, hands it.
    Boot imports the runner, never the other way round: the runner learns of boot only this."""

    skill_folder: str | None  # the skill's folder (or, with --build, its project folder)
    limits_json: str | None  # the skill's Limits, as the host passed them
    site_folders: list[str]  # the node's site-packages, as the host named them
    runner_files: list[str]  # what the runner's code is read from: readable once confined
    close: Callable[[], None]  # boot.close: the runner-only modules are refused from then on


def _contain(boot: Boot, sandbox: bool = True) -> Confinement:
    """Scrub the environment, move to an empty private directory, confine and limit the process,
    and only then put the skill's folder on the import path. Called while this process has one
    thread and before anything of the skill's can be imported."""
    # The broker's address and this skill's token go to the SDK, then out of the environment.
    if os.environ.get(broker.SOCKET_ENV) and os.environ.get(broker.TOKEN_ENV):
        sdk.node.connect(os.environ[broker.SOCKET_ENV], os.environ[broker.TOKEN_ENV])
    skill_folder = boot.skill_folder
    limits = Limits.from_json(boot.limits_json)
    cgroup = os.environ.get(CGROUP_ENV)
    if cgroup:
        join_cgroup(cgroup)  # before confinement, which closes /sys to us
    site_folders = boot.site_folders
    for key in [k for k in os.environ if k.startswith(_SECRET_PREFIXES)]:
        del os.environ[key]
    # The host points TMPDIR into the private folder it removes when the skill stops.
    workdir = tempfile.mkdtemp(prefix="flurry-skill-")
    os.chdir(workdir)
    # The only writable place once confined, so the skill's own temporary files go there too.
    os.environ["TMPDIR"] = tempfile.tempdir = workdir
    if sandbox:
        readable = [
            *interpreter_paths(),
            *boot.runner_files,
            *([skill_folder] if skill_folder else []),
        ]
        confinement = confine(workdir, readable)
    else:
        confinement = Confinement(missing=["started with --no-sandbox"])
    if not confinement.processes and cgroup:
        confinement.processes = "cgroup"
    elif not confinement.processes:
        confinement.processes = "process group"
        confinement.missing.append(
            "a process that leaves the skill's process group survives stop (no PID namespace)"
        )
    _supervise()
    # In the child only: the parent, which only waits, must not fail for a skill's low limits.
    confinement.limits, not_limited = limits.apply(confinement.user_namespace, cgroup=bool(cgroup))
    confinement.missing += not_limited
    boot.close()  # the runner has all it imports: from here on, the skill's process sees only the SDK
    if skill_folder and not {"--build", "--build-wheel"} & set(sys.argv):
        # After the standard library, so a skill's `tempfile.py` shadows nothing the runner uses;
        # before site-packages, so the versions a skill installed beside itself are the ones it gets.
        site = [i for i, p in enumerate(sys.path) if p in site_folders]
        sys.path.insert(site[0] if site else len(sys.path), skill_folder)
    return confinement


def _supervise() -> None:
    """Fork. The child returns and becomes the skill; the parent waits for it, then kills the
    skill's process group (what it left running), and exits with its status.

    The child is the first process of the PID namespace ``confine`` opened (where the kernel
    allowed one): when it dies, the kernel kills every process in that namespace, including a
    daemon that double-forked and changed its process group or session. Without one, the process
    group is what is left to kill, and such a daemon escapes it."""
    child = os.fork()
    if child == 0:
        os.setpgid(0, 0)
        die_with_parent()  # the host stopped us or died: so does the skill, and its namespace
        # As a namespace's PID 1, a signal with no handler is ignored: the host's SIGTERM must end us.
        signal.signal(signal.SIGTERM, lambda *_: os._exit(128 + signal.SIGTERM))
        return
    # The pipes to the host are the skill's alone: the host sees EOF when the skill ends.
    os.close(0)
    os.close(1)

    def end(status: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # nothing left in the group
            os.killpg(child, signal.SIGKILL)
        os._exit(status)

    signal.signal(signal.SIGTERM, lambda *_: end(128 + signal.SIGTERM))
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    end(code if code >= 0 else 128 - code)


def _build(project: str | None, wheel: bool = False) -> int:
    """Build and install the project folder the host named as the skill's folder, with pip, here
    (confined): print where the result is. Its setup code runs in this sandbox or not at all.
    With ``wheel``, build a wheel instead (``--build-wheel``, to publish it) into that folder."""
    import shutil
    import subprocess

    if project is None:
        sys.exit("--build needs the project folder (the host names it as the skill's folder)")
    # A copy: builds write next to the source (build/, *.egg-info), and the source is read-only.
    shutil.copytree(project, "src", symlinks=True)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "TMPDIR": os.getcwd(),
        "HOME": os.getcwd(),
        # No pip configuration of the owner's (it could not be read here anyway), no cache.
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_CACHE_DIR": "1",
        # A wheel's files are dated this (1980-01-01, zip's first day), not by when they were
        # built: the same project builds the same bytes, so publishing it again is a no-op.
        **({"SOURCE_DATE_EPOCH": "315532800"} if wheel else {}),
    }
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            *(["wheel", "--wheel-dir"] if wheel else ["install", "--target"]),
            "out",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            os.path.abspath("src"),
        ],
        env=env,
        stdout=sys.stderr,
        check=False,
    )
    print(os.path.abspath("out"))
    return pip.returncode


def _server(skill: Skill) -> Server:
    m = skill.manifest

    async def list_tools(ctx, params) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(name=t.name, description=t.description, input_schema=t.parameters)
                for t in m.tools
            ]
        )

    async def call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        fn = skill.tools.get(params.name)
        if fn is None:
            return _result(f"no tool {params.name!r} in {m.name}", error=True)
        try:
            # A worker thread keeps the event loop free to notice the host closing stdin.
            value = await anyio.to_thread.run_sync(
                lambda: fn(**(params.arguments or {})), abandon_on_cancel=True
            )
        except Exception as e:  # the skill's bug is the caller's error result, not our crash
            return _result(f"{type(e).__name__}: {e}", error=True)
        return _result(value if isinstance(value, str) else json.dumps(value))

    return Server(m.name, version=m.version, on_list_tools=list_tools, on_call_tool=call_tool)


def _result(text: str, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=error)


async def _serve(skill: Skill, confinement: Confinement) -> None:
    server = _server(skill)
    options = server.create_initialization_options(
        experimental_capabilities={SANDBOX_CAPABILITY: confinement.to_dict()}
    )
    async with stdio_server() as (read, write):
        await server.run(read, write, options)


def main(argv: list[str], boot: Boot) -> None:
    sandbox = "--no-sandbox" not in argv
    argv = [a for a in argv if a != "--no-sandbox"]
    confinement = _contain(boot, sandbox)
    if argv == ["--sandbox-check"]:
        print(json.dumps(confinement.to_dict()))
        return
    sys.stderr.write(f"flurry sandbox: {confinement.summary()}\n")
    sys.stderr.flush()
    if argv in (["--build"], ["--build-wheel"]):
        sys.exit(_build(boot.skill_folder, wheel=argv == ["--build-wheel"]))
    if argv[:1] == ["--manifest"] and len(argv) == 2:
        print(json.dumps(load_skill(argv[1]).manifest.to_dict()))
        return
    if len(argv) != 1 or argv[0].startswith("--"):
        sys.exit(
            "usage: python -I -S skills/boot.py [--no-sandbox] [--manifest | --sandbox-check] [module:callable]"
        )
    anyio.run(_serve, load_skill(argv[0]), confinement)
    # stdin closed: the host is done with us. Exit now rather than wait for a tool thread
    # that may never return (a hung tool must not keep a dead skill's process around).
    sys.stdout.flush()
    os._exit(0)
