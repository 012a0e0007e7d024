"""The capability broker: the only way a managed skill reaches anything of the node's.

A skill never holds a key, a path into the home or a network route. When it wants the
owner's notes, to write a note, to ask a peer or to fetch a URL, its process asks the broker
over a Unix socket in the node's private runtime folder; the broker names the skill by the
secret token it was started with, checks the request against the permissions the owner
granted *now* (a revocation takes effect on the next call, no restart needed), and only then
calls the node. The node does the work, signed and audited where it leaves the box.

The wire is one JSON object per line: ``{"token", "capability", "arguments"}`` in,
``{"result": …}`` or ``{"error": {"code", "message"}}`` out, one request per connection.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from skills.errors import SkillError

MAX_REQUEST_BYTES = 1024 * 1024
# Environment names the runner reads (and removes) before any skill code is imported.
SOCKET_ENV = "FLURRY_BROKER_SOCKET"
TOKEN_ENV = "FLURRY_BROKER_TOKEN"


class CapabilityDenied(SkillError):
    """The skill asked for something the owner did not grant; the message says which permission."""


class CapabilityFailed(SkillError):
    """Granted, but the node could not do it (no such peer, the host did not answer…)."""


class NodeCapabilities(Protocol):
    """What the node does for skills. ``tags`` None means every document."""

    def search(self, query: str, k: int, tags: frozenset[str] | None) -> list[dict]: ...
    def write_note(self, skill: str, title: str, text: str) -> dict: ...
    def send_to_peer(self, skill: str, peer: str, text: str) -> str: ...
    def http_request(
        self, skill: str, method: str, url: str, body: str | None, address: str
    ) -> dict:
        """Make the request, connecting to ``address`` (the broker checked it) and to no other."""

    def ask_owner(self, skill: str, question: str) -> bool: ...
    def publish_nostr(self, skill: str, text: str) -> dict: ...


@dataclass(frozen=True)
class Request:
    skill: str
    granted: tuple[str, ...]
    arguments: dict


def readable_tags(granted: tuple[str, ...]) -> frozenset[str] | None | Literal[False]:
    """What ``vault.read`` lets a skill search: None (everything), a set of tags, or False (nothing).
    Several grants widen each other: "vault.read" with "vault.read:tags=a" is everything."""
    tags: set[str] = set()
    found = False
    for permission in granted:
        if permission == "vault.read":
            return None
        if permission.startswith("vault.read:tags="):
            found = True
            tags.update(permission.removeprefix("vault.read:tags=").split(","))
    return frozenset(tags) if found else False


def _text(arguments: dict, name: str, limit: int = 100_000) -> str:
    value = arguments.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    if len(value) > limit:
        raise ValueError(f"{name} is longer than {limit} characters")
    return value


DEFAULT_PORTS = {"http": 80, "https": 443}


def http_granted(granted: tuple[str, ...], scheme: str, host: str, port: int) -> bool:
    """Whether a grant covers this origin. ``http:host=H`` is https://H:443 only, ``http:host=H:P``
    https://H:P; ``http:origin=…`` names scheme, host and port whole. A grant names one origin:
    never another port of the host, never plain http unless it says so."""
    for permission in granted:
        if permission.startswith("http:host="):
            name, _, named_port = permission.removeprefix("http:host=").partition(":")
            if (scheme, host, port) == ("https", name, int(named_port or 443)):
                return True
        elif permission.startswith("http:origin="):
            origin = urlsplit(permission.removeprefix("http:origin="))
            if (scheme, host, port) == (
                origin.scheme,
                origin.hostname,
                origin.port or DEFAULT_PORTS[origin.scheme],
            ):
                return True
    return False


def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (the system's resolver)."""
    return list(
        dict.fromkeys(
            info[4][0]
            for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            # An IP address is a str; the (int, bytes) form is for a Python built without IPv6.
            if isinstance(info[4][0], str)
        )
    )


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.split("%")[0])  # no zone index
    except ValueError:
        return None
    # ::ffff:127.0.0.1 is 127.0.0.1
    return ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip


