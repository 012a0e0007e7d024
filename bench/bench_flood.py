"""Strangers against the node (issue 12, items 3 and 4), as ratios measured in one run, on loopback.

    python bench/bench_flood.py [--quick]

1. The stranger flood: one loopback client sends requests signed by many self-made did:keys at
   rising rates, while the owner asks /api/whoami once every 50 ms. For each rate: the rate the
   client reached, what the strangers got (200 / 429), and the owner's latency (p50, max)
   against its idle latency measured in the same run. Goal: no rate one loopback client can
   reach makes the owner wait more than 1 s. Run twice: with the production limits (one
   address: the strangers' token bucket answers 429), and with the rate limit lifted, as if
   the flood came from thousands of addresses (every signature is checked and remembered in
   the strangers' part of the replay cache).
2. Memory under the body and header attacks: the server's peak RSS ÷ its idle RSS (goal ≤ 1.2)
   under 32 connections streaming chunked bodies of 256 MiB at /api/ask and at /pod, 32
   sending 800 KB Signature-Input headers, 4 sending 64 MiB headers, and 500 that never finish
   their headers.
The server runs in its own process, served as `flurry serve` serves it (node.limits.server_config).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_api import Server, _peer, _signed  # noqa: E402

from identity.did_key import verification_method_id  # noqa: E402
from identity.keyring import UnlockedKeyring  # noqa: E402
from identity.signing_client import signed_client  # noqa: E402
from node.home import Home  # noqa: E402
from node.limits import Limits  # noqa: E402
from node.node import Node  # noqa: E402

PASSPHRASE = "bench passphrase"


def _serve(home_root: str, port: int, open_gate: bool, ready) -> None:
    import uvicorn

    from node.api import create_app
    from node.limits import server_config

    node = Node.open(Home(Path(home_root)), PASSPHRASE, say=lambda line: None)
    limits = Limits(stranger_rate=1e9, stranger_burst=10**9) if open_gate else Limits()
    app = create_app(
        node, on_start=ready.set, public_origins=[f"http://127.0.0.1:{port}"], limits=limits
    )
    uvicorn.Server(
        server_config(app, "127.0.0.1", port, limits=limits, log_level="critical", access_log=False)
    ).run()


# --- 1. the flood ---------------------------------------------------------------------------


async def _paced(
    url: str, requests: list, rate: float, connections: int = 32
) -> tuple[float, collections.Counter]:
    """Send ``requests`` at ``rate`` a second (or as fast as it goes) over keep-alive connections."""
    host, port = url.removeprefix("http://").split(":")
    codes: collections.Counter = collections.Counter()
    pending = list(reversed(requests))
    start = time.perf_counter()
    sent = 0

    async def connection() -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while pending:
                method, path, headers, body = pending.pop()
                due = start + sent / rate
                sent += 1
                if (delay := due - time.perf_counter()) > 0:
                    await asyncio.sleep(delay)
                head = f"{method} {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-length: {len(body)}\r\n"
                writer.write(
                    (head + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
                    + body
                )
                status = int((await reader.readline()).split()[1])
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                codes[status] += 1
        except (ConnectionError, asyncio.IncompleteReadError):
            codes["closed"] += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))
    return time.perf_counter() - start, codes


def _owner_latencies(
    keys: UnlockedKeyring, url: str, stop: threading.Event, out: list[float]
) -> None:
    with signed_client(
        keys.owner_key, verification_method_id(keys.owner_did), base_url=url, timeout=60
    ) as owner:
        while not stop.is_set():
            started = time.perf_counter()
            assert owner.get("/api/whoami").status_code == 200
            out.append(time.perf_counter() - started)
            time.sleep(0.05)


def bench_flood(
    home: Home, keys: UnlockedKeyring, open_gate: bool, rates: list[float], seconds: float
) -> None:
    """``keys``: the owner's, who asks /api/whoami meanwhile."""
    server = Server(home, open_gate, serve=_serve)
    strangers = [_peer() for _ in range(500)]
    try:
        idle: list[float] = []
        stop = threading.Event()
        probe = threading.Thread(target=_owner_latencies, args=(keys, server.url, stop, idle))
        probe.start()
        time.sleep(2)
        stop.set()
        probe.join()
        base = statistics.median(idle)
        label = (
            "rate limit lifted (many addresses)" if open_gate else "production limits (one address)"
        )
        print(f"\n1. stranger flood, {label}; owner idle p50 {base * 1000:.1f} ms")
        print(
            f"   {'target/s':>9} {'sent/s':>8} {'answers':<26} {'owner p50':>10} {'owner max':>10} {'max÷idle':>9}"
        )
        worst = 0.0
        for rate in rates:
            count = int(rate * seconds) if rate != float("inf") else int(3000 * seconds)
            requests = [
                _signed(server.url, *strangers[n % len(strangers)], "GET", "/api/whoami")
                for n in range(count)
            ]
            latencies: list[float] = []
            stop = threading.Event()
            probe = threading.Thread(
                target=_owner_latencies, args=(keys, server.url, stop, latencies)
            )
            probe.start()
            elapsed, codes = asyncio.run(_paced(server.url, requests, rate))
            stop.set()
            probe.join()
            worst = max(worst, max(latencies))
            answers = " ".join(f"{k}:{v}" for k, v in sorted(codes.items(), key=str))
            target = "max" if rate == float("inf") else f"{rate:.0f}"
            print(
                f"   {target:>9} {count / elapsed:>8.0f} {answers:<26} {statistics.median(latencies) * 1000:>8.1f}ms"
                f" {max(latencies) * 1000:>8.1f}ms {max(latencies) / base:>9.1f}"
            )
        print(
            f"   owner's worst wait: {worst * 1000:.0f} ms (goal: under 1 s at every rate one client reaches)"
        )
    finally:
        server.stop()


