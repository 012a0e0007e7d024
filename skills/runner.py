"""Serve one skill's tools as an MCP server on stdio: ``python -m skills.runner module:callable``.

This is the only place a managed skill's code is imported, always in its own process.
``--manifest`` prints the manifest as JSON and exits (how the node reads it at install).
``--sandbox-check`` confines itself as a skill would be and prints what applied, as JSON.
Before a skill's code is imported, the process is confined (``skills.sandbox``); what applied is
written on stderr and sent to the host in the MCP capabilities, as ``flurry/sandbox``.
``--no-sandbox`` skips that, for measuring what it costs; the node never passes it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import anyio
import anyio.to_thread
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from skills import broker, sdk
from skills.sandbox import Confinement, confine, interpreter_paths
from skills.sdk import Skill, load_skill

# The host already starts us with a scrubbed environment; dropping these again costs nothing
# and keeps a careless host (or a manual run from the owner's shell) from leaking the passphrase.
_SECRET_PREFIXES = ("FLURRY_",)


# What the host learns about our sandbox, in the initialize result's experimental capabilities.
SANDBOX_CAPABILITY = "flurry/sandbox"


def _contain(sandbox: bool = True) -> Confinement:
    """Scrub the environment, move to an empty private directory, then confine the process.
    Called before the skill's module is imported, while this process has one thread."""
    # The broker's address and this skill's token go to the SDK, then out of the environment.
    if os.environ.get(broker.SOCKET_ENV) and os.environ.get(broker.TOKEN_ENV):
        sdk.node.connect(os.environ[broker.SOCKET_ENV], os.environ[broker.TOKEN_ENV])
    for key in [k for k in os.environ if k.startswith(_SECRET_PREFIXES)]:
        del os.environ[key]
    startup_cwd = os.getcwd()
    # The host points TMPDIR into the private folder it removes when the skill stops.
    workdir = tempfile.mkdtemp(prefix="flurry-skill-")
    os.chdir(workdir)
    # The only writable place once confined, so the skill's own temporary files go there too.
    os.environ["TMPDIR"] = tempfile.tempdir = workdir
    if not sandbox:
        return Confinement(missing=["started with --no-sandbox"])
    return confine(workdir, interpreter_paths(startup_cwd))


def _server(skill: Skill) -> Server:
    m = skill.manifest

    async def list_tools(ctx, params) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[types.Tool(name=t.name, description=t.description, input_schema=t.parameters) for t in m.tools]
        )

    async def call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        fn = skill.tools.get(params.name)
        if fn is None:
            return _result(f"no tool {params.name!r} in {m.name}", error=True)
        try:
            # A worker thread keeps the event loop free to notice the host closing stdin.
            value = await anyio.to_thread.run_sync(lambda: fn(**(params.arguments or {})), abandon_on_cancel=True)
        except Exception as e:  # the skill's bug is the caller's error result, not our crash
            return _result(f"{type(e).__name__}: {e}", error=True)
        return _result(value if isinstance(value, str) else json.dumps(value))

    return Server(m.name, version=m.version, on_list_tools=list_tools, on_call_tool=call_tool)


def _result(text: str, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=error)


async def _serve(skill: Skill, confinement: Confinement) -> None:
    server = _server(skill)
    options = server.create_initialization_options(experimental_capabilities={SANDBOX_CAPABILITY: confinement.to_dict()})
    async with stdio_server() as (read, write):
        await server.run(read, write, options)


def main(argv: list[str]) -> None:
    sandbox = "--no-sandbox" not in argv
    argv = [a for a in argv if a != "--no-sandbox"]
    confinement = _contain(sandbox)
    if argv == ["--sandbox-check"]:
        print(json.dumps(confinement.to_dict()))
        return
    sys.stderr.write(f"flurry sandbox: {confinement.summary()}\n")
    sys.stderr.flush()
    if argv[:1] == ["--manifest"] and len(argv) == 2:
        print(json.dumps(load_skill(argv[1]).manifest.to_dict()))
        return
    if len(argv) != 1 or argv[0].startswith("--"):
        sys.exit("usage: python -m skills.runner [--no-sandbox] [--manifest | --sandbox-check] [module:callable]")
    anyio.run(_serve, load_skill(argv[0]), confinement)
    # stdin closed: the host is done with us. Exit now rather than wait for a tool thread
    # that may never return (a hung tool must not keep a dead skill's process around).
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
