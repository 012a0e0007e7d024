"""Run one skill in its own process and call its tools over MCP (stdio), from sync code.

The node is mostly synchronous and the MCP client is asyncio, so every skill connection
lives on one shared event-loop thread and this module offers plain blocking methods. A skill
that hangs is stopped when its call times out; one that dies raises SkillCrashed with what
it wrote on stderr. Either way the next call starts it again, with back-off after repeated
failures, and the node's own process is never at risk.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TextIO

import jsonschema
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from skills.cgroup import CGROUP_ENV, kill_cgroup, pids_cgroup
from skills.errors import SkillError  # the root: the process errors below are kinds of it
from skills.tool_pins import ToolDisabled

START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
# Back-off after consecutive failures: the first restart is immediate (one crash may be a
# fluke), then 0.5 s, 1 s, 2 s … up to a minute, so a crash-looping skill costs little.
BACKOFF_BASE = 0.5
BACKOFF_MAX = 60.0
STDERR_TAIL = 2000


class SkillCrashed(SkillError):
    """The skill's process died or broke the protocol; the message carries its stderr tail."""


class SkillTimeout(SkillError):
    """The skill did not answer in time; it was stopped and starts again on next use."""


class SkillUnavailable(SkillError):
    """The skill failed repeatedly and is waiting out its back-off."""


class InvalidArguments(SkillError):
    """The arguments do not match the tool's JSON Schema; nothing was sent to the skill."""


class ToolFailed(SkillError):
    """The tool ran and reported an error (the skill itself is fine)."""


# --- the one event-loop thread every skill connection runs on ------------------------------

_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _event_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            # Daemon: a wedged skill connection must never keep the node from exiting.
            threading.Thread(target=_loop.run_forever, name="flurry-skills", daemon=True).start()
        return _loop