class Broker:
    def __init__(
        self, node: NodeCapabilities, socket_dir: Path, granted: Callable[[str], tuple[str, ...]]
    ) -> None:
        """``granted(skill)`` reads the skill's permissions as they are now (revocations count)."""
        # Host name → addresses; the node's edge of the world (a test puts its own DNS here).
        self.resolve: Callable[[str, int], list[str]] = resolve
        self._node = node
        self._granted = granted
        self._tokens: dict[str, str] = {}  # token → skill name
        self._lock = threading.Lock()
        socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = socket_dir / f"broker-{secrets.token_hex(4)}.sock"
        broker = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline(MAX_REQUEST_BYTES + 1)
                reply = broker.answer(line)
                self.wfile.write(json.dumps(reply).encode() + b"\n")

        self._server = socketserver.ThreadingUnixStreamServer(str(self.path), Handler)
        self._server.daemon_threads = True
        os.chmod(self.path, 0o600)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="flurry-broker", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.path.unlink(missing_ok=True)

    def environment(self, skill: str) -> dict[str, str]:
        """What a skill's process is started with to reach the broker as ``skill``."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = skill
        return {SOCKET_ENV: str(self.path), TOKEN_ENV: token}

    def forget(self, skill: str) -> None:
        """The skill stopped (or was removed): its tokens stop working."""
        with self._lock:
            self._tokens = {t: s for t, s in self._tokens.items() if s != skill}

    # --- one request ------------------------------------------------------------------

    def answer(self, line: bytes) -> dict:
        if len(line) > MAX_REQUEST_BYTES:
            return _error("bad_request", f"a request is at most {MAX_REQUEST_BYTES} bytes")
        try:
            message = json.loads(line)
            token, capability, arguments = (
                message["token"],
                message["capability"],
                message.get("arguments", {}),
            )
            if not isinstance(arguments, dict):
                raise TypeError("arguments must be an object")
        except (ValueError, KeyError, TypeError) as e:
            return _error("bad_request", f"malformed request: {e}")
        with self._lock:
            skill = self._tokens.get(token) if isinstance(token, str) else None
        if skill is None:
            return _error("unknown_skill", "this token belongs to no running skill")
        handler = self._capabilities.get(capability) if isinstance(capability, str) else None
        if handler is None:
            return _error(
                "bad_request", f"no capability {capability!r}; known: {sorted(self._capabilities)}"
            )
        try:
            return {"result": handler(self, Request(skill, self._granted(skill), arguments))}
        except CapabilityDenied as e:
            return _error("denied", str(e))
        except (ValueError, TypeError) as e:
            return _error("bad_request", str(e))
        except CapabilityFailed as e:
            return _error("failed", str(e))
        except (
            Exception
        ) as e:  # the node's own failure: the skill gets the reason, the node stays up
            return _error("failed", f"{type(e).__name__}: {e}")

    def _search(self, request: Request) -> list[dict]:
        tags = readable_tags(request.granted)
        if tags is False:
            raise CapabilityDenied(f"{request.skill} was not granted vault.read")
        query = _text(request.arguments, "query", 2000)
        k = request.arguments.get("k", 3)
        if not isinstance(k, int) or not 1 <= k <= 20:
            raise ValueError("k must be a whole number from 1 to 20")
        wanted = request.arguments.get("tags")
        if wanted is not None:
            if (
                not isinstance(wanted, list)
                or not wanted
                or not all(isinstance(t, str) for t in wanted)
            ):
                raise ValueError("tags must be a non-empty list of strings")
            if tags is not None and not set(wanted) <= tags:
                raise CapabilityDenied(
                    f"{request.skill} may read only documents tagged {', '.join(sorted(tags))}"
                )
            tags = frozenset(wanted)
        return self._node.search(query, k, tags)

    def _write_note(self, request: Request) -> dict:
        _require(request, "notes.write")
        title = _text(request.arguments, "title", 200)
        return self._node.write_note(request.skill, title, _text(request.arguments, "text"))

    def _send_to_peer(self, request: Request) -> str:
        _require(request, "peers.send")
        return self._node.send_to_peer(
            request.skill,
            _text(request.arguments, "peer", 500),
            _text(request.arguments, "text", 8000),
        )

    def _http(self, request: Request) -> dict:
        url = _text(request.arguments, "url", 4000)
        method = request.arguments.get("method", "GET")
        if method not in ("GET", "POST"):
            raise ValueError("method must be GET or POST")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http(s) URL with a host")
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError as e:
            raise ValueError(f"url: {e}") from None
        host = parts.hostname
        if not http_granted(request.granted, parts.scheme, host, port):
            wanted = (
                f"http:host={host}" + ("" if port == 443 else f":{port}")
                if parts.scheme == "https"
                else f"http:origin=http://{host}" + ("" if port == 80 else f":{port}")
            )
            raise CapabilityDenied(f"{request.skill} was not granted {wanted}")
        body = request.arguments.get("body")
        if body is not None and not isinstance(body, str):
            raise ValueError("body must be a string")
        return self._node.http_request(
            request.skill, method, url, body, address=self._address(request.skill, host, port)
        )

    def _address(self, skill: str, host: str, port: int) -> str:
        """The one address to connect to. A host name must resolve to public addresses only: the
        node's own loopback, the owner's LAN and link-local services (cloud metadata) are reached
        only by a grant that names the address itself. The node then connects to exactly this
        address, so a second DNS answer (rebinding) changes nothing."""
        if _ip(host) is not None:
            return host  # the owner granted this very address
        try:
            addresses = self.resolve(host, port)
        except OSError as e:
            raise CapabilityFailed(f"{host} does not resolve: {e}") from None
        if not addresses:
            raise CapabilityFailed(f"{host} does not resolve")
        for address in addresses:
            ip = _ip(address)
            if ip is None or not ip.is_global:
                raise CapabilityDenied(
                    f"{host} resolves to {address}, which is not a public address; {skill} reaches a "
                    "loopback, private or link-local address only by a grant that names it"
                )
        return addresses[0]

    def _ask_owner(self, request: Request) -> bool:
        _require(request, "owner.ask")
        return self._node.ask_owner(request.skill, _text(request.arguments, "question", 2000))

    def _publish_nostr(self, request: Request) -> dict:
        _require(request, "nostr.publish")
        return self._node.publish_nostr(request.skill, _text(request.arguments, "text", 8000))

    _capabilities: dict[str, Callable[[Broker, Request], Any]] = {
        "owner.ask": _ask_owner,
        "nostr.publish": _publish_nostr,
        "vault.search": _search,
        "notes.write": _write_note,
        "peers.send": _send_to_peer,
        "http.request": _http,
    }


def _require(request: Request, permission: str) -> None:
    if permission not in request.granted:
        raise CapabilityDenied(f"{request.skill} was not granted {permission}")


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


# --- the skill's side (imported by skills.sdk, in the skill's process) --------------------


class BrokerClient:
    def __init__(self, path: str, token: str) -> None:
        self._path, self._token = path, token

    def call(self, capability: str, arguments: dict, timeout: float = 120.0) -> Any:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)  # the owner may take minutes to answer owner.ask
            s.connect(self._path)
            s.sendall(
                json.dumps(
                    {"token": self._token, "capability": capability, "arguments": arguments}
                ).encode()
                + b"\n"
            )
            reply = json.loads(s.makefile("rb").readline())
        if "error" in reply:
            error = reply["error"]
            raise (CapabilityDenied if error["code"] == "denied" else CapabilityFailed)(
                error["message"]
            )
        return reply["result"]