# --- 2. memory under the body and header attacks -------------------------------------------


async def _attack(
    port: int, head: bytes, body_chunk: bytes | None, total: int, connections: int
) -> collections.Counter:
    """``connections`` sockets at once, each sending ``head`` then ``total`` bytes of chunked body."""
    outcomes: collections.Counter = collections.Counter()

    async def one() -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            outcomes["refused"] += 1
            return
        try:
            writer.write(head)
            sent = 0
            while body_chunk is not None and sent < total:
                writer.write(b"%x\r\n%s\r\n" % (len(body_chunk), body_chunk))
                await writer.drain()
                sent += len(body_chunk)
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 30)
            outcomes[line.split()[1].decode() if line.split()[1:] else "closed"] += 1
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            outcomes["closed"] += 1
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(connections)))
    return outcomes


async def _slowloris(port: int, connections: int, seconds: float) -> int:
    """Open connections that send half a request line and wait: how many the server closed."""
    streams = []
    for _ in range(connections):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            streams.append((reader, writer))
        except OSError:
            pass
    await asyncio.sleep(seconds)
    closed = 0
    for reader, writer in streams:
        try:
            data = await asyncio.wait_for(reader.read(), 0.5)
            closed += data.startswith(b"HTTP/1.1 408") or data == b""
        except TimeoutError:
            pass
        writer.close()
    return closed


def bench_memory(home: Home, quick: bool) -> None:
    body = 256 * 1024 * 1024 if not quick else 16 * 1024 * 1024
    chunk = b"x" * 65536
    attacks = [
        (
            "32 × chunked 256 MiB to /api/ask",
            "POST /api/ask HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\n",
            chunk,
            body,
            32,
        ),
        (
            "32 × chunked 256 MiB to /pod",
            "PUT /pod/x.bin HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\n",
            chunk,
            body,
            32,
        ),
        (
            "32 × 800 KB Signature-Input",
            "GET /api/whoami HTTP/1.1\r\n{host}Signature-Input: sig1=("
            + '"a" ' * 200_000
            + ")\r\n\r\n",
            None,
            0,
            32,
        ),
        (
            "4 × 64 MiB of headers",
            "GET /api/whoami HTTP/1.1\r\n{host}X-Big: " + "a" * (64 * 1024 * 1024) + "\r\n\r\n",
            None,
            0,
            4,
        ),
        ("500 × headers never finished", None, None, 0, 500),
    ]
    print("\n2. memory: each attack against a fresh server (RSS does not shrink back after one)")
    worst = 0.0
    for name, head, body_chunk, total, connections in attacks:
        server = Server(home, serve=_serve)
        try:
            asyncio.run(
                _paced(server.url, [("GET", "/healthz", {}, b"")] * 200, float("inf"), 8)
            )  # warm
            time.sleep(0.5)
            idle = server.rss_mib()
            peak = [idle]
            stop = threading.Event()

            def watch(stop=stop, peak=peak, server=server) -> None:  # this round's, bound now
                while not stop.is_set():
                    peak.append(server.rss_mib())
                    time.sleep(0.01)

            watcher = threading.Thread(target=watch)
            watcher.start()
            started = time.perf_counter()
            if head is None:
                closed = asyncio.run(
                    _slowloris(server.port, connections, Limits().header_timeout + 2)
                )
                outcome = f"closed by the server: {closed}/{connections}"
            else:
                request = head.format(host=f"Host: 127.0.0.1:{server.port}\r\n").encode()
                outcome = f"answers {dict(asyncio.run(_attack(server.port, request, body_chunk, total, connections)))}"
            stop.set()
            watcher.join()
            worst = max(worst, max(peak) / idle)
            print(
                f"   {name:<34} idle {idle:.0f} MiB, peak {max(peak):.0f} MiB ({max(peak) / idle:.2f}×) "
                f"in {time.perf_counter() - started:.1f} s; {outcome}"
            )
        finally:
            server.stop()
    print(f"   worst peak RSS ÷ idle RSS: {worst:.2f} (goal ≤ 1.2)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer rates and smaller bodies")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        home = Home(Path(root) / "home")
        Node.init(home, PASSPHRASE)
        node = Node.open(
            home, PASSPHRASE, say=lambda line: None
        )  # for the owner's keys; the server opens its own
        keys = node.keys
        node.close()
        rates = [100, 400, float("inf")] if args.quick else [50, 200, 800, 1600, float("inf")]
        seconds = 3 if args.quick else 5
        bench_flood(home, keys, open_gate=False, rates=rates, seconds=seconds)
        bench_flood(home, keys, open_gate=True, rates=rates, seconds=seconds)
        bench_memory(home, args.quick)


if __name__ == "__main__":
    main()