class SkillProcess:
    """One running skill: ``start()``, ``call_tool()`` any number of times, ``stop()``."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        managed: bool = True,
        max_processes: int | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.name = name
        self.start_timeout = start_timeout
        self.argv = list(argv)
        self.managed = managed
        # Only these reach the child, over the MCP SDK's short safe list (PATH, HOME, …):
        # nothing else of the node's environment, so no FLURRY_PASSPHRASE.
        self.env = dict(env or {})
        self.tools: dict[str, types.Tool] = {}
        # Called with the tools listed at each start ([{name, description, input_schema}]);
        # answers the tools that may not run → why (skills.tool_pins). None: all may.
        self.check_tools: Callable[[list[dict]], dict[str, str]] | None = None
        self.disabled: dict[str, str] = {}
        # What the runner reported it enforces (skills.sandbox.Confinement as a dict); None
        # until started, and always None for an unmanaged server, which reports nothing.
        self.sandbox: dict | None = None
        self.failures = 0
        self._retry_at = 0.0
        self._lock = threading.Lock()  # one call at a time per skill keeps restarts simple
        self._session: ClientSession | None = None
        self._connection: Future | None = None
        self._closing: asyncio.Event | None = None
        self._stderr: TextIO | None = None
        self._cwd: str | None = None
        # A managed skill gets a pids cgroup where one can be made here (see skills.sandbox).
        self._max_processes = max_processes if managed else None
        self._cgroup: str | None = None

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._session is not None

    def start(self) -> None:
        with self._lock:
            self._start()

    def stop(self) -> None:
        with self._lock:
            self._stop(wait=True)

    def __enter__(self) -> SkillProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self) -> None:
        self._stop(wait=True)  # reap a connection left closing by a timeout
        loop = _event_loop()
        ready: Future = Future()
        self._cwd = cwd = tempfile.mkdtemp(prefix=f"flurry-skill-{self.name}-")  # empty, private
        # Open for the skill's whole life; closed by _stop, not by a with block here.
        self._stderr = stderr = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        self._connection = asyncio.run_coroutine_threadsafe(self._connect(ready, cwd, stderr), loop)
        try:
            ready.result(timeout=self.start_timeout)
        except BaseException as e:
            self._stop(wait=True)
            self._failed()
            why = (
                "did not start in time"
                if isinstance(e, TimeoutError)
                else f"failed to start ({e!r})"
            )
            raise SkillCrashed(f"skill {self.name} {why}{self._stderr_tail()}") from None
        if self.check_tools is not None:
            listed = [
                {"name": t.name, "description": t.description or "", "input_schema": t.input_schema}
                for t in self.tools.values()
            ]
            try:
                self.disabled = self.check_tools(listed)
            except BaseException:
                self._stop(wait=True)
                raise

    async def _connect(self, ready: Future, cwd: str, stderr: TextIO) -> None:
        # The whole connection lives in this one task, because the SDK's context managers
        # must be entered and left in the same task; other tasks use self._session.
        self._closing = asyncio.Event()
        # A managed skill's runner makes its working folder under TMPDIR: inside ours, so it
        # goes when we remove ours.
        env = {**self.env, "TMPDIR": cwd} if self.managed else self.env
        if self._max_processes:
            self._cgroup = pids_cgroup(self.name, self._max_processes)
            if self._cgroup:
                env[CGROUP_ENV] = self._cgroup
        params = StdioServerParameters(command=self.argv[0], args=self.argv[1:], env=env, cwd=cwd)
        try:
            async with (
                stdio_client(params, errlog=stderr) as (read, write),
                ClientSession(read, write) as session,
            ):
                initialized = await session.initialize()
                if self.managed:
                    self.sandbox = (initialized.capabilities.experimental or {}).get(
                        "flurry/sandbox"
                    )
                listed = await session.list_tools()
                self.tools = {t.name: t for t in listed.tools}
                self._session = session
                ready.set_result(None)
                await self._closing.wait()
        except BaseException as e:
            if not ready.done():
                ready.set_exception(e)
        finally:
            self._session = None

    def _stop(self, wait: bool) -> None:
        """Close the connection; the SDK closes stdin, then terminates the process tree."""
        self._session = None
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if self._closing is not None:
            _event_loop().call_soon_threadsafe(self._closing.set)
        if not wait:
            self._connection = connection  # reaped by the next _start or stop
            return
        try:
            connection.result(timeout=STOP_TIMEOUT)
        except Exception:
            connection.cancel()
        if self._cgroup:
            kill_cgroup(self._cgroup)  # whatever the skill left running, in any process group
            self._cgroup = None
        if self._cwd:
            shutil.rmtree(self._cwd, ignore_errors=True)
            self._cwd = None

    def _failed(self) -> None:
        self.failures += 1
        delay = (
            0.0 if self.failures == 1 else min(BACKOFF_BASE * 2 ** (self.failures - 2), BACKOFF_MAX)
        )
        self._retry_at = time.monotonic() + delay

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.flush()
            self._stderr.seek(0)
            tail = self._stderr.read()[-STDERR_TAIL:].strip()
        except (OSError, ValueError):
            return ""
        return f"; stderr: {tail}" if tail else "; it wrote nothing on stderr"

    # --- calls -------------------------------------------------------------------------

    def call_tool(
        self, name: str, arguments: dict[str, Any] | None = None, timeout: float = 30.0
    ) -> str:
        """The tool's text answer. Raises InvalidArguments, ToolFailed, SkillTimeout, SkillCrashed
        or SkillUnavailable; after any of the last three the skill restarts on the next call."""
        arguments = dict(arguments or {})
        with self._lock:
            if not self.running:
                wait = self._retry_at - time.monotonic()
                if wait > 0:
                    raise SkillUnavailable(
                        f"skill {self.name} failed {self.failures} times; next try in {wait:.1f}s"
                    )
                self._start()
            tool = self.tools.get(name)
            if name in self.disabled:
                raise ToolDisabled(self.disabled[name])
            if tool is None:
                raise SkillError(
                    f"skill {self.name} has no tool {name!r}; it offers {sorted(self.tools)}"
                )
            try:
                jsonschema.validate(arguments, tool.input_schema)
            except jsonschema.ValidationError as e:
                raise InvalidArguments(f"{self.name}.{name}: {e.message}") from None
            session = self._session
            if session is None:  # the connection ended (the process died) since _start returned
                raise SkillCrashed(
                    f"skill {self.name} ended before {name} was called{self._stderr_tail()}"
                )
            call = asyncio.run_coroutine_threadsafe(
                asyncio.wait_for(session.call_tool(name, arguments), timeout), _event_loop()
            )
            try:
                # The outer bound only matters if cancelling the request itself got stuck.
                result = call.result(timeout=timeout + STOP_TIMEOUT)
            except TimeoutError:
                call.cancel()
                # Don't wait for the hung process to die: the caller gets its answer now, and
                # the next start (or stop) reaps it.
                self._stop(wait=False)
                self._failed()
                raise SkillTimeout(
                    f"{self.name}.{name} did not answer in {timeout:g}s; the skill was stopped"
                ) from None
            except Exception as e:
                # Tool errors come back as results, so an exception here means the process died
                # or broke the protocol: stop it (so stderr is complete) and say what it said.
                self._stop(wait=True)
                self._failed()
                raise SkillCrashed(
                    f"skill {self.name} crashed during {name} ({e}){self._stderr_tail()}"
                ) from None
            self.failures = 0
        text = "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))
        if result.is_error:
            raise ToolFailed(f"{self.name}.{name}: {text}")
        return text
