"""Issue 12, item 4: unbounded bodies and headers, and connections never timed out. Played
over raw sockets against the app as `flurry serve` serves it (node.limits.server_config)."""

from __future__ import annotations

import socket
import time

import pytest

from node.limits import Limits
from store.pod_store import MAX_RESOURCE_BYTES

from .conftest import raw_request, read_until_closed, serve, status_of

# Short deadlines so the tests do not wait the production ones (10 s, 60 s, 5 s); the code
# that enforces them is the same.
LIMITS = Limits(header_timeout=1.0, body_timeout=1.5, keep_alive_timeout=1)


@pytest.fixture(scope="module")
def served(node):
    served = serve(node, limits=LIMITS)
    yield served
    served.stop()


def _head(port: int, method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _chunked_upto(served, path: str, limit: int, method: str = "POST") -> tuple[bytes, int]:
    """Stream a chunked body one byte past ``limit`` and no further, then wait: (the answer,
    bytes sent). A server that buffers until the body ends never answers."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(
            _head(
                served.port,
                method,
                path,
                "Transfer-Encoding: chunked",
                "Content-Type: application/json",
            )
        )
        sent, piece = 0, b"x" * 65536
        while sent <= limit:
            chunk = piece[: limit + 1 - sent] if limit + 1 - sent < len(piece) else piece
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
        return read_until_closed(sock, 10), sent


def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(served):
    answer, seconds = raw_request(
        served.port, _head(served.port, "POST", "/api/ask", "Content-Length: 268435456")
    )
    assert status_of(answer) == 413 and b"problem+json" in answer
    assert b"<still open>" not in answer  # closed: the body it announced is not read


def test_a_chunked_body_is_counted_as_it_streams(served):
    answer, sent = _chunked_upto(served, "/api/ask", LIMITS.max_body)
    assert status_of(answer) == 413, answer[:200]
    assert sent == LIMITS.max_body + 1


def test_the_pods_4_mib_limit_holds_for_chunked_bodies(served):
    answer, sent = _chunked_upto(served, "/pod/notes/big.txt", MAX_RESOURCE_BYTES, method="PUT")
    assert status_of(answer) == 413, answer[:200]
    assert b"4194304" in answer


def test_a_body_within_the_limit_still_reaches_the_app(served):
    body = b'{"question": ""}'
    answer, _ = raw_request(
        served.port,
        _head(served.port, "POST", "/api/ask", f"Content-Length: {len(body)}", "Connection: close")
        + body,
    )
    assert status_of(answer) == 401  # unsigned: the app saw it and refused it


def test_huge_headers_get_431_before_anything_parses_them(served):
    big = "Signature-Input: sig1=(" + '"a" ' * 200_000 + ")"  # 800 KB, as in the report
    answer, seconds = raw_request(served.port, _head(served.port, "GET", "/api/whoami", big))
    assert status_of(answer) == 431, answer[:200]


def test_too_many_or_too_long_header_fields_get_431(served):
    many = [f"X-Filler-{n}: {n}" for n in range(LIMITS.max_header_fields + 1)]
    answer, _ = raw_request(
        served.port, _head(served.port, "GET", "/healthz", *many, "Connection: close")
    )
    assert status_of(answer) == 431
    long = "Signature: sig1=:" + "A" * (LIMITS.max_field_bytes + 1) + ":"
    answer, _ = raw_request(
        served.port, _head(served.port, "GET", "/healthz", long, "Connection: close")
    )
    assert status_of(answer) == 431
    answer, _ = raw_request(served.port, _head(served.port, "GET", "/healthz", "Connection: close"))
    assert status_of(answer) == 200


def test_a_connection_that_never_finishes_its_headers_is_closed(served):
    # Closed by the server (408), well before our read gives up at ten header timeouts.
    answer, _ = raw_request(
        served.port,
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n",
        timeout=10 * LIMITS.header_timeout,
    )
    assert status_of(answer) == 408 and b"<still open>" not in answer
    silent, _ = raw_request(
        served.port, b"", timeout=10 * LIMITS.header_timeout
    )  # connects and says nothing
    assert b"<still open>" not in silent


def test_headers_dribbled_a_byte_at_a_time_do_not_extend_the_deadline(served):
    # Sent whole, the dribble would take 14 s (ten header timeouts): the server must cut it off
    # part-way. Asserted on what was sent, not on seconds, so a loaded machine cannot fail it.
    request = _head(served.port, "GET", "/healthz") + b"X" * 100
    sent = 0
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        try:
            for byte in request:
                sock.send(bytes([byte]))
                sent += 1
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        read_until_closed(sock, 5)
    assert sent < len(request), "the server let a dribbled header run past its deadline"


def test_an_idle_keep_alive_connection_and_a_stalled_body_are_closed(served):
    # The server, not our read timeout (ten times the server's), closes each connection; the
    # 408 says which limit closed the second. No bound in seconds: a loaded machine is slow.
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(_head(served.port, "GET", "/healthz"))
        answer = read_until_closed(sock, 10 * LIMITS.keep_alive_timeout)
        assert status_of(answer) == 200 and b"<still open>" not in answer
    stalled, _ = raw_request(
        served.port,
        _head(served.port, "POST", "/api/ask", "Content-Length: 100") + b"{",
        timeout=10 * LIMITS.body_timeout,
    )
    assert status_of(stalled) == 408 and b"<still open>" not in stalled


def test_many_bodies_at_once_share_one_budget(node):
    # Each body within its limit, but together past what the node holds at once: the one
    # that crosses it is refused (503), so 32 pod uploads cannot take 128 MiB.
    served = serve(node, limits=Limits(max_buffered=2 * 1024 * 1024))
    try:
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as holding:
            holding.sendall(_head(served.port, "PUT", "/pod/a.bin", "Transfer-Encoding: chunked"))
            piece = b"x" * 65536
            for _ in range(24):  # 1.5 MiB, and the body not finished
                holding.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            app = served.server.config.app
            # Waited for by state, not by a sleep: a loaded machine reads the bytes late.
            assert _eventually(lambda: app.buffered >= 24 * len(piece)), app.buffered
            answer, sent = _chunked_upto(served, "/pod/b.bin", 1024 * 1024, method="PUT")
            assert status_of(answer) == 503 and b"retry-after: 1" in answer.lower()
        assert _eventually(lambda: app.buffered == 0), (
            app.buffered
        )  # the first connection closed: its bytes are released
    finally:
        served.stop()


def _eventually(condition, seconds: float = 30.0) -> bool:
    """Whether ``condition()`` becomes true within ``seconds`` (a bound for a hung server, not a timing)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
