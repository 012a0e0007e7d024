"""What a request may cost the node before anyone knows who sent it.

Every request is bounded before the app sees it, by `Guard` (ASGI middleware) and by the
HTTP protocol uvicorn runs (`GuardedH11Protocol`, through `server_config`):

- the request line and header section: at most ``max_header_bytes`` (h11 stops buffering
  there and the node answers 431), at most ``max_header_fields`` fields and none longer than
  ``max_field_bytes`` (431), before anything parses them;
- a connection that has not finished sending its headers ``header_timeout`` seconds after
  it opened (or after its first byte of a next request) gets 408 and is closed, and an idle
  keep-alive connection is closed after ``keep_alive_timeout``;
- the body: at most ``max_body`` bytes (the pod's resources: ``MAX_RESOURCE_BYTES``),
  counted as they arrive, chunked or not, and refused with 413 as soon as the count or the
  Content-Length passes the limit; a body that takes longer than ``body_timeout`` gets 408.
  The app then reads a body that is already in memory and known to be small. Bodies held at
  once, all requests together, stay under ``max_buffered`` (503 + Retry-After past it).

And who the caller is decides how much of the node it gets (`CallerGate`): the owner and the
DIDs it knows (grants, pinned peers) are never rate-limited, while requests from strangers
(any self-made did:key, or a signature that does not verify) draw on a token bucket per
source address, answered 429 with Retry-After when it is empty, and at most
``stranger_checks`` of their signatures are checked at once (503 beyond: a flood from many
addresses waits at the door, not in the queue ahead of the owner). Their nonces go in a tier
of the replay cache of their own (identity.replay_cache.ReplayCache). Checking a signature
(structured-field parsing, Ed25519) runs off the event loop.

Each 401 names the schemes the node accepts (RFC 9110 §11.6.1). RFC 9421 registers no
authentication scheme name, so the node uses ``Signature`` (as in the agent card's security
scheme), with the parameters a client needs to sign; ``Nostr`` is NIP-98; /v1 takes ``Bearer``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn

# h11 keeps its default buffer bound in a private module and does not export it; uvicorn
# imports it from there too.
from h11._connection import DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
from uvicorn.protocols.http.h11_impl import H11Protocol

from node.errors import NodeError
from node.peers import list_peers
from store.pod_store import MAX_RESOURCE_BYTES

SIGNATURE_CHALLENGE = (
    'Signature realm="flurry", alg="ed25519", keyid="did:key", '
    'components="@method @target-uri content-digest content-type", params="created expires nonce keyid"'
)
NOSTR_CHALLENGE = 'Nostr realm="flurry"'  # NIP-98, for pinned peers' Nostr keys
BEARER_CHALLENGE = 'Bearer realm="flurry"'  # RFC 6750: owner-made tokens on /v1


@dataclass(frozen=True)
class Limits:
    max_body: int = 1024 * 1024  # JSON questions and commands; 1 MiB is far past any of them
    max_pod_body: int = MAX_RESOURCE_BYTES
    max_header_bytes: int = 16 * 1024  # request line and headers; a signed request needs ~1 KiB
    max_header_fields: int = 64
    max_field_bytes: int = 8 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 60.0  # 4 MiB at 70 KB/s
    keep_alive_timeout: int = 5
    stranger_rate: float = 10.0  # requests per second per source address, for strangers
    stranger_burst: int = 40
    stranger_nonces: int = 10_000  # the strangers' tier of the replay cache
    stranger_checks: int = 4  # strangers' signatures checked at once; more get 503 at once
    max_buffered: int = 16 * 1024 * 1024  # bodies held at once, all requests together

    def body_limit(self, path: str) -> int:
        return self.max_pod_body if path.startswith("/pod/") else self.max_body


# --- JSON bodies ----------------------------------------------------------------------------

MAX_JSON_DEPTH = 64


class UnsafeJSON(NodeError, ValueError):
    """JSON that is well-formed but nested too deep or holding a number that is not finite."""


def parse_json(raw: bytes | str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for what strangers send: ValueError (a 400), never RecursionError or
    OverflowError (a 500), for nesting past ``max_depth`` and for numbers that are not finite
    (``1e999``, ``NaN``, ``Infinity``), which no field of this API takes."""
    try:
        value = json.loads(raw, parse_float=_finite_float, parse_constant=_no_constant)
    except RecursionError:
        raise UnsafeJSON(f"JSON nested deeper than {max_depth}") from None
    stack = [(value, 1)]
    while stack:  # iterative: the check itself must not recurse
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            if level > max_depth:
                raise UnsafeJSON(f"JSON nested deeper than {max_depth}")
            stack.extend(
                (child, level + 1) for child in (item.values() if isinstance(item, dict) else item)
            )
    return value


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise UnsafeJSON(f"{text} is not a finite number")
    return number


