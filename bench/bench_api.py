"""The signed API under load, as ratios measured in one run, on loopback only.

    python bench/bench_api.py

1. signed throughput: GET /api/whoami with RFC 9421 signatures verified, against the same
   endpoint with the signature check swapped out (goal ratio ≥ 0.8, and ≥ 1,000 verified
   requests/s). Requests are signed before the clock starts, so the figure is the server's.
2. 50 peers with grants × 100 signed /api/ask each, all at once: every answer must be 200
   or 503 (the queue is full), and the server's memory must stay bounded.
The server runs in its own process (as `flurry serve` does), so the client does not share
its interpreter; both share this machine's cores, which flatters neither side.
"""

from __future__ import annotations

import asyncio
import collections
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from agent.grants import Grant  # noqa: E402
from identity.did_key import did_key_from_ed25519_public, verification_method_id  # noqa: E402
from identity.http_signatures import sign_request  # noqa: E402
from node.home import Home  # noqa: E402
from node.node import Node  # noqa: E402

PASSPHRASE = "bench passphrase"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(home_root: str, port: int, signed: bool, ready) -> None:
    import uvicorn

    from node.api import create_app
    from node.limits import Limits, server_config

    node = Node.open(Home(Path(home_root)), PASSPHRASE, say=lambda line: None)
    # Served as `flurry serve` serves it (node.limits), with the strangers' rate limit lifted:
    # this measures the signature check; bench_flood.py measures the limits on strangers.
    limits = Limits(stranger_rate=1e9, stranger_burst=10**9, stranger_checks=10**6)
    app = create_app(node, on_start=ready.set, limits=limits)
    if not signed:
        owner = node.keys.owner_did
        app.dependency_overrides[app.state.signed_caller] = lambda: owner
    uvicorn.Server(
        server_config(app, "127.0.0.1", port, limits=limits, log_level="error", access_log=False)
    ).run()


class Server:
    """A node served by uvicorn in its own process; ``serve(home_root, port, flag, ready)``
    runs there (bench_flood serves with its own limits)."""

    def __init__(self, home: Home, signed: bool = True, serve=None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        ready = multiprocessing.Event()
        self.process = multiprocessing.Process(
            target=serve or _serve, args=(str(home.root), self.port, signed, ready)
        )
        self.process.start()
        if not ready.wait(120):
            raise RuntimeError("the server did not start")
        # the app has started; uvicorn binds its socket just after
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def rss_mib(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(30)


def _peer() -> tuple[Ed25519PrivateKey, str]:
    key = Ed25519PrivateKey.generate()
    return key, did_key_from_ed25519_public(key.public_key().public_bytes_raw())


async def _blast(
    url: str, requests: list[tuple[str, str, dict, bytes]], concurrency: int
) -> tuple[float, collections.Counter]:
    """Send the requests over `concurrency` keep-alive connections; a bare HTTP/1.1 client, so
    that the client's own cost (httpx spends ~0.5 ms a request) does not hide the server's."""
    host, port = url.removeprefix("http://").split(":")
    codes: collections.Counter = collections.Counter()
    pending = list(reversed(requests))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while pending:
                method, path, headers, body = pending.pop()
                head = f"{method} {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-length: {len(body)}\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                writer.write(head.encode() + b"\r\n" + body)
                status_line = await reader.readline()
                length, chunked = 0, False
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    elif name.lower() == "transfer-encoding" and "chunked" in value:
                        chunked = True
                if chunked:
                    while (size := int((await reader.readline()).strip(), 16)) > 0:
                        await reader.readexactly(size + 2)
                    await reader.readline()
                else:
                    await reader.readexactly(length)
                codes[int(status_line.split()[1])] += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return time.perf_counter() - start, codes


def _signed(
    url: str, key, did: str, method: str, path: str, body: bytes = b""
) -> tuple[str, str, dict, bytes]:
    headers = {"content-type": "application/json"} if body else {}
    headers.update(
        sign_request(method, url + path, headers, body, key, verification_method_id(did))
    )
    return method, path, headers, body


def bench_throughput(home: Home, count: int = 3000, rounds: int = 2) -> None:
    key, did = _peer()
    signed_rates: list[float] = []  # requests per second, one entry a round
    plain_rates: list[float] = []
    for _ in range(rounds):
        for signed in (True, False):
            server = Server(home, signed=signed)
            try:
                # warm up the connection pool and the app
                asyncio.run(_blast(server.url, [("GET", "/healthz", {}, b"")] * 200, 16))
                requests = [
                    _signed(server.url, key, did, "GET", "/api/whoami") for _ in range(count)
                ]
                seconds, codes = asyncio.run(_blast(server.url, requests, 16))
                assert codes == {200: count}, codes
                (signed_rates if signed else plain_rates).append(count / seconds)
            finally:
                server.stop()
    s, p = statistics.median(signed_rates), statistics.median(plain_rates)
    print(
        f"throughput: signed {s:.0f} req/s, unsigned {p:.0f} req/s (medians of {rounds}); "
        f"ratio {s / p:.2f} (goal >= 0.8, and >= 1000 verified req/s)"
    )


def bench_many_peers(home: Home, peers: int = 50, each: int = 100) -> None:
    keys = [_peer() for _ in range(peers)]
    node = Node.open(home, PASSPHRASE, say=lambda line: None)
    for _, did in keys:
        node.grants.add(Grant(did=did, allow=frozenset({"ask"}), tags=None))
    node.close()
    server = Server(home)
    try:
        body = b'{"question": "When should I plant the tomatoes?", "k": 1}'
        requests = [
            _signed(server.url, key, did, "POST", "/api/ask", body)
            for key, did in keys
            for _ in range(each)
        ]
        before = server.rss_mib()
        seconds, codes = asyncio.run(_blast(server.url, requests, peers))
        after_first = server.rss_mib()
        # A second wave: memory that keeps growing would show here.
        requests = [
            _signed(server.url, key, did, "POST", "/api/ask", body)
            for key, did in keys
            for _ in range(each)
        ]
        seconds_2, codes_2 = asyncio.run(_blast(server.url, requests, peers))
        after_second = server.rss_mib()
    finally:
        server.stop()
    codes += codes_2
    others = {code: n for code, n in codes.items() if code not in (200, 503)}
    print(
        f"{peers} peers x {each} asks, twice, in {seconds:.1f} + {seconds_2:.1f} s: {dict(codes)}; other statuses "
        f"{others or 'none'}; server memory {before:.0f} MiB idle -> {after_first:.0f} after wave 1 (models loaded) "
        f"-> {after_second:.0f} after wave 2"
    )


def main() -> None:
    os.environ.setdefault("FLURRY_MODELS", str(Path.home() / ".cache" / "flurry-test-models"))
    os.environ.setdefault(
        "FLURRY_RUNTIME_DIR", "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    )
    home = Home(Path(tempfile.mkdtemp(prefix="flurry-bench-")) / "home")
    Node.init(home, PASSPHRASE)
    notes = home.root.parent / "notes"
    notes.mkdir()
    (notes / "garden.md").write_text("# Garden\n\nPlant the tomatoes in the second week of May.\n")
    node = Node.open(home, PASSPHRASE, say=lambda line: None)
    node.add(str(notes))
    node.close()
    bench_throughput(home)
    bench_many_peers(home)


if __name__ == "__main__":
    main()
