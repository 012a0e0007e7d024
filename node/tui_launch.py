"""`flurry tui` (and bare `flurry` on a terminal): the terminal app, talking to a node.

If `flurry serve` holds the home, the app connects to it (serve.json names its URL). If not,
this process unlocks the home and serves the node's API on a free loopback port in a thread
for as long as the app runs; it writes serve.json meanwhile, so `flurry ask` in another
terminal talks to it instead of finding the home locked. Either way the app is a client of
the signed API, signing with the owner's key, like any peer.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import uvicorn

from identity.keyring import UnlockedKeyring
from node import keyagent
from node.api import create_app
from node.client import AsyncNodeClient
from node.home import Home, HomeError
from node.node import Node


def run_tui(home: Home, keys: Callable[[], UnlockedKeyring], say: Callable[[str], None]) -> None:
    """``keys`` gives the unlocked keys (from the key agent, or asking the passphrase)."""
    home.require()
    url = home.running_node()
    if url is not None:
        _run_app(url, keys())
        return
    node = Node.open(home, keys=keys(), say=say)
    try:
        with serve_in_thread(node) as url, _key_agent(node):
            _run_app(url, node.keys)
    finally:
        node.close()


@contextmanager
def _key_agent(node: Node) -> Iterator[None]:
    """While the app runs, it is the home's key agent, unless a key agent process already is."""
    agent = keyagent.AgentServer(node.home, "tui", node.keys)
    try:
        agent.bind(take_over=False)
    except (
        keyagent.KeyAgentError,
        OSError,
    ):  # one runs already (it keeps the keys), or none may here
        yield
        return
    agent.start()
    try:
        yield
    finally:
        agent.close()


def _run_app(url: str, keys: UnlockedKeyring) -> None:
    from tui.app import FlurryApp  # Textual loads only for the app, not for every command

    FlurryApp(AsyncNodeClient(url, keys)).run()  # the app closes its client as it ends


@contextmanager
def serve_in_thread(node: Node) -> Iterator[str]:
    """The node's API on 127.0.0.1 at a free port, in a thread of this process; yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    info = node.home.serve_info

    def announce() -> None:
        info.write_text(
            json.dumps({"url": url, "pid": os.getpid(), "node_did": node.keys.node_did})
        )

    app = create_app(
        node,
        on_start=announce,
        on_stop=lambda: info.unlink(missing_ok=True),
        allowed_hosts={f"127.0.0.1:{port}", f"localhost:{port}"},
    )
    # No log lines: they would land in the middle of the app's screen. Failures reach the app
    # as problem+json answers.
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", access_log=False)
    )
    thread = threading.Thread(target=server.run, name="flurry-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise HomeError(f"could not start the node's API on {url}")
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        info.unlink(missing_ok=True)
