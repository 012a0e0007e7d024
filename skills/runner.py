"""Serve one skill's tools as an MCP server on stdio: ``python -m skills.runner module:callable``.

This is the only place a managed skill's code is imported, always in its own process.
``--manifest`` prints the manifest as JSON and exits (how the node reads it at install).
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
from skills.sdk import Skill, load_skill

# The host already starts us with a scrubbed environment; dropping these again costs nothing
# and keeps a careless host (or a manual run from the owner's shell) from leaking the passphrase.
_SECRET_PREFIXES = ("FLURRY_",)


def _contain() -> None:
    # The broker's address and this skill's token go to the SDK, then out of the environment.
    if os.environ.get(broker.SOCKET_ENV) and os.environ.get(broker.TOKEN_ENV):
        sdk.node.connect(os.environ[broker.SOCKET_ENV], os.environ[broker.TOKEN_ENV])
    for key in [k for k in os.environ if k.startswith(_SECRET_PREFIXES)]:
        del os.environ[key]
    os.chdir(tempfile.mkdtemp(prefix="flurry-skill-"))


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


async def _serve(skill: Skill) -> None:
    server = _server(skill)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def main(argv: list[str]) -> None:
    _contain()
    if argv[:1] == ["--manifest"]:
        print(json.dumps(load_skill(argv[1]).manifest.to_dict()))
        return
    if len(argv) != 1:
        sys.exit("usage: python -m skills.runner [--manifest] module:callable")
    anyio.run(_serve, load_skill(argv[0]))
    # stdin closed: the host is done with us. Exit now rather than wait for a tool thread
    # that may never return (a hung tool must not keep a dead skill's process around).
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
