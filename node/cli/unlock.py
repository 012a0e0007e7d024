"""Unlock once: `flurry unlock`, `flurry lock`, and the key agent behind init and serve (node.keyagent)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from identity.keyring import Keyring, UnlockedKeyring
from node import keyagent
from node.cli.common import Settings, _keys, _passphrase, _passphrase_given, err, out
from node.home import Home


def _minutes(timeout_s: float | None) -> str:
    if not timeout_s:
        return "it keeps them until `flurry lock`"
    minutes = timeout_s / 60
    return f"it locks after {minutes:g} minute{'' if minutes == 1 else 's'} unused, or at `flurry lock`"


def start_agent(home: Home, keys: UnlockedKeyring, minutes: float | None = None) -> None:
    """Start the key agent with ``keys`` and say so (`flurry unlock`, `flurry init`)."""
    if minutes is None:
        minutes = home.load_config().agent_timeout_minutes
    timeout_s = minutes * 60 or None
    pid = keyagent.start(home, keys, timeout_s)
    out.print(
        f"Unlocked: a key agent (pid {pid}) holds your keys in memory, so commands stop asking "
        f"for the passphrase; {_minutes(timeout_s)}."
    )


@click.command()
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    metavar="MINUTES",
    help="Lock after this many minutes unused (default: config.json's agent_timeout_minutes, "
    "15; 0: never).",
)
@click.pass_obj
def unlock(settings: Settings, timeout: float | None) -> None:
    """Ask the passphrase once and keep the keys unlocked in a key agent (or unlock a waiting `flurry serve`)."""
    home = settings.home
    home.require()
    state = keyagent.status(home)
    if state is not None and state["locked"]:  # `flurry serve` waiting for the passphrase
        keyagent.unlock_waiting(home, _passphrase(settings))
        out.print(f"Unlocked: flurry serve (pid {state['pid']}) opens the node and serves it")
        return
    if state is not None:
        try:
            held = keyagent.keys(home)
        except keyagent.StaleAgent as e:
            if state["kind"] != "agent":
                raise
            err.print(str(e), markup=False)
            keyagent.lock(home)
        else:
            assert held is not None
            if state["kind"] == "agent" and timeout is not None:  # a new timeout: a new agent
                keyagent.lock(home)
                start_agent(home, held, timeout)
                return
            out.print(f"Already unlocked: {keyagent.describe(state)} holds the keys")
            return
    start_agent(home, Keyring.unlock(home.keyring, _passphrase(settings)), timeout)


@click.command()
@click.pass_obj
def lock(settings: Settings) -> None:
    """End the key agent: commands ask for the passphrase again."""
    state = keyagent.status(settings.home)
    if state is None:
        out.print("Already locked: no key agent holds this node's keys")
        return
    if state["kind"] != "agent":
        raise click.ClickException(
            f"{keyagent.describe(state)} holds the keys while it runs; stop it to lock"
        )
    keyagent.lock(settings.home)
    out.print(f"Locked: the key agent (pid {state['pid']}) has ended")


@contextmanager
def serving_keys(settings: Settings) -> Iterator[UnlockedKeyring]:
    """The keys `flurry serve` runs with; meanwhile serve is the home's key agent.

    A passphrase given (file, FLURRY_PASSPHRASE) unlocks as before; else the key agent's keys
    are taken over; else the passphrase is asked at a terminal; with no terminal (systemd),
    serve waits locked on the agent socket until the owner runs `flurry unlock`."""
    home = settings.home
    home.require()
    keys = _keys(settings) if _passphrase_given(settings) or sys.stdin.isatty() else None
    if keys is None:
        try:
            keys = keyagent.keys(home)
        except keyagent.KeyAgentError as e:
            err.print(str(e), markup=False)
    agent = keyagent.AgentServer(home, "serve", keys)
    try:
        agent.bind(take_over=True)  # a key agent process hands over to serve
    except (keyagent.KeyAgentError, OSError) as e:
        if keys is None:
            raise keyagent.KeyAgentError(f"cannot wait locked for `flurry unlock`: {e}") from None
        err.print(f"(the command line will ask for the passphrase: {e})", markup=False)
        yield keys
        return
    agent.start()
    try:
        if keys is None:
            err.print(
                f"flurry serve is locked: no passphrase given and no terminal to ask it at. "
                f"Waiting for `flurry unlock` (as this user) on {agent.path}",
                markup=False,
            )
            keys = _wait_unlocked(agent)
            err.print("unlocked by `flurry unlock`", markup=False)
        yield keys
    finally:
        agent.close()


def _wait_unlocked(agent: keyagent.AgentServer) -> UnlockedKeyring:
    """Wait for the passphrase; SIGTERM (systemd's stop) ends the wait cleanly meanwhile."""

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    before = signal.signal(signal.SIGTERM, stop)
    try:
        return agent.wait_unlocked()
    finally:
        signal.signal(signal.SIGTERM, before)


COMMANDS = (unlock, lock)
