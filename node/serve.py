"""Running the node as a server.

`flurry serve` writes ``<home>/serve.json`` (its URL and pid) while it runs, so the
command line can send `ask` and `chat` to it (``Home.running_node``) instead of opening the
home itself, which the server holds locked.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence

import uvicorn

from node import logs
from node.http import create_app
from node.limits import server_config
from node.node import Node

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def serve(
    node: Node,
    host: str = "127.0.0.1",
    port: int = 8765,
    public_urls: Sequence[str] = (),
) -> None:
    """Serve ``node`` on host:port. ``public_urls`` are the origins other agents reach it at
    ("https://node.example", behind a proxy); its signed agent card names those, or else the
    address it listens on. What it says goes to the log (node.logs: text or JSON lines)."""
    if host not in LOOPBACK:
        logs.event(
            "exposed",
            f"serving on {host}, reachable from other machines. Every request must still be "
            "signed by a DID with a grant, but check your firewall and grants (flurry grants list).",
            logging.WARNING,
            host=host,
        )
    info = node.home.serve_info
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"

    def announce() -> None:
        info.write_text(
            json.dumps({"url": url, "pid": os.getpid(), "node_did": node.keys.node_did})
        )
        logs.event(
            "serving",
            f"flurry serves {url}  (node {node.keys.node_did}); Ctrl-C stops it",
            url=url,
            node_did=node.keys.node_did,
            pid=os.getpid(),
        )

    def finish() -> None:
        # Here, at the end of uvicorn's shutdown, rather than after server.run(): uvicorn
        # re-raises the SIGTERM it caught once it is done, which ends the process at once.
        info.unlink(missing_ok=True)
        node.indexes.save()
        logs.event("stopped", "flurry stopped; the indexes are saved", url=url)

    # On loopback the node knows every name it answers to, so a signature made for another
    # server (another port, another host) is refused. On the LAN the names are the owner's
    # (an IP, a hostname, a proxy's name): any Host is accepted there, and the nonce cache still
    # refuses a replay here.
    allowed = (
        {f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]")}
        if host in LOOPBACK
        else None
    )
    origins = [u.rstrip("/") for u in public_urls] or [url]
    app = create_app(
        node, on_start=announce, on_stop=finish, allowed_hosts=allowed, public_origins=origins
    )
    # Header, body and connection limits (node.limits) sit in front of the app. uvicorn's records
    # go to node.logs' handler (log_config=None: none of its own, whose tracebacks would carry
    # exception messages); no access log: its URLs carry query strings, the owner's words.
    server = uvicorn.Server(
        server_config(app, host, port, log_level="warning", access_log=False, log_config=None)
    )
    try:
        server.run()
    finally:
        info.unlink(missing_ok=True)
