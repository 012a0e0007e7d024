"""The attacks of issue 12, played against a real node served by uvicorn on loopback, with the
limits `flurry serve` runs (node.limits), shortened only where a test would otherwise wait."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import Served, new_node
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from identity.did_key import did_key_from_ed25519_public, verification_method_id
from identity.signing_client import signed_client


class Someone:
    """A self-made did:key: what any stranger can have by the thousand."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.did = did_key_from_ed25519_public(self.key.public_key().public_bytes_raw())
        self.keyid = verification_method_id(self.did)

    def client(self, url: str, **options) -> httpx.Client:
        return signed_client(self.key, self.keyid, base_url=url, timeout=30, **options)


@pytest.fixture(scope="package")
def node(tmp_path_factory, models_dir):
    node = new_node(tmp_path_factory.mktemp("security"), models_dir)
    yield node
    node.close()


def serve(node, **options) -> Served:
    return Served(node, **options)


@pytest.fixture(scope="module")
def served(node) -> Iterator[Served]:
    """The node served with the production limits (the suite's own ``served`` lifts the
    strangers' rate limit); the top-level ``owner`` fixture signs against this one here."""
    served = serve(node)
    yield served
    served.stop()


def raw_request(port: int, data: bytes, *, timeout: float = 10.0) -> tuple[bytes, float]:
    """Send ``data`` on a fresh connection and read until the server closes it (or ``timeout``):
    (what came back, seconds until the close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        started = time.monotonic()
        if data:
            sock.sendall(data)
        return read_until_closed(sock, timeout), time.monotonic() - started


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return received + b"<still open>"
    except ConnectionResetError:
        pass
    return received


def status_of(response: bytes) -> int | None:
    first = response.split(b"\r\n", 1)[0].split()
    return int(first[1]) if len(first) > 1 and first[1].isdigit() else None