def _no_constant(name: str) -> float:
    raise UnsafeJSON(f"{name} is not JSON")


# --- the ASGI guard ---------------------------------------------------------------------------


class Guard:
    """Header and body limits before the app, and WWW-Authenticate on every 401 after it."""

    def __init__(self, app, limits: Limits | None = None) -> None:
        self.app = app
        self.limits = limits or Limits()
        # Bytes of request bodies held right now, all connections together: one request's limit
        # bounds one request, this bounds many at once (32 pod uploads would be 128 MiB).
        self.buffered = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = self.limits
        headers = scope["headers"]
        if (
            len(headers) > limits.max_header_fields
            or sum(len(name) + len(value) + 4 for name, value in headers) > limits.max_header_bytes
            or any(len(value) > limits.max_field_bytes for _, value in headers)
        ):
            await _refuse(
                send,
                431,
                "header fields too large",
                f"at most {limits.max_header_fields} header fields, {limits.max_field_bytes} bytes each, "
                f"{limits.max_header_bytes} in all",
            )
            return
        limit = limits.body_limit(scope["path"])
        lengths = [value for name, value in headers if name == b"content-length"]
        if lengths and (not lengths[0].isdigit() or int(lengths[0]) > limit):
            await _refuse(
                send, 413, "too large", f"a request body here holds at most {limit} bytes"
            )
            return
        held = [0]  # bytes of this body counted in self.buffered, until the app is done with them
        try:
            await self._read_and_run(scope, receive, send, limit, held)
        finally:
            self.buffered -= held[0]

    async def _read_and_run(self, scope, receive, send, limit: int, held: list[int]) -> None:
        limits, size, chunks = self.limits, 0, []
        try:
            async with asyncio.timeout(limits.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return  # the client left: nothing to answer
                    piece = message.get("body", b"")
                    size += len(piece)
                    if size > limit:  # counted as it streams: a chunked body has no Content-Length
                        await _refuse(
                            send,
                            413,
                            "too large",
                            f"a request body here holds at most {limit} bytes",
                        )
                        return
                    if self.buffered + len(piece) > limits.max_buffered:
                        await _refuse(
                            send,
                            503,
                            "busy",
                            "too many request bodies arriving at once; retry shortly",
                            retry_after="1",
                        )
                        return
                    self.buffered += len(piece)
                    held[0] += len(piece)
                    chunks.append(piece)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await _refuse(
                send,
                408,
                "request timeout",
                f"the body did not arrive within {limits.body_timeout:.0f} s",
            )
            return
        body = b"".join(chunks)
        chunks.clear()  # one copy of the body, not two
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect, whenever it comes

        path = scope["path"]

        async def challenge(message):
            if message["type"] == "http.response.start" and message["status"] == 401:
                names = {name.lower() for name, _ in message.get("headers", [])}
                if b"www-authenticate" not in names:
                    extra = (
                        [BEARER_CHALLENGE]
                        if path.startswith("/v1/")
                        else [SIGNATURE_CHALLENGE, NOSTR_CHALLENGE]
                    )
                    message = {
                        **message,
                        "headers": [
                            *message.get("headers", []),
                            *((b"www-authenticate", c.encode()) for c in extra),
                        ],
                    }
            await send(message)

        await self.app(scope, replay, challenge)


async def _refuse(
    send, status: int, title: str, detail: str, retry_after: str | None = None
) -> None:
    body = json.dumps(
        {"type": "about:blank", "title": title, "status": status, "detail": detail}
    ).encode()
    # Closing: the rest of the request (its body) is not read, so the connection cannot be reused.
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    if retry_after:
        headers.append((b"retry-after", retry_after.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --- the HTTP protocol ------------------------------------------------------------------------


class _Connection(h11.Connection):
    """h11's connection, remembering the status h11 suggests for the error it raised (431
    when the headers outgrew the buffer), which uvicorn's protocol always answers as 400."""

    error_status = 400

    def next_event(self):
        try:
            return super().next_event()
        except h11.RemoteProtocolError as error:
            self.error_status = error.error_status_hint
            raise


_TIMEOUT_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 36\r\n\r\nthe request headers did not arrive\r\n"
)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with a deadline for each request's header section."""

    header_timeout = Limits.header_timeout

    def __init__(self, config, *args, **kwargs) -> None:
        super().__init__(config, *args, **kwargs)
        self.conn: _Connection = _Connection(
            h11.SERVER,
            config.h11_max_incomplete_event_size or DEFAULT_MAX_INCOMPLETE_EVENT_SIZE,
        )
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._watch_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_headers()

    def connection_lost(self, exc) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _watch_headers(self) -> None:
        # their_state is IDLE until h11 has a whole request line and header section.
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()
        if waiting and self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)
        elif not waiting:
            self._stop_header_timer()

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.write(_TIMEOUT_408)
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        if self.conn.error_status != 431:
            super().send_400_response(msg)
            return
        event = h11.Response(
            status_code=431,
            reason=b"Request Header Fields Too Large",
            headers=[(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")],
        )
        for output in (
            self.conn.send(event),
            self.conn.send(h11.Data(data=b"request header fields too large\n")),
            self.conn.send(h11.EndOfMessage()),
        ):
            self.transport.write(output)
        self.transport.close()


def server_config(
    app, host: str, port: int, *, limits: Limits | None = None, **options
) -> uvicorn.Config:
    """uvicorn's settings for serving the node: its protocol and timeouts, the app behind `Guard`."""
    limits = limits or Limits()
    protocol = type(
        "NodeH11Protocol", (GuardedH11Protocol,), {"header_timeout": limits.header_timeout}
    )
    return uvicorn.Config(
        Guard(app, limits),
        host=host,
        port=port,
        http=protocol,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        timeout_keep_alive=limits.keep_alive_timeout,
        **options,
    )


# --- who is calling: strangers get a budget ---------------------------------------------------


_KEYID = re.compile(r'keyid="([^"]{1,200})"')


def claimed_did(headers) -> str | None:
    """The DID a request's Signature-Input claims, unverified: only to decide whose budget
    the check is charged to before it runs. A claim that does not verify is charged anyway."""
    match = _KEYID.search(headers.get("signature-input", ""))
    return match.group(1).partition("#")[0] if match else None


def source_of(scope) -> str:
    """The address a rate limit is kept for: the client's IP, or its /64 for IPv6 (one host's
    share of addresses)."""
    client = scope.get("client")
    if not client:
        return "?"
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return str(client[0])
    if address.version == 6:
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class StrangerGate:
    """A token bucket per source address, for the requests of strangers. Bounded: the least
    recently seen sources are forgotten first (a forgotten source starts with a full bucket).
    And at most ``checks`` strangers' signatures in the checking at once, all sources together:
    a flood from many addresses then waits at the door, not in the owner's queue."""

    def __init__(self, rate: float, burst: int, max_sources: int = 10_000, checks: int = 4) -> None:
        self.rate, self.burst, self.max_sources, self.checks = rate, burst, max_sources, checks
        self._buckets: OrderedDict[str, tuple[float, float]] = (
            OrderedDict()
        )  # source → (tokens, at)
        self._checking = 0
        self._lock = threading.Lock()

    def begin_check(self) -> bool:
        with self._lock:
            if self._checking >= self.checks:
                return False
            self._checking += 1
            return True

    def end_check(self) -> None:
        with self._lock:
            self._checking -= 1

    def take(self, source: str, now: float | None = None) -> float | None:
        """Use one token: None if there was one, else the seconds until there is."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, at = self._buckets.pop(source, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            wait = None if tokens >= 1 else (1 - tokens) / self.rate
            self._buckets[source] = (tokens - 1 if wait is None else tokens, now)
            while len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)
            return wait


class KnownCallers:
    """Which tier a caller is in: "owner", "known" (holds a grant or is a pinned peer), or
    "stranger". Read from the vault at most once a second, so a flood does not read it per request."""

    def __init__(self, node, ttl: float = 1.0) -> None:
        self.node, self.ttl = node, ttl
        self._known: frozenset[str] = frozenset()
        self._read_at = -math.inf
        self._lock = threading.Lock()

    def tier(self, did: str | None) -> str:
        if did is None:
            return "stranger"
        if did == self.node.keys.owner_did:
            return "owner"
        return "known" if did in self._dids() else "stranger"

    def replay_tier(self, keyid: str) -> str:
        """The replay cache's classifier: NIP-98 nonces are recorded only for pinned peers."""
        return "known" if keyid.startswith("nostr:") else self.tier(keyid.partition("#")[0])

    def _dids(self) -> frozenset[str]:
        with self._lock:
            if time.monotonic() - self._read_at > self.ttl:
                grants = {grant.did for grant in self.node.grants.list()}
                self._known = frozenset(grants | {peer.did for peer in list_peers(self.node.vault)})
                self._read_at = time.monotonic()
            return self._known


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))  # RFC 9110 delay-seconds: whole, and never 0
